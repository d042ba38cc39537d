"""The ``gansearch`` command line.

Heavy modules (torch, the evaluators) are imported inside commands so that
``gansearch --help`` answers at once. A :class:`~gansearch.errors.GansearchError` is
printed as one line on stderr with a non-zero exit; any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(
    name="gansearch",
    help="Search for smaller, faster versions of a trained GAN generator.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
zoo_app = typer.Typer(
    help="Bundled benchmarks: train and inspect their networks.", no_args_is_help=True
)
bench_app = typer.Typer(
    help="Benchmarks that report ratios measured side by side.", no_args_is_help=True
)
app.add_typer(zoo_app, name="zoo")
supernet_app = typer.Typer(
    help="Once-for-all supernets: one set of weights, a sub-generator at every width.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")
app.add_typer(supernet_app, name="supernet")

F = TypeVar("F", bound=Callable[..., Any])

StudyArg = Annotated[Path, typer.Argument(help="Study YAML file, e.g. studies/digits.yaml.")]


def user_errors(command: F) -> F:
    """Turn user errors into one line on stderr and a non-zero exit."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from gansearch.errors import GansearchError

        try:
            return command(*args, **kwargs)
        except GansearchError as error:
            print(f"gansearch: error: {error}", file=sys.stderr)
            raise typer.Exit(error.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


def _format_value(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if name in {"macs", "params", "stored_bytes", "bitops"}:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _print_score_table(title: str, payload: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in ("metric", "value", "± noise floor", "better", "unit"):
        table.add_column(
            column, justify="right" if column in {"value", "± noise floor"} else "left"
        )
    for name, entry in payload.items():
        spread = entry["spread"]
        table.add_row(
            name,
            _format_value(name, entry["value"]),
            "" if spread is None else f"{spread:.2g}",
            "lower" if entry["direction"] == "minimize" else "higher",
            entry["unit"],
        )
    _console().print(table)


@app.command()
@user_errors
def evaluate(
    study: StudyArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    artifact: Annotated[
        Path | None, typer.Option(help="Score an exported artifact folder instead of the teacher.")
    ] = None,
) -> None:
    """Score the study's teacher (or an artifact): quality with noise floor, and cost."""
    from gansearch.benchmarks import load_benchmark
    from gansearch.config import load_study
    from gansearch.evaluate import evaluate_artifact, evaluate_teacher

    config = load_study(study)
    benchmark = load_benchmark(config)
    if artifact is None:
        score = evaluate_teacher(benchmark, config)
    else:
        score = evaluate_artifact(benchmark, config, artifact)
    what = "teacher" if artifact is None else str(artifact)
    metrics = score.to_dict()
    if as_json:
        payload = {
            "study": config.name,
            "benchmark": benchmark.name,
            "model": what,
            "protocol": json.loads(config.evaluation.model_dump_json()),
            "metrics": metrics,
        }
        print(json.dumps(payload, indent=2))
    else:
        seeds = ", ".join(map(str, config.evaluation.seeds))
        _print_score_table(
            f"{config.name}: {what} ({config.evaluation.num_samples} samples x seeds {seeds})",
            metrics,
        )


def _progress_bar(description: str) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeRemainingColumn(),
        console=_console(stderr=True),
    )


ZOO_RECIPES = ("digits-dcgan", "digits-features")


@zoo_app.command("train")
@user_errors
def zoo_train(
    name: Annotated[str, typer.Argument(help=f"What to train: {', '.join(ZOO_RECIPES)}.")],
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    steps: Annotated[
        int | None, typer.Option(help="Optimiser steps (default: the recipe's).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: the committed weights).")
    ] = None,
) -> None:
    """Train a bundled network and write it as safetensors with a reproducing manifest."""
    from dataclasses import replace

    from gansearch.errors import GansearchError

    if name not in ZOO_RECIPES:
        raise GansearchError(f"unknown zoo recipe {name!r}; known: {', '.join(ZOO_RECIPES)}")
    if steps is not None and steps < 1:
        raise GansearchError(f"`--steps` must be at least 1, got {steps}")
    from gansearch.zoo import train
    from gansearch.zoo.weights_io import save_trained, weights_dir

    directory = weights_dir("digits", out)
    command = f"gansearch zoo train {name} --seed {seed}" + (f" --steps {steps}" if steps else "")
    with _progress_bar(name) as bar:
        task = bar.add_task(name, total=None, losses="")

        def progress(step: int, total: int, losses: dict[str, float]) -> None:
            shown = " ".join(f"{k}={v:.3f}" for k, v in losses.items())
            bar.update(task, completed=step, total=total, losses=shown)

        if name == "digits-features":
            recipe = train.FeatureNetRecipe(seed=seed)
            recipe = replace(recipe, steps=steps) if steps else recipe
            model, accuracy = train.train_feature_net(recipe, progress)
            save_trained(
                directory, name, command, recipe, {"features": model}, {"test_accuracy": accuracy}
            )
            summary = f"test accuracy {accuracy:.2%}"
        else:
            recipe = train.DCGANRecipe(seed=seed)
            recipe = replace(recipe, steps=steps) if steps else recipe
            generator, discriminator = train.train_dcgan(recipe, progress)
            save_trained(
                directory,
                name,
                command,
                recipe,
                {"generator": generator, "discriminator": discriminator},
            )
            summary = f"{sum(p.numel() for p in generator.parameters()):,} generator parameters"
    _console().print(f"{name}: wrote {directory} ({summary})")


@zoo_app.command("info")
@user_errors
def zoo_info(name: Annotated[str, typer.Argument(help="Benchmark name, e.g. digits.")]) -> None:
    """Describe a bundled benchmark: data, networks, feature-network accuracy."""
    from gansearch.errors import GansearchError
    from gansearch.zoo.weights_io import read_manifest, weights_dir

    if name != "digits":
        raise GansearchError(f"unknown benchmark {name!r}; known: digits")
    from gansearch.checkpoints import load_weights
    from gansearch.zoo.data import load_digits_split
    from gansearch.zoo.models import DCGANGenerator, DigitsFeatureNet
    from gansearch.zoo.train import accuracy

    directory = weights_dir(name)
    hint = "run `gansearch zoo train digits-features`"
    features = load_weights(DigitsFeatureNet(), directory / "features.safetensors", hint=hint)
    train, test = load_digits_split("train"), load_digits_split("test")
    teacher = load_weights(
        DCGANGenerator(),
        directory / "generator.safetensors",
        hint="run `gansearch zoo train digits-dcgan`",
    )
    manifest = read_manifest(directory)
    console = _console()
    shape = tuple(train.images.shape[1:])
    console.print(f"[bold]digits[/bold]: scikit-learn handwritten digits, {shape} in [-1, 1]")
    console.print(f"  split: {len(train)} train / {len(test)} test (seeded, stratified)")
    console.print(
        f"  teacher: DCGAN generator, {sum(p.numel() for p in teacher.parameters()):,} parameters"
    )
    console.print(f"  feature network test accuracy: {accuracy(features, test):.2%}")
    for entry, record in sorted(manifest.items()):
        console.print(f"  {entry}: reproduce with `{record['command']}`")


@bench_app.command("evaluate")
@user_errors
def bench_evaluate(
    study: StudyArg,
    repeats: Annotated[int, typer.Option(help="Timed repetitions of each side.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Time scoring the teacher against the bare forward passes that scoring needs."""
    from gansearch.bench import bench_evaluate as run

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
    table.add_row("overhead ratio (goal <= 1.3)", f"{report['overhead_ratio']:.2f}x")
    table.add_row(
        "one-time preparation (cached reference, teacher outputs)", f"{report['prepare_s']:.3f}"
    )
    _console().print(table)


@bench_app.command("transforms")
@user_errors
def bench_transforms(
    rounds: Annotated[int, typer.Option(help="Interleaved rounds over all models.")] = 7,
    runs: Annotated[int, typer.Option(help="Timed calls per model per round.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Do fewer MACs give a faster generator? Pruning and low rank on the digits teacher."""
    from gansearch.errors import GansearchError

    if rounds < 1 or runs < 1:
        raise GansearchError(f"`--rounds` and `--runs` must be at least 1, got {rounds}, {runs}")
    from gansearch.bench import bench_transforms as run

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
    console = _console()
    console.print(table)
    console.print(report["note"])


def _supernet_location(config: Any, benchmark: Any, out: Path | None) -> tuple[Path, str]:
    """Where a study's supernet lives, and its manifest entry name."""
    from gansearch.zoo.weights_io import weights_dir

    if out is None:
        out = (
            weights_dir(config.benchmark, config.weights)
            if config.benchmark is not None
            else config.study_dir() / "supernet"
        )
    return out, f"{benchmark.name}-supernet"


@supernet_app.command("train")
@user_errors
def supernet_train(
    study: StudyArg,
    steps: Annotated[
        int | None, typer.Option(help="Optimiser steps (default: the study's `supernet.steps`).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default: the benchmark's weights folder)."),
    ] = None,
) -> None:
    """Distil the teacher into a once-for-all supernet (sandwich rule) and save it."""
    import time

    from gansearch.benchmarks import load_benchmark
    from gansearch.config import SupernetConfig, load_study
    from gansearch.errors import GansearchError

    if steps is not None and steps < 1:
        raise GansearchError(f"`--steps` must be at least 1, got {steps}")
    config = load_study(study)
    recipe = config.supernet or SupernetConfig()
    if steps is not None:
        recipe = recipe.model_copy(update={"steps": steps})
    benchmark = load_benchmark(config)
    from gansearch.compress.groups import describe
    from gansearch.compress.supernet import save_supernet, train_supernet

    structure = describe(benchmark.teacher, benchmark.example_input(2))
    directory, entry = _supernet_location(config, benchmark, out)
    command = f"gansearch supernet train {study}" + (f" --steps {steps}" if steps else "")
    start = time.perf_counter()
    with _progress_bar(entry) as bar:
        task = bar.add_task(entry, total=recipe.steps, losses="")

        def progress(step: int, total: int, losses: dict[str, float]) -> None:
            shown = " ".join(f"{k}={v:.3f}" for k, v in losses.items())
            bar.update(task, completed=step, total=total, losses=shown)

        supernet = train_supernet(
            benchmark.teacher,
            benchmark.discriminator,
            benchmark.real,
            structure,
            recipe,
            progress,
            latent_shape=benchmark.latent_shape,
        )
    seconds = time.perf_counter() - start
    from gansearch.checkpoints import sha256_file

    teacher_file = (
        config.model.generator_checkpoint
        if config.model is not None
        else _supernet_location(config, benchmark, None)[0] / "generator.safetensors"
    )
    path = save_supernet(
        supernet,
        directory,
        entry=entry,
        command=command,
        config=recipe,
        metrics={"train_seconds": round(seconds, 1)},
        teacher_sha256=sha256_file(teacher_file)
        if teacher_file is not None and teacher_file.is_file()
        else None,
    )
    _console().print(f"{entry}: wrote {path} ({recipe.steps} steps in {seconds:.0f} s)")


@bench_app.command("supernet")
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
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """FID of supernet sub-generators vs the same-width magnitude-pruned teacher.

    Neither side is fine-tuned; both get the same BatchNorm recalibration.
    """
    from gansearch.benchmarks import load_benchmark
    from gansearch.config import SupernetConfig, load_study
    from gansearch.errors import GansearchError

    ratios = tuple(ratio) if ratio else (0.5, 0.25)
    if any(not 0.0 < r <= 1.0 for r in ratios):
        raise GansearchError(f"every `--ratio` must be in (0, 1], got {list(ratios)}")
    config = load_study(study)
    recipe = config.supernet or SupernetConfig()
    benchmark = load_benchmark(config)
    if benchmark.features is None:
        raise GansearchError("FID needs a feature network; add `model.features` to the study")
    from gansearch.compress.groups import describe
    from gansearch.compress.supernet import compare_with_magnitude_pruning, load_supernet
    from gansearch.evaluate import prepare_scorer

    structure = describe(benchmark.teacher, benchmark.example_input(2))
    directory, entry = _supernet_location(config, benchmark, weights)
    supernet = load_supernet(
        benchmark.teacher,
        structure,
        directory,
        entry=entry,
        hint=f"run `gansearch supernet train {study}`",
    )
    scorer = prepare_scorer(benchmark, config, teacher_fidelity=False)

    def fid(model: Any) -> tuple[float, float]:
        score = scorer.score(model)
        return score.values["fid"], score.spread["fid"]

    teacher_fid = fid(benchmark.teacher)
    rows = compare_with_magnitude_pruning(
        supernet,
        benchmark.teacher,
        ratios,
        fid,
        calibration_batches=recipe.calibration_batches,
        batch_size=recipe.batch_size,
        seed=recipe.seed,
    )
    if as_json:
        payload = {
            "study": config.name,
            "supernet": str(directory / "supernet.safetensors"),
            "bn_recalibration": {
                "batches": recipe.calibration_batches,
                "batch_size": recipe.batch_size,
                "applied_to": "supernet sub-generator and pruned teacher alike",
            },
            "fine_tuning": "none",
            "teacher_fid": {"value": teacher_fid[0], "spread": teacher_fid[1]},
            "widths": [row.to_dict() for row in rows],
        }
        print(json.dumps(payload, indent=2))
        return
    from rich.table import Table

    seeds = ", ".join(map(str, config.evaluation.seeds))
    table = Table(
        title=f"bench supernet: {config.name} (FID, {config.evaluation.num_samples} samples "
        f"x seeds {seeds}; no fine-tuning; BN recalibrated on {recipe.calibration_batches} "
        "batches for both)"
    )
    for column in ("width", "params", "supernet", "magnitude-pruned", "pruned, no BN recal"):
        table.add_column(column, justify="right")

    def cell(value: tuple[float, float]) -> str:
        return f"{value[0]:.3g} ± {value[1]:.2g}"

    table.add_row(
        "1.0 (teacher)",
        f"{sum(p.numel() for p in benchmark.teacher.parameters()):,}",
        cell(teacher_fid),
        cell(teacher_fid),
        cell(teacher_fid),
    )
    for row in rows:
        table.add_row(
            f"{row.ratio:g}",
            f"{row.params:,}",
            cell(row.supernet_fid),
            cell(row.pruned_fid),
            cell(row.pruned_raw_fid),
        )
    _console().print(table)


@bench_app.command("search")
@user_errors
def bench_search(
    studies: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Study files, the joint one first (default: studies/digits.yaml and the four "
            "single-technique digits studies)."
        ),
    ] = None,
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
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Joint search vs each single technique, at one budget and seed: hypervolume, compression."""
    import tempfile

    from gansearch.bench import SEARCH_STUDIES
    from gansearch.bench import bench_search as run

    folder = out if out is not None else Path(tempfile.mkdtemp(prefix="gansearch-bench-search-"))
    with _progress_bar("bench search") as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total, losses="")
            bar.update(tasks[name], completed=done)

        report = run(
            folder,
            list(studies) if studies else SEARCH_STUDIES,
            trials=trials,
            seed=seed,
            on_result=progress,
        )
    if as_json:
        print(json.dumps(report, indent=2))
        return
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
    console = _console()
    console.print(table)
    hv, comp = goals["joint_hypervolume_beats_every_single"], goals["compression"]
    verdict = {True: "[green]met[/green]", False: "[red]not met[/red]"}
    console.print(
        f"(a) joint hypervolume > every single technique's: {verdict[hv['met']]} "
        f"(joint {hv['joint']:.4f}, best single {hv['best_single']:.4f})"
    )

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}x"

    console.print(
        f"(b) at {bar_text}: >= {comp['stored_bytes_goal']:g}x smaller stored bytes and >= "
        f"{comp['macs_goal']:g}x fewer MACs in one candidate: {verdict[comp['met']]} "
        f"(joint best: {shown(comp['best_stored_bytes_ratio'])} bytes, "
        f"{shown(comp['best_macs_ratio'])} MACs)"
    )
    console.print(f"plot: {report['plot']}; storages under {report['out']}")


@bench_app.command("engines")
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
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """One study three ways: local, Ray with 1 worker, Ray with 2: throughput and overhead."""
    import tempfile

    from gansearch.bench import bench_engines as run

    folder = out if out is not None else Path(tempfile.mkdtemp(prefix="gansearch-bench-engines-"))
    with _progress_bar("bench engines") as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total, losses="")
            bar.update(tasks[name], completed=done)

        report = run(study, folder, trials=trials, on_result=progress)
    if as_json:
        print(json.dumps(report, indent=2))
        return
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
        table.add_row(
            row["engine"],
            text,
            f"{row['loop_seconds']:.1f}",
            f"{row['candidates_per_minute']:.1f}",
            f"{row['loop_seconds_per_candidate']:.2f}",
            f"{row['mean_evaluation_seconds']:.2f}",
            ""
            if row["outside_evaluation_seconds_per_candidate"] is None
            else f"{row['outside_evaluation_seconds_per_candidate']:.3f}",
        )
    console = _console()
    console.print(table)
    goals = report["goals"]
    verdict = {True: "[green]met[/green]", False: "[red]not met[/red]"}
    overhead = report["ray_overhead_per_candidate"]
    console.print(
        f"speedup of 2 workers over 1: {report['speedup_2_over_1']:.2f}x "
        f"(goal >= {goals['speedup']['goal']:g}x: {verdict[goals['speedup']['met']]})"
    )
    console.print(
        f"Ray overhead per candidate vs local: {overhead['seconds'] * 1000:.0f} ms = "
        f"{overhead['fraction_of_evaluation']:.1%} of an evaluation "
        f"(goal < {goals['overhead']['goal']:.0%}: {verdict[goals['overhead']['met']]})"
    )
    load = report["load_average_1_5_15_min"]
    console.print(f"load average before {load['before']}, after {load['after']}; out {folder}")


# --------------------------------------------------------------------------- the search

STRATEGIES = ("optuna", "deap", "hybrid")
ENGINES = ("local", "ray")
StorageOpt = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage URL (default: sqlite in studies/<name>/; any RDB URL or journal)."
    ),
]


def _front_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    quality = report["front"][0]["quality_metric"] if report["front"] else "quality"
    size = f"{len(report['front'])} of {report['trials']} trials"
    table = Table(title=f"{report['study']}: Pareto front ({size})")
    for column in (
        "trial",
        quality,
        "stored bytes",
        "compression",
        "MACs",
        "MACs reduction",
        "latency ms",
    ):
        table.add_column(column, justify="right")

    def ratio(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}x"

    for row in report["front"]:
        spread = row["quality_spread"]
        quality_text = "n/a" if row["quality"] is None else f"{row['quality']:.4g}"
        if spread is not None and row["quality"] is not None:
            quality_text += f" ± {spread:.2g}"
        table.add_row(
            str(row["trial"]),
            quality_text,
            _format_value("stored_bytes", row["stored_bytes"]),
            ratio(row["compression"]),
            _format_value("macs", row["macs"]),
            ratio(row["macs_reduction"]),
            _format_value("latency_ms", row["latency_ms"]),
        )
    return table


def _print_front(report: dict[str, Any]) -> None:
    console = _console()
    console.print(_front_table(report))
    if report["hypervolume"] is not None:
        point = ", ".join(f"{k}={v:g}" for k, v in report["reference_point"]["values"].items())
        console.print(
            f"hypervolume {report['hypervolume']:.4g} against reference ({point}), "
            "in teacher-relative losses"
        )
    if report["constraints"]:
        console.print(f"feasible = {' and '.join(report['constraints'])}")


@app.command()
@user_errors
def run(
    study: StudyArg,
    trials: Annotated[int | None, typer.Option(help="Total finished trials to reach.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop proposing after S seconds.")] = None,
    strategy: Annotated[str | None, typer.Option(help="optuna, deap or hybrid.")] = None,
    storage: StorageOpt = None,
    seed: Annotated[int | None, typer.Option(help="Strategy seed (default: the study's).")] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Where candidates run: local (in this process) or ray (default: the study's)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Ray workers, i.e. candidates in flight (default: the study's)."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Join a running Ray cluster: auto, HOST:PORT or ray://HOST:PORT "
            "(default: start a private local Ray and stop it at the end)."
        ),
    ] = None,
) -> None:
    """Run or continue a search study; ends by printing the Pareto front."""
    from gansearch.config import load_study
    from gansearch.errors import GansearchError

    config = load_study(study)
    if strategy is not None and strategy not in STRATEGIES:
        raise GansearchError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if trials is not None and trials < 1:
        raise GansearchError(f"`--trials` must be at least 1, got {trials}")
    if engine is not None and engine not in ENGINES:
        raise GansearchError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise GansearchError(f"`--workers` must be at least 1, got {workers}")
    if (workers is not None or address is not None) and (engine or config.search.engine) != "ray":
        raise GansearchError("`--workers` and `--address` need `--engine ray`")
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from gansearch.pareto import pareto_front, pareto_report
    from gansearch.study import finished_trials, open_study, run_study

    budget = trials if trials is not None else config.search.trials
    objectives = config.objectives
    open_study(config, storage)  # a bad storage URL fails here, before anything is loaded
    ray_address = address if address is not None else config.search.address
    if (engine or config.search.engine) == "ray" and ray_address is not None:
        from gansearch.search.engines import preflight

        preflight(ray_address)  # so does an unreachable Ray cluster, within seconds
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("fail {task.fields[failed]}  front {task.fields[front]}  {task.fields[best]}"),
        TimeRemainingColumn(),
        console=_console(stderr=True),
    ) as bar:
        task = bar.add_task(f"{config.name}: loading", total=budget, failed=0, front=0, best="")

        def on_start(optuna_study: Any, evaluator: Any) -> None:
            done = finished_trials(optuna_study)
            failed = sum(t.state.name == "FAIL" for t in done)
            bar.update(task, description=config.name, completed=len(done), failed=failed)

        def on_result(result: Any, trial: Any) -> None:
            optuna_study = trial.study
            front = pareto_front(optuna_study, objectives)
            best = ""
            if front:
                from gansearch.evaluators.objectives import METRICS

                parts = []
                for i, name in enumerate(objectives):
                    value = max((p.values[i] for p in front), key=lambda v: METRICS[name].sign * v)
                    parts.append(f"{name} {value:.4g}")
                best = "best feasible: " + ", ".join(parts)
            task_state = bar.tasks[task]
            bar.update(
                task,
                advance=1,
                front=len(front),
                best=best,
                failed=task_state.fields["failed"] + (result.failure is not None),
            )

        summary = run_study(
            config,
            trials=trials,
            timeout=timeout,
            strategy=strategy,
            storage=storage,
            seed=seed,
            engine=engine,
            workers=workers,
            address=address,
            on_start=on_start,
            on_result=on_result,
        )
    console = _console()
    console.print(
        f"{summary.study_name}: evaluated {summary.evaluated} candidates "
        f"in {summary.seconds:.0f} s ({summary.finished} finished, {summary.failed} failed"
        + (f", {summary.recovered} interrupted trials re-proposed" if summary.recovered else "")
        + f"); storage {summary.storage}"
    )
    _print_front(pareto_report(open_study(config, storage), objectives))


@app.command()
@user_errors
def studies(
    storage: StorageOpt = None,
    root: Annotated[Path, typer.Option(help="Folder of study outputs to scan.")] = Path("studies"),
) -> None:
    """List the studies (and their trial counts) in a storage, or in studies/*/study.db."""
    import optuna
    from rich.table import Table

    from gansearch.study import StorageError

    urls = (
        [storage] if storage else [f"sqlite:///{path}" for path in sorted(root.glob("*/study.db"))]
    )
    table = Table(title="studies")
    for column in ("study", "complete", "failed", "running", "directions", "storage"):
        table.add_column(column)
    for url in urls:
        try:
            summaries = optuna.get_all_study_summaries(url, include_best_trial=False)
        except Exception as error:  # noqa: BLE001 - driver errors vary by backend
            raise StorageError(
                f"cannot open storage {url!r} ({type(error).__name__}); check the URL"
            ) from None
        for summary in summaries:
            trials = optuna.load_study(study_name=summary.study_name, storage=url).get_trials(
                deepcopy=False
            )
            count = {
                state: sum(t.state.name == state for t in trials)
                for state in ("COMPLETE", "FAIL", "RUNNING")
            }
            table.add_row(
                summary.study_name,
                str(count["COMPLETE"]),
                str(count["FAIL"]),
                str(count["RUNNING"]),
                ",".join(d.name.lower() for d in summary.directions),
                url,
            )
    _console().print(table)


@app.command()
@user_errors
def pareto(
    study: StudyArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the same data as JSON.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write PATH (.png) and PATH with .html.")
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """The feasible Pareto-optimal trials, their ratios to the teacher, and the hypervolume."""
    from gansearch.config import load_study
    from gansearch.pareto import pareto_front, pareto_report, write_plots
    from gansearch.study import open_study

    config = load_study(study)
    optuna_study = open_study(config, storage, create=False)
    report = pareto_report(optuna_study, config.objectives)
    if plot is not None:
        cost = (
            next(
                (o for o in config.objectives if o != report["front"][0]["quality_metric"]),
                "stored_bytes",
            )
            if report["front"]
            else "stored_bytes"
        )
        quality = report["front"][0]["quality_metric"] if report["front"] else "fid"
        png = plot.with_suffix(".png")
        html = plot.with_suffix(".html")
        png.parent.mkdir(parents=True, exist_ok=True)
        write_plots(
            optuna_study, pareto_front(optuna_study, config.objectives), quality, cost, png, html
        )
        report["plots"] = {"png": str(png), "html": str(html)}
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _print_front(report)
    if plot is not None:
        _console().print(f"plots: {report['plots']['png']}, {report['plots']['html']}")


@app.command("export")
@user_errors
def export_command(
    study: StudyArg,
    out: Annotated[Path, typer.Option(help="Artifact folder to write.")],
    trial: Annotated[int | None, typer.Option(help="Trial number to export.")] = None,
    pick: Annotated[
        str | None, typer.Option(help="'knee' or 'best:<metric>' on the Pareto front.")
    ] = None,
    finetune_steps: Annotated[
        int, typer.Option(help="Final quantisation-aware distillation steps.")
    ] = 0,
    storage: StorageOpt = None,
) -> None:
    """Rebuild a trial's candidate, optionally fine-tune it, and write a compact artifact."""
    from gansearch.errors import GansearchError

    if (trial is None) == (pick is None):
        raise GansearchError("give exactly one of `--trial N` or `--pick knee|best:<metric>`")
    if finetune_steps < 0:
        raise GansearchError(f"`--finetune-steps` must be >= 0, got {finetune_steps}")
    from gansearch.study import export_trial

    result = export_trial(
        study, out, trial=trial, pick=pick, finetune_steps=finetune_steps, storage=storage
    )
    from rich.table import Table

    table = Table(title=f"trial {result['trial']} -> {result['artifact']}")
    for column in ("metric", "trial", "artifact"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for name, value in result["artifact_metrics"].items():
        table.add_row(
            name, _format_value(name, result["trial_metrics"].get(name)), _format_value(name, value)
        )
    console = _console()
    console.print(table)
    console.print(f"wrote {result['artifact']} ({', '.join(result['files'])})")


@app.command()
@user_errors
def dashboard(
    study: StudyArg,
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8080,
) -> None:
    """Open optuna-dashboard on the study's storage."""
    from gansearch.config import load_study
    from gansearch.errors import GansearchError
    from gansearch.study import default_storage, open_study

    config = load_study(study)
    url = storage or config.search.storage or default_storage(config)
    open_study(config, url, create=False)  # one clear line if the study does not exist
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise GansearchError(
            "optuna-dashboard is not installed; pip install optuna-dashboard"
        ) from None
    _console().print(f"optuna-dashboard for {config.name} ({url}) at http://{host}:{port}")
    run_server(url, host=host, port=port)


def main() -> None:  # pragma: no cover - console entry point
    app()
