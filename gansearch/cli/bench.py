"""``gansearch bench``: print the reports of :mod:`gansearch.bench` as tables or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gansearch.cli.common import (
    JsonOpt,
    StudyArg,
    console,
    named_progress,
    progress_bar,
    user_errors,
)

app = typer.Typer(help="Benchmarks that report ratios measured side by side.", no_args_is_help=True)

VERDICT = {True: "[green]met[/green]", False: "[red]not met[/red]"}


@app.command("evaluate")
@user_errors
def bench_evaluate(
    study: StudyArg,
    repeats: Annotated[int, typer.Option(help="Timed repetitions of each side.")] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Time scoring the teacher against the bare forward passes that scoring needs."""
    from gansearch.bench.evaluate import bench_evaluate as run
    from gansearch.bench.goals import load_goals

    report = run(study, repeats=repeats)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"bench evaluate: {report['study']} (median of {repeats})")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_row("score the teacher (quality + cost)", f"{report['score_s']:.3f}")
    table.add_row("bare forward passes scoring needs", f"{report['forward_s']:.3f}")
    table.add_row(
        f"overhead ratio (goal <= {load_goals().scoring_overhead:g})",
        f"{report['overhead_ratio']:.2f}x",
    )
    table.add_row(
        "one-time preparation (cached reference, teacher outputs)", f"{report['prepare_s']:.3f}"
    )
    console().print(table)


