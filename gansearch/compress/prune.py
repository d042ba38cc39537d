"""Structural channel pruning of a generator, driven by keep-masks from the search.

Only Torch-Pruning's dependency-aware surgery is used (Fang et al., "DepGraph: Towards
Any Structural Pruning", CVPR 2023): which channels to cut comes from the plan, and
``get_pruning_group(anchor, fn, idxs).prune()`` removes them from every coupled layer.
The result is physically smaller (fewer channels), not a zero-masked copy.

:func:`channel_importance` and :func:`magnitude_masks` give the L1-magnitude baseline
(Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017), summed over all coupled
weights of a group as in DepGraph's group-level importance.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from gansearch.compress.groups import (
    OUT,
    GeneratorStructure,
    GroupMember,
    anchored_group,
    build_dependency_graph,
    named_items,
)
from gansearch.compress.plan import InvalidPlanError


def removed_channels(
    structure: GeneratorStructure, masks: Mapping[str, Sequence[bool]]
) -> dict[str, list[int]]:
    """Group name -> indices of the channels its mask removes (only groups that lose some).

    Raises:
        InvalidPlanError: for an unknown group, a mask of the wrong length or one that
            keeps no channel.
    """
    known = {g.name: g for g in structure.groups}
    for name in masks:
        if name not in known:
            raise InvalidPlanError(
                f"group '{name}': unknown group; known groups are {sorted(known)}."
            )
    removed = {}
    for group in structure.groups:
        mask = masks.get(group.name)
        if mask is None:
            continue
        if len(mask) != group.num_channels:
            raise InvalidPlanError(
                f"group '{group.name}': mask has {len(mask)} entries, but the group has "
                f"{group.num_channels} channels."
            )
        if not any(mask):
            raise InvalidPlanError(f"group '{group.name}': mask keeps 0 channels.")
        idxs = [i for i, keep in enumerate(mask) if not keep]
        if idxs:
            removed[group.name] = idxs
    return removed


def prune_channels(
    model: nn.Module,
    structure: GeneratorStructure,
    masks: Mapping[str, Sequence[bool]],
    example_input: Any,
) -> nn.Module:
    """A pruned deep copy of ``model`` keeping the channels where ``masks`` is True.

    Groups missing from ``masks`` keep every channel. ``model`` is not modified; the copy
    keeps the module names and train/eval mode of ``model``.
    """
    removed = removed_channels(structure, masks)
    pruned = copy.deepcopy(model)
    if not removed:
        return pruned
    was_training = pruned.training
    graph = build_dependency_graph(pruned, example_input)  # puts ``pruned`` in eval mode
    names = {module: name for name, module in pruned.named_modules()}
    for group in structure.groups:
        idxs = removed.get(group.name)
        if not idxs:
            continue
        tp_group = anchored_group(graph, pruned, group, idxs)
        if not graph.check_pruning_group(tp_group):
            raise InvalidPlanError(
                f"group '{group.name}': removing {len(idxs)} channels would empty a layer."
            )
        items = named_items(graph, tp_group, names)
        tp_group.prune()
        _prune_instance_norm_stats(items)
    pruned.train(was_training)
    return pruned


def _prune_instance_norm_stats(items: list[tuple]) -> None:
    """Torch-Pruning leaves InstanceNorm running statistics unpruned; slice them here."""
    for _, _, idxs, _, module in items:
        if not isinstance(module, nn.modules.instancenorm._InstanceNorm):
            continue
        for buffer in ("running_mean", "running_var"):
            stats = getattr(module, buffer, None)
            if stats is not None and stats.numel() != module.num_features:
                keep = sorted(set(range(stats.numel())) - set(idxs))
                setattr(module, buffer, stats[keep].clone())


def predicted_params(structure: GeneratorStructure, masks: Mapping[str, Sequence[bool]]) -> int:
    """Parameter count of the pruned generator, computed from shapes alone (no model)."""
    removed = removed_channels(structure, masks)
    kept = {g.name: g.num_channels - len(removed.get(g.name, ())) for g in structure.groups}
    return structure.param_count(kept)


# ---------------------------------------------------------------------------------------
# Magnitude importance
# ---------------------------------------------------------------------------------------


def channel_importance(model: nn.Module, structure: GeneratorStructure) -> dict[str, torch.Tensor]:
    """L1 magnitude of each group channel: sum of |w| over all its coupled weights.

    Every member contributes the weight slice (and bias / norm affine parameters on the
    output side) that pruning the channel would remove. ``model`` must be the unpruned
    teacher the structure was built from.

    Returns:
        Group name -> float tensor of shape ``(num_channels,)``.
    """
    importance = {}
    with torch.no_grad():
        for group in structure.groups:
            total = torch.zeros(group.num_channels, dtype=torch.float64)
            for member in group.members:
                module = model.get_submodule(member.layer)
                for tensor, axis in _member_slices(module, member):
                    total += _channel_l1(tensor, axis, member, group.num_channels)
            importance[group.name] = total.float()
    return importance


def _member_slices(module: nn.Module, member: GroupMember) -> list[tuple[torch.Tensor, int]]:
    """(tensor, axis) pairs whose slices along ``axis`` belong to the member's channels."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm | nn.modules.instancenorm._InstanceNorm):
        if not module.affine:
            return []
        return [(module.weight, 0), (module.bias, 0)]
    weight = module.weight
    transposed = isinstance(module, nn.ConvTranspose2d)
    if member.dim == OUT:
        pairs = [(weight, 1 if transposed else 0)]
        if module.bias is not None:
            pairs.append((module.bias, 0))
        return pairs
    if getattr(module, "groups", 1) != 1:  # grouped input side: no per-channel slice
        return []
    return [(weight, 0 if transposed else 1)]


def _channel_l1(
    tensor: torch.Tensor, axis: int, member: GroupMember, channels: int
) -> torch.Tensor:
    part = tensor.detach().abs().double().narrow(axis, member.offset, channels * member.unit)
    part = part.movedim(axis, 0).reshape(channels, -1)
    return part.sum(dim=1)


def magnitude_masks(
    structure: GeneratorStructure,
    importance: Mapping[str, Sequence[float] | torch.Tensor],
    keep_ratio: float | Mapping[str, float],
) -> dict[str, tuple[bool, ...]]:
    """Keep-masks keeping the most important ``round(keep_ratio * C)`` channels (>= 1).

    Args:
        structure: The generator structure.
        importance: Group name -> per-channel scores (e.g. :func:`channel_importance`).
        keep_ratio: One ratio in (0, 1] for all groups, or one per group name.

    Ties keep the lower channel index, so the result is deterministic.
    """
    masks = {}
    for group in structure.groups:
        ratio = keep_ratio.get(group.name, 1.0) if isinstance(keep_ratio, Mapping) else keep_ratio
        if not 0.0 < ratio <= 1.0:
            raise ValueError(
                f"`0 < keep_ratio <= 1` must hold, but got keep_ratio={ratio} "
                f"for group '{group.name}'."
            )
        scores = [float(s) for s in importance[group.name]]
        if len(scores) != group.num_channels:
            raise ValueError(
                f"group '{group.name}': importance has {len(scores)} scores, but the group has "
                f"{group.num_channels} channels."
            )
        keep = max(1, min(group.num_channels, math.floor(ratio * group.num_channels + 0.5)))
        ranked = sorted(range(group.num_channels), key=lambda i: (-scores[i], i))
        kept = set(ranked[:keep])
        masks[group.name] = tuple(i in kept for i in range(group.num_channels))
    return masks
