"""``gansearch bench search``: does the joint search beat each single technique?

The joint study and the single-technique studies run at one budget and seed; their
feasible fronts are compared by hypervolume, and the joint study's best compression is
checked against the goals in :mod:`~gansearch.bench.goals`.

The quality metric is the studies' first quality objective (FID on digits, PSNR on the
photographs); the quality bar is the joint study's own constraint on it (e.g. ``fid <=
1.10 * teacher`` or ``psnr >= teacher - 0.5``), so that the bench judges candidates as the
study does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gansearch.bench.goals import load_goals

# The joint study first: the goals compare every other study against it.
SEARCH_STUDIES = (
    "studies/digits.yaml",
    "studies/digits-ga-prune.yaml",
    "studies/digits-ofa.yaml",
    "studies/digits-quant.yaml",
    "studies/digits-codebook.yaml",
)
BENCHMARK_STUDIES = {
    "digits": SEARCH_STUDIES,
    "photos": (
        "studies/photos.yaml",
        "studies/photos-ga-prune.yaml",
        "studies/photos-quant.yaml",
        "studies/photos-codebook.yaml",
        "studies/photos-lowrank.yaml",
    ),
}
"""Each bundled benchmark's joint study and its single-technique baselines."""
SEARCH_COST = ("stored_bytes", "macs")


def _one_value(configs: list, what: str, value: Callable[[object], object]) -> object:
    """The value every study agrees on, or an error asking for an explicit override."""
    from gansearch.errors import GansearchError

    values = {config.name: value(config) for config in configs}
    if len(set(values.values())) != 1:
        raise GansearchError(
            f"the studies disagree on {what} ({values}); pass one explicitly so the "
            "comparison is at one budget and seed"
        )
    return next(iter(values.values()))


def quality_bar(config: object) -> Any:
    """The constraint that defines "good enough": the study's own on its quality objective,
    or ``fid <= quality_factor * teacher`` (:mod:`~gansearch.bench.goals`)."""
    from gansearch.errors import GansearchError
    from gansearch.evaluators.objectives import METRICS, Constraint

    quality = [name for name in config.objectives if METRICS[name].kind == "quality"]
    if not quality:
        raise GansearchError(
            f"study {config.name!r} has no quality objective; bench search compares quality "
            "against stored_bytes and macs"
        )
    for text in config.search.constraints:
        constraint = Constraint.parse(text)
        if constraint.metric == quality[0]:
            return constraint
    if quality[0] == "fid":
        return Constraint("fid", "<=", load_goals().quality_factor, True)
    raise GansearchError(
        f"study {config.name!r} has no constraint on {quality[0]!r}; add one (e.g. "
        f"'{quality[0]} >= teacher - 0.5') so bench search knows the quality bar"
    )


def _search_summary(
    study: object, config: object, teacher: dict[str, float], bar: Any
) -> dict[str, object]:
    """Counts, hypervolume (shared reference) and best compression of one finished study."""
    from optuna.trial import TrialState

    from gansearch.pareto import hypervolume, is_feasible, pareto_front
    from gansearch.runner.storage import finished_trials

    goals = load_goals()
    objectives = list(config.objectives)
    finished = finished_trials(study)
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    failures = [t for t in finished if t.state == TrialState.FAIL]
    front = pareto_front(study, objectives)
    metric = bar.metric
    good = [
        t
        for t in complete
        if all(t.user_attrs.get("metrics", {}).get(n) is not None for n in (metric, *SEARCH_COST))
        and bar.violation(t.user_attrs["metrics"], teacher) <= 0
    ]

    def ratios(trial: object) -> dict[str, float]:
        metrics = trial.user_attrs["metrics"]
        return {name: teacher[name] / metrics[name] for name in SEARCH_COST}

    def best(name: str) -> dict[str, object] | None:
        if not good:
            return None
        trial = max(good, key=lambda t: (ratios(t)[name], -t.number))
        return {
            "trial": trial.number,
            metric: trial.user_attrs["metrics"][metric],
            **ratios(trial),
        }

    bytes_goal, macs_goal = goals.compression(config.benchmark)
    both = [
        t
        for t in good
        if ratios(t)["stored_bytes"] >= bytes_goal and ratios(t)["macs"] >= macs_goal
    ]
    reasons: dict[str, int] = {}
    for trial in failures:
        reason = str(trial.user_attrs.get("fail_reason", "unknown"))
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "trials": len(finished),
        "failures": len(failures),
        "failure_reasons": reasons,
        "feasible": sum(is_feasible(t) for t in complete),
        "front_size": len(front),
        "hypervolume": hypervolume([p.values for p in front], objectives, teacher),
        "best_stored_bytes": best("stored_bytes"),
        "best_macs": best("macs"),
        "meeting_both_goals": [t.number for t in both],
    }


