"""``gansearch supernet``: train a study's once-for-all supernet.

The flow (recipe, folder, manifest) is :mod:`gansearch.supernets`; this module only
parses options and shows progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gansearch.cli.common import (
    StudyArg,
    console,
    progress_bar,
    training_progress,
    user_errors,
)

app = typer.Typer(
    help="Once-for-all supernets: one set of weights, a sub-generator at every width.",
    no_args_is_help=True,
)


@app.command("train")
@user_errors
def supernet_train(
    study: StudyArg,
    steps: Annotated[
        int | None, typer.Option(help="Optimiser steps (default: the study's `supernet.steps`).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder (default: the study's `weights:` folder, else "
            "studies/<name>/supernet, which the study then reads)."
        ),
    ] = None,
    update_bundled: Annotated[
        bool,
        typer.Option(
            "--update-bundled",
            help="Developers only: overwrite the bundled benchmark's committed supernet "
            "inside the installed package.",
        ),
    ] = False,
) -> None:
    """Distil the teacher into a once-for-all supernet (sandwich rule) and save it."""
    from gansearch.benchmarks import load_benchmark
    from gansearch.config import load_study
    from gansearch.errors import GansearchError
    from gansearch.supernets import supernet_entry, supernet_recipe, train_study_supernet

    if steps is not None and steps < 1:
        raise GansearchError(f"`--steps` must be at least 1, got {steps}")
    if update_bundled and out is not None:
        raise GansearchError("give `--out` or `--update-bundled`, not both")
    config = load_study(study)
    if update_bundled and config.model is not None:
        raise GansearchError(
            "`--update-bundled` is for bundled benchmarks; a custom model's supernet goes to "
            "`--out` or studies/<name>/supernet"
        )
    recipe = supernet_recipe(config, steps=steps)
    benchmark = load_benchmark(config)
    entry = supernet_entry(benchmark)
    command = f"gansearch supernet train {study}" + (f" --steps {steps}" if steps else "")
    with progress_bar() as bar:
        trained = train_study_supernet(
            config,
            benchmark,
            recipe,
            command=command,
            out=out,
            bundled=update_bundled,
            progress=training_progress(bar, bar.add_task(entry, total=recipe.steps, losses="")),
        )
    console().print(
        f"{trained.entry}: wrote {trained.path} ({trained.steps} steps in {trained.seconds:.0f} s)"
    )
