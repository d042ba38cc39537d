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
) -> None:
    """Score the study's teacher: quality (with noise floor) and cost metrics."""
    from gansearch.benchmarks import load_benchmark
    from gansearch.config import load_study
    from gansearch.evaluate import evaluate_teacher

    config = load_study(study)
    benchmark = load_benchmark(config)
    score = evaluate_teacher(benchmark, config)
    metrics = score.to_dict()
    if as_json:
        payload = {
            "study": config.name,
            "benchmark": benchmark.name,
            "model": "teacher",
            "protocol": json.loads(config.evaluation.model_dump_json()),
            "metrics": metrics,
        }
        print(json.dumps(payload, indent=2))
    else:
        seeds = ", ".join(map(str, config.evaluation.seeds))
        _print_score_table(
            f"{config.name}: teacher ({config.evaluation.num_samples} samples x seeds {seeds})",
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


def main() -> None:  # pragma: no cover - console entry point
    app()
