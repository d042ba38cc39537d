"""``gansearch bench supernet``: supernet sub-generators vs the magnitude-pruned teacher.

At each width ratio the FID of the supernet's sub-generator is set against the teacher
pruned to the same widths by L1 magnitude (Li et al., Pruning Filters for Efficient
ConvNets, ICLR 2017). Neither side is fine-tuned; both get the same BatchNorm
recalibration (:func:`~gansearch.compress.supernet.compare_with_magnitude_pruning`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gansearch.compress.supernet import WidthComparison
    from gansearch.config import StudyConfig

DEFAULT_RATIOS = (0.5, 0.25)


@dataclass(frozen=True)
class SupernetBench:
    """The comparison at every width, and the protocol it ran under.

    Attributes:
        config: the study (its evaluation protocol scored every model).
        supernet: the ``supernet.safetensors`` file compared.
        calibration_batches: latent batches of the BatchNorm recalibration (both sides).
        batch_size: their batch size.
        teacher_fid: the teacher's ``(mean, spread)`` FID.
        teacher_params: the teacher's parameter count.
        widths: one comparison per width ratio.
    """

    config: StudyConfig
    supernet: Path
    calibration_batches: int
    batch_size: int
    teacher_fid: tuple[float, float]
    teacher_params: int
    widths: tuple[WidthComparison, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON report of ``gansearch bench supernet --json``."""
        return {
            "study": self.config.name,
            "supernet": str(self.supernet),
            "bn_recalibration": {
                "batches": self.calibration_batches,
                "batch_size": self.batch_size,
                "applied_to": "supernet sub-generator and pruned teacher alike",
            },
            "fine_tuning": "none",
            "teacher_fid": {"value": self.teacher_fid[0], "spread": self.teacher_fid[1]},
            "widths": [row.to_dict() for row in self.widths],
        }


def bench_supernet(
    study: str | Path,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    *,
    weights: Path | None = None,
) -> SupernetBench:
    """Score the study's supernet and the magnitude-pruned teacher at each width ratio.

    Args:
        study: the study file (its evaluation protocol, its supernet recipe's BatchNorm
            recalibration settings).
        ratios: width ratios in ``(0, 1]``.
        weights: the supernet's folder (default:
            :func:`~gansearch.supernets.supernet_directory`).

    Raises:
        GansearchError: when the study has no feature network (FID needs one).
        CheckpointError: when the supernet is missing or was trained for another teacher.
    """
    from gansearch.benchmarks import load_benchmark
    from gansearch.compress import describe
    from gansearch.compress.supernet import (
        SUPERNET_FILE,
        compare_with_magnitude_pruning,
        load_supernet,
    )
    from gansearch.config import load_study
    from gansearch.errors import GansearchError
    from gansearch.evaluate import prepare_scorer
    from gansearch.supernets import supernet_directory, supernet_entry, supernet_recipe

    config = load_study(study)
    recipe = supernet_recipe(config)
    benchmark = load_benchmark(config)
    if benchmark.features is None:
        raise GansearchError("FID needs a feature network; add `model.features` to the study")
    structure = describe(benchmark.teacher, benchmark.example_input(2))
    directory = weights if weights is not None else supernet_directory(config, benchmark)
    supernet = load_supernet(
        benchmark.teacher,
        structure,
        directory,
        entry=supernet_entry(benchmark),
        inputs=benchmark.train_inputs,
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
        tuple(ratios),
        fid,
        calibration_batches=recipe.calibration_batches,
        batch_size=recipe.batch_size,
        seed=recipe.seed,
    )
    return SupernetBench(
        config=config,
        supernet=directory / SUPERNET_FILE,
        calibration_batches=recipe.calibration_batches,
        batch_size=recipe.batch_size,
        teacher_fid=teacher_fid,
        teacher_params=sum(p.numel() for p in benchmark.teacher.parameters()),
        widths=tuple(rows),
    )
