"""Small generators written the way users write them, with their data and input factories.

Each is configured in YAML alone (``tests/test_user_generators.py``) and goes through
``gansearch run`` -> ``export`` -> ``gansearch.load`` -> ONNX Runtime -> ``evaluate
--artifact``. All are tiny (< 50k parameters, 16x16 images) and deterministic:

- :class:`UnetGenerator`: pix2pix's U-Net (``UnetSkipConnectionBlock`` of
  junyanz/pytorch-CycleGAN-and-pix2pix: recursive blocks, ``torch.cat`` skips, in-place
  LeakyReLU/ReLU), image in, image out, on paired data (:func:`denoise_pairs`);
- :class:`SrResnet`: SRGAN's generator (scalar ``nn.PReLU``, PixelShuffle), 8x8 -> 16x16;
- :func:`resnet_generator`: the CycleGAN ResNet generator of ``tests.toy_models``
  (reflection padding, ``Conv -> InstanceNorm2d -> ReLU(inplace=True)``, residual
  blocks, ConvTranspose upsampling) on unpaired data with a small feature network;
- :class:`DcganGenerator`: ``nn.Linear`` output reshaped with ``view`` before ConvTranspose;
- :class:`GroupedUpsampleGenerator`: Upsample + Conv with a ``groups=4`` convolution, fed
  latents of shape (8, 4, 4);
- :class:`ConditionalGenerator`: ``forward(z, labels)`` with ``nn.Embedding`` (and a
  projection discriminator ``D(images, labels)``);
- :class:`NoiseInjectionGenerator`: ``forward(z, noise)`` with a constructor argument
  (``width``), fed by the inputs function :func:`noise_inputs`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tests.toy_models import CycleResnetGenerator

SIZE = 16
"""Height and width of every image here."""


def _seeded(model: nn.Module, seed: int = 0, scale: float = 0.3) -> nn.Module:
    """``model`` with seeded random weights (and BatchNorm statistics), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                features = module.num_features
                module.running_mean.copy_(torch.randn(features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(features, generator=generator) + 0.5)
    return model.eval()


def _smooth_images(count: int, channels: int, seed: int) -> torch.Tensor:
    """Smooth random images in [-1, 1]: upsampled 4x4 noise."""
    noise = torch.randn(count, channels, 4, 4, generator=torch.Generator().manual_seed(seed))
    return torch.tanh(F.interpolate(noise, size=(SIZE, SIZE), mode="bilinear"))


# --------------------------------------------------------------------------- pix2pix U-Net


class UnetSkipConnectionBlock(nn.Module):
    """One level of pix2pix's U-Net: ``x -> [x, up(sub(down(x)))]`` (reference layout)."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = nn.BatchNorm2d(inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = nn.BatchNorm2d(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=False)
            model = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=False)
            model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix U-Net with three levels: (N, 1, 16, 16) -> (N, 1, 16, 16)."""

    def __init__(self, channels: int = 1, ngf: int = 8) -> None:
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 2, innermost=True)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block)
        self.model = UnetSkipConnectionBlock(
            channels, ngf, input_nc=channels, submodule=block, outermost=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def unet() -> nn.Module:
    return _seeded(UnetGenerator(), seed=1, scale=0.2)


def denoise_pairs(split: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """Paired data: noisy images (inputs) and the clean images (targets).

    ``split``: ``train`` (the first 40 pairs), ``test`` (the other 24) or ``all``.
    """
    clean = _smooth_images(64, 1, seed=10)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(11))
    part = {"train": slice(0, 40), "test": slice(40, None), "all": slice(None)}[split]
    return (clean + 0.2 * noise)[part], clean[part]


# --------------------------------------------------------------------------- SRGAN


class SrResnet(nn.Module):
    """SRGAN's generator (Ledig et al., CVPR 2017) in miniature: ``nn.PReLU()``, a residual
    block with BatchNorm, a global skip and PixelShuffle x2: (N, 1, 8, 8) -> (N, 1, 16, 16)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(1, width, 9, 1, 4), nn.PReLU())
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.PReLU(),
            nn.Conv2d(width, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
        )
        self.upsample = nn.Sequential(
            nn.Conv2d(width, width * 4, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU()
        )
        self.tail = nn.Conv2d(width, 1, 9, 1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return torch.tanh(self.tail(self.upsample(h + self.body(h))))


def srresnet() -> nn.Module:
    return _seeded(SrResnet(), seed=9, scale=0.1)


def downscaled_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Super-resolution pairs: 8x8 inputs (average-pooled) and their 16x16 originals."""
    high = _smooth_images(48, 1, seed=12)
    return F.avg_pool2d(high, 2), high


# --------------------------------------------------------------------------- CycleGAN ResNet


def resnet_generator() -> nn.Module:
    """The reference ``ResnetGenerator`` (InstanceNorm2d, in-place ReLU), 3 -> 3 channels."""
    return _seeded(CycleResnetGenerator(ngf=4, blocks=2), seed=2, scale=0.2)


def horses_and_zebras() -> tuple[torch.Tensor, torch.Tensor]:
    """Unpaired data: source-domain images and (a different number of) target images."""
    return _smooth_images(40, 3, seed=20), _smooth_images(48, 3, seed=21).flip(1)


class TinyFeatures(nn.Module):
    """A feature network mapping images to ``(features, logits)`` for FID/KID."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 8, 3, 2, 1)
        self.head = nn.Linear(8, 4)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = F.adaptive_avg_pool2d(torch.relu(self.conv(images)), 1).flatten(1)
        return features, self.head(features)


def features() -> nn.Module:
    return _seeded(TinyFeatures(), seed=3, scale=0.5)


# --------------------------------------------------------------------------- latent generators


def real_images() -> torch.Tensor:
    """Real one-channel images for generators that are fed latents."""
    return _smooth_images(64, 1, seed=30)


class DcganGenerator(nn.Module):
    """DCGAN with a Linear projection reshaped by ``view`` before ConvTranspose layers."""

    def __init__(self, latent_dim: int = 16, width: int = 16) -> None:
        super().__init__()
        self.width = width
        self.fc = nn.Linear(latent_dim, width * 4 * 4)
        self.net = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.ReLU(True),
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),  # 4 -> 8
            nn.BatchNorm2d(width // 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(width // 2, 1, 4, 2, 1),  # 8 -> 16
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, self.width, 4, 4))


def dcgan() -> nn.Module:
    return _seeded(DcganGenerator(), seed=4)


def spectral_norm_dcgan(style: str = "parametrize", plain: bool = False) -> nn.Module:
    """The DCGAN with spectral normalisation (Miyato et al., ICLR 2018) on every layer,
    ``style`` ``parametrize`` (torch.nn.utils.parametrizations) or ``hooks`` (the old
    torch.nn.utils.spectral_norm); ``plain`` removes it after the weights are set, as a
    user's factory does before compressing."""
    from torch.nn.utils import parametrizations, parametrize, remove_spectral_norm, spectral_norm

    model = DcganGenerator()
    layers = [model.fc, model.net[2], model.net[5]]
    for layer in layers:
        if style == "parametrize":
            parametrizations.spectral_norm(layer)
        else:
            spectral_norm(layer)
    model = _seeded(model, seed=4)
    for layer in layers if plain else ():
        if style == "parametrize":
            parametrize.remove_parametrizations(layer, "weight")
        else:
            remove_spectral_norm(layer)
    return model


class GroupedUpsampleGenerator(nn.Module):
    """Latents (N, 8, 4, 4) -> Upsample + Conv, a ``groups=4`` conv, Upsample + Conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(8, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.LeakyReLU(0.2, True)
        )
        self.up1 = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(16, 16, 3, 1, 1, groups=4, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(True),
        )
        self.up2 = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(16, 1, 3, 1, 1), nn.Tanh()
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up2(self.up1(self.stem(z)))


def grouped() -> nn.Module:
    return _seeded(GroupedUpsampleGenerator(), seed=5)


class ConditionalGenerator(nn.Module):
    """Class-conditional generator ``G(z, labels)``: the label embedding scales the latent."""

    def __init__(self, latent_dim: int = 16, num_classes: int = 4, width: int = 16) -> None:
        super().__init__()
        self.width = width
        self.embed = nn.Embedding(num_classes, latent_dim)
        self.fc = nn.Linear(2 * latent_dim, width * 4 * 4)
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width, 1, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(labels)], dim=1))
        return self.up(torch.relu(h).view(z.shape[0], -1, 4, 4))


def conditional() -> nn.Module:
    return _seeded(ConditionalGenerator(), seed=6)


class ProjectionDiscriminator(nn.Module):
    """A class-conditional ``D(images, labels)`` (Miyato and Koyama, cGANs with Projection
    Discriminator, ICLR 2018)."""

    def __init__(self, num_classes: int = 4, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 4, 2, 1)
        self.embed = nn.Embedding(num_classes, width)
        self.linear = nn.Linear(width, 1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = F.adaptive_avg_pool2d(F.leaky_relu(self.conv(images), 0.2), 1).flatten(1)
        return self.linear(h) + (self.embed(labels) * h).sum(1, keepdim=True)


def projection_discriminator() -> nn.Module:
    return _seeded(ProjectionDiscriminator(), seed=8)


# --------------------------------------------------------------------------- inputs function


class NoiseInjectionGenerator(nn.Module):
    """``G(z, noise)``: a DCGAN whose 8x8 features get a scaled noise image (StyleGAN2's
    ``noise_strength``, one learned scalar)."""

    def __init__(self, width: int = 4, latent_dim: int = 8) -> None:
        super().__init__()
        self.width = width
        self.fc = nn.Linear(latent_dim, width * 4 * 4)
        self.up = nn.ConvTranspose2d(width, width, 4, 2, 1)  # 4 -> 8
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.out = nn.ConvTranspose2d(width, 1, 4, 2, 1)  # 8 -> 16

    def forward(self, z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc(z)).view(z.shape[0], -1, 4, 4)
        h = torch.relu(self.up(h) + self.noise_strength * F.avg_pool2d(noise, 2))
        return torch.tanh(self.out(h))


def noise_generator(width: int = 4) -> nn.Module:
    """The factory a study names, with ``generator_kwargs: {width: ...}``."""
    return _seeded(NoiseInjectionGenerator(width=width), seed=7)


def noise_inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's inputs for ``(n, seed)``: latents and a noise image."""
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(n, 8, generator=generator)
    return latents, torch.randn(n, 1, SIZE, SIZE, generator=generator)
