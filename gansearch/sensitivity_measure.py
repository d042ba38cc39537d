"""Measuring per-layer sensitivity: each single choice applied to the teacher, then scored.

For every gene of the study's space and every value in its domain, the plan is the
teacher's (identity) plan with only that choice changed; it is built, recalibrated and
scored by the study's own :class:`~gansearch.candidates.CandidateEvaluator`, so the
figures are those the search would record. OFA widths are not measured: a width only
means something inside a trained supernet (the search still searches them). The table
is cached in ``<study dir>/sensitivity.json`` under a key of the teacher's weights, the
evaluation protocol, the space, the objectives and the constraints.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from gansearch.benchmark import Benchmark
from gansearch.benchmarks import load_benchmark
from gansearch.candidates import CandidateEvaluator
from gansearch.checkpoints import state_digest
from gansearch.compress.plan import CompressionPlan
from gansearch.config import StudyConfig
from gansearch.evaluate import quality_metric
from gansearch.evaluators.objectives import METRICS
from gansearch.sensitivity import (
    CACHE_FILE,
    FAMILIES,
    TABLE_VERSION,
    SensitivityEntry,
    SensitivityTable,
    guided_plans,
    identity_params,
    quality_budget,
    read_cached,
    split_gene,
    write_cache,
)
from gansearch.spaces.config import bits_spec
from gansearch.spaces.genes import Mask
from gansearch.spaces.joint import JointSpace

SAVED_METRICS = ("stored_bytes", "macs")
"""Costs every entry records as saved; the study's other cost objectives are added
(latency excepted: it is a timing, too noisy to compare single choices)."""
_FIELD = {
    "bits": "weight",
    "codebook": "weight",
    "rank": "rank",
    "activation_bits": "activation_bits",
}
OFA_SKIPPED = "ofa: not measured (a width only has meaning inside a trained supernet)"

Progress = Callable[[int, int, str], None]


def skipped_families(config: StudyConfig) -> tuple[str, ...]:
    """The study's families that the table does not measure, with the reason."""
    return (OFA_SKIPPED,) if config.space.ofa is not None else ()


def measured_config(config: StudyConfig) -> StudyConfig:
    """The study without OFA widths (so no supernet is needed to measure)."""
    return config.model_copy(update={"space": config.space.model_copy(update={"ofa": None})})


