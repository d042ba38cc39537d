"""``gansearch bench engines``: one study run locally, on 1 Ray worker and on 2.

Reports the search loop's throughput on each engine, the speedup of 2 workers over 1 and
Ray's own per-candidate overhead, against the goals in :mod:`~gansearch.bench.goals`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gansearch.bench.goals import load_goals

if TYPE_CHECKING:
    from gansearch.candidates import CandidateEvaluator
    from gansearch.config import StudyConfig

ENGINES = (("local", 0), ("ray-1", 1), ("ray-2", 2))  # label, Ray workers (0: local)


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _run_engine(
    config: StudyConfig,
    label: str,
    workers: int,
    controller: CandidateEvaluator | None,
    on_result: Callable[[str, int, int], None] | None,
) -> tuple[dict[str, Any], CandidateEvaluator | None]:
    """Run ``config`` on one engine; its report row, and the local evaluator once built.

    The row's ``plans`` (sorted plan JSON) lets the caller check that every engine
    evaluated the same candidates. The local evaluator is built on the local run and
    reused by the Ray runs, where it only supplies the space and the teacher's metrics.
    """
    from gansearch.candidates import CandidateEvaluator, WorkerEvaluate
    from gansearch.search.engines import RayEngine
    from gansearch.study import run_study

    budget = config.search.trials
    seconds: list[float] = []
    plans: list[str] = []
    loop: dict[str, float] = {}

    def started(_study: object, _evaluator: object) -> None:
        loop["start"] = time.perf_counter()

    def finished(result: Any, trial: object) -> None:
        seconds.append(result.seconds)
        plans.append(result.plan_json)
        if on_result is not None:
            on_result(label, len(seconds), budget)

    row: dict[str, Any] = {"engine": label, "workers": max(workers, 1)}
    begin = time.perf_counter()
    if workers == 0:
        controller = CandidateEvaluator(config)
        row["startup_seconds"] = {"load_evaluator": time.perf_counter() - begin}
        engine: Any = "local"
    else:
        engine = RayEngine(WorkerEvaluate(config, torch_threads=1), workers=workers)
        engine.wait_ready()
        row["startup_seconds"] = {
            "ray_init": engine.connect_seconds,
            "workers_ready": time.perf_counter() - begin - engine.connect_seconds,
            "total": time.perf_counter() - begin,
        }
    try:
        run_study(config, evaluator=controller, engine=engine, on_start=started, on_result=finished)
    finally:
        if workers:
            engine.close()
    loop_seconds = time.perf_counter() - loop["start"]
    row.update(
        candidates=len(seconds),
        loop_seconds=loop_seconds,
        candidates_per_minute=60 * len(seconds) / loop_seconds,
        loop_seconds_per_candidate=loop_seconds / len(seconds),
        mean_evaluation_seconds=statistics.fmean(seconds),
        plans=sorted(plans),
    )
    return row, controller


def bench_engines(
    study: str | Path,
    out: str | Path,
    *,
    trials: int | None = None,
    on_result: Callable[[str, int, int], None] | None = None,
) -> dict[str, object]:
    """Run one study three ways in one run: local, Ray with 1 worker, Ray with 2 workers.

    Every way runs the same study with a fresh storage, the DEAP strategy and ``trials``
    no larger than its population, so all three evaluate the same candidates (the first
    generation does not depend on results or on their order). Torch uses one thread in
    the local controller and in each Ray worker (``resources.cpus: 1``), so two workers
    do not oversubscribe two cores.

    Reported: candidates per minute of the search loop (from the first proposal to the
    last result, start-up excluded), the speedup of 2 workers over 1, Ray's per-candidate
    overhead (the time 1 Ray worker's loop spends outside evaluations beyond what the local
    loop spends there) as a fraction of a local evaluation, and start-up costs separately
    (local: loading the evaluator; Ray: ``ray.init`` and the workers loading theirs).
    """
    from gansearch.config import load_study
    from gansearch.errors import GansearchError

    base = load_study(study)
    budget = trials if trials is not None else base.search.population
    if not 1 <= budget <= base.search.population:
        raise GansearchError(
            f"`trials` must be in [1, population={base.search.population}] so that every "
            f"engine evaluates the same first generation, got {budget}"
        )
    out = Path(out)
    load_before = _load_average()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    controller: CandidateEvaluator | None = None
    rows: list[dict[str, Any]] = []
    try:
        for label, workers in ENGINES:
            directory = out / label
            if (directory / "study.db").exists():
                raise GansearchError(f"{directory / 'study.db'} exists; pass an empty `--out`")
            config = base.model_copy(
                update={
                    "output_dir": directory,
                    "search": base.search.model_copy(
                        update={"storage": None, "strategy": "deap", "trials": budget}
                    ),
                }
            )
            row, controller = _run_engine(config, label, workers, controller, on_result)
            rows.append(row)
    finally:
        torch.set_num_threads(threads)
    return _report(base.name, budget, rows, load_before)


def _report(
    study: str, budget: int, rows: list[dict[str, Any]], load_before: list[float] | None
) -> dict[str, object]:
    """Throughput, speedup and Ray overhead from the three engines' rows."""
    goals = load_goals()
    local, ray1, ray2 = rows
    speedup = ray2["candidates_per_minute"] / ray1["candidates_per_minute"]
    for row in rows:  # storage, strategy and dispatch: the loop's time outside evaluations
        row["outside_evaluation_seconds_per_candidate"] = (
            row["loop_seconds_per_candidate"] - row["mean_evaluation_seconds"]
            if row["workers"] == 1
            else None  # evaluations overlap: the difference means nothing
        )
    # Ray's own cost per candidate: what 1 worker spends outside evaluations beyond what the
    # local loop spends there (robust to evaluations running at different speeds on a
    # shared machine), relative to a local evaluation.
    extra = (
        ray1["outside_evaluation_seconds_per_candidate"]
        - local["outside_evaluation_seconds_per_candidate"]
    )
    overhead = extra / local["mean_evaluation_seconds"]
    same = local["plans"] == ray1["plans"] == ray2["plans"]
    for row in rows:
        del row["plans"]
    return {
        "study": study,
        "trials": budget,
        "strategy": "deap",
        "torch_threads_per_worker": 1,
        "same_candidates_everywhere": same,
        "load_average_1_5_15_min": {"before": load_before, "after": _load_average()},
        "engines": rows,
        "speedup_2_over_1": speedup,
        "ray_overhead_per_candidate": {
            "seconds": extra,
            "fraction_of_evaluation": overhead,
            "loop_seconds_per_candidate_ray1_minus_local": ray1["loop_seconds_per_candidate"]
            - local["loop_seconds_per_candidate"],
        },
        "goals": {
            "speedup": {"goal": goals.engine_speedup, "met": speedup >= goals.engine_speedup},
            "overhead": {"goal": goals.engine_overhead, "met": overhead < goals.engine_overhead},
        },
    }
