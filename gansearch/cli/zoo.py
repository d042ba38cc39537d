"""``gansearch zoo``: train and inspect the bundled benchmark networks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gansearch.cli.common import console, progress_bar, training_progress, user_errors

app = typer.Typer(
    help="Bundled benchmarks: train and inspect their networks.", no_args_is_help=True
)

ZOO_RECIPES = ("digits-dcgan", "digits-features")


@app.command("train")
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
    with progress_bar() as bar:
        progress = training_progress(bar, bar.add_task(name, total=None, losses=""))
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
    console().print(f"{name}: wrote {directory} ({summary})")


@app.command("info")
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
    out = console()
    shape = tuple(train.images.shape[1:])
    out.print(f"[bold]digits[/bold]: scikit-learn handwritten digits, {shape} in [-1, 1]")
    out.print(f"  split: {len(train)} train / {len(test)} test (seeded, stratified)")
    out.print(
        f"  teacher: DCGAN generator, {sum(p.numel() for p in teacher.parameters()):,} parameters"
    )
    out.print(f"  feature network test accuracy: {accuracy(features, test):.2%}")
    for entry, record in sorted(manifest.items()):
        out.print(f"  {entry}: reproduce with `{record['command']}`")
