"""Study configuration: one pydantic model per YAML section, all ``extra="forbid"``.

A study file names *what* to compress (a bundled benchmark or the user's own
``module:function`` factories), *how to measure it* (the evaluation protocol, in
:mod:`gansearch.evaluation_config`) and *what to optimise* (objectives). Later sections
(search space, strategy) are added by the search layer. Unknown keys are errors that name
the key.

Everything that can be checked without loading a model is checked here, so that a bad
study fails at once with one line: seeds are in ``[0, 2**32)`` (what NumPy and torch
accept), ``device`` has torch's device syntax, objectives and constraint metrics are ones
the study measures, constraint bounds are finite, and ``evaluation.kid_subset_size`` is
at most ``evaluation.num_samples``. What needs the model or the data (a usable device,
finite weights, images in the generator's range) is checked when they are loaded
(:mod:`gansearch.benchmarks`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gansearch.errors import ConfigError
from gansearch.evaluation_config import EvaluationProtocol, Section, Seed
from gansearch.fidelity import CheapProtocol, check_fidelity
from gansearch.search.registry import ENGINE_NAMES, SAMPLER_NAMES, STRATEGY_NAMES
from gansearch.spaces.config import SpaceConfig
from gansearch.training_config import DistillConfig, ExportConfig, SupernetConfig

INPUT_KINDS = ("latents", "conditional", "paired", "unpaired")
"""The built-in kinds of ``model.inputs`` (see :mod:`gansearch.inputs`); anything else is a
``module:function``."""
BENCHMARK_DATA = {
    "digits": {"features": True, "paired": False},
    "photos": {"features": False, "paired": True},
}
"""What each bundled benchmark's data can measure, known without loading it."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
_DEVICE = re.compile(rf"({'|'.join(DEVICE_TYPES)})(:[0-9]+)?")


