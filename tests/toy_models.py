"""Tiny models covering the hard cases of structural pruning.

:class:`ToyGenerator` (~10k parameters) has a Linear projection into a reshape,
ConvTranspose2d, BatchNorm and InstanceNorm, a residual block and a concatenation skip,
and an output layer whose channels must never be pruned (as Torch-Pruning's own tests
exercise transposed convolutions).
"""

from __future__ import annotations

from collections.abc import Callable

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


class CycleResnetBlock(nn.Module):
    """A residual block written as the CycleGAN/pix2pix reference implementation writes it."""

    def __init__(self, dim: int, norm_layer: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            norm_layer(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            norm_layer(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class CycleResnetGenerator(nn.Module):
    """CycleGAN-style ResNet generator, image (N, 3, 16, 16) -> image (N, 3, 16, 16).

    The reference implementation's layout (``ResnetGenerator`` in junyanz/pytorch-CycleGAN-
    and-pix2pix): reflection padding, ``Conv -> InstanceNorm -> ReLU(inplace=True)``, two
    stride-2 downsamplings, residual blocks, transposed-conv upsampling and a Tanh output.
    ``norm_layer`` defaults to the reference's ``InstanceNorm2d`` (``affine=False``,
    ``track_running_stats=False``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 4,
        blocks: int = 2,
        norm_layer: Callable[[int], nn.Module] = nn.InstanceNorm2d,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, kernel_size=7, padding=0, bias=True),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [CycleResnetBlock(ngf * 4, norm_layer) for _ in range(blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1
                ),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, out_channels, kernel_size=7, padding=0),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GroupedUpsampleGenerator(nn.Module):
    """Latent (N, 16) -> image (N, 3, 16, 16) through Upsample + Conv, with grouped convs.

    ``grouped`` has ``groups=4`` and ``depthwise`` is a depthwise conv, the two kinds of
    grouped convolution in light-weight generators.
    """

    latent_shape = (16,)

    def __init__(self, latent_dim: int = 16, width: int = 16) -> None:
        super().__init__()
        self.project = nn.Linear(latent_dim, width * 4 * 4)
        self.up1 = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.grouped = nn.Conv2d(width, width, 3, 1, 1, groups=4)
        self.grouped_norm = nn.BatchNorm2d(width)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.depthwise = nn.Conv2d(width, width, 3, 1, 1, groups=width)
        self.pointwise = nn.Conv2d(width, width // 2, 1)
        self.out = nn.Conv2d(width // 2, 3, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], -1, 4, 4)
        h = self.up1(h)
        h = torch.relu(self.grouped_norm(self.grouped(h)))
        h = self.depthwise(self.up2(h))
        h = torch.relu(self.pointwise(h))
        return torch.tanh(self.out(h))


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with seeded random weights, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()
