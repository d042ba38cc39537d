"""Scoring a study's generators: builds the :class:`~gansearch.evaluators.scorer.Scorer`
once per process from the study's fixed evaluation protocol."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from gansearch.benchmark import Benchmark
from gansearch.checkpoints import state_digest
from gansearch.compress.batches import to_device
from gansearch.config import EvaluationProtocol, StudyConfig
from gansearch.errors import GansearchError
from gansearch.evaluators import reference_cache
from gansearch.evaluators.objectives import FIDELITY_METRICS, METRICS
from gansearch.evaluators.scorer import Score, Scorer, ScoringProtocol, generate


def default_cache_dir() -> Path:
    """``$GANSEARCH_CACHE`` or ``~/.cache/gansearch``: where reference features are kept."""
    configured = os.environ.get("GANSEARCH_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "gansearch"


def scoring_protocol(evaluation: EvaluationProtocol, data_range: float) -> ScoringProtocol:
    latency = evaluation.latency
    return ScoringProtocol(
        seeds=evaluation.seeds,
        batch_size=evaluation.batch_size,
        kid_subsets=evaluation.kid_subsets,
        kid_subset_size=evaluation.kid_subset_size,
        latency_runs=latency.runs,
        latency_warmup=latency.warmup,
        latency_threads=latency.threads,
        latency_batch_size=latency.batch_size,
        data_range=data_range,
    )


def prepare_scorer(
    benchmark: Benchmark, config: StudyConfig, *, teacher_fidelity: bool = True
) -> Scorer:
    """Fix the inputs and targets of every evaluation seed, reference features (cached by
    content hash) and teacher outputs."""
    evaluation = config.evaluation
    device = torch.device(config.device)
    protocol = scoring_protocol(evaluation, benchmark.data_range)
    batches = {
        seed: benchmark.inputs.batch(evaluation.num_samples, seed) for seed in evaluation.seeds
    }
    inputs = {seed: to_device(batch.inputs, device) for seed, batch in batches.items()}
    targets = None
    if benchmark.inputs.paired:
        targets = {seed: batch.targets for seed, batch in batches.items()}
    cache_dir = evaluation.cache_dir or default_cache_dir()
    embed = reference = None
    if benchmark.features is not None:
        features = benchmark.features.to(device).eval()

        def embed(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return features(images.to(device))

        def compute_reference() -> torch.Tensor:
            with torch.inference_mode():
                chunks = benchmark.real.to(device).split(evaluation.batch_size)
                return torch.cat([features(chunk)[0] for chunk in chunks]).float().cpu()

        reference = reference_cache.cached_reference_features(
            {
                "real": benchmark.real,
                "features": state_digest(features),
                "protocol": "features-v1",
            },
            compute_reference,
            cache_dir,
        )
    inception = None
    if evaluation.inception is not None:
        from gansearch.evaluators.inception import load_inception_features

        embed_inception = load_inception_features(
            evaluation.inception.weights, device=config.device
        )
        inception_reference = reference_cache.cached_reference_features(
            {
                "real": benchmark.real,
                "weights": str(evaluation.inception.weights),
                "protocol": "inception-v1",
            },
            lambda: embed_inception(benchmark.real.to(device)).float().cpu(),
            cache_dir,
        )
        inception = (embed_inception, inception_reference)
    teacher_outputs = None
    if teacher_fidelity:
        teacher = benchmark.teacher.to(device).eval()
        teacher_outputs = {
            seed: generate(teacher, batch, evaluation.batch_size) for seed, batch in inputs.items()
        }
    return Scorer(protocol, inputs, embed, reference, teacher_outputs, inception, targets)


VALIDATION_SEED = 7_000_003
"""Seed of the held-out inputs a fine-tune selects its state on (never an evaluation seed)."""
FALLBACK_METRIC = "teacher_psnr"
"""The quality measure of a study whose objectives hold no quality metric."""


def quality_metric(config: StudyConfig) -> str:
    """The study's first quality objective, or ``teacher_psnr`` when it has none."""
    return next((o for o in config.objectives if METRICS[o].kind == "quality"), FALLBACK_METRIC)


def validation_measure(benchmark: Benchmark, config: StudyConfig) -> Callable[[nn.Module], float]:
    """The study's quality metric on held-out training-split inputs, as a loss to minimise.

    What a fine-tune keeps its best state by (:func:`gansearch.compress.distill.distill`'s
    ``validate``): the metric the study is judged on (FID, PSNR, ...; see
    :func:`quality_metric`), not a proxy, because a student can move closer to its teacher
    in pixel L1 while its FID gets worse (measured on digits: the quarter-width OFA
    sub-generator at int4 went from FID 153.8 to 182.5 over 1000 steps of L1-selected
    distillation). The inputs come from the training split at :data:`VALIDATION_SEED`, so
    choosing a state never looks at the evaluation inputs the reported figures use; the
    measurement has the protocol's ``num_samples``, one seed and no cost metrics.
    """
    metric = quality_metric(config)
    evaluation = config.evaluation.model_copy(
        update={"seeds": (VALIDATION_SEED,), "kid_subsets": 1}
    )
    scorer = prepare_scorer(
        replace(benchmark, inputs=benchmark.train_inputs),
        config.model_copy(update={"evaluation": evaluation}),
        teacher_fidelity=metric in FIDELITY_METRICS,
    )
    sign = METRICS[metric].sign

    def measure(student: nn.Module) -> float:
        per_seed, _ = scorer.quality(student)
        return -sign * sum(per_seed[metric]) / len(per_seed[metric])

    return measure


def evaluate_teacher(benchmark: Benchmark, config: StudyConfig) -> Score:
    """Score the study's teacher (teacher-fidelity metrics are trivially exact and omitted)."""
    scorer = prepare_scorer(benchmark, config, teacher_fidelity=False)
    return scorer.score(benchmark.teacher.to(config.device))


def evaluate_artifact(
    benchmark: Benchmark, config: StudyConfig, artifact: Path, *, trust: Sequence[str] = ()
) -> Score:
    """Score an exported artifact (loaded without pickle) against the study's teacher.

    The artifact's factory is imported only if it is a gansearch zoo generator, is in
    ``trust``, or is the study's own ``model.generator`` (the user chose that code).
    """
    from gansearch.compress.artifact import check_inputs, load

    check_inputs(artifact, benchmark.example_input(1), benchmark.inputs.names)
    trusted = (*trust, config.model.generator) if config.model is not None else tuple(trust)
    model = load(artifact, trust=trusted)
    try:
        return prepare_scorer(benchmark, config).score(model.to(config.device))
    except FloatingPointError as error:  # finite weights can still overflow
        raise GansearchError(
            f"artifact {artifact}: {error}; it cannot be scored - export it again, or export "
            "a less aggressive trial."
        ) from None
