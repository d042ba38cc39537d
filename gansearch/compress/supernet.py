"""Once-for-all (OFA) supernet of a generator: one set of weights, every width usable.

Following GAN Compression (Li et al., "GAN Compression: Efficient Architectures for
Interactive Conditional GANs", CVPR 2020) and Once-for-All (Cai et al., "Once-for-All:
Train One Network and Specialize it for Efficient Deployment", ICLR 2020), the teacher is
distilled into a weight-sharing supernet initialised from the teacher itself:

1. **Channel order.** The channels of each prunable group (see
   :func:`~gansearch.compress.groups.describe`) are ranked by L1 importance
   (:func:`~gansearch.compress.importance.channel_order`), most important first. A
   sub-generator of width ``w`` for a group keeps the first ``w`` channels in that order,
   so at initialisation every sub-generator equals the magnitude-pruned teacher of the
   same widths. The order is fixed for the supernet's life and stored with its weights.
2. **Masked training.** A forward hook on each *output-side* member of a group (its
   Conv/Linear and its norm layer) multiplies the output by a 0/1 channel mask
   (:class:`~gansearch.compress.masking.ChannelMasker`). Zeroing a
   channel after its norm layer is the same as removing it: every consumer's input
   channel then contributes nothing (this holds for activations with ``f(0) = 0``;
   :func:`check_masking_is_pruning` verifies it on the given generator before training).
3. **Sandwich rule** (Yu & Huang, "Universally Slimmable Networks and Improved Training
   Techniques", ICCV 2019). Each step accumulates the gradients of the largest, the
   smallest and one random width vector (one ratio drawn per group) on the same inputs,
   then takes one optimiser step. Each is distilled from the teacher with
   :class:`~gansearch.compress.distill_loss.DistillationLoss` (default: pixel + feature terms,
   survey Eq. 2 and 6-7; the learned 1x1 feature mappings are shared across widths).
4. **Extraction.** :func:`extract` physically prunes a copy with
   :func:`~gansearch.compress.prune.prune_channels` (keep-masks = first ``w`` channels in
   importance order): instant, no weight training. BatchNorm running statistics are shared
   by all widths during training and fit none of them exactly, so :func:`extract`
   recalibrates them on a few seeded input batches (post-hoc BN statistics, Yu & Huang,
   ICCV 2019). ``calibration_batches=0`` skips it.

Weights are stored as safetensors with the channel order per group in the JSON manifest
(:func:`save_supernet` / :func:`load_supernet`); nothing is pickled.

Training, optionally quantisation-aware over widths and bits, is in
:mod:`~gansearch.compress.supernet_train`; this module keeps the :class:`Supernet` value,
extraction, storage and the comparison with magnitude pruning. Masking, BatchNorm
recalibration and the loss live in
:mod:`~gansearch.compress.masking`, :mod:`~gansearch.compress.batchnorm` and
:mod:`~gansearch.compress.distill_loss`.
"""

from __future__ import annotations

import copy
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gansearch.compress.batches import Inputs, InputSampler, draw, zeros_like
from gansearch.compress.batchnorm import calibration_batches as draw_batches
from gansearch.compress.batchnorm import recalibrate_batchnorm
from gansearch.compress.importance import channel_importance, magnitude_masks
from gansearch.compress.masking import ChannelMasker
from gansearch.compress.plan import InvalidPlanError, check_width
from gansearch.compress.prune import prune_channels
from gansearch.compress.recipes import SupernetRecipe
from gansearch.compress.structure import GeneratorStructure, width_for
from gansearch.errors import CheckpointError, GansearchError

SUPERNET_FILE = "supernet.safetensors"
SUPERNET_FORMAT = 1
SANDWICH = ("largest", "smallest", "random")


class SupernetError(GansearchError):
    """A generator whose channel masking is not equivalent to pruning, or a bad supernet."""


@dataclass(frozen=True, eq=False)
class Supernet:
    """A weight-sharing generator whose every width prefix is a sub-generator.

    Attributes:
        model: The shared weights, in the teacher's architecture (no hooks attached).
        structure: The teacher's prunable groups.
        order: Group name -> channel indices, most important first; width ``w`` keeps the
            first ``w``.
        ratios: The width ratios it was trained for, ascending.
        inputs: Draws the generator's inputs (training, calibration and tracing).
    """

    model: nn.Module
    structure: GeneratorStructure
    order: Mapping[str, tuple[int, ...]]
    ratios: tuple[float, ...]
    inputs: InputSampler

    def widths(self, ratio: float | Mapping[str, float]) -> dict[str, int]:
        """Group name -> width for one ratio (or one ratio per group; missing = 1.0)."""
        widths = {}
        for group in self.structure.groups:
            r = ratio.get(group.name, 1.0) if isinstance(ratio, Mapping) else ratio
            if not 0.0 < r <= 1.0:
                raise InvalidPlanError(
                    f"group '{group.name}': `0 < ratio <= 1` must hold, but got ratio={r}."
                )
            widths[group.name] = width_for(r, group.num_channels)
        return widths

    def largest(self) -> dict[str, int]:
        return self.widths(self.ratios[-1])

    def smallest(self) -> dict[str, int]:
        return self.widths(self.ratios[0])

    def keep_masks(self, widths: Mapping[str, int]) -> dict[str, tuple[bool, ...]]:
        """Keep-masks of ``widths``: the first ``w`` channels of each group in ``order``.

        Raises:
            InvalidPlanError: for an unknown group or a width outside ``1..C``.
        """
        groups = {g.name: g for g in self.structure.groups}
        unknown = sorted(set(widths) - set(groups))
        if unknown:
            raise InvalidPlanError(
                f"group '{unknown[0]}': unknown group in widths; known groups are {sorted(groups)}."
            )
        masks = {}
        for name, group in groups.items():
            width = widths.get(name, group.num_channels)
            check_width(name, width, group.num_channels)
            kept = set(self.order[name][:width])
            masks[name] = tuple(i in kept for i in range(group.num_channels))
        return masks

    def example_input(self, batch_size: int = 2) -> Inputs:
        """A zero input batch (for tracing the dependency graph)."""
        return zeros_like(draw(self.inputs, 1, seed=0), batch_size)


