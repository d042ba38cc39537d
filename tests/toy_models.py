"""Tiny models covering the hard cases of structural pruning.

:class:`ToyGenerator` (~10k parameters) has a Linear projection into a reshape,
ConvTranspose2d, BatchNorm and InstanceNorm, a residual block and a concatenation skip,
and an output layer whose channels must never be pruned (as Torch-Pruning's own tests
exercise transposed convolutions).
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(h))


class ToyGenerator(nn.Module):
    """Latent (N, 8) -> image (N, 1, 8, 8) in [-1, 1]."""

    latent_shape = (8,)

    def __init__(self, latent_dim: int = 8, width: int = 12) -> None:
        super().__init__()
        self.width = width
        self.project = nn.Linear(latent_dim, width * 4 * 4)
        self.up = nn.ConvTranspose2d(width, width, 4, 2, 1, bias=False)  # 4 -> 8
        self.up_norm = nn.BatchNorm2d(width)
        self.res = ResidualBlock(width)
        self.side = nn.Conv2d(width, width // 2, 3, 1, 1)
        self.side_norm = nn.InstanceNorm2d(width // 2, affine=True)
        self.out = nn.Conv2d(width + width // 2, 1, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.project(z)).view(z.shape[0], self.width, 4, 4)
        h = torch.relu(self.up_norm(self.up(h)))
        h = self.res(h)
        side = torch.relu(self.side_norm(self.side(h)))
        return torch.tanh(self.out(torch.cat([h, side], dim=1)))


def toy_generator(seed: int = 0) -> ToyGenerator:
    """A ToyGenerator with seeded weights and non-trivial BatchNorm statistics."""
    generator = torch.Generator().manual_seed(seed)
    model = ToyGenerator()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(
                    torch.randn(module.num_features, generator=generator) * 0.1
                )
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()
