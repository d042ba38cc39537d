"""Benchmarks that report ratios measured side by side in one run (never timed tests)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch


def _median_seconds(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Time each function ``repeats`` times, interleaved so drifts hit every side alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_evaluate(study: str | Path, *, repeats: int = 3) -> dict[str, object]:
    """Time scoring the teacher against the bare forward passes that scoring needs.

    The bare side runs exactly the forward passes the scorer runs: the generator and the
    feature network over every evaluation seed's latents, the latency protocol's warm-up
    and timed runs at its thread count, and the two counting passes (MACs, BitOps). The
    difference is the metrics' own cost: FID/KID/IS arithmetic, thop's bookkeeping,
    parameter and stored-byte walks.
    """
    from gansearch.benchmarks import load_benchmark
    from gansearch.config import load_study
    from gansearch.evaluate import prepare_scorer
    from gansearch.evaluators.cost import num_threads
    from gansearch.evaluators.scorer import generate

    config = load_study(study)
    benchmark = load_benchmark(config)
    start = time.perf_counter()
    scorer = prepare_scorer(benchmark, config, teacher_fidelity=False)
    prepare_s = time.perf_counter() - start
    teacher = benchmark.teacher.eval()
    features = benchmark.features
    protocol = scorer.protocol

    def bare_forwards() -> None:
        with torch.inference_mode():
            for seed in protocol.seeds:
                images = generate(teacher, scorer.latents[seed], protocol.batch_size)
                if features is not None:
                    for chunk in images.split(protocol.batch_size):
                        features(chunk)
            example = scorer.example_input()
            with num_threads(protocol.latency_threads):
                for _ in range(protocol.latency_warmup + protocol.latency_runs):
                    teacher(example)
            for _ in range(2):  # the MACs and BitOps counting passes
                teacher(example)

    timings = _median_seconds(
        {"score": lambda: scorer.score(teacher), "forward": bare_forwards}, repeats
    )
    return {
        "study": config.name,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "prepare_s": prepare_s,
        "score_s": timings["score"],
        "forward_s": timings["forward"],
        "overhead_ratio": timings["score"] / timings["forward"],
    }


# ---------------------------------------------------------------------------------------
# bench transforms: do fewer MACs make a faster generator?
# ---------------------------------------------------------------------------------------

TRANSFORM_KEEP_RATIOS = (1.0, 0.75, 0.5, 0.25)
TRANSFORM_RANK_FRACTIONS = (0.5, 0.25)
TRANSFORM_LOW_RANK_LAYERS = ("net.3", "net.6")  # the two big ConvTranspose2d of the DCGAN
TRANSFORM_BATCH_SIZES = (1, 64)


def _transform_plans(
    teacher: torch.nn.Module, example: torch.Tensor
) -> list[tuple[str, str, object]]:
    """(name, kind, plan) for the digits teacher: pruning, low rank, both, and int4."""
    from gansearch.compress import (
        CompressionPlan,
        LayerPlan,
        channel_importance,
        describe,
        magnitude_masks,
    )

    structure = describe(teacher, example)
    importance = channel_importance(teacher, structure)

    def low_rank(fraction: float, masks: dict) -> dict[str, LayerPlan]:
        kept = {g.name: sum(masks.get(g.name, (True,) * g.num_channels)) for g in structure.groups}
        return {
            name: LayerPlan(
                rank=max(1, round(fraction * structure.full_rank_after_pruning(name, kept)))
            )
            for name in TRANSFORM_LOW_RANK_LAYERS
        }

    plans: list[tuple[str, str, object]] = []
    for ratio in TRANSFORM_KEEP_RATIOS:
        masks = magnitude_masks(structure, importance, ratio)
        plans.append((f"prune keep {ratio:.0%}", "prune", CompressionPlan(masks=masks)))
    for fraction in TRANSFORM_RANK_FRACTIONS:
        denominator = round(1 / fraction)
        plans.append(
            (
                f"low rank 1/{denominator}",
                "low-rank",
                CompressionPlan(layers=low_rank(fraction, {})),
            )
        )
    half = magnitude_masks(structure, importance, 0.5)
    plans.append(
        (
            "prune 50% + low rank 1/2",
            "prune+low-rank",
            CompressionPlan(masks=half, layers=low_rank(0.5, half)),
        )
    )
    int4 = {layer.name: LayerPlan(weight="int4") for layer in structure.layers}
    plans.append(("int4 weights (simulated)", "quant", CompressionPlan(layers=int4)))
    return plans


def bench_transforms(
    *,
    rounds: int = 7,
    runs: int = 30,
    warmup: int = 5,
    threads: int = 1,
    weights: str | Path | None = None,
) -> dict[str, object]:
    """Measure whether pruning and low rank turn fewer MACs into lower CPU latency.

    On the digits teacher, each plan's MACs ratio (teacher / candidate, per sample) is set
    against its measured latency ratio (teacher / candidate) at each batch size in
    :data:`TRANSFORM_BATCH_SIZES`. Every plan, the teacher included, is timed in two forms:

    * deployed (the ``plans`` rows): :func:`~gansearch.compress.deploy.deployment_copy` -
      weights dequantised, BatchNorm folded into the convolutions - against the teacher's
      own deployment form (BatchNorm folded too), so folding is no advantage of the
      candidates; ``latency_ratio_vs_unfolded_teacher`` adds the ratio against the
      unfolded teacher;
    * unfolded (the ``(unfolded)`` rows): weights dequantised only
      (:func:`~gansearch.compress.export.dequantized_copy`), against the unfolded teacher.

    Latency is ``measure_latency`` (median of ``runs`` calls after ``warmup``) at
    ``threads`` intra-op threads, repeated ``rounds`` times with all models of both forms
    interleaved in every round (the order rotates each round), and the median over rounds
    is reported. Weights are plain floats: a quantised plan's latency is that of float
    kernels - its numerics are simulated, and only its stored bytes shrink. MACs are
    counted on the simulated model (BatchNorm counts zero either way).
    ``efficiency = latency_ratio / macs_ratio`` (1.0 means the speed-up is the full MACs
    reduction).
    """
    from gansearch.checkpoints import load_weights
    from gansearch.compress import CompressionPlan, apply_plan, describe
    from gansearch.compress.deploy import DeploymentReport, deployment_copy
    from gansearch.compress.export import dequantized_copy
    from gansearch.evaluators.cost import count_macs, measure_latency
    from gansearch.zoo.models import DCGANGenerator
    from gansearch.zoo.weights_io import weights_dir

    file = Path(weights) if weights is not None else weights_dir("digits") / "generator.safetensors"
    teacher = load_weights(
        DCGANGenerator(), file, hint="run `gansearch zoo train digits-dcgan`"
    ).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = {
        batch: torch.randn((batch, teacher.latent_dim, 1, 1), generator=generator)
        for batch in TRANSFORM_BATCH_SIZES
    }
    one = inputs[1]
    structure = describe(teacher, one)
    reference = apply_plan(teacher, CompressionPlan(), one, structure=structure)

    plans = [{"name": "teacher", "kind": "teacher", "compressed": reference}]
    for name, kind, plan in _transform_plans(teacher, one):
        compressed = apply_plan(teacher, plan, one, structure=structure)
        plans.append({"name": name, "kind": kind, "compressed": compressed})
    entries = []  # deployed forms first (same order as plans), then unfolded forms
    for folded in (True, False):
        for plan_entry in plans:
            compressed = plan_entry["compressed"]
            report = DeploymentReport()
            module = (
                deployment_copy(compressed, report=report)
                if folded
                else dequantized_copy(compressed.module)
            )
            entries.append(
                {
                    "name": plan_entry["name"] + ("" if folded else " (unfolded)"),
                    "kind": plan_entry["kind"] + ("" if folded else " unfolded"),
                    "folded": folded,
                    "module": module,
                    "folded_batchnorms": [norm for norm, _ in report.folded],
                    "macs": count_macs(compressed.module, one),
                    "stored_bytes": compressed.stored_nbytes(),
                }
            )

    samples: dict[int, list[list[float]]] = {
        batch: [[] for _ in entries] for batch in TRANSFORM_BATCH_SIZES
    }
    order = list(range(len(entries)))
    for round_index in range(rounds):
        rotated = order[round_index % len(order) :] + order[: round_index % len(order)]
        for batch, x in inputs.items():
            for index in rotated:
                stats = measure_latency(
                    entries[index]["module"], x, runs=runs, warmup=warmup, threads=threads
                )
                samples[batch][index].append(stats.median_ms)

    latencies = [
        {batch: statistics.median(samples[batch][index]) for batch in inputs}
        for index in range(len(entries))
    ]
    folded_teacher, unfolded_teacher = 0, len(plans)
    rows = []
    for index, entry in enumerate(entries):
        base_index = folded_teacher if entry["folded"] else unfolded_teacher
        base = entries[base_index]
        latency = latencies[index]
        macs_ratio = base["macs"] / entry["macs"]
        latency_ratio = {batch: latencies[base_index][batch] / latency[batch] for batch in inputs}
        row = {
            "name": entry["name"],
            "kind": entry["kind"],
            "folded_batchnorms": entry["folded_batchnorms"],
            "macs": entry["macs"],
            "macs_ratio": macs_ratio,
            "stored_bytes": entry["stored_bytes"],
            "stored_bytes_ratio": base["stored_bytes"] / entry["stored_bytes"],
            "latency_ms": {str(b): v for b, v in latency.items()},
            "latency_ratio": {str(b): v for b, v in latency_ratio.items()},
            "efficiency": {str(b): v / macs_ratio for b, v in latency_ratio.items()},
        }
        if entry["folded"]:
            row["latency_ratio_vs_unfolded_teacher"] = {
                str(b): latencies[unfolded_teacher][b] / latency[b] for b in inputs
            }
        rows.append(row)
    return {
        "teacher": f"digits DCGANGenerator ({file})",
        "threads": threads,
        "rounds": rounds,
        "runs_per_round": runs,
        "warmup": warmup,
        "batch_sizes": list(TRANSFORM_BATCH_SIZES),
        "note": (
            "latency: median over rounds of measure_latency medians, all models interleaved; "
            "rows without '(unfolded)' are deployment forms (BatchNorm folded) against the "
            "folded teacher, '(unfolded)' rows are dequantised-only forms against the unfolded "
            "teacher; float weights everywhere (quantised plans are simulated numerics, baked "
            "to float32 for timing); efficiency = latency_ratio / macs_ratio"
        ),
        "plans": rows,
    }


# ---------------------------------------------------------------------------------------
# bench search: does the joint search beat each single technique at the same budget?
# ---------------------------------------------------------------------------------------

# The joint study first: the goals compare every other study against it.
SEARCH_STUDIES = (
    "studies/digits.yaml",
    "studies/digits-ga-prune.yaml",
    "studies/digits-ofa.yaml",
    "studies/digits-quant.yaml",
    "studies/digits-codebook.yaml",
)
SEARCH_QUALITY_FACTOR = 1.10  # the quality bar of goal (b): FID <= 1.10 x the teacher's
SEARCH_GOAL_BYTES_RATIO = 50.0  # goal (b): teacher stored bytes / candidate stored bytes
SEARCH_GOAL_MACS_RATIO = 10.0  # goal (b): teacher MACs / candidate MACs
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


def _search_summary(study: object, config: object, teacher: dict[str, float]) -> dict[str, object]:
    """Counts, hypervolume (shared reference) and best compression of one finished study."""
    from optuna.trial import TrialState

    from gansearch.pareto import hypervolume, is_feasible, pareto_front
    from gansearch.study import finished_trials

    objectives = list(config.objectives)
    finished = finished_trials(study)
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    failures = [t for t in finished if t.state == TrialState.FAIL]
    front = pareto_front(study, objectives)
    bar = SEARCH_QUALITY_FACTOR * teacher["fid"]
    good = [
        t
        for t in complete
        if all(t.user_attrs.get("metrics", {}).get(n) is not None for n in ("fid", *SEARCH_COST))
        and t.user_attrs["metrics"]["fid"] <= bar
    ]

    def ratios(trial: object) -> dict[str, float]:
        metrics = trial.user_attrs["metrics"]
        return {name: teacher[name] / metrics[name] for name in SEARCH_COST}

    def best(name: str) -> dict[str, object] | None:
        if not good:
            return None
        trial = max(good, key=lambda t: (ratios(t)[name], -t.number))
        return {"trial": trial.number, "fid": trial.user_attrs["metrics"]["fid"], **ratios(trial)}

    both = [
        t
        for t in good
        if ratios(t)["stored_bytes"] >= SEARCH_GOAL_BYTES_RATIO
        and ratios(t)["macs"] >= SEARCH_GOAL_MACS_RATIO
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
    studies: list[tuple[str, object]], teacher: dict[str, float], path: Path
) -> None:
    """FID against stored bytes (log x) of every study: feasible trials and their 2-D front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    from gansearch.pareto import is_feasible

    figure, axes = plt.subplots(figsize=(8, 5.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, study) in enumerate(studies):
        colour = colours[index % len(colours)]
        points = [
            (t.user_attrs["metrics"]["stored_bytes"], t.user_attrs["metrics"]["fid"])
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if is_feasible(t)
            and t.user_attrs.get("metrics", {}).get("fid") is not None
            and t.user_attrs["metrics"].get("stored_bytes") is not None
        ]
        if not points:
            continue
        axes.scatter(*zip(*points, strict=True), s=9, color=colour, alpha=0.25)
        front = _front_2d(points)
        axes.step(
            *zip(*front, strict=True), where="post", marker="o", ms=4, color=colour, label=name
        )
    axes.scatter(
        [teacher["stored_bytes"]], [teacher["fid"]], marker="*", s=160, c="k", label="teacher"
    )
    axes.axhline(
        SEARCH_QUALITY_FACTOR * teacher["fid"],
        ls="--",
        c="0.5",
        lw=1,
        label=f"FID = {SEARCH_QUALITY_FACTOR:g} x teacher",
    )
    axes.axvline(
        teacher["stored_bytes"] / SEARCH_GOAL_BYTES_RATIO,
        ls=":",
        c="0.5",
        lw=1,
        label=f"teacher bytes / {SEARCH_GOAL_BYTES_RATIO:g}",
    )
    axes.set_xscale("log")
    axes.set_xlabel("stored bytes (lower is better, log scale)")
    axes.set_ylabel("FID, digits feature network (lower is better)")
    axes.set_title("Feasible trials (faint) and their FID / stored-bytes front, per study")
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
    over all completed trials with ``FID <= SEARCH_QUALITY_FACTOR x teacher``.

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
    from gansearch.study import finished_trials, open_study, run_study

    out = Path(out)
    configs = [s if isinstance(s, StudyConfig) else load_study(s) for s in studies]
    if len({c.name for c in configs}) != len(configs):
        raise GansearchError(f"study names repeat: {[c.name for c in configs]}")
    objectives = _one_value(configs, "objectives", lambda c: tuple(c.objectives))
    missing = [m for m in ("fid", *SEARCH_COST) if m not in objectives]
    if missing:
        raise GansearchError(
            f"bench search needs the objectives fid, stored_bytes, macs: {missing}"
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
                "teacher_fid": own_teacher["fid"],
                **_search_summary(study, config, teacher),
            }
        )
        opened.append((config.name, study))
    plot = out / "bench-search.png"
    plot_search_fronts(opened, teacher, plot)
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
        "teacher": {name: teacher[name] for name in ("fid", *SEARCH_COST)},
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
                "quality_bar": f"fid <= {SEARCH_QUALITY_FACTOR:g} x teacher",
                "stored_bytes_goal": SEARCH_GOAL_BYTES_RATIO,
                "macs_goal": SEARCH_GOAL_MACS_RATIO,
                "best_stored_bytes_ratio": best_bytes["stored_bytes"] if best_bytes else None,
                "best_macs_ratio": best_macs["macs"] if best_macs else None,
                "trials_meeting_both": joint["meeting_both_goals"],
            },
        },
    }


