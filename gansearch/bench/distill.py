"""``gansearch bench distill``: what fine-tuning does to fixed plans, by step count.

Each plan (the study's reference plans and a few aggressive ones) is built once without
fine-tune, then distilled from the teacher for each step count with the study's
``distill:`` recipe (:meth:`gansearch.candidates.CandidateEvaluator.finetune`: the kept
state is the one with the best study quality on held-out training-split inputs,
:func:`gansearch.evaluate.validation_measure`), and scored with the study's evaluation
protocol. The ``before`` recipe is the pre-fix behaviour, run at the largest step count
only: the same recipe without the adversarial term (Eq. 1/3 of the survey; Aguinaldo et
al., Compressing GANs using Knowledge Distillation, 2019) and with the state chosen by
pixel L1 to the teacher (:func:`gansearch.compress.distill.teacher_l1_measure`), which
regresses to blurry teacher means whose FID gets worse while L1 improves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gansearch.candidates import CandidateEvaluator
    from gansearch.compress.apply import CompressedGenerator
    from gansearch.compress.plan import CompressionPlan
    from gansearch.config import StudyConfig
    from gansearch.evaluators.scorer import Score
    from gansearch.spaces.joint import JointSpace

DEFAULT_STEPS = (0, 30, 200, 1000)
RECIPES = ("study", "before")
BENCH_STUDIES = {"digits": "studies/digits.yaml", "photos": "studies/photos.yaml"}
"""The study each bundled benchmark's distillation bench runs."""
AGGRESSIVE_KEEP = 0.3
"""Channel share kept by the aggressive pruning plan (``prune30+int4``)."""
DEFAULT_PLANS = (
    "int4",
    "prune50",
    "ofa25",
    "prune30+int4",
    "ofa25+int4",
    "lowrank50+int4",
)
"""Plans benched by default, where the study's space and supernet allow them."""

OnRun = Callable[[str, int, int], None]


def bench_plans(space: JointSpace) -> dict[str, CompressionPlan]:
    """The reference plans (:func:`gansearch.spaces.references.reference_plans`) and the
    aggressive ones: ``prune30+int4`` (L1-magnitude pruning to 30 % of every group's
    channels, Li et al., ICLR 2017, and 4-bit weights everywhere), ``ofa25+int4`` (the
    supernet's quarter-width sub-generator at 4 bits, when the space has OFA widths) and
    ``lowrank50+int4`` (rank ratio 0.5 on every factorisable layer at 4 bits, when the
    space has low rank, 4 bits and the ratio 0.5)."""
    from gansearch.compress.structure import width_for
    from gansearch.spaces.joint import ParamsNotInSpaceError, PlanNotInSpaceError, rank_gene
    from gansearch.spaces.references import reference_plans

    plans = reference_plans(space)
    int4 = plans["int4"].layers
    masks = {}
    for group in space.structure.groups:
        kept = set(
            space.channel_order[group.name][: width_for(AGGRESSIVE_KEEP, group.num_channels)]
        )
        masks[group.name] = tuple(c in kept for c in range(group.num_channels))
    keep = round(AGGRESSIVE_KEEP * 100)
    plans[f"prune{keep}+int4"] = replace(plans["prune50"], masks=masks, layers=int4)
    if "ofa25" in plans:
        plans["ofa25+int4"] = replace(plans["ofa25"], layers=int4)
    try:
        params = dict(space.encode(plans["int4"]))
        ranks = [rank_gene(layer.name) for layer in space.structure.layers]
        params.update({name: 0.5 for name in ranks if name in params})
        lowrank = space.decode(params)
    except (PlanNotInSpaceError, ParamsNotInSpaceError):
        return plans  # the space cannot hold 4 bits or rank ratio 0.5
    if any(layer.rank > 0 for layer in lowrank.layers.values()):
        plans["lowrank50+int4"] = lowrank
    return plans


def study_config(benchmark: str | Path | StudyConfig) -> StudyConfig:
    """The study of a bundled benchmark name, a study file, or a loaded study."""
    from gansearch.config import StudyConfig, load_study
    from gansearch.errors import GansearchError

    if isinstance(benchmark, StudyConfig):
        return benchmark
    if isinstance(benchmark, str) and benchmark in BENCH_STUDIES:
        return load_study(BENCH_STUDIES[benchmark])
    if isinstance(benchmark, str) and not benchmark.endswith((".yaml", ".yml")):
        known = ", ".join(BENCH_STUDIES)
        raise GansearchError(f"unknown benchmark {benchmark!r}; choose one of {known}")
    return load_study(benchmark)


def before_finetune(
    evaluator: CandidateEvaluator, compressed: CompressedGenerator, steps: int
) -> tuple[CompressedGenerator, Any]:
    """The pre-fix fine-tune: the study's recipe without the adversarial term, state kept
    by pixel L1 to the teacher on held-out inputs (``distill``'s default measure)."""
    from gansearch.compress.apply import CompressedGenerator, round_to_norm_dtype
    from gansearch.compress.distill import distill
    from gansearch.config import DistillConfig

    base = evaluator.config.distill or DistillConfig()
    losses = base.losses.model_copy(update={"adversarial": 0.0, "discriminator_lr": 0.0})
    result = distill(
        compressed.module,
        evaluator.teacher,
        evaluator.benchmark.discriminator,
        evaluator.benchmark.real,
        base.model_copy(update={"steps": steps, "losses": losses}).recipe(),
        inputs=evaluator.benchmark.train_inputs,
    )
    student = CompressedGenerator(result.student, compressed.plan, compressed.structure)
    return round_to_norm_dtype(student).eval(), result


