"""Training recipes for the ``digits`` benchmark's committed weights.

Each recipe is seeded and deterministic on the CPU: every random draw (initialisation,
data order, augmentation, latents, dropout) happens inside ``torch.random.fork_rng`` from
an explicit seed, so the process-wide generator is left untouched.

Commands (they overwrite ``gansearch/zoo/weights/digits/``)::

    gansearch zoo train digits-features --seed 0
    gansearch zoo train digits-dcgan --seed 0
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gansearch.zoo.data import LabelledImages, load_digits_split
from gansearch.zoo.models import DCGANDiscriminator, DCGANGenerator, DigitsFeatureNet

Progress = Callable[[int, int, dict[str, float]], None]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block on its own seeded copy of torch's CPU generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless index batches of ``range(n)``, reshuffled from ``generator`` every epoch."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def _shift(images: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (background is -1)."""
    padded = F.pad(images, [max_shift] * 4, value=-1.0)
    size = images.shape[-1]
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[..., dy : dy + size, dx : dx + size]


def accuracy(model: DigitsFeatureNet, data: LabelledImages) -> float:
    model.eval()
    with torch.inference_mode():
        predictions = model(data.images)[1].argmax(dim=1)
    return float((predictions == data.labels).float().mean())


@dataclass(frozen=True)
class FeatureNetRecipe:
    seed: int = 0
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3


def train_feature_net(
    recipe: FeatureNetRecipe, progress: Progress | None = None
) -> tuple[DigitsFeatureNet, float]:
    """Train the FID/KID/IS feature network on the train split; returns it and test accuracy."""
    train, test = load_digits_split("train"), load_digits_split("test")
    with seeded(recipe.seed):
        generator = torch.Generator().manual_seed(recipe.seed)
        model = DigitsFeatureNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.steps)
        batches = shuffled_batches(len(train), recipe.batch_size, generator)
        model.train()
        for step in range(recipe.steps):
            index = next(batches)
            images = _shift(train.images[index], generator)
            loss = F.cross_entropy(model(images)[1], train.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if progress is not None:
                progress(step + 1, recipe.steps, {"loss": loss.item()})
    return model.eval(), accuracy(model, test)


@dataclass(frozen=True)
class DCGANRecipe:
    """Radford et al. (ICLR 2016) hyper-parameters: Adam(2e-4, beta1=0.5), batch 64."""

    seed: int = 0
    steps: int = 4000
    batch_size: int = 64
    lr: float = 2e-4
    latent_dim: int = 64
    width: int = 48


def train_dcgan(
    recipe: DCGANRecipe, progress: Progress | None = None
) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """Train the teacher DCGAN on the train split with the non-saturating GAN loss."""
    train = load_digits_split("train")
    with seeded(recipe.seed):
        generator_rng = torch.Generator().manual_seed(recipe.seed)
        netG = DCGANGenerator(recipe.latent_dim, recipe.width)
        netD = DCGANDiscriminator()
        for net in (netG, netD):
            for module in net.modules():  # DCGAN initialisation
                if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    torch.nn.init.normal_(module.weight, 0.0, 0.02)
                elif isinstance(module, torch.nn.BatchNorm2d):
                    torch.nn.init.normal_(module.weight, 1.0, 0.02)
                    torch.nn.init.zeros_(module.bias)
        betas = (0.5, 0.999)
        optG = torch.optim.Adam(netG.parameters(), lr=recipe.lr, betas=betas)
        optD = torch.optim.Adam(netD.parameters(), lr=recipe.lr, betas=betas)
        batches = shuffled_batches(len(train), recipe.batch_size, generator_rng)
        netG.train()
        netD.train()
        for step in range(recipe.steps):
            real = train.images[next(batches)]
            z = torch.randn(recipe.batch_size, recipe.latent_dim, 1, 1, generator=generator_rng)
            fake = netG(z)
            # Discriminator: real -> 1 (one-sided smoothing to 0.9), fake -> 0.
            d_real, d_fake = netD(real), netD(fake.detach())
            loss_d = F.binary_cross_entropy_with_logits(
                d_real, torch.full_like(d_real, 0.9)
            ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
            optD.zero_grad(set_to_none=True)
            loss_d.backward()
            optD.step()
            # Generator: non-saturating loss.
            d_gen = netD(fake)
            loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
            optG.zero_grad(set_to_none=True)
            loss_g.backward()
            optG.step()
            if progress is not None:
                progress(step + 1, recipe.steps, {"loss_d": loss_d.item(), "loss_g": loss_g.item()})
    return netG.eval(), netD.eval()
