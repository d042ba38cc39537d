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
app.add_typer(bench_app, name="bench")

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


def main() -> None:  # pragma: no cover - console entry point
    app()