def _run(
    evaluator: CandidateEvaluator,
    compressed: tuple[CompressedGenerator, Score],
    metric: str,
    recipe: str,
    steps: int,
) -> dict[str, Any]:
    """One fine-tune of the built plan and its score (at 0 steps: the built plan's)."""
    start = time.perf_counter()
    model, score = compressed
    result = None
    if steps > 0:
        if recipe == "study":
            model, result = evaluator.finetune(model, steps)
        else:
            model, result = before_finetune(evaluator, model, steps)
        score = evaluator.scorer.score(model)
    seconds = time.perf_counter() - start if steps > 0 else 0.0
    validation = list(result.validation) if result is not None else []
    kept = dict(validation).get(result.best_step) if result is not None else None
    return {
        "recipe": recipe,
        "steps": steps,
        "quality": score.values[metric],
        "spread": score.spread.get(metric, 0.0),
        "per_seed": list(score.per_seed.get(metric, ())),
        "seconds": seconds,
        "best_step": result.best_step if result is not None else 0,
        "selected_by": "teacher_l1" if recipe == "before" else f"held-out {metric}",
        "validation_start": validation[0][1] if validation else None,
        "validation_kept": kept,
        "validation": validation,
    }


def bench_distill(
    benchmark: str | Path | StudyConfig,
    *,
    steps: Sequence[int] = DEFAULT_STEPS,
    plans: Sequence[str] | None = None,
    recipes: Sequence[str] = RECIPES,
    out: str | Path | None = None,
    evaluator: CandidateEvaluator | None = None,
    on_run: OnRun | None = None,
) -> dict[str, Any]:
    """Quality of fixed plans after 0..N fine-tune steps, beside the pre-fix recipe.

    Args:
        benchmark: ``digits`` / ``photos`` (their ``studies/*.yaml``), a study file or a
            loaded study.
        steps: fine-tune step counts; 0 scores the built plan as it is.
        plans: plan names of :func:`bench_plans` (default: :data:`DEFAULT_PLANS` that
            the study can build).
        recipes: ``study`` (every step count) and/or ``before`` (the largest only).
        out: write the JSON report there too (atomically).
        evaluator: an already loaded evaluator of the same study (tests share one).
        on_run: ``on_run(plan, done, total)`` after each run.

    Returns:
        The JSON-ready report: the protocol, the teacher's quality and one row per plan
        with its bytes and MACs ratios to the teacher and one entry per run.
    """
    from gansearch.candidates import CandidateEvaluator
    from gansearch.errors import GansearchError
    from gansearch.evaluate import quality_metric
    from gansearch.evaluators.objectives import METRICS
    from gansearch.files import write_json_atomic

    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown or not recipes:
        raise GansearchError(f"unknown recipes {unknown}; choose from {', '.join(RECIPES)}")
    if not steps or any(s < 0 for s in steps):
        raise GansearchError(f"`steps` must be non-negative step counts, got {list(steps)}")
    steps = tuple(sorted(set(int(s) for s in steps)))
    config = study_config(benchmark)
    evaluator = evaluator if evaluator is not None else CandidateEvaluator(config)
    config = evaluator.config
    available = bench_plans(evaluator.space)
    if evaluator.supernet is None:
        available = {n: p for n, p in available.items() if p.widths is None}
    if plans is None:
        chosen = [name for name in DEFAULT_PLANS if name in available]
    else:
        missing = [name for name in plans if name not in available]
        if missing:
            raise GansearchError(
                f"unknown plan {missing[0]!r} for this study; choose from {', '.join(available)}"
            )
        chosen = list(plans)
    metric = quality_metric(config)
    runs = [("study", s) for s in steps if "study" in recipes]
    if "before" in recipes and steps[-1] > 0:
        runs.append(("before", steps[-1]))
    teacher = evaluator.teacher_score
    rows = []
    for name in chosen:
        compressed = evaluator.build(available[name])
        score = evaluator.scorer.score(compressed)
        entries = []
        for recipe, count in runs:
            entries.append(_run(evaluator, (compressed, score), metric, recipe, count))
            if on_run is not None:
                on_run(name, len(entries), len(runs))
        rows.append(
            {
                "name": name,
                "stored_bytes_ratio": teacher.values["stored_bytes"] / score.values["stored_bytes"],
                "macs_ratio": teacher.values["macs"] / score.values["macs"],
                "runs": entries,
            }
        )
    base = config.distill
    report = {
        "study": config.name,
        "metric": metric,
        "direction": METRICS[metric].direction,
        "seeds": list(config.evaluation.seeds),
        "num_samples": config.evaluation.num_samples,
        "steps": list(steps),
        "recipes": {
            "study": base.losses.model_dump() if base is not None else None,
            "before": "study recipe with adversarial 0 and discriminator_lr 0, kept by teacher L1",
        },
        "teacher": {"quality": teacher.values[metric], "spread": teacher.spread.get(metric, 0.0)},
        "plans": rows,
    }
    if out is not None:
        write_json_atomic(out, report, indent=2)
    return report