# ---------------------------------------------------------------------------------------
# Width sampling and channel masks
# ---------------------------------------------------------------------------------------


class WidthSampler:
    """Draws the sandwich-rule widths of each step from its own seeded generator.

    Yu & Huang, "Universally Slimmable Networks and Improved Training Techniques",
    ICCV 2019: the largest and smallest networks bound the loss of every width between
    them, plus random widths in between (here one vector, one ratio per group).
    """

    def __init__(self, supernet: Supernet, seed: int) -> None:
        self.supernet = supernet
        self.generator = torch.Generator().manual_seed(seed)

    def random(self) -> dict[str, int]:
        """One ratio drawn uniformly per group from the configured ratios."""
        ratios = self.supernet.ratios
        picks = torch.randint(
            len(ratios), (len(self.supernet.structure.groups),), generator=self.generator
        ).tolist()
        return self.supernet.widths(
            {g.name: ratios[i] for g, i in zip(self.supernet.structure.groups, picks, strict=True)}
        )

    def sandwich(self) -> list[dict[str, int]]:
        """``[largest, smallest, random]`` width vectors for one step."""
        return [self.supernet.largest(), self.supernet.smallest(), self.random()]


class masked:  # noqa: N801 - used like a function: ``with masked(supernet, widths): ...``
    """Run ``supernet.model`` as the sub-generator of ``widths`` (masking, no copy)."""

    def __init__(self, supernet: Supernet, widths: Mapping[str, int]) -> None:
        self.masker = ChannelMasker(supernet.model, supernet.structure)
        self.masker.set_masks(supernet.keep_masks(widths))

    def __enter__(self) -> nn.Module:
        self.masker.__enter__()
        return self.masker.model

    def __exit__(self, *exc: object) -> None:
        self.masker.__exit__(*exc)


# ---------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------


