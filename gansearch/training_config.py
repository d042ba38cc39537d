"""The study sections that train: ``distill``, ``supernet`` and ``export`` (its fine-tune).

Split from :mod:`gansearch.config` (which assembles the whole study file) so each module
reads in one sitting; like every section they are frozen pydantic models that refuse
unknown keys, and each turns itself into the compress layer's frozen recipe
(:mod:`gansearch.compress.recipes`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gansearch.compress import recipes
from gansearch.evaluation_config import Section, Seed


class DistillLosses(Section):
    """Weights of the knowledge-distillation loss terms; a weight of 0 switches a term off.

    The terms follow the survey's Eq. 1-8 (see :mod:`gansearch.compress.distill_loss`):
    ``pixel`` (Eq. 2, L1 or L2 by ``pixel_norm``), ``adversarial`` (Eq. 1/3),
    ``class_logits`` (Eq. 4-5), ``feature`` (Eq. 6-7, learned 1x1 mappings on
    ``feature_layers``, default: the generator's norm layers) and ``perceptual`` (Eq. 8,
    discriminator features). ``discriminator_lr`` > 0 also trains a copy of the
    discriminator for the adversarial term; 0 keeps it fixed.
    """

    pixel: float = Field(1.0, ge=0, allow_inf_nan=False)
    pixel_norm: Literal["l1", "l2"] = "l1"
    adversarial: float = Field(0.0, ge=0, allow_inf_nan=False)
    class_logits: float = Field(0.0, ge=0, allow_inf_nan=False)
    feature: float = Field(0.0, ge=0, allow_inf_nan=False)
    perceptual: float = Field(0.0, ge=0, allow_inf_nan=False)
    feature_layers: tuple[str, ...] | None = None
    discriminator_lr: float = Field(0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _some_term_on(self) -> DistillLosses:
        if not any(getattr(self, term) > 0 for term in recipes.LOSS_TERMS):
            terms = ", ".join(recipes.LOSS_TERMS)
            raise ValueError(f"at least one loss weight must be > 0 (terms: {terms})")
        return self

    def recipe(self) -> recipes.DistillLosses:
        """The validated weights as the compress layer's frozen value."""
        return recipes.DistillLosses(**self.model_dump())


class DistillConfig(Section):
    """Knowledge-distillation fine-tuning of a compressed generator (budget = ``steps``)."""

    steps: int = Field(200, ge=1)
    lr: float = Field(2e-4, gt=0, allow_inf_nan=False)
    batch_size: int = Field(64, ge=2)
    seed: Seed = 0
    losses: DistillLosses = DistillLosses()

    def recipe(self) -> recipes.DistillRecipe:
        """The validated section as the compress layer's frozen value."""
        return recipes.DistillRecipe(**{**self.model_dump(), "losses": self.losses.recipe()})


class ExportConfig(Section):
    """What ``gansearch export`` does besides writing the artifact.

    ``finetune_steps``: the final quantisation-aware distillation of the chosen candidate
    with the study's ``distill`` recipe (survey Eq. 1-8), on by default: a search scores
    candidates with little or no fine-tune, and the exported model should be the best
    that candidate can be. The returned state is the one with the best study quality on
    held-out inputs, so it is never worse than the candidate the search scored (on that
    measure). 0 turns it off; ``gansearch export --finetune-steps N`` overrides it.
    """

    finetune_steps: int = Field(1000, ge=0)


class SupernetConfig(Section):
    """Once-for-all supernet training (Cai et al., ICLR 2020; Li et al., CVPR 2020).

    ``ratios`` are the width ratios each prunable group may take; every step trains the
    largest, the smallest and one random width vector (sandwich rule). At extraction the
    BatchNorm statistics are recalibrated on ``calibration_batches`` latent batches.
    """

    steps: int = Field(2000, ge=1)
    ratios: tuple[float, ...] = (0.25, 0.375, 0.5, 0.625, 0.75, 1.0)
    bits: tuple[int, ...] = ()
    lr: float = Field(2e-4, gt=0, allow_inf_nan=False)
    batch_size: int = Field(64, ge=2)
    seed: Seed = 0
    calibration_batches: int = Field(8, ge=0)
    losses: DistillLosses = DistillLosses(pixel=1.0, feature=1.0)

    @field_validator("ratios")
    @classmethod
    def _valid_ratios(cls, ratios: tuple[float, ...]) -> tuple[float, ...]:
        if not ratios or any(not 0.0 < r <= 1.0 for r in ratios):
            raise ValueError(f"every ratio must be in (0, 1], got {list(ratios)}")
        if len(set(ratios)) != len(ratios):
            raise ValueError(f"ratios repeat a value: {list(ratios)}")
        return tuple(sorted(ratios))

    @field_validator("bits")
    @classmethod
    def _valid_bits(cls, bits: tuple[int, ...]) -> tuple[int, ...]:
        bad = [b for b in bits if b != 32 and not 2 <= b <= 8]
        if bad:
            raise ValueError(
                f"quantisation-aware bits must be 2..8 or 32 (float), got {bad}; "
                "leave `bits` empty to train in float"
            )
        return tuple(sorted(set(bits)))

    def recipe(self) -> recipes.SupernetRecipe:
        """The validated section as the compress layer's frozen value."""
        return recipes.SupernetRecipe(**{**self.model_dump(), "losses": self.losses.recipe()})
