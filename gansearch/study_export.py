"""From a finished study to an artifact: pick a trial, rebuild it, export, re-measure.

:func:`export_trial` is what ``gansearch export`` runs. The candidate is rebuilt from its
recorded plan by the same :class:`~gansearch.candidates.CandidateEvaluator` the search
used, distilled further (``export.finetune_steps``, on by default), written with
:func:`gansearch.compress.artifact.export`, loaded back from disk and scored again, so the
reported figures are the artifact's own.

A study with its own ``model.generator`` records that factory in the artifact, and the
load-back trusts exactly it (the user chose it); a zoo benchmark records the zoo generator.
The output folder follows :func:`~gansearch.compress.artifact.export`'s rule: a file the
export did not write is never removed, and ``samples.png`` is written atomically like the
artifact's other files.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gansearch.candidates import CandidateEvaluator
from gansearch.compress.artifact import export, load
from gansearch.compress.manifest import MANIFEST_FILE, ONNX_FILE, SAMPLES_FILE, WEIGHTS_FILE
from gansearch.compress.placement import check_target
from gansearch.config import StudyConfig, load_study
from gansearch.errors import GansearchError
from gansearch.fidelity import is_full_fidelity
from gansearch.files import atomic_path
from gansearch.pareto import pareto_front
from gansearch.pareto import pick as pick_point
from gansearch.runner.recording import finite_or_none
from gansearch.runner.storage import failure_reason, open_study


def write_sample_grid(path: Path, rows: Sequence[tuple[str, Any]]) -> None:
    """A PNG grid, one labelled row per entry of ``rows`` (label, images in [-1, 1]).

    Export writes input | teacher | student | target where they exist: the inputs when
    they are images, the ground truth when the data is paired. Written atomically
    (:func:`gansearch.files.atomic_path`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = rows[0][1].shape[0]
    size = 1.2 if rows[0][1].shape[-1] > 32 else 0.8
    figure, axes = plt.subplots(len(rows), n, figsize=(n * size, len(rows) * size), squeeze=False)
    for row, (label, images) in enumerate(rows):
        for column in range(n):
            image = images[column].detach().float().cpu()
            image = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
            pixels = ((image.clamp(-1, 1) + 1) / 2).numpy()
            axes[row][column].imshow(pixels, cmap="gray", vmin=0, vmax=1)
            axes[row][column].axis("off")
        axes[row][0].set_title(label, fontsize=7, loc="left")
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=100, format="png")
    finally:
        plt.close(figure)


def choose_trial(
    study: Any,
    objectives: tuple[str, ...],
    *,
    trial: int | None,
    pick: str | None,
    constraints: tuple[str, ...] | None = None,
) -> Any:
    """The COMPLETE trial named by number, or picked on the feasible Pareto front.

    ``constraints``: the study file's current ones (see :func:`gansearch.pareto.pareto_front`).
    """
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if trial is None:
        front = pareto_front(study, objectives, constraints=constraints)
        if not front:
            raise GansearchError(
                "the Pareto front is empty (no feasible completed trial); run more trials"
            )
        try:
            trial = pick_point(
                front, pick or "knee", objectives, study.user_attrs["teacher_metrics"]
            ).number
        except ValueError as error:
            raise GansearchError(str(error)) from None
    chosen = trials.get(trial)
    if chosen is None:
        raise GansearchError(
            f"no trial {trial} in study {study.study_name!r} (it has {len(trials)})"
        )
    if chosen.state.name != "COMPLETE":
        reason = failure_reason(chosen) if chosen.state.name == "FAIL" else chosen.state.name
        raise GansearchError(
            f"trial {trial} is {chosen.state.name} ({reason}); pick a COMPLETE trial"
        )
    if not is_full_fidelity(chosen.user_attrs):
        raise GansearchError(
            f"trial {trial} was scored only at low fidelity (multi-fidelity search); export a "
            "full-fidelity trial, e.g. one on `gansearch pareto`'s front"
        )
    return chosen


