"""``gansearch bench fidelity``: does multi-fidelity search buy a better front per minute?

The benchmark's joint study runs twice for the same wall-clock budget (``search.timeout``)
and seed, each in a fresh storage: once scoring every candidate under the full protocol,
once with ``search.fidelity`` (:mod:`gansearch.fidelity`), where only candidates that
could still enter the feasible front are scored in full. Both fronts hold full-fidelity
trials only and are compared by hypervolume against one reference point
(:func:`gansearch.pareto.hypervolume`, the teacher's full-protocol metrics); the report
also gives candidates evaluated per minute and how many full-protocol evaluations each
run could afford. Loading (teacher, reference statistics) is not part of the budget: the
clock starts when the search loop does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gansearch.bench.search import BENCHMARK_STUDIES

DEFAULT_FIDELITY = {"seeds": 1, "num_samples": 250}
"""The cheap protocol used when the study has no ``search.fidelity`` of its own."""
UNBOUNDED_TRIALS = 100_000
"""A trial budget the wall-clock budget always ends first."""


def _variant(
    config: Any, folder: Path, multi: bool, minutes: float, seed: int | None, steps: int | None
) -> Any:
    """``config`` as one side of the comparison: its own folder, the time budget, fidelity
    (and, with ``steps``, that many fine-tune steps per full evaluation, none per cheap one)."""
    from gansearch.config import StudyConfig

    own = config.search.fidelity
    fidelity = (own.model_dump() if own is not None else dict(DEFAULT_FIDELITY)) if multi else None
    if steps is not None and fidelity is not None:
        fidelity["finetune_steps"] = 0
    name = f"{config.name}-{'multi' if multi else 'single'}-fidelity"
    data = config.model_dump(mode="json")
    data.update(
        name=name, output_dir=str(folder / name), seed=config.seed if seed is None else seed
    )
    search = data["search"]
    if steps is not None:
        search["finetune_steps"] = steps
    search.update(
        timeout=minutes * 60.0,
        trials=UNBOUNDED_TRIALS,
        storage=None,
        fidelity=fidelity,
    )
    return StudyConfig.model_validate(data)


def _side(config: Any, on_result: Callable[[str, int, int], None] | None) -> dict[str, Any]:
    """Run one side and summarise its storage."""
    from gansearch.fidelity import FIDELITY_ATTR, LOW
    from gansearch.pareto import hypervolume, pareto_front
    from gansearch.runner.storage import open_study
    from gansearch.study import run_study

    started: list[float] = []
    budget = int(config.search.timeout or 0)

    def on_start(study: Any, evaluator: Any) -> None:
        started.append(time.monotonic())

    def progress(result: Any, trial: Any) -> None:
        if on_result is not None:
            on_result(config.name, min(budget, int(time.monotonic() - started[0])), budget)

    summary = run_study(config, on_start=on_start, on_result=progress)
    seconds = time.monotonic() - started[0]
    study = open_study(config, None, create=False)
    teacher = study.user_attrs["teacher_metrics"]
    constraints = config.search.constraints
    front = pareto_front(study, config.objectives, constraints=constraints)
    trials = study.get_trials(deepcopy=False)
    low = sum(t.user_attrs.get(FIDELITY_ATTR) == LOW for t in trials)
    return {
        "study": config.name,
        "fidelity": None if config.search.fidelity is None else config.search.fidelity.model_dump(),
        "search_seconds": seconds,
        "candidates": summary.evaluated,
        "candidates_per_minute": summary.evaluated / (seconds / 60.0),
        "full_evaluations": summary.evaluated - low,
        "promoted": summary.promoted,
        "low_only": low,
        "failed": summary.failed,
        "front_size": len(front),
        "hypervolume": hypervolume([p.values for p in front], config.objectives, teacher),
        "storage": summary.storage,
    }


def bench_fidelity(
    out: str | Path,
    *,
    benchmark: str = "digits",
    minutes: float = 5.0,
    seed: int | None = None,
    finetune_steps: int | None = None,
    on_result: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark's joint study with and without multi-fidelity, ``minutes`` each.

    Args:
        out: folder for the two storages (``out/<study>-single-fidelity/`` and
            ``...-multi-fidelity/``); they must not exist yet.
        benchmark: a bundled benchmark (its joint study, e.g. ``studies/digits.yaml``).
        minutes: the wall-clock search budget of each side.
        seed: the strategy seed of both sides (default: the study's).
        finetune_steps: distillation steps per full evaluation on both sides (default:
            the study's ``search.finetune_steps``); the cheap protocol then uses none.
        on_result: called with ``(side name, seconds searched, seconds budgeted)`` after
            every candidate.
    """
    from gansearch.config import load_study
    from gansearch.errors import GansearchError

    if benchmark not in BENCHMARK_STUDIES:
        known = ", ".join(BENCHMARK_STUDIES)
        raise GansearchError(f"unknown benchmark {benchmark!r}; choose one of {known}")
    if not minutes > 0:
        raise GansearchError(f"`--minutes` must be > 0, got {minutes:g}")
    if finetune_steps is not None and finetune_steps < 1:
        raise GansearchError(f"`--finetune-steps` must be >= 1, got {finetune_steps}")
    out = Path(out)
    config = load_study(BENCHMARK_STUDIES[benchmark][0])
    sides = [_variant(config, out, multi, minutes, seed, finetune_steps) for multi in (False, True)]
    taken = [c.name for c in sides if c.study_dir().exists()]
    if taken:
        raise GansearchError(
            f"{out} already holds {taken[0]}; pass a fresh `--out` so both sides start empty"
        )
    single = _side(sides[0], on_result)
    multi = _side(sides[1], on_result)
    return {
        "benchmark": benchmark,
        "study": str(BENCHMARK_STUDIES[benchmark][0]),
        "minutes": minutes,
        "seed": sides[0].seed,
        "finetune_steps": sides[0].search.finetune_steps,
        "objectives": list(config.objectives),
        "constraints": list(config.search.constraints),
        "single": single,
        "multi": multi,
        "hypervolume_ratio": multi["hypervolume"] / single["hypervolume"]
        if single["hypervolume"]
        else None,
    }
