"""Study configuration: one pydantic model per YAML section, all ``extra="forbid"``.

A study file names *what* to compress (a bundled benchmark or the user's own
``module:function`` factories), *how to measure it* (the evaluation protocol) and
*what to optimise* (objectives). Later sections (search space, strategy) are added by
the search layer. Unknown keys are errors that name the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gansearch.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatencyProtocol(_Section):
    """How latency is measured: ``warmup`` untimed runs, then the median of ``runs``."""

    runs: int = Field(30, ge=3)
    warmup: int = Field(5, ge=0)
    threads: int = Field(1, ge=1)
    batch_size: int = Field(1, ge=1)


class InceptionProtocol(_Section):
    """Optional Inception-v3 FID. Runs only on weights already on disk; never downloads."""

    weights: Path


class EvaluationProtocol(_Section):
    """The fixed protocol every quality number is computed under.

    ``num_samples`` generated images per seed are compared with the ``reference`` split.
    The spread over ``seeds`` is the noise floor reported next to each quality metric.
    """

    num_samples: int = Field(1000, ge=16)
    seeds: tuple[int, ...] = (0, 1, 2)
    batch_size: int = Field(500, ge=1)
    reference: Literal["train", "test", "all"] = "train"
    kid_subsets: int = Field(50, ge=1)
    kid_subset_size: int = Field(500, ge=2)
    latency: LatencyProtocol = LatencyProtocol()
    inception: InceptionProtocol | None = None
    cache_dir: Path | None = None

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if len(seeds) == 0 or len(set(seeds)) != len(seeds):
            raise ValueError(f"needs at least one seed and no repeats, got {list(seeds)}")
        return seeds


class CustomModel(_Section):
    """A user's own GAN, given as importable ``module:function`` factories.

    ``generator`` and ``data`` are required; ``data`` returns real images as a tensor in
    the generator's output range. ``features`` returns a network mapping images to
    ``(features, logits)`` for FID/KID/IS; without it only teacher-fidelity and cost
    metrics are available.
    """

    generator: str
    discriminator: str | None = None
    data: str
    features: str | None = None
    generator_checkpoint: Path | None = None
    discriminator_checkpoint: Path | None = None
    latent_shape: tuple[int, ...]

    @field_validator("generator", "discriminator", "data", "features")
    @classmethod
    def _is_factory_path(cls, value: str | None) -> str | None:
        if value is not None and (value.count(":") != 1 or not all(value.split(":"))):
            raise ValueError(f"must be 'package.module:function', got {value!r}")
        return value


class StudyConfig(_Section):
    """A whole study file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    benchmark: str | None = None
    model: CustomModel | None = None
    weights: Path | None = Field(
        None, description="Directory overriding a benchmark's committed weights."
    )
    device: str = "cpu"
    seed: int = 0
    objectives: tuple[str, ...] = ("fid", "stored_bytes", "macs")
    evaluation: EvaluationProtocol = EvaluationProtocol()
    output_dir: Path | None = None

    @model_validator(mode="after")
    def _one_model_source(self) -> StudyConfig:
        if (self.benchmark is None) == (self.model is None):
            raise ValueError("give exactly one of `benchmark` (e.g. digits) or `model` (factories)")
        return self

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, objectives: tuple[str, ...]) -> tuple[str, ...]:
        from gansearch.evaluators.objectives import METRICS

        unknown = [o for o in objectives if o not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r}; known: {', '.join(sorted(METRICS))}")
        if len(set(objectives)) != len(objectives):
            raise ValueError(f"objectives repeat a metric: {list(objectives)}")
        return objectives

    def study_dir(self, root: Path = Path("studies")) -> Path:
        """Where this study's outputs go (git ignores it)."""
        return self.output_dir if self.output_dir is not None else root / self.name


def _format_validation_error(path: Path, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "<top level>"
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key `{where}`; remove it or fix its spelling"
    if first["type"] == "missing":
        return f"{path}: missing required key `{where}`; add it"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    return f"{path}: `{where}`: {message}{more}"


def parse_study(data: object, source: Path = Path("<memory>")) -> StudyConfig:
    """Validate already-parsed YAML, raising :class:`ConfigError` with one clear line."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a study file must be a YAML mapping of keys, got {type(data).__name__}"
        )
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(source, error)) from None


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"study file not found: {path}; check the path (examples are in studies/)"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}; fix the syntax") from None
    return parse_study(data, path)