# --------------------------------------------------------------------------- engines

ENGINE_SPEEDUP_GOAL = 1.7
ENGINE_OVERHEAD_GOAL = 0.10


def _load_average() -> list[float] | None:
    import os

    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


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
    from gansearch.candidates import CandidateEvaluator, WorkerEvaluate
    from gansearch.config import load_study
    from gansearch.errors import GansearchError
    from gansearch.search.engines import RayEngine
    from gansearch.study import run_study

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
    rows: list[dict[str, object]] = []
    try:
        for label, workers in (("local", 0), ("ray-1", 1), ("ray-2", 2)):
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
            seconds: list[float] = []
            plans: list[str] = []
            loop: dict[str, float] = {}

            def started(_study: object, _evaluator: object, loop: dict = loop) -> None:
                loop["start"] = time.perf_counter()

            def finished(
                result: object,
                trial: object,
                label: str = label,
                seconds: list = seconds,
                plans: list = plans,
            ) -> None:
                seconds.append(result.seconds)  # type: ignore[attr-defined]
                plans.append(result.plan_json)  # type: ignore[attr-defined]
                if on_result is not None:
                    on_result(label, len(seconds), budget)

            row: dict[str, object] = {"engine": label, "workers": max(workers, 1)}
            begin = time.perf_counter()
            if workers == 0:
                controller = CandidateEvaluator(config)
                row["startup_seconds"] = {"load_evaluator": time.perf_counter() - begin}
                engine: object = "local"
            else:
                engine = RayEngine(WorkerEvaluate(config, torch_threads=1), workers=workers)
                engine.wait_ready()
                row["startup_seconds"] = {
                    "ray_init": engine.connect_seconds,
                    "workers_ready": time.perf_counter() - begin - engine.connect_seconds,
                    "total": time.perf_counter() - begin,
                }
            try:
                run_study(
                    config,
                    evaluator=controller,
                    engine=engine,
                    on_start=started,
                    on_result=finished,
                )
            finally:
                if workers:
                    engine.close()  # type: ignore[attr-defined]
            loop_seconds = time.perf_counter() - loop["start"]
            row.update(
                candidates=len(seconds),
                loop_seconds=loop_seconds,
                candidates_per_minute=60 * len(seconds) / loop_seconds,
                loop_seconds_per_candidate=loop_seconds / len(seconds),
                mean_evaluation_seconds=statistics.fmean(seconds),
                plans=sorted(plans),
            )
            rows.append(row)
    finally:
        torch.set_num_threads(threads)
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
        "study": base.name,
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
            "speedup": {"goal": ENGINE_SPEEDUP_GOAL, "met": speedup >= ENGINE_SPEEDUP_GOAL},
            "overhead": {"goal": ENGINE_OVERHEAD_GOAL, "met": overhead < ENGINE_OVERHEAD_GOAL},
        },
    }
