"""``gansearch zoo``: train and inspect the bundled benchmark networks.

``zoo train`` writes to a folder of the user's (``--out``, default ``weights/digits`` in
the working directory), which a study then uses with ``weights: weights/digits``. Only
``--update-bundled``, a developer's flag, rewrites the committed weights inside the
installed package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gansearch.cli.common import console, progress_bar, training_progress, user_errors

app = typer.Typer(
    help="Bundled benchmarks: train and inspect their networks.", no_args_is_help=True
)

ZOO_RECIPES = ("digits-dcgan", "digits-features", "photos-sr")
DEFAULT_OUT = Path("weights") / "digits"


@app.command("train")
@user_errors
def zoo_train(
    name: Annotated[str, typer.Argument(help=f"What to train: {', '.join(ZOO_RECIPES)}.")],
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    steps: Annotated[
        int | None, typer.Option(help="Optimiser steps (default: the recipe's).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help=f"Output folder (default: {DEFAULT_OUT}); use it with `weights: FOLDER` in a "
            "study file."
        ),
    ] = None,
    update_bundled: Annotated[
        bool,
        typer.Option(
            "--update-bundled",
            help="Developers only: overwrite the committed weights inside the installed package.",
        ),
    ] = False,
) -> None:
    """Train a bundled network and write it as safetensors with a reproducing manifest."""
    import time

    from gansearch.errors import GansearchError
    from gansearch.evaluation_config import SEED_LIMIT

    if name not in ZOO_RECIPES:
        raise GansearchError(f"unknown zoo recipe {name!r}; known: {', '.join(ZOO_RECIPES)}")
    if steps is not None and steps < 1:
        raise GansearchError(f"`--steps` must be at least 1, got {steps}")
    if not 0 <= seed < SEED_LIMIT:
        raise GansearchError(f"`--seed` must be in [0, 2**32), got {seed}")
    if update_bundled and out is not None:
        raise GansearchError("give `--out` or `--update-bundled`, not both")
    from gansearch.zoo.weights_io import save_trained, weights_dir

    benchmark = name.split("-")[0]
    default_out = Path("weights") / benchmark
    directory = weights_dir(benchmark) if update_bundled else (out or default_out)
    command = f"gansearch zoo train {name} --seed {seed}" + (f" --steps {steps}" if steps else "")
    with progress_bar() as bar:
        progress = training_progress(bar, bar.add_task(name, total=None, losses=""))
        started = time.perf_counter()
        recipe, networks, metrics, summary = _train_recipe(name, seed, steps, progress)
        if name == "photos-sr":
            metrics = {"train_seconds": round(time.perf_counter() - started, 1), **metrics}
        save_trained(directory, name, command, recipe, networks, metrics or None)
    use = "" if update_bundled else f"; use it with `weights: {directory}` in a study file"
    console().print(f"{name}: wrote {directory} ({summary}){use}")


def _train_recipe(
    name: str, seed: int, steps: int | None, progress: Any
) -> tuple[Any, dict[str, Any], dict[str, float], str]:
    """Train one zoo recipe: (recipe, networks to save, manifest metrics, one-line summary)."""
    from dataclasses import replace

    from gansearch.zoo import train

    if name == "photos-sr":
        from gansearch.zoo import train_photos

        recipe = train_photos.SRRecipe(seed=seed)
        recipe = replace(recipe, steps=steps) if steps else recipe
        generator, discriminator = train_photos.train_sr(recipe, progress)
        metrics = train_photos.teacher_metrics(generator)
        summary = (
            f"test PSNR {metrics['test_psnr']:.2f} dB vs bicubic "
            f"{metrics['bicubic_test_psnr']:.2f} dB"
        )
        return recipe, {"generator": generator, "discriminator": discriminator}, metrics, summary
    if name == "digits-features":
        recipe = train.FeatureNetRecipe(seed=seed)
        recipe = replace(recipe, steps=steps) if steps else recipe
        model, accuracy = train.train_feature_net(recipe, progress)
        return (
            recipe,
            {"features": model},
            {"test_accuracy": accuracy},
            f"test accuracy {accuracy:.2%}",
        )
    recipe = train.DCGANRecipe(seed=seed)
    recipe = replace(recipe, steps=steps) if steps else recipe
    generator, discriminator = train.train_dcgan(recipe, progress)
    parameters = sum(p.numel() for p in generator.parameters())
    networks = {"generator": generator, "discriminator": discriminator}
    return recipe, networks, {}, f"{parameters:,} generator parameters"


@app.command("info")
@user_errors
def zoo_info(name: Annotated[str, typer.Argument(help="Benchmark name, e.g. digits.")]) -> None:
    """Describe a bundled benchmark: data, networks, feature-network accuracy."""
    from gansearch.errors import GansearchError
    from gansearch.zoo.weights_io import read_manifest, weights_dir

    if name == "photos":
        _photos_info()
        return
    if name != "digits":
        raise GansearchError(f"unknown benchmark {name!r}; known: digits, photos")
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


def _photos_info() -> None:
    from gansearch.checkpoints import load_weights
    from gansearch.evaluators.macs import count_macs
    from gansearch.zoo.photos import NOISE_SIGMA, TEST_IMAGES, load_photos_split
    from gansearch.zoo.resnet import ResnetGenerator
    from gansearch.zoo.weights_io import read_manifest, weights_dir

    directory = weights_dir("photos")
    teacher = load_weights(
        ResnetGenerator(),
        directory / "generator.safetensors",
        hint="run `gansearch zoo train photos-sr`",
    )
    train, test = load_photos_split("train"), load_photos_split("test")
    record = read_manifest(directory)["photos-sr"]
    metrics = record["metrics"]
    held_out = ", ".join(name.rsplit(".", 1)[0] for _, name in TEST_IMAGES)
    out = console()
    out.print(
        "[bold]photos[/bold]: joint denoising (Gaussian, sigma "
        f"{NOISE_SIGMA:g} in [-1, 1]) and x4 super-resolution, 64x64 RGB patches of photos "
        "shipped in scikit-image and scikit-learn"
    )
    out.print(f"  split: {len(train)} train / {len(test)} test patches (held out: {held_out})")
    macs = count_macs(teacher, test.inputs[:1])
    parameters = sum(p.numel() for p in teacher.parameters())
    out.print(
        f"  teacher: CycleGAN ResNet generator, {parameters:,} parameters, "
        f"{macs / 1e9:.2f} GMACs per image"
    )
    out.print(
        f"  test PSNR / SSIM: teacher {metrics['test_psnr']:.2f} dB / {metrics['test_ssim']:.3f}"
        f", bicubic {metrics['bicubic_test_psnr']:.2f} dB / {metrics['bicubic_test_ssim']:.3f}"
    )
    out.print(f"  photos-sr: reproduce with `{record['command']}`")