def _front_2d(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, quality) points no other point beats on both, sorted by cost."""
    front: list[tuple[float, float]] = []
    for cost, quality in sorted(points):
        if not front or quality < front[-1][1]:
            front.append((cost, quality))
    return front


def plot_search_fronts(
    studies: list[tuple[str, object]],
    teacher: dict[str, float],
    path: Path,
    bar: Any,
    benchmark: str | None = None,
) -> None:
    """Quality against stored bytes (log x) of every study: feasible trials and their 2-D
    front, taken in the quality metric's own direction."""
    import matplotlib

    from gansearch.evaluators.objectives import METRICS

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    from gansearch.pareto import is_feasible

    goals = load_goals()
    metric = bar.metric
    sign = 1.0 if METRICS[metric].direction == "minimize" else -1.0
    figure, axes = plt.subplots(figsize=(8, 5.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, study) in enumerate(studies):
        colour = colours[index % len(colours)]
        points = [
            (t.user_attrs["metrics"]["stored_bytes"], t.user_attrs["metrics"][metric])
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if is_feasible(t)
            and t.user_attrs.get("metrics", {}).get(metric) is not None
            and t.user_attrs["metrics"].get("stored_bytes") is not None
        ]
        if not points:
            continue
        axes.scatter(*zip(*points, strict=True), s=9, color=colour, alpha=0.25)
        front = [(c, sign * q) for c, q in _front_2d([(c, sign * q) for c, q in points])]
        axes.step(
            *zip(*front, strict=True), where="post", marker="o", ms=4, color=colour, label=name
        )
    axes.scatter(
        [teacher["stored_bytes"]], [teacher[metric]], marker="*", s=160, c="k", label="teacher"
    )
    axes.axhline(bar.threshold(teacher), ls="--", c="0.5", lw=1, label=str(bar))
    bytes_goal = goals.compression(benchmark)[0]
    axes.axvline(
        teacher["stored_bytes"] / bytes_goal,
        ls=":",
        c="0.5",
        lw=1,
        label=f"teacher bytes / {bytes_goal:g}",
    )
    axes.set_xscale("log")
    axes.set_xlabel("stored bytes (lower is better, log scale)")
    better = "lower" if sign > 0 else "higher"
    axes.set_ylabel(f"{metric} ({better} is better)")
    axes.set_title(f"Feasible trials (faint) and their {metric} / stored-bytes front, per study")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def bench_search(
    out: str | Path,
    studies: Sequence[str | Path | object] = SEARCH_STUDIES,
    *,
    trials: int | None = None,
    seed: int | None = None,
    on_result: Callable[[str, int, int], None] | None = None,
) -> dict[str, object]:
    """Run the joint study and the single-technique studies at one budget and seed.

    Each study gets a fresh SQLite storage and output folder under ``out/<name>/`` (so
    ``studies/`` is untouched and no old strategy state is picked up), its own
    :class:`~gansearch.candidates.CandidateEvaluator` over one benchmark loaded once, and
    ``trials`` finished trials. Fronts are compared by hypervolume against one reference
    point, :func:`gansearch.pareto.reference_point` in teacher-relative units, with the
    first (joint) study's teacher metrics for every study. The best compression is taken
    over all completed trials that meet the quality bar (:func:`quality_bar`).

    Args:
        out: folder for the storages and the plot; it must not hold these studies yet.
        studies: study files or :class:`~gansearch.config.StudyConfig` objects; the first
            is the joint study the goals compare the others against.
        trials: finished trials per study (default: the studies' own, which must agree).
        seed: strategy seed of every study (default: the studies' own, which must agree).
        on_result: called with ``(study name, finished, trials)`` after every candidate.
    """
    from gansearch.benchmarks import load_benchmark
    from gansearch.candidates import CandidateEvaluator
    from gansearch.config import StudyConfig, load_study
    from gansearch.errors import GansearchError
    from gansearch.pareto import reference_point
    from gansearch.runner.storage import finished_trials, open_study
    from gansearch.study import run_study

    out = Path(out)
    configs = [s if isinstance(s, StudyConfig) else load_study(s) for s in studies]
    if len({c.name for c in configs}) != len(configs):
        raise GansearchError(f"study names repeat: {[c.name for c in configs]}")
    objectives = _one_value(configs, "objectives", lambda c: tuple(c.objectives))
    bar = quality_bar(configs[0])
    missing = [m for m in (bar.metric, *SEARCH_COST) if m not in objectives]
    if missing:
        raise GansearchError(
            f"bench search needs a quality objective and stored_bytes, macs; missing {missing}"
        )
    budget = (
        trials if trials is not None else _one_value(configs, "trials", lambda c: c.search.trials)
    )
    seed = seed if seed is not None else _one_value(configs, "seed", lambda c: c.seed)
    if budget < 1:
        raise GansearchError(f"`trials` must be at least 1, got {budget}")
    benchmarks: dict[str, object] = {}
    rows: list[dict[str, object]] = []
    opened: list[tuple[str, object]] = []
    teacher: dict[str, float] | None = None
    for base in configs:
        directory = out / base.name
        if (directory / "study.db").exists():
            raise GansearchError(f"{directory / 'study.db'} exists; pass an empty `--out` folder")
        config = base.model_copy(
            update={
                "output_dir": directory,
                "search": base.search.model_copy(update={"storage": None}),
            }
        )
        directory.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{directory / 'study.db'}"
        source = json.dumps(
            config.model_dump(
                mode="json", include={"benchmark", "model", "weights", "device", "evaluation"}
            ),
            sort_keys=True,
        )
        start = time.perf_counter()
        if source not in benchmarks:
            benchmarks[source] = load_benchmark(config)
        evaluator = CandidateEvaluator(config, benchmarks[source])

        def progress(result: object, trial: object, name: str = config.name) -> None:
            if on_result is not None:
                on_result(name, len(finished_trials(trial.study)), budget)

        summary = run_study(
            config,
            trials=budget,
            seed=seed,
            storage=storage,
            evaluator=evaluator,
            on_result=progress,
        )
        seconds = time.perf_counter() - start
        study = open_study(config, storage, create=False)
        own_teacher = {
            k: v for k, v in study.user_attrs["teacher_metrics"].items() if v is not None
        }
        teacher = own_teacher if teacher is None else teacher
        rows.append(
            {
                "study": config.name,
                "strategy": config.search.strategy,
                "storage": storage,
                "seconds": seconds,
                "evaluated": summary.evaluated,
                f"teacher_{bar.metric}": own_teacher[bar.metric],
                **_search_summary(study, config, teacher, bar),
            }
        )
        opened.append((config.name, study))
    plot = out / "bench-search.png"
    plot_search_fronts(opened, teacher, plot, bar, configs[0].benchmark)
    goals = load_goals()
    joint, singles = rows[0], rows[1:]
    hv_met = all(joint["hypervolume"] > row["hypervolume"] for row in singles)
    best_bytes = joint["best_stored_bytes"]
    best_macs = joint["best_macs"]
    return {
        "trials": budget,
        "seed": seed,
        "out": str(out),
        "plot": str(plot),
        "objectives": list(objectives),
        "quality_metric": bar.metric,
        "teacher": {name: teacher[name] for name in (bar.metric, *SEARCH_COST)},
        "reference_point": {
            "teacher_relative_losses": reference_point(objectives).tolist(),
            "note": (
                "hypervolume of each study's feasible Pareto front in teacher-relative "
                "losses (objective / teacher, maximised ones negated), against "
                "gansearch.pareto.reference_point; the joint study's teacher metrics for all"
            ),
        },
        "studies": rows,
        "goals": {
            "joint_hypervolume_beats_every_single": {
                "met": hv_met,
                "joint": joint["hypervolume"],
                "best_single": max((r["hypervolume"] for r in singles), default=0.0),
            },
            "compression": {
                "met": bool(joint["meeting_both_goals"]),
                "quality_bar": str(bar),
                "stored_bytes_goal": goals.compression(configs[0].benchmark)[0],
                "macs_goal": goals.compression(configs[0].benchmark)[1],
                "best_stored_bytes_ratio": best_bytes["stored_bytes"] if best_bytes else None,
                "best_macs_ratio": best_macs["macs"] if best_macs else None,
                "trials_meeting_both": joint["meeting_both_goals"],
            },
        },
    }