def export_trial(
    study_file: str | Path | StudyConfig,
    out: str | Path,
    *,
    trial: int | None = None,
    pick: str | None = None,
    finetune_steps: int | None = None,
    storage: str | None = None,
    evaluator: Any | None = None,
    force: bool = False,
    finetuned: tuple[Any, Any, float] | None = None,
) -> dict[str, Any]:
    """Rebuild a trial's candidate, distil it, export it, and re-measure the artifact.

    The candidate is rebuilt as the search scored it and measured (``before``), then
    fine-tuned for ``finetune_steps`` steps of quantisation-aware distillation (default:
    the study's ``export.finetune_steps``; 0 skips it) and measured again (``after``);
    the fine-tune keeps the state with the best study quality on held-out inputs
    (:meth:`~gansearch.candidates.CandidateEvaluator.finetune`). Writes the artifact
    (``weights.safetensors``, ``manifest.json``, ``model.onnx``) plus ``samples.png``
    (input | teacher | student | target on the same inputs) into ``out``: a missing or
    empty folder, or a previous artifact; any other folder only with ``force``, and then
    only those four files are replaced. The figures returned under ``artifact_metrics``
    are measured on the artifact loaded back from disk. ``finetuned``: ``(model,
    DistillResult, seconds)`` of this trial already distilled for ``finetune_steps``
    steps (:func:`gansearch.refine.refine`), exported instead of distilling again.
    """

    config = study_file if isinstance(study_file, StudyConfig) else load_study(study_file)
    steps = config.export.finetune_steps if finetune_steps is None else finetune_steps
    check_target(Path(out), force=force)  # before the (slow) rebuild; export checks again
    study = open_study(config, storage, create=False)
    chosen = choose_trial(
        study, config.objectives, trial=trial, pick=pick, constraints=config.search.constraints
    )
    if evaluator is None:
        evaluator = CandidateEvaluator(config)
    compressed = evaluator.compressed_from_json(chosen.user_attrs["plan"])
    before = evaluator.scorer.score(compressed)
    finetune: dict[str, Any] = {"steps": steps}
    if steps > 0:
        started = time.perf_counter()
        if finetuned is None:
            compressed, result = evaluator.finetune(compressed, steps)
            seconds = time.perf_counter() - started
        else:  # already distilled with these steps (gansearch.refine)
            compressed, result, seconds = finetuned
        finetune.update(
            seconds=round(seconds, 1),
            best_step=result.best_step,
            validation=[list(point) for point in result.validation],
            before=finite_or_none(before.values),
            before_spread=finite_or_none(before.spread),
        )
        in_memory = evaluator.scorer.score(compressed)
    else:
        in_memory = before
    factory = config.model.generator if config.model is not None else None
    path = export(
        compressed,
        Path(out),
        metrics={
            "trial": chosen.number,
            "finetune_steps": steps,
            **finite_or_none(in_memory.values),
        },
        example_input=tuple(part[:1] for part in evaluator.example),
        input_names=evaluator.benchmark.inputs.names,
        teacher_factory=factory,
        teacher_kwargs=dict(config.model.generator_kwargs) if config.model is not None else None,
        force=force,
    )
    loaded = load(path, trust=() if factory is None else (factory,))
    artifact = evaluator.scorer.score(loaded)
    samples = evaluator.samples((evaluator.teacher, loaded), 8)
    write_sample_grid(
        path / SAMPLES_FILE,
        [
            *([("input", samples.inputs)] if samples.inputs is not None else []),
            ("teacher", samples.outputs[0]),
            ("student", samples.outputs[1]),
            *([("target", samples.targets)] if samples.targets is not None else []),
        ],
    )
    return {
        "trial": chosen.number,
        "artifact": str(path),
        "files": sorted((MANIFEST_FILE, WEIGHTS_FILE, ONNX_FILE, SAMPLES_FILE)),
        "trial_metrics": chosen.user_attrs.get("metrics", {}),
        "finetune": finetune,
        "artifact_metrics": finite_or_none(artifact.values),
        "artifact_spread": finite_or_none(artifact.spread),
        "teacher_metrics": finite_or_none(evaluator.teacher_score.values),
        "teacher_spread": finite_or_none(evaluator.teacher_score.spread),
        "constraints": {
            text: value <= 0
            for text, value in zip(
                config.search.constraints,
                evaluator.constraint_values(artifact.values),
                strict=True,
            )
        },
    }
