"""``gansearch bench headline``: the whole pipeline at its defaults, measured on the artifact.

One command runs what a user would: per-layer sensitivity (its guided plans seed the
search), the study's search, distillation-aware refinement of the few candidates that
could enter the feasible front once distilled (:mod:`gansearch.refine`), and export of the
most compressed feasible candidate (a refined one that meets the constraints after
distillation, else :func:`gansearch.pareto.most_compressed` on the search's front) with the
final quantisation-aware distillation (``export.finetune_steps``). The reported figures
are then measured again from the artifact on disk, loaded without pickle and scored with
the study's own protocol (:func:`gansearch.evaluate.evaluate_artifact`), beside the
teacher's under the same protocol: stored bytes, MACs, quality ± its noise floor, CPU
latency, their ratios, and whether the study's constraints and the goals of
:mod:`gansearch.bench.goals` hold.

The goals are those of the field's compression projects, measured teacher → student
(GAN Compression, Li et al., CVPR 2020: 21x fewer MACs on CycleGAN; OMGD, Ren et al.,
ICCV 2021: about 40x fewer MACs and 82x fewer parameters); the README sets the headline
figures beside theirs and says what differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gansearch.bench.goals import load_goals

HEADLINE_STUDIES = {"digits": "studies/digits.yaml", "photos": "studies/photos.yaml"}
"""The study each bundled benchmark's headline runs."""
HEADLINE_METRICS = ("stored_bytes", "macs", "params", "latency_ms")
REFINE_CANDIDATES = 3
"""Candidates outside the search's feasible front distilled before the pick."""
Stage = Callable[[str], None]


def headline_config(study: str | Path | Any, out: Path) -> Any:
    """The study with its storage and outputs under ``out`` and sensitivity turned on."""
    from gansearch.config import StudyConfig, load_study

    config = study if isinstance(study, StudyConfig) else load_study(study)
    return config.model_copy(
        update={
            "output_dir": out,
            "search": config.search.model_copy(update={"storage": None, "sensitivity": True}),
        }
    )


def _ratio(teacher: float | None, value: float | None) -> float | None:
    if teacher is None or value is None or value <= 0:
        return None
    return teacher / value


