"""Building and scoring one candidate: plan → compressed generator → metrics.

A :class:`CandidateEvaluator` is created once per process (or per Ray worker). It loads
the teacher, the data, the reference statistics and, when the space has OFA widths, the
supernet, once; :meth:`CandidateEvaluator.evaluate` then turns gene values into a
:class:`CandidateResult` and never raises for a broken candidate: an
exception, a non-finite metric or a diverging fine-tune becomes a failure with its reason.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gansearch.benchmark import Benchmark
from gansearch.benchmarks import load_benchmark
from gansearch.compress.apply import CompressedGenerator, apply_plan, round_to_norm_dtype
from gansearch.compress.plan import CompressionPlan
from gansearch.config import DistillConfig, StudyConfig
from gansearch.evaluate import prepare_scorer, validation_measure
from gansearch.evaluators.objectives import Constraint
from gansearch.evaluators.scorer import Score, Scorer
from gansearch.fidelity import FULL, LOW, Fidelity, cheap_config
from gansearch.spaces.joint import JointSpace
from gansearch.supernets import supernet_directory, supernet_entry

if TYPE_CHECKING:
    from gansearch.compress.distill import DistillResult


@dataclass(frozen=True)
class CandidateResult:
    """What evaluating one candidate produced: objective values or a failure reason.

    Attributes:
        plan_json: the candidate's :class:`CompressionPlan` as JSON (``"{}"`` when the
            gene values could not even be decoded).
        values: the study's objective values, in its order; ``None`` for a failure.
        metrics: every measured metric (quality means, costs).
        spread: the noise floor of each quality metric (std over evaluation seeds).
        constraints: one value per study constraint; ``<= 0`` holds (Optuna's convention).
        failure: why the candidate failed, or ``None``.
        seconds: wall time of the evaluation.
        finetune_seconds: the part of it spent distilling (``search.finetune_steps``).
        fidelity: the protocol it was scored under: ``"full"``, or ``"low"`` (the cheap
            protocol of ``search.fidelity``, :mod:`gansearch.fidelity`).
    """

    plan_json: str
    values: tuple[float, ...] | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    spread: Mapping[str, float] = field(default_factory=dict)
    constraints: tuple[float, ...] = ()
    failure: str | None = None
    seconds: float = 0.0
    fidelity: Fidelity = FULL
    finetune_seconds: float = 0.0

    @property
    def feasible(self) -> bool:
        return self.failure is None and all(c <= 0 for c in self.constraints)


CALIBRATION_BATCHES = 8
CALIBRATION_BATCH_SIZE = 64
EXAMPLE_BATCH = 2
"""Batch size of the example input that traces the teacher."""


def study_space(benchmark: Benchmark, config: StudyConfig) -> JointSpace:
    """The joint space a study searches: the teacher's structure and the ``space:`` section.

    This is the one construction the search and ``gansearch space`` share; it traces the
    teacher but scores nothing.
    """
    example = benchmark.example_input(EXAMPLE_BATCH)
    return JointSpace.from_generator(benchmark.teacher.eval(), config.space, example)


class CandidateEvaluator:
    """Everything a worker needs, loaded once; scores candidates from gene values.

    Args:
        config: the study.
        benchmark: an already loaded benchmark (loaded from ``config`` if omitted).
        supernet_dir: read the OFA supernet from this folder instead of the study's
            (e.g. to compare two supernets on one protocol).
    """

    def __init__(
        self,
        config: StudyConfig,
        benchmark: Benchmark | None = None,
        *,
        supernet_dir: Path | None = None,
    ) -> None:
        from gansearch.compress.batchnorm import calibration_batches

        self.config = config
        self.benchmark = benchmark if benchmark is not None else load_benchmark(config)
        self.teacher = self.benchmark.teacher.eval()
        self.example = self.benchmark.example_input(EXAMPLE_BATCH)
        self.space = study_space(self.benchmark, config)
        self.scorer = prepare_scorer(self.benchmark, config)
        # The teacher is scored like every candidate (identity plan), so its latency is
        # also timed on the deployment form and ratios to it compare like with like.
        identity = apply_plan(
            self.teacher,
            CompressionPlan.identity(self.space.structure),
            self.example,
            structure=self.space.structure,
        )
        self.teacher_score: Score = self.scorer.score(identity)
        self.constraints = tuple(Constraint.parse(text) for text in config.search.constraints)
        self.calibration = calibration_batches(
            self.benchmark.train_inputs, CALIBRATION_BATCHES, CALIBRATION_BATCH_SIZE, config.seed
        )
        self.supernet = self._load_supernet(supernet_dir) if config.space.ofa is not None else None
        self.validation: Callable[[nn.Module], float] | None = None
        self._low: tuple[StudyConfig, Scorer, Score] | None = None

    def low_fidelity(self) -> tuple[StudyConfig, Scorer, Score]:
        """The cheap protocol (``search.fidelity``): its config, scorer and teacher score,
        prepared on first use against the same real split as the full one."""
        if self._low is None:
            cheap = cheap_config(self.config)
            scorer = prepare_scorer(self.benchmark, cheap)
            identity = CompressionPlan.identity(self.space.structure)
            structure = self.space.structure
            teacher = apply_plan(self.teacher, identity, self.example, structure=structure)
            self._low = (cheap, scorer, scorer.score(teacher))
        return self._low

    def _load_supernet(self, directory: Path | None) -> Any:
        from gansearch.compress.supernet import load_supernet

        return load_supernet(
            self.teacher,
            self.space.structure,
            directory or supernet_directory(self.config, self.benchmark),
            entry=supernet_entry(self.benchmark),
            inputs=self.benchmark.train_inputs,
            hint="run `gansearch supernet train` for this study, or set `space.ofa: off`",
        )

    # ------------------------------------------------------------------ building

    def build(self, plan: CompressionPlan) -> CompressedGenerator:
        """Apply the plan and recalibrate BatchNorm (distilling is :meth:`finetune`)."""
        from gansearch.compress.batchnorm import recalibrate_batchnorm

        if plan.widths is not None and self.supernet is None:
            raise ValueError("the plan has OFA widths but the study has no supernet (`space.ofa`)")
        compressed = apply_plan(
            self.teacher,
            plan,
            self.example,
            calibration_batches=self.calibration,
            structure=self.space.structure,
            supernet=self.supernet,
        )
        if not all(all(mask) for mask in compressed.plan.masks.values()):
            # Pruning shifts each BatchNorm's input distribution; re-estimating the running
            # statistics on inputs is not training (Yu et al., Slimmable Networks, 2019).
            recalibrate_batchnorm(compressed.module, self.calibration)
        # Recalibration writes float32 norm tensors; score what the artifact stores, in the
        # plan's norm_dtype (:meth:`finetune` rounds its result the same way).
        return round_to_norm_dtype(compressed).eval()

    def finetune(
        self, compressed: CompressedGenerator, steps: int
    ) -> tuple[CompressedGenerator, DistillResult]:
        """Quantisation-aware knowledge distillation from the teacher (survey Eq. 1-8).

        The study's ``distill`` recipe for ``steps`` steps; the returned student is the
        state with the best study quality on held-out inputs
        (:func:`gansearch.evaluate.validation_measure`), so it is never worse than
        ``compressed`` on that measure. Norm tensors are rounded to the plan's dtype.
        """
        from gansearch.compress.distill import distill

        base = self.config.distill or DistillConfig()
        if self.validation is None:  # built on first use: searches without fine-tune skip it
            self.validation = validation_measure(self.benchmark, self.config)
        result = distill(
            compressed.module,
            self.teacher,
            self.benchmark.discriminator,
            self.benchmark.real,
            base.model_copy(update={"steps": steps}).recipe(),
            inputs=self.benchmark.train_inputs,
            validate=self.validation,
        )
        student = CompressedGenerator(result.student, compressed.plan, compressed.structure)
        return round_to_norm_dtype(student).eval(), result

    # ------------------------------------------------------------------ scoring

    def constraint_values(self, values: Mapping[str, float]) -> tuple[float, ...]:
        return tuple(c.violation(values, self.teacher_score.values) for c in self.constraints)

    def score_plan(self, plan: CompressionPlan, fidelity: Fidelity = FULL) -> CandidateResult:
        """Build and score one plan at ``fidelity``; any failure becomes a failed result
        with its reason."""
        start = time.perf_counter()
        plan_json = plan.to_json()
        try:
            scorer, teacher = self.scorer, self.teacher_score
            steps, finetune_seconds = self.config.search.finetune_steps, 0.0
            if fidelity == LOW:
                cheap, scorer, teacher = self.low_fidelity()
                steps = cheap.search.finetune_steps
            compressed = self.build(plan)
            if steps > 0:  # timed apart: the progress and the report show what it costs
                tuned = time.perf_counter()
                compressed, _ = self.finetune(compressed, steps)
                finetune_seconds = time.perf_counter() - tuned
            score = scorer.score(compressed)
            values = score.objectives(self.config.objectives)
            bad = [
                n
                for n, v in zip(self.config.objectives, values, strict=True)
                if not math.isfinite(v)
            ]
            if bad:
                raise FloatingPointError(f"objective {bad[0]!r} is not finite")
            unbounded = [
                c.metric for c in self.constraints if not math.isfinite(score.values[c.metric])
            ]
            if unbounded:  # Optuna refuses NaN constraints; a non-finite metric is a failure
                raise FloatingPointError(f"constrained metric {unbounded[0]!r} is not finite")
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # noqa: BLE001 - a broken candidate must not stop the study
            where = traceback.extract_tb(error.__traceback__)[-1]
            reason = (
                f"{type(error).__name__}: {error} (at {Path(where.filename).name}:{where.lineno})"
            )
            return CandidateResult(
                plan_json, failure=reason, seconds=time.perf_counter() - start, fidelity=fidelity
            )
        return CandidateResult(
            plan_json,
            values=values,
            metrics=dict(score.values),
            spread=dict(score.spread),
            constraints=tuple(c.violation(score.values, teacher.values) for c in self.constraints),
            seconds=time.perf_counter() - start,
            fidelity=fidelity,
            finetune_seconds=finetune_seconds,
        )

    def evaluate(self, params: Mapping[str, Any], fidelity: Fidelity = FULL) -> CandidateResult:
        """Decode gene values into a plan and score it at ``fidelity``."""
        try:
            plan = self.space.decode(params)
        except Exception as error:  # noqa: BLE001 - an undecodable proposal is a failed trial
            failure = f"{type(error).__name__}: {error}"
            return CandidateResult("{}", failure=failure, fidelity=fidelity)
        return self.score_plan(plan, fidelity)

    def compressed_from_json(self, plan_json: str) -> CompressedGenerator:
        """Rebuild a recorded candidate as applied, before any fine-tune (for export)."""
        return self.build(CompressionPlan.from_json(plan_json))

    @torch.no_grad()
    def samples(self, models: Sequence[nn.Module], n: int = 16, seed: int = 1234) -> SampleRows:
        """Each model's images on the same ``n`` evaluation inputs, with the inputs shown
        when they are images and the targets when the data has them."""
        batch = self.benchmark.inputs.batch(n, seed)
        images = batch.inputs[0] if self.benchmark.inputs.kind in ("paired", "unpaired") else None
        outputs = tuple(model.eval()(*batch.inputs) for model in models)
        return SampleRows(images, outputs, batch.targets)


@dataclass(frozen=True)
class SampleRows:
    """Images for a sample grid: the inputs (image inputs only), each model's outputs on
    them, and the ground truth (paired data only)."""

    inputs: torch.Tensor | None
    outputs: tuple[torch.Tensor, ...]
    targets: torch.Tensor | None


class EvaluatorHandle:
    """The evaluate-function factory an engine calls once per worker; picklable.

    In the controller it hands out the controller's own evaluator (built once, or
    :meth:`attach`-ed), so the local engine scores with the evaluator that already holds the
    space and the teacher's metrics. A copy sent to a Ray worker never carries that
    evaluator (:meth:`__getstate__`): the worker builds its own, after capping torch's
    intra-op threads at ``torch_threads`` (its CPU share), so that several workers on one
    machine do not oversubscribe its cores.
    """

    def __init__(self, config: StudyConfig, torch_threads: int | None = None) -> None:
        self.config = config
        self.torch_threads = torch_threads
        self._evaluator: CandidateEvaluator | None = None

    def attach(self, evaluator: CandidateEvaluator) -> None:
        """Use ``evaluator`` in this process instead of building one."""
        self._evaluator = evaluator

    def evaluator(self) -> CandidateEvaluator:
        """This process's evaluator, built on first use."""
        if self._evaluator is None:
            self._evaluator = CandidateEvaluator(self.config)
        return self._evaluator

    def __call__(self) -> Callable[[Mapping[str, Any]], CandidateResult]:
        if self._evaluator is None and self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)  # a worker: the controller keeps its own
        return self.evaluator().evaluate

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "torch_threads": self.torch_threads, "_evaluator": None}
