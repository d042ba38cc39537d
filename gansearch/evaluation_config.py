"""The ``evaluation:`` section of a study file, and what every section is built from.

:class:`EvaluationProtocol` fixes the numbers behind every quality figure (samples per
seed, seeds, KID subsets, latency). :class:`Section` (strict: unknown keys are errors;
frozen) and :data:`Seed` (an integer in ``[0, 2**32)``, the range NumPy's and torch's
generators all accept) are shared by every section of :mod:`gansearch.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    """A section of a study file: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


SEED_LIMIT = 2**32
"""Seeds are in ``[0, SEED_LIMIT)``: the range NumPy's and torch's generators all accept."""


def _seed_in_range(seed: int) -> int:
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"a seed must be an integer in [0, 2**32), but got {seed}")
    return seed


Seed = Annotated[int, AfterValidator(_seed_in_range)]

DEFAULT_KID_SUBSET_SIZE = 500
MAX_SAMPLES = 10_000_000
"""Generated images per evaluation seed at most: more would not fit in memory anyway."""
MAX_KID_SUBSETS = 100_000


class LatencyProtocol(Section):
    """How latency is measured: ``warmup`` untimed runs, then the median of ``runs``."""

    runs: int = Field(30, ge=3)
    warmup: int = Field(5, ge=0)
    threads: int = Field(1, ge=1)
    batch_size: int = Field(1, ge=1)


class InceptionProtocol(Section):
    """Optional Inception-v3 FID. Runs only on weights already on disk; never downloads."""

    weights: Path


class EvaluationProtocol(Section):
    """The fixed protocol every quality number is computed under.

    ``num_samples`` generated images per seed are compared with the ``reference`` split.
    The spread over ``seeds`` is the noise floor reported next to each quality metric.
    KID averages ``kid_subsets`` subsets of ``kid_subset_size`` images, which may not
    exceed ``num_samples`` (nor the number of real images); unset, it is 500 or
    ``num_samples`` when that is smaller.
    """

    num_samples: int = Field(1000, ge=16, le=MAX_SAMPLES)
    seeds: tuple[Seed, ...] = (0, 1, 2)
    batch_size: int = Field(500, ge=1)
    reference: Literal["train", "test", "all"] = "train"
    kid_subsets: int = Field(50, ge=1, le=MAX_KID_SUBSETS)
    kid_subset_size: int = Field(DEFAULT_KID_SUBSET_SIZE, ge=2)
    latency: LatencyProtocol = LatencyProtocol()
    inception: InceptionProtocol | None = None
    cache_dir: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_kid_subset_size(cls, data: Any) -> Any:
        """Unset, ``kid_subset_size`` is 500 or ``num_samples`` when that is smaller."""
        if isinstance(data, dict) and "kid_subset_size" not in data:
            samples = data.get("num_samples", 1000)
            if isinstance(samples, int) and not isinstance(samples, bool) and samples >= 2:
                return {**data, "kid_subset_size": min(DEFAULT_KID_SUBSET_SIZE, samples)}
        return data

    @model_validator(mode="after")
    def _kid_subsets_fit(self) -> EvaluationProtocol:
        if self.kid_subset_size > self.num_samples:
            raise ValueError(
                f"`kid_subset_size <= num_samples` must hold, but got "
                f"(kid_subset_size={self.kid_subset_size}, num_samples={self.num_samples}); "
                "KID draws its subsets from the generated images: lower kid_subset_size"
            )
        return self

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if len(seeds) == 0 or len(set(seeds)) != len(seeds):
            raise ValueError(f"needs at least one seed and no repeats, got {list(seeds)}")
        return seeds
