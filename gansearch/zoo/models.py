"""Reference networks of the ``digits`` benchmark.

* :class:`DCGANGenerator` / :class:`DCGANDiscriminator` follow Radford et al.,
  "Unsupervised Representation Learning with Deep Convolutional GANs" (ICLR 2016):
  a latent vector is upsampled by a ConvTranspose2d/BatchNorm/ReLU stack to a Tanh image.
* :class:`DigitsFeatureNet` is a small CNN classifier whose penultimate layer is the
  embedding for FID/KID and whose softmax is the classifier for IS (Inception weights
  cannot be downloaded here).
"""

from __future__ import annotations

import torch
from torch import nn


class DCGANGenerator(nn.Module):
    """Latent (N, latent_dim, 1, 1) -> image (N, channels, 16, 16) in [-1, 1]."""

    def __init__(self, latent_dim: int = 64, width: int = 48, channels: int = 1) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        w = width
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 4 * w, 4, 1, 0, bias=False),  # 1 -> 4
            nn.BatchNorm2d(4 * w),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False),  # 4 -> 8
            nn.BatchNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),  # 8 -> 16
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, channels, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """Image (N, channels, 16, 16) -> real/fake logit (N,).

    :meth:`features` also returns the intermediate activations, which distillation uses
    for perceptual losses on discriminator features.
    """

    def __init__(self, width: int = 32, channels: int = 1) -> None:
        super().__init__()
        w = width
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)),
                nn.Sequential(
                    nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(2 * w),
                    nn.LeakyReLU(0.2, inplace=True),
                ),
                nn.Sequential(
                    nn.Conv2d(2 * w, 4 * w, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(4 * w),
                    nn.LeakyReLU(0.2, inplace=True),
                ),
            ]
        )
        self.head = nn.Conv2d(4 * w, 1, 4, 1, 0)

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Intermediate activations (16->8, 8->4, 4x4) and the logits."""
        activations = []
        for block in self.blocks:
            x = block(x)
            activations.append(x)
        return activations, self.head(x).flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]


class DigitsFeatureNet(nn.Module):
    """16x16 digit -> (64-d embedding, 10 class logits)."""

    feature_dim = 64
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(32, 64, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 4x4
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(64 * 4 * 4, self.feature_dim),
        )
        self.classifier = nn.Sequential(nn.ReLU(), nn.Dropout(0.3), nn.Linear(self.feature_dim, 10))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, self.classifier(features)
