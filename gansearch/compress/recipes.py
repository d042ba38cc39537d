"""Training recipes of the compress layer: small, frozen, torch-free values.

:func:`gansearch.compress.distill.distill` and
:func:`gansearch.compress.supernet_train.train_supernet` take these instead of the study's
pydantic configuration, so the compress layer never reaches up into
:mod:`gansearch.config`. The configuration layer validates the YAML and translates it
(``DistillConfig.recipe()``, ``SupernetConfig.recipe()``); the fields and defaults here
are the same as there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LOSS_TERMS = ("pixel", "adversarial", "class_logits", "feature", "perceptual")


@dataclass(frozen=True)
class DistillLosses:
    """Weights of the knowledge-distillation loss terms; a weight of 0 switches a term off.

    The terms follow the survey's Eq. 1-8 (see :mod:`gansearch.compress.distill_loss`).

    Attributes:
        pixel: Eq. 2, L1 or L2 by ``pixel_norm``.
        pixel_norm: ``"l1"`` or ``"l2"``.
        adversarial: Eq. 1/3, through the teacher's discriminator.
        class_logits: Eq. 4-5, discriminator logits.
        feature: Eq. 6-7, learned 1x1 mappings on ``feature_layers``.
        perceptual: Eq. 8, discriminator features.
        feature_layers: Qualified layer names for ``feature``; ``None`` = the norm layers.
        discriminator_lr: > 0 also trains a copy of the discriminator; 0 keeps it fixed.
    """

    pixel: float = 1.0
    pixel_norm: str = "l1"
    adversarial: float = 0.0
    class_logits: float = 0.0
    feature: float = 0.0
    perceptual: float = 0.0
    feature_layers: tuple[str, ...] | None = None
    discriminator_lr: float = 0.0

    def active(self) -> dict[str, float]:
        """Term name -> weight, for the terms switched on."""
        return {term: getattr(self, term) for term in LOSS_TERMS if getattr(self, term) > 0}


@dataclass(frozen=True)
class DistillRecipe:
    """Knowledge-distillation fine-tuning of a compressed generator (budget = ``steps``)."""

    steps: int = 200
    lr: float = 2e-4
    batch_size: int = 64
    seed: int = 0
    losses: DistillLosses = field(default_factory=DistillLosses)


@dataclass(frozen=True)
class SupernetRecipe:
    """Once-for-all supernet training (Cai et al., ICLR 2020; Li et al., CVPR 2020).

    Attributes:
        ratios: Width ratios each prunable group may take, ascending.
        calibration_batches: Latent batches for the BatchNorm recalibration at extraction.
        bits: Weight bit widths the smallest and random sub-generators are fake-quantised
            at, one drawn per layer and step (32 = float); empty: float training
            (:mod:`gansearch.compress.supernet_train`).
    """

    steps: int = 2000
    ratios: tuple[float, ...] = (0.25, 0.375, 0.5, 0.625, 0.75, 1.0)
    bits: tuple[int, ...] = ()
    lr: float = 2e-4
    batch_size: int = 64
    seed: int = 0
    calibration_batches: int = 8
    losses: DistillLosses = field(default_factory=lambda: DistillLosses(pixel=1.0, feature=1.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (tuples as lists), as stored in a supernet's manifest."""
        data = asdict(self)
        data["ratios"] = list(self.ratios)
        data["bits"] = list(self.bits)
        layers = self.losses.feature_layers
        data["losses"]["feature_layers"] = None if layers is None else list(layers)
        return data