class CustomModel(Section):
    """A user's own GAN, given as importable ``module:function`` factories.

    ``generator`` and ``data`` are required. ``inputs`` says what the generator consumes
    (see :mod:`gansearch.inputs`):

    - ``latents`` (default): standard-normal latents of ``latent_shape``; ``data`` returns
      the real images (N, C, H, W) that FID/KID compare with;
    - ``conditional``: ``G(z, labels)`` with latents of ``latent_shape`` and labels in
      ``[0, num_classes)``; ``data`` returns real images;
    - ``paired``: ``data`` returns ``(inputs, targets)``, image batches of equal length
      (pix2pix, super-resolution); PSNR/SSIM are measured against the targets;
    - ``unpaired``: ``data`` returns ``(inputs, targets)``, source-domain images and real
      target-domain images (CycleGAN-style), compared with FID/KID;
    - ``package.module:function``: called as ``function(n, seed)``, it returns the
      generator's inputs (a tensor or a tuple of tensors) or ``{"inputs": ..., "targets":
      ...}``; ``data`` returns real images.

    Images are float tensors in the generator's output range ``[-1, 1]`` (uint8 or 0..255
    pixels are refused: scale them, e.g. ``x.float() / 127.5 - 1``). When
    ``evaluation.reference`` is set, ``data`` is called with ``split=`` that value for
    scoring and ``split="train"`` for distillation and calibration. ``generator_kwargs``
    (JSON values) are passed to ``generator``; export records them so that the artifact
    is rebuilt by the same call. ``features`` returns a
    network mapping images to ``(features, logits)`` for FID/KID/IS (its weights from
    ``features_checkpoint`` if given); without it only PSNR/SSIM (paired data),
    teacher-fidelity and cost metrics are available.
    """

    generator: str
    discriminator: str | None = None
    data: str
    features: str | None = None
    generator_kwargs: dict[str, Any] = Field(default_factory=dict)
    generator_checkpoint: Path | None = None
    discriminator_checkpoint: Path | None = None
    features_checkpoint: Path | None = None
    inputs: str = "latents"
    latent_shape: tuple[int, ...] | None = None
    num_classes: int | None = Field(None, ge=2)

    @field_validator("latent_shape")
    @classmethod
    def _positive_shape(cls, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if shape is not None and (not shape or any(size < 1 for size in shape)):
            raise ValueError(f"must list one or more sizes >= 1, e.g. [128], but got {list(shape)}")
        return shape

    @field_validator("generator", "discriminator", "data", "features")
    @classmethod
    def _is_factory_path(cls, value: str | None) -> str | None:
        if value is not None and not _is_function_path(value):
            raise ValueError(f"must be 'package.module:function', got {value!r}")
        return value

    @field_validator("inputs")
    @classmethod
    def _known_inputs(cls, value: str) -> str:
        if value not in INPUT_KINDS and not _is_function_path(value):
            raise ValueError(
                f"must be one of {', '.join(INPUT_KINDS)} or 'package.module:function', "
                f"got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _inputs_complete(self) -> CustomModel:
        latent = self.inputs in ("latents", "conditional")
        if latent and self.latent_shape is None:
            raise ValueError(
                f"`model.inputs: {self.inputs}` needs `model.latent_shape` (e.g. [128] or "
                "[100, 1, 1]); add it"
            )
        if not latent and self.latent_shape is not None:
            raise ValueError(
                f"`model.latent_shape` is only used with `inputs: latents` or `conditional`, "
                f"not {self.inputs!r}; remove it"
            )
        if (self.inputs == "conditional") != (self.num_classes is not None):
            raise ValueError(
                "`model.num_classes` goes with `inputs: conditional` (and is required there); "
                + ("add it" if self.inputs == "conditional" else "remove it")
            )
        if self.features_checkpoint is not None and self.features is None:
            raise ValueError("`model.features_checkpoint` needs `model.features`; add it")
        return self

    @property
    def paired(self) -> bool | None:
        """Whether the data has ground truth: ``None`` for a function (known once called)."""
        if self.inputs in ("latents", "conditional", "unpaired"):
            return False
        return True if self.inputs == "paired" else None


def _is_function_path(value: str) -> bool:
    return value.count(":") == 1 and all(value.split(":"))


class WorkerResources(Section):
    """What one Ray worker (one candidate in flight) reserves: CPUs and optionally a GPU."""

    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class SearchConfig(Section):
    """How the joint search runs: strategy, budget and feasibility constraints.

    ``constraints`` are written relative to the teacher or absolutely, e.g.
    ``["fid <= 1.10 * teacher", "stored_bytes <= 64KB"]``; only feasible trials are on
    the Pareto front. ``finetune_steps`` > 0 distils each candidate briefly before
    scoring (with the study's ``distill`` losses).

    Where candidates run: ``engine: local`` (default) evaluates them one at a time in this
    process; ``engine: ray`` on ``workers`` Ray actors, each reserving ``resources``, on a
    private local Ray (``address`` unset) or a running cluster (``auto``, ``HOST:PORT``,
    ``ray://HOST:PORT``). On either engine, a candidate running longer than
    ``candidate_timeout`` seconds fails with ``timeout after S s`` (its worker is
    replaced), and one whose worker process dies is re-run up to ``max_retries`` times
    before it fails. ``engine: local`` with a ``candidate_timeout`` evaluates in one child
    process (loaded once, like a Ray worker, with ``resources.cpus`` torch threads) so that
    it can be killed; without one it evaluates in this process.
    """

    strategy: str = "hybrid"
    sampler: str = "tpe"
    trials: int = Field(60, ge=1)
    timeout: float | None = Field(None, gt=0)
    population: int = Field(16, ge=4)
    crossover_prob: float = Field(0.9, ge=0, le=1)
    mutation_prob: float = Field(0.3, ge=0, le=1)
    constraints: tuple[str, ...] = ()
    finetune_steps: int = Field(0, ge=0)
    storage: str | None = None
    enqueue_reference_plans: bool = True
    # Seed the search with per-layer sensitivity-guided plans (gansearch.sensitivity_measure).
    sensitivity: bool = False
    engine: str = "local"
    workers: int = Field(1, ge=1)
    address: str | None = None
    resources: WorkerResources = WorkerResources()
    candidate_timeout: float | None = Field(None, gt=0)
    max_retries: int = Field(1, ge=0)
    fidelity: CheapProtocol = None  # multi-fidelity search (gansearch.fidelity)
    heartbeat_interval: int = Field(10, ge=1)  # seconds; see gansearch.runner.heartbeat
    grace_period: int = Field(60, ge=2)  # seconds without a heartbeat: controller dead

    @field_validator("strategy", "sampler", "engine")
    @classmethod
    def _registered_name(cls, name: str, info: ValidationInfo) -> str:
        known = {"strategy": STRATEGY_NAMES, "sampler": SAMPLER_NAMES, "engine": ENGINE_NAMES}
        if name not in known[info.field_name]:
            raise ValueError(
                f"`{info.field_name}` must be one of {known[info.field_name]}, but got {name!r}."
            )
        return name

    @field_validator("constraints")
    @classmethod
    def _readable_constraints(cls, constraints: tuple[str, ...]) -> tuple[str, ...]:
        from gansearch.evaluators.objectives import Constraint

        for text in constraints:
            Constraint.parse(text)
        return constraints

    def strategy_options(self, strategy: str) -> dict[str, object]:
        """The keyword options this section gives the strategy called ``strategy``."""
        if strategy == "optuna":
            return {"sampler": self.sampler, "population_size": self.population}
        if strategy == "deap":
            return {
                "population_size": self.population,
                "crossover_prob": self.crossover_prob,
                "mutation_prob": self.mutation_prob,
            }
        return {"population_size": self.population}


class StudyConfig(Section):
    """A whole study file."""

    name: str
    benchmark: str | None = None
    model: CustomModel | None = None
    weights: Path | None = Field(
        None, description="Directory overriding a benchmark's committed weights."
    )
    device: str = "cpu"
    seed: Seed = 0
    objectives: tuple[str, ...] = ("fid", "stored_bytes", "macs")
    evaluation: EvaluationProtocol = EvaluationProtocol()
    output_dir: Path | None = None
    distill: DistillConfig | None = None
    supernet: SupernetConfig | None = None
    space: SpaceConfig = SpaceConfig()
    search: SearchConfig = SearchConfig()
    export: ExportConfig = ExportConfig()

    @model_validator(mode="after")
    def _one_model_source(self) -> StudyConfig:
        if (self.benchmark is None) == (self.model is None):
            raise ValueError("give exactly one of `benchmark` (e.g. digits) or `model` (factories)")
        return self

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if _NAME.fullmatch(name) is None:
            raise ValueError(
                f"must start with a letter or digit and hold only letters, digits, '_', '.' "
                f"and '-' (it names the study's folder), but got {name!r}"
            )
        return name

    @field_validator("device")
    @classmethod
    def _torch_device(cls, device: str) -> str:
        if _DEVICE.fullmatch(device) is None:
            raise ValueError(
                f"must be a torch device: cpu, cuda, cuda:N, mps or xpu, but got {device!r}"
            )
        return device

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, objectives: tuple[str, ...]) -> tuple[str, ...]:
        from gansearch.evaluators.objectives import METRICS

        if not objectives:
            raise ValueError("needs at least one metric, e.g. [fid, stored_bytes, macs]")
        unknown = [o for o in objectives if o not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r}; known: {', '.join(sorted(METRICS))}")
        if len(set(objectives)) != len(objectives):
            raise ValueError(f"objectives repeat a metric: {list(objectives)}")
        return objectives

    @model_validator(mode="after")
    def _measured_objectives(self) -> StudyConfig:
        """Objectives must be measurable, and constraints only on metrics that are measured."""
        from gansearch.evaluators.objectives import (
            FEATURE_METRICS,
            INCEPTION_METRICS,
            Constraint,
        )

        measured = self.measured_metrics()
        for name in self.objectives:
            if name in measured:
                continue
            if name in FEATURE_METRICS:
                need, fix = "a feature network", "add `model.features: module:function` or "
            elif name in INCEPTION_METRICS:
                need, fix = (
                    "local Inception weights",
                    "set `evaluation.inception.weights: PATH` or ",
                )
            else:
                need, fix = (
                    "paired ground truth",
                    "use `model.inputs: paired` with a data factory returning (inputs, "
                    "targets), or ",
                )
            raise ValueError(f"objective {name!r} needs {need}; {fix}remove it from `objectives`")
        for text in self.search.constraints:
            name = Constraint.parse(text).metric
            if name not in measured:
                raise ValueError(
                    f"`search.constraints`: {text!r} constrains {name!r}, which this study never "
                    f"measures; constrain one of: {', '.join(sorted(measured))}"
                )
        return self

    @model_validator(mode="after")
    def _fidelity_fits(self) -> StudyConfig:
        check_fidelity(self)
        return self

    def measured_metrics(self) -> frozenset[str]:
        """The metrics scored for every candidate of this study (objectives or not).

        A bundled benchmark measures what :data:`BENCHMARK_DATA` says; a custom ``model``
        has a feature network when it names ``features``, and ground truth with
        ``inputs: paired`` (an inputs function may return targets too: PSNR/SSIM are then
        accepted here and checked when it is first called).
        """
        from gansearch.evaluators.objectives import measured_metrics

        if self.model is not None:
            features, paired = self.model.features is not None, self.model.paired is not False
        else:
            data = BENCHMARK_DATA.get(self.benchmark or "", {"features": True, "paired": False})
            features, paired = data["features"], data["paired"]
        return measured_metrics(
            features=features, inception=self.evaluation.inception is not None, paired=paired
        )

    def study_dir(self, root: Path = Path("studies")) -> Path:
        """Where this study's outputs go (git ignores it)."""
        return self.output_dir if self.output_dir is not None else root / self.name


def _format_validation_error(path: Path, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key `{where}`; remove it or fix its spelling"
    if first["type"] == "missing":
        return f"{path}: missing required key `{where}`; add it"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    return f"{path}: `{where}`: {message}{more}" if where else f"{path}: {message}{more}"


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


def _read_text(path: Path) -> str:
    """The study file's text; one line for a missing, unreadable or non-UTF-8 file."""
    if not path.is_file():
        raise ConfigError(
            f"study file not found: {path}; check the path (examples are in studies/)"
        )
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"cannot read study file {path}: {error.strerror}; check its permissions"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {raw[error.start]:#04x} at offset {error.start}); "
            "save the study file as UTF-8"
        ) from None
    return text


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file (UTF-8)."""
    path = Path(path)
    text = _read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}; fix the syntax") from None
    if data is None:
        raise ConfigError(
            f"{path}: the study file is empty; write at least `name:` and `benchmark:` or `model:`"
        )
    return parse_study(data, path)