def bench_headline(
    benchmark: str,
    out: str | Path,
    *,
    study: str | Path | Any | None = None,
    trials: int | None = None,
    finetune_steps: int | None = None,
    refine_candidates: int = REFINE_CANDIDATES,
    on_stage: Stage | None = None,
    on_result: Callable[[Any, Any], None] | None = None,
) -> dict[str, Any]:
    """Sensitivity, search, export with fine-tune, and the artifact's own figures.

    Args:
        benchmark: ``digits`` or ``photos`` (picks the study in :data:`HEADLINE_STUDIES`
            and the goals), unless ``study`` is given.
        out: an empty (or missing) folder: the study storage, the sensitivity table and
            ``artifact/`` are written there.
        study: another study file or config to run instead of the benchmark's.
        trials, finetune_steps: override the study's ``search.trials`` and
            ``export.finetune_steps`` (shorter runs for tests).
        refine_candidates: how many candidates outside the feasible front are distilled
            and re-scored before the pick (:mod:`gansearch.refine`; 0: none).
        on_stage: called with each stage's name as it starts.
        on_result: called after every search candidate (``run_study``'s ``on_result``).
    """
    from gansearch.candidates import CandidateEvaluator
    from gansearch.errors import GansearchError
    from gansearch.evaluate import evaluate_artifact, quality_metric
    from gansearch.refine import refine, refinement_candidates
    from gansearch.runner.storage import open_study
    from gansearch.sensitivity_measure import sensitivity_table
    from gansearch.study import run_study
    from gansearch.study_export import export_trial

    if study is None and benchmark not in HEADLINE_STUDIES:
        raise GansearchError(
            f"unknown benchmark {benchmark!r}; use one of {', '.join(HEADLINE_STUDIES)}"
        )
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise GansearchError(f"{out} is not empty; pass a new or empty `--out` folder")
    config = headline_config(study or HEADLINE_STUDIES[benchmark], out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{out / 'study.db'}"
    seconds: dict[str, float] = {}

    def stage(name: str) -> float:
        if on_stage is not None:
            on_stage(name)
        return time.perf_counter()

    started = stage("load")
    evaluator = CandidateEvaluator(config)
    seconds["load"] = time.perf_counter() - started
    started = stage("sensitivity")
    sensitivity_table(config, evaluator=evaluator)  # cached in `out`; the search reuses it
    seconds["sensitivity"] = time.perf_counter() - started
    started = stage("search")
    summary = run_study(
        config, trials=trials, storage=storage, evaluator=evaluator, on_result=on_result
    )
    seconds["search"] = time.perf_counter() - started
    started = stage("refine")
    steps = config.export.finetune_steps if finetune_steps is None else finetune_steps
    study_handle = open_study(config, storage, create=False)
    candidates = refinement_candidates(
        study_handle, config.objectives, config.search.constraints, refine_candidates
    )
    refined = refine(evaluator, candidates, steps) if steps > 0 else []
    seconds["refine"] = time.perf_counter() - started
    started = stage("export")
    best = next((r for r in refined if r.feasible), None)  # most compressed first
    exported = export_trial(
        config,
        out / "artifact",
        trial=None if best is None else best.trial,
        pick="compression" if best is None else None,
        finetune_steps=steps,
        storage=storage,
        evaluator=evaluator,
        finetuned=None if best is None else (best.compressed, best.distilled, best.seconds),
    )
    seconds["export"] = time.perf_counter() - started
    started = stage("measure")
    artifact = evaluate_artifact(evaluator.benchmark, config, Path(exported["artifact"]))
    seconds["measure"] = time.perf_counter() - started

    teacher = evaluator.teacher_score
    quality = quality_metric(config)
    rows = []
    for name in (quality, *HEADLINE_METRICS):
        if name not in artifact.values:
            continue
        rows.append(
            {
                "metric": name,
                "teacher": teacher.values[name],
                "teacher_spread": teacher.spread.get(name),
                "artifact": artifact.values[name],
                "artifact_spread": artifact.spread.get(name),
                "ratio": None
                if name == quality
                else _ratio(teacher.values[name], artifact.values[name]),
            }
        )
    constraints = {
        text: value <= 0
        for text, value in zip(
            config.search.constraints,
            evaluator.constraint_values(artifact.values),
            strict=True,
        )
    }
    bytes_goal, macs_goal = load_goals().compression(benchmark)
    by_name = {row["metric"]: row for row in rows}
    bytes_ratio = by_name["stored_bytes"]["ratio"]
    macs_ratio = by_name["macs"]["ratio"]
    return {
        "benchmark": benchmark,
        "study": config.name,
        "artifact": exported["artifact"],
        "trial": exported["trial"],
        "trials": summary.finished,
        "failed": summary.failed,
        "quality_metric": quality,
        "rows": rows,
        "constraints": constraints,
        "finetune": {k: v for k, v in exported["finetune"].items() if k != "validation"},
        "refined": [
            {
                "trial": r.trial,
                "searched": {
                    name: dict(study_handle.trials[r.trial].user_attrs.get("metrics", {})).get(name)
                    for name in (quality, "stored_bytes", "macs")
                },
                "distilled": {
                    name: r.score.values.get(name) for name in (quality, "stored_bytes", "macs")
                },
                "spread": r.score.spread.get(quality),
                "feasible": r.feasible,
                "best_step": r.distilled.best_step,
                "seconds": round(r.seconds, 1),
            }
            for r in refined
        ],
        "exported_from": "search front" if best is None else "refinement",
        "goals": {
            "stored_bytes_ratio": bytes_goal,
            "macs_ratio": macs_goal,
            "met": bool(
                bytes_ratio is not None
                and macs_ratio is not None
                and bytes_ratio >= bytes_goal
                and macs_ratio >= macs_goal
                and all(constraints.values())
            ),
        },
        "seconds": {
            **{name: round(value, 1) for name, value in seconds.items()},
            "total": round(sum(seconds.values()), 1),
        },
    }