def cache_key(config: StudyConfig, teacher: nn.Module) -> str:
    """The cache key: what the table's figures depend on, hashed."""
    measured = measured_config(config)
    parts = {
        "version": TABLE_VERSION,
        "teacher": state_digest(teacher),
        "model": config.benchmark if config.model is None else config.model.model_dump_json(),
        "device": config.device,
        "seed": config.seed,
        "evaluation": config.evaluation.model_dump_json(),
        "space": measured.space.model_dump_json(),
        "objectives": list(config.objectives),
        "constraints": list(config.search.constraints),
        "finetune_steps": config.search.finetune_steps,
        "distill": None if config.distill is None else config.distill.model_dump_json(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cache_path(config: StudyConfig) -> Path:
    return config.study_dir() / CACHE_FILE


def single_choice_plan(
    space: JointSpace, base: Mapping[str, Any], gene: str, value: Any
) -> CompressionPlan:
    """The teacher's plan with only ``gene = value`` applied (``value`` as the gene takes it).

    The space decodes the choice (so a rank ratio gives the space's rank); only what the
    gene sets is copied into the identity plan, so every other layer stays the teacher's
    even where the space cannot represent the teacher (e.g. ``bits`` without 32).
    """
    decoded = space.decode({**base, gene: value})
    identity = CompressionPlan.identity(space.structure)
    prefix, target = split_gene(gene)
    if prefix == "mask":
        return replace(identity, masks={**identity.masks, target: decoded.masks[target]})
    if prefix == "norm_dtype":
        return replace(identity, norm_dtype=decoded.norm_dtype)
    field = _FIELD[prefix]
    layer = replace(identity.layer(target), **{field: getattr(decoded.layer(target), field)})
    return replace(identity, layers={**identity.layers, target: layer})


def _label(gene: Any, value: Any) -> str:
    prefix, _ = split_gene(gene.name)
    if isinstance(gene, Mask):
        return f"keep {value / gene.length:.2f}"
    if prefix == "bits":
        return bits_spec(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _choices(space: JointSpace) -> list[tuple[Any, Any, Any]]:
    """(gene, table value, gene value) of every measured choice, in gene order."""
    out = []
    for gene in space.genes.genes:
        if split_gene(gene.name)[0] not in FAMILIES:
            continue  # `source` and OFA `width:*` genes
        if isinstance(gene, Mask):
            out.extend((gene, keep, gene.top(keep)) for keep in gene.keep_choices)
        else:
            out.extend((gene, value, value) for value in gene.choices)
    return out


def measure(
    evaluator: CandidateEvaluator,
    key: str,
    progress: Progress | None = None,
) -> SensitivityTable:
    """Score every single choice of the evaluator's space (OFA widths excepted) on the
    teacher; ``key`` is recorded in the table."""
    started = time.perf_counter()
    config = evaluator.config
    metric = quality_metric(config)
    sign = METRICS[metric].sign
    teacher = evaluator.teacher_score
    saved_metrics = [*SAVED_METRICS]
    saved_metrics += [
        o
        for o in config.objectives
        if METRICS[o].kind == "cost" and o not in saved_metrics and o != "latency_ms"
    ]
    space = JointSpace(
        evaluator.space.structure, measured_config(config).space, evaluator.space.channel_order
    )
    base = identity_params(space)
    identity = CompressionPlan.identity(space.structure)
    teacher_violations = evaluator.constraint_values(teacher.values)
    choices = _choices(space)
    entries = []
    for done, (gene, value, gene_value) in enumerate(choices):
        if progress is not None:
            progress(done, len(choices), gene.name)
        plan = single_choice_plan(space, base, gene.name, gene_value)
        label = _label(gene, value)
        if plan == identity:  # the teacher itself: its score, not a second measurement
            entries.append(
                SensitivityEntry(
                    gene.name,
                    value,
                    label,
                    teacher.values[metric],
                    0.0,
                    teacher.spread.get(metric, 0.0),
                    dict.fromkeys(saved_metrics, 0.0),
                    identity=True,
                )
            )
            continue
        result = evaluator.score_plan(plan)
        if result.failure is not None:
            entries.append(
                SensitivityEntry(gene.name, value, label, None, None, 0.0, {}, (), result.failure)
            )
            continue
        quality = result.metrics[metric]
        breaks = tuple(
            text
            for text, now, before in zip(
                config.search.constraints, result.constraints, teacher_violations, strict=True
            )
            if now > 0 >= before
        )
        entries.append(
            SensitivityEntry(
                gene.name,
                value,
                label,
                quality,
                sign * (teacher.values[metric] - quality),
                result.spread.get(metric, 0.0),
                {m: teacher.values[m] - result.metrics[m] for m in saved_metrics},
                breaks,
            )
        )
    if progress is not None:
        progress(len(choices), len(choices), "done")
    return SensitivityTable(
        key=key,
        metric=metric,
        direction=METRICS[metric].direction,
        teacher={m: teacher.values[m] for m in (metric, *saved_metrics)},
        teacher_spread=teacher.spread.get(metric, 0.0),
        constraints=tuple(config.search.constraints),
        entries=tuple(entries),
        seconds=time.perf_counter() - started,
    )


def sensitivity_table(
    config: StudyConfig,
    *,
    evaluator: CandidateEvaluator | None = None,
    benchmark: Benchmark | None = None,
    refresh: bool = False,
    progress: Progress | None = None,
) -> tuple[SensitivityTable, bool]:
    """The study's table and whether it came from the cache.

    Args:
        config: the study.
        evaluator: the study's evaluator when one is loaded (the search's); otherwise the
            teacher is loaded (or ``benchmark``'s taken) to compute the cache key, and an
            evaluator (without OFA widths, so that no supernet is needed) is built only
            when the table must be measured.
        benchmark: the study's benchmark when already loaded.
        refresh: measure even when the cache holds a table with the same key.
        progress: called with ``(done, total, gene)`` while measuring.
    """
    if evaluator is not None:
        benchmark = evaluator.benchmark
    elif benchmark is None:
        benchmark = load_benchmark(config)
    key = cache_key(config, benchmark.teacher)
    path = cache_path(config)
    cached = None if refresh else read_cached(path, key)
    if cached is not None:
        return cached, True
    if evaluator is None:
        evaluator = CandidateEvaluator(measured_config(config), benchmark)
    table = measure(evaluator, key, progress)
    write_cache(path, table)
    return table, False


def guided_params(evaluator: CandidateEvaluator, n: int = 3) -> list[dict[str, Any]]:
    """Params of the study's sensitivity-guided starting plans (``search.sensitivity``)."""
    table, _ = sensitivity_table(evaluator.config, evaluator=evaluator)
    plans = guided_plans(table, evaluator.space, quality_budget(table), n)
    return [dict(plan.params) for plan in plans]