@app.command("transforms")
@user_errors
def bench_transforms(
    rounds: Annotated[int, typer.Option(help="Interleaved rounds over all models.")] = 7,
    runs: Annotated[int, typer.Option(help="Timed calls per model per round.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Do fewer MACs give a faster generator? Pruning and low rank on the digits teacher."""
    from gansearch.errors import GansearchError

    if rounds < 1 or runs < 1:
        raise GansearchError(f"`--rounds` and `--runs` must be at least 1, got {rounds}, {runs}")
    from gansearch.bench.transforms import bench_transforms as run

    report = run(rounds=rounds, runs=runs)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    from rich.table import Table

    table = Table(
        title=f"bench transforms: {report['teacher']}, {report['threads']} thread, "
        f"median of {rounds} interleaved rounds x {runs} runs"
    )
    for column in ("plan", "MACs ratio", "bytes ratio"):
        table.add_column(column, justify="left" if column == "plan" else "right")
    for batch in report["batch_sizes"]:
        table.add_column(f"ms @{batch}", justify="right")
        table.add_column(f"speedup @{batch}", justify="right")
        table.add_column(f"speedup/MACs @{batch}", justify="right")
    for row in report["plans"]:
        cells = [row["name"], f"{row['macs_ratio']:.2f}x", f"{row['stored_bytes_ratio']:.2f}x"]
        for batch in map(str, report["batch_sizes"]):
            cells += [
                f"{row['latency_ms'][batch]:.3f}",
                f"{row['latency_ratio'][batch]:.2f}x",
                f"{row['efficiency'][batch]:.2f}",
            ]
        table.add_row(*cells)
    out = console()
    out.print(table)
    out.print(report["note"])


@app.command("supernet")
@user_errors
def bench_supernet(
    study: StudyArg,
    ratio: Annotated[
        list[float] | None,
        typer.Option("--ratio", help="Width ratio to compare at (repeatable; default 0.5, 0.25)."),
    ] = None,
    weights: Annotated[
        Path | None, typer.Option(help="Folder of the supernet (default: where `train` writes).")
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(
            help="Another supernet's folder: compare both at the same widths and bits instead."
        ),
    ] = None,
    bits: Annotated[
        list[int] | None,
        typer.Option("--bits", help="With --against: weight bits (repeatable; 32 = float)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """FID of supernet sub-generators vs the same-width magnitude-pruned teacher.

    Neither side is fine-tuned; both get the same BatchNorm recalibration. With
    ``--against DIR``: the study's supernet vs another at the same widths and bits.
    """
    from gansearch.bench.supernet import DEFAULT_RATIOS
    from gansearch.bench.supernet import bench_supernet as run
    from gansearch.errors import GansearchError

    ratios = tuple(ratio) if ratio else DEFAULT_RATIOS
    if any(not 0.0 < r <= 1.0 for r in ratios):
        raise GansearchError(f"every `--ratio` must be in (0, 1], got {list(ratios)}")
    if against is not None:
        _compare_supernets(study, against, tuple(ratio) if ratio else None, bits, as_json)
        return
    report = run(study, ratios, weights=weights)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    from rich.table import Table

    config = report.config
    seeds = ", ".join(map(str, config.evaluation.seeds))
    table = Table(
        title=f"bench supernet: {config.name} (FID, {config.evaluation.num_samples} samples "
        f"x seeds {seeds}; no fine-tuning; BN recalibrated on {report.calibration_batches} "
        "batches for both)"
    )
    for column in ("width", "params", "supernet", "magnitude-pruned", "pruned, no BN recal"):
        table.add_column(column, justify="right")

    def cell(value: tuple[float, float]) -> str:
        return f"{value[0]:.3g} ± {value[1]:.2g}"

    teacher = cell(report.teacher_fid)
    table.add_row("1.0 (teacher)", f"{report.teacher_params:,}", teacher, teacher, teacher)
    for row in report.widths:
        table.add_row(
            f"{row.ratio:g}",
            f"{row.params:,}",
            cell(row.supernet_fid),
            cell(row.pruned_fid),
            cell(row.pruned_raw_fid),
        )
    console().print(table)


def _compare_supernets(study: Path, against: Path, ratios: Any, bits: Any, as_json: bool) -> None:
    from rich.table import Table

    from gansearch.bench.supernet_bits import DEFAULT_BITS, DEFAULT_RATIOS, compare_supernets
    from gansearch.errors import GansearchError

    bad = [b for b in bits or () if b != 32 and not 2 <= b <= 8]
    if bad:
        raise GansearchError(f"`--bits` must be 2..8 or 32 (float), got {bad}")
    report = compare_supernets(study, against, ratios or DEFAULT_RATIOS, bits or DEFAULT_BITS)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    metric = report["metric"]
    table = Table(title=f"{report['study']}: {metric} of sub-generators, no fine-tune")
    for column in ("width", "bits", "bytes x", "MACs x", "study's supernet", "--against"):
        table.add_column(column, justify="right")
    for row in report["rows"]:
        table.add_row(
            f"{row['ratio']:g}",
            str(row["bits"]),
            f"{row['stored_bytes_ratio']:.1f}",
            f"{row['macs_ratio']:.1f}",
            f"{row['current'][0]:.4g} ± {row['current'][1]:.2g}",
            f"{row['against'][0]:.4g} ± {row['against'][1]:.2g}",
        )
    console().print(table)
    console().print(f"teacher {metric}: {report['teacher'][0]:.4g} ± {report['teacher'][1]:.2g}")


@app.command("search")
@user_errors
def bench_search(
    studies: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Study files, the joint one first (default: the --benchmark's joint study "
            "and its single-technique studies)."
        ),
    ] = None,
    benchmark: Annotated[
        str,
        typer.Option(help="Bundled benchmark whose studies run by default: digits or photos."),
    ] = "digits",
    trials: Annotated[
        int | None, typer.Option(help="Finished trials per study (default: the studies' own).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Strategy seed of every study (default: the studies').")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the storages and the plot (default: a fresh temp folder)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Joint search vs each single technique, at one budget and seed: hypervolume, compression."""
    import tempfile

    from gansearch.bench.search import BENCHMARK_STUDIES
    from gansearch.bench.search import bench_search as run
    from gansearch.errors import GansearchError

    if benchmark not in BENCHMARK_STUDIES:
        raise GansearchError(
            f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARK_STUDIES)}"
        )

    folder = out if out is not None else Path(tempfile.mkdtemp(prefix="gansearch-bench-search-"))
    with progress_bar() as bar:
        report = run(
            folder,
            list(studies) if studies else BENCHMARK_STUDIES[benchmark],
            trials=trials,
            seed=seed,
            on_result=named_progress(bar),
        )
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print_search(report)


def _print_search(report: dict[str, Any]) -> None:
    from rich.table import Table

    goals = report["goals"]
    bar_text = goals["compression"]["quality_bar"]
    reference = report["reference_point"]["teacher_relative_losses"]
    table = Table(
        title=f"bench search: {report['trials']} trials per study, seed {report['seed']}; "
        f"HV reference point (teacher-relative losses of {', '.join(report['objectives'])}) "
        f"= {reference}"
    )
    columns = ("study", "strategy", "trials", "failed", "feasible", "front", "hypervolume")
    for column in (*columns, f"bytes ratio ({bar_text})", f"MACs ratio ({bar_text})", "time s"):
        table.add_column(column, justify="left" if column in {"study", "strategy"} else "right")

    def ratio(best: dict[str, Any] | None, name: str) -> str:
        return "n/a" if best is None else f"{best[name]:.1f}x (#{best['trial']})"

    for row in report["studies"]:
        table.add_row(
            row["study"],
            row["strategy"],
            str(row["trials"]),
            str(row["failures"]),
            str(row["feasible"]),
            str(row["front_size"]),
            f"{row['hypervolume']:.4f}",
            ratio(row["best_stored_bytes"], "stored_bytes"),
            ratio(row["best_macs"], "macs"),
            f"{row['seconds']:.0f}",
        )
    out = console()
    out.print(table)
    hv, comp = goals["joint_hypervolume_beats_every_single"], goals["compression"]
    out.print(
        f"(a) joint hypervolume > every single technique's: {VERDICT[hv['met']]} "
        f"(joint {hv['joint']:.4f}, best single {hv['best_single']:.4f})"
    )

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}x"

    out.print(
        f"(b) at {bar_text}: >= {comp['stored_bytes_goal']:g}x smaller stored bytes and >= "
        f"{comp['macs_goal']:g}x fewer MACs in one candidate: {VERDICT[comp['met']]} "
        f"(joint best: {shown(comp['best_stored_bytes_ratio'])} bytes, "
        f"{shown(comp['best_macs_ratio'])} MACs)"
    )
    out.print(f"plot: {report['plot']}; storages under {report['out']}")


@app.command("fidelity")
@user_errors
def bench_fidelity(
    benchmark: Annotated[str, typer.Option(help="Bundled benchmark: digits or photos.")] = "digits",
    minutes: Annotated[float, typer.Option(help="Wall-clock search budget of each side.")] = 5.0,
    seed: Annotated[int | None, typer.Option(help="Strategy seed (default: the study's).")] = None,
    finetune_steps: Annotated[
        int | None,
        typer.Option(help="Fine-tune steps per full evaluation (the cheap one uses none)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the two storages (default: a fresh temp folder)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The joint study with and without multi-fidelity at equal wall-clock time."""
    import tempfile

    from gansearch.bench.fidelity import bench_fidelity as run

    folder = out if out is not None else Path(tempfile.mkdtemp(prefix="gansearch-bench-fid-"))
    with progress_bar() as bar:
        report = run(
            folder,
            benchmark=benchmark,
            minutes=minutes,
            seed=seed,
            finetune_steps=finetune_steps,
            on_result=named_progress(bar),
        )
    if as_json:
        print(json.dumps(report, indent=2))
        return
    from rich.table import Table

    table = Table(
        title=f"bench fidelity: {report['study']}, {minutes:g} min each, seed {report['seed']}, "
        f"{report['finetune_steps']} fine-tune steps"
    )
    for column in (
        "",
        "candidates",
        "per minute",
        "full-protocol",
        "low only",
        "front",
        "hypervolume",
    ):
        table.add_column(column, justify="right" if column else "left")
    for side in ("single", "multi"):
        row = report[side]
        table.add_row(
            f"{side}-fidelity",
            str(row["candidates"]),
            f"{row['candidates_per_minute']:.1f}",
            str(row["full_evaluations"]),
            str(row["low_only"]),
            str(row["front_size"]),
            f"{row['hypervolume']:.4g}",
        )
    console().print(table)
    console().print(f"storages under {folder}")


@app.command("engines")
@user_errors
def bench_engines(
    study: Annotated[
        Path, typer.Argument(help="Study YAML file (default: studies/digits.yaml).")
    ] = Path("studies/digits.yaml"),
    trials: Annotated[
        int | None,
        typer.Option(help="Candidates per engine, at most the population (default: it)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the three storages (default: a fresh temp folder)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """One study three ways: local, Ray with 1 worker, Ray with 2: throughput and overhead."""
    import tempfile

    from gansearch.bench.engines import bench_engines as run

    folder = out if out is not None else Path(tempfile.mkdtemp(prefix="gansearch-bench-engines-"))
    with progress_bar() as bar:
        report = run(study, folder, trials=trials, on_result=named_progress(bar))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print_engines(report, folder)


def _print_engines(report: dict[str, Any], folder: Path) -> None:
    from rich.table import Table

    table = Table(
        title=f"bench engines: {report['study']}, {report['trials']} candidates each "
        f"(deap, same candidates everywhere: {report['same_candidates_everywhere']}), "
        "1 torch thread per worker"
    )
    columns = ("engine", "start-up s", "loop s", "candidates/min", "s/candidate", "eval s")
    for column in (*columns, "outside eval s"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for row in report["engines"]:
        startup = row["startup_seconds"]
        text = (
            f"{startup['load_evaluator']:.1f} (load)"
            if "load_evaluator" in startup
            else f"{startup['ray_init']:.1f} init + {startup['workers_ready']:.1f} workers"
        )
        outside = row["outside_evaluation_seconds_per_candidate"]
        table.add_row(
            row["engine"],
            text,
            f"{row['loop_seconds']:.1f}",
            f"{row['candidates_per_minute']:.1f}",
            f"{row['loop_seconds_per_candidate']:.2f}",
            f"{row['mean_evaluation_seconds']:.2f}",
            "" if outside is None else f"{outside:.3f}",
        )
    out = console()
    out.print(table)
    goals = report["goals"]
    overhead = report["ray_overhead_per_candidate"]
    out.print(
        f"speedup of 2 workers over 1: {report['speedup_2_over_1']:.2f}x "
        f"(goal >= {goals['speedup']['goal']:g}x: {VERDICT[goals['speedup']['met']]})"
    )
    out.print(
        f"Ray overhead per candidate vs local: {overhead['seconds'] * 1000:.0f} ms = "
        f"{overhead['fraction_of_evaluation']:.1%} of an evaluation "
        f"(goal < {goals['overhead']['goal']:.0%}: {VERDICT[goals['overhead']['met']]})"
    )
    load = report["load_average_1_5_15_min"]
    out.print(f"load average before {load['before']}, after {load['after']}; out {folder}")