def extract(
    supernet: Supernet,
    widths: Mapping[str, int],
    *,
    calibration_batches: int = 8,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """The sub-generator of ``widths`` as a physically smaller network (eval mode).

    Pruned with :func:`~gansearch.compress.prune.prune_channels` (keep-masks = the first
    ``w`` channels of each group in importance order), then its BatchNorm statistics are
    recalibrated on ``calibration_batches`` seeded input batches (0 = keep the shared
    statistics). No weight is trained. The supernet is not modified.
    """
    masks = supernet.keep_masks(widths)
    model = copy.deepcopy(supernet.model).eval()
    sub = prune_channels(model, supernet.structure, masks, supernet.example_input()).eval()
    if calibration_batches > 0:
        recalibrate_batchnorm(
            sub, draw_batches(supernet.inputs, calibration_batches, batch_size, seed)
        )
    return sub


def check_masking_is_pruning(
    supernet: Supernet, widths: Mapping[str, int], atol: float = 1e-4
) -> None:
    """Raise :class:`SupernetError` unless masked and extracted outputs agree (eval mode)."""
    batch = draw_batches(supernet.inputs, 1, 8, seed=0)[0]
    was_training = supernet.model.training
    supernet.model.eval()
    try:
        with torch.no_grad(), masked(supernet, widths) as model:
            expected = model(*batch)
        with torch.no_grad():
            actual = extract(supernet, widths, calibration_batches=0)(*batch)
    finally:
        supernet.model.train(was_training)
    error = (expected - actual).abs().max().item()
    if not error <= atol:
        raise SupernetError(
            f"zeroing channels is not equivalent to pruning them in this generator (max "
            f"difference {error:.3g} at the smallest widths); a layer between two groups maps "
            "0 to a non-zero value (e.g. Sigmoid, or a bias after the norm layer)"
        )


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# Storage: safetensors + channel order in the JSON manifest
# ---------------------------------------------------------------------------------------


def save_supernet(
    supernet: Supernet,
    directory: Path,
    *,
    entry: str,
    command: str,
    config: SupernetRecipe,
    metrics: Mapping[str, float] | None = None,
    teacher_sha256: str | None = None,
) -> Path:
    """Write ``directory/supernet.safetensors`` and the manifest entry ``entry``.

    The manifest records the reproducing ``command``, the seed and full config, the
    weights' SHA-256 (and the teacher checkpoint's, when known), the ratios, the channel
    order of every group and the torch thread count (float results depend on it).
    """
    from gansearch.checkpoints import save_weights
    from gansearch.zoo.weights_io import update_manifest

    path = Path(directory) / SUPERNET_FILE
    digest = save_weights(supernet.model, path)
    update_manifest(
        Path(directory),
        entry,
        {
            "command": command,
            "format": SUPERNET_FORMAT,
            "seed": config.seed,
            "recipe": config.to_dict(),
            "ratios": list(supernet.ratios),
            "channel_order": {name: list(order) for name, order in supernet.order.items()},
            "sha256": {"supernet": digest},
            "teacher_sha256": teacher_sha256,
            "metrics": dict(metrics or {}),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    )
    return path


def load_supernet(
    teacher: nn.Module,
    structure: GeneratorStructure,
    directory: Path,
    *,
    entry: str,
    inputs: InputSampler,
    hint: str = "",
) -> Supernet:
    """Load a supernet saved by :func:`save_supernet` into a copy of ``teacher``'s architecture.

    Raises:
        CheckpointError: for a missing file or manifest entry, or a channel order that
            does not fit ``structure``.
    """
    from gansearch.checkpoints import load_weights
    from gansearch.zoo.weights_io import read_manifest

    directory = Path(directory)
    fix = f"; {hint}" if hint else ""
    record = read_manifest(directory).get(entry)
    if record is None:
        raise CheckpointError(f"no `{entry}` entry in {directory / 'manifest.json'}{fix}")
    model = load_weights(copy.deepcopy(teacher), directory / SUPERNET_FILE, hint=hint).eval()
    order = {name: tuple(int(i) for i in idxs) for name, idxs in record["channel_order"].items()}
    for group in structure.groups:
        if sorted(order.get(group.name, ())) != list(range(group.num_channels)):
            raise CheckpointError(
                f"{directory / 'manifest.json'}: `{entry}` has no valid channel order for group "
                f"'{group.name}' ({group.num_channels} channels); was it trained for another "
                f"teacher?{fix}"
            )
    return Supernet(
        model,
        structure,
        order,
        tuple(float(r) for r in record["ratios"]),
        inputs,
    )


# ---------------------------------------------------------------------------------------
# Comparison with magnitude pruning (no fine-tuning on either side)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WidthComparison:
    """One width: the supernet sub-generator vs the magnitude-pruned teacher.

    ``*_fid`` are ``(mean, spread)`` over the evaluation seeds. Both sides get the same
    BatchNorm recalibration; ``pruned_raw_fid`` is the pruned teacher without it.
    """

    ratio: float
    widths: Mapping[str, int]
    params: int
    supernet_fid: tuple[float, float]
    pruned_fid: tuple[float, float]
    pruned_raw_fid: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "widths": dict(self.widths),
            "params": self.params,
            "supernet_fid": {"value": self.supernet_fid[0], "spread": self.supernet_fid[1]},
            "pruned_fid": {"value": self.pruned_fid[0], "spread": self.pruned_fid[1]},
            "pruned_no_bn_recalibration_fid": {
                "value": self.pruned_raw_fid[0],
                "spread": self.pruned_raw_fid[1],
            },
        }


def compare_with_magnitude_pruning(
    supernet: Supernet,
    teacher: nn.Module,
    ratios: Sequence[float],
    fid: Callable[[nn.Module], tuple[float, float]],
    *,
    calibration_batches: int = 8,
    batch_size: int = 64,
    seed: int = 0,
) -> list[WidthComparison]:
    """Score sub-generators against the same-width L1-magnitude-pruned teacher.

    Neither side is fine-tuned. Both get the same BatchNorm recalibration (same input
    batches); the pruned teacher is also scored without it. The magnitude baseline is
    Li et al., "Pruning Filters for Efficient ConvNets" (ICLR 2017), via
    :func:`~gansearch.compress.importance.magnitude_masks`.

    Args:
        fid: ``model -> (mean, spread)`` of the FID over the evaluation seeds.
    """
    structure = supernet.structure
    importance = channel_importance(teacher, structure, supernet.example_input())
    batches = draw_batches(supernet.inputs, calibration_batches, batch_size, seed)
    results = []
    for ratio in ratios:
        widths = supernet.widths(ratio)
        sub = extract(supernet, widths, calibration_batches=0)
        recalibrate_batchnorm(sub, batches)
        masks = magnitude_masks(structure, importance, ratio)
        raw = prune_channels(teacher, structure, masks, supernet.example_input()).eval()
        pruned = recalibrate_batchnorm(copy.deepcopy(raw), batches)
        results.append(
            WidthComparison(
                ratio=ratio,
                widths=widths,
                params=sum(p.numel() for p in sub.parameters()),
                supernet_fid=fid(sub),
                pruned_fid=fid(pruned),
                pruned_raw_fid=fid(raw),
            )
        )
    return results
