"""A study's once-for-all supernet: where it lives, and training it.

The method itself (channel ordering, the sandwich rule, distillation from the teacher;
Cai et al., Once-for-All, ICLR 2020; Yu & Huang, Universally Slimmable Networks, ICCV
2019) is :mod:`gansearch.compress.supernet`. This module binds it to a study: the recipe
from the study file, the folder and manifest entry the supernet is written to and read
from, the reproducing command and the teacher checkpoint's hash.

A trained supernet goes to a folder of the user's (:func:`supernet_output_directory`):
the study's ``weights:`` folder if it has one, else ``<study dir>/supernet``. Only
``bundled=True`` (``gansearch supernet train --update-bundled``, for developers) writes
into the installed package. A study reads the supernet it trained itself before the
bundled one (:func:`supernet_directory`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gansearch.benchmark import Benchmark
    from gansearch.compress.recipes import SupernetRecipe
    from gansearch.config import StudyConfig

Progress = Callable[[int, int, Mapping[str, float]], None]


SUPERNET_FILE = "supernet.safetensors"


def supernet_output_directory(config: StudyConfig) -> Path:
    """Where ``supernet train`` writes by default: the study's ``weights:`` folder, if it
    names one, else ``<study dir>/supernet``; never the installed package."""
    return config.weights if config.weights is not None else config.study_dir() / "supernet"


def supernet_directory(config: StudyConfig, benchmark: Benchmark) -> Path:
    """The folder a study reads its supernet from.

    The study's own (:func:`supernet_output_directory`) when it holds a supernet or the
    study is a custom model; else the bundled benchmark's committed weights.
    """
    from gansearch.zoo.weights_io import weights_dir

    own = supernet_output_directory(config)
    if config.model is not None or (own / SUPERNET_FILE).is_file():
        return own
    return weights_dir(benchmark.name)


def supernet_entry(benchmark: Benchmark) -> str:
    """The supernet's entry name in its folder's ``manifest.json``."""
    return f"{benchmark.name}-supernet"


def supernet_recipe(config: StudyConfig, *, steps: int | None = None) -> SupernetRecipe:
    """The study's supernet recipe (defaults when the study has no ``supernet`` section).

    Args:
        config: the study.
        steps: optimiser steps overriding the study's ``supernet.steps``.

    Raises:
        ValueError: if ``steps`` is given and below 1.
    """
    from gansearch.config import SupernetConfig

    if steps is not None and steps < 1:
        raise ValueError(f"`steps >= 1` must hold, but got ({steps=}).")
    settings = config.supernet or SupernetConfig()
    if steps is not None:
        settings = settings.model_copy(update={"steps": steps})
    return settings.recipe()


def _teacher_checkpoint(config: StudyConfig, benchmark: Benchmark) -> Path | None:
    """The teacher's weights file, when there is one, for the manifest's hash."""
    from gansearch.zoo.weights_io import weights_dir

    if config.model is not None:
        return config.model.generator_checkpoint
    return weights_dir(benchmark.name, config.weights) / "generator.safetensors"


@dataclass(frozen=True)
class TrainedSupernet:
    """Where :func:`train_study_supernet` wrote a supernet, and what training took.

    Attributes:
        path: the ``supernet.safetensors`` file.
        entry: its manifest entry.
        steps: optimiser steps run.
        seconds: wall-clock training time.
    """

    path: Path
    entry: str
    steps: int
    seconds: float


def train_study_supernet(
    config: StudyConfig,
    benchmark: Benchmark,
    recipe: SupernetRecipe,
    *,
    command: str,
    out: Path | None = None,
    bundled: bool = False,
    progress: Progress | None = None,
) -> TrainedSupernet:
    """Distil the study's teacher into a supernet and save it with its manifest entry.

    Args:
        config: the study.
        benchmark: its loaded benchmark (teacher, discriminator, real data).
        recipe: e.g. :func:`supernet_recipe` of ``config``.
        command: the command line that reproduces this run (recorded in the manifest).
        out: the folder to write (default: :func:`supernet_output_directory`).
        bundled: write into the installed package's committed weights of the benchmark
            (developers only; not with ``out`` or a custom model).
        progress: called as ``progress(step, steps, losses)`` after each step.

    Raises:
        ValueError: if ``bundled`` is combined with ``out`` or a custom model.
        DistillationDiverged: at a non-finite loss, output or parameter (nothing is saved).
        SupernetError: when zeroing channels is not equivalent to pruning them.
    """
    from gansearch.checkpoints import sha256_file
    from gansearch.compress import describe
    from gansearch.compress.supernet import save_supernet
    from gansearch.compress.supernet_train import train_supernet
    from gansearch.zoo.weights_io import weights_dir

    if bundled and (out is not None or config.model is not None):
        raise ValueError("`bundled` is only for a bundled benchmark and without `out`.")
    structure = describe(benchmark.teacher, benchmark.example_input(2))
    if bundled:
        directory = weights_dir(benchmark.name)
    else:
        directory = out if out is not None else supernet_output_directory(config)
    entry = supernet_entry(benchmark)
    start = time.perf_counter()
    supernet = train_supernet(
        benchmark.teacher,
        benchmark.discriminator,
        benchmark.real,
        structure,
        recipe,
        progress,
        inputs=benchmark.train_inputs,
    )
    seconds = time.perf_counter() - start
    teacher_file = _teacher_checkpoint(config, benchmark)
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
    return TrainedSupernet(path=path, entry=entry, steps=recipe.steps, seconds=seconds)
