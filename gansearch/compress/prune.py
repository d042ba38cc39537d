"""Structural channel pruning of a generator, driven by keep-masks from the search.

Only Torch-Pruning's dependency-aware surgery is used (Fang et al., "DepGraph: Towards
Any Structural Pruning", CVPR 2023): which channels to cut comes from the plan, and
``get_pruning_group(anchor, fn, idxs).prune()`` removes them from every coupled layer.
The result is physically smaller (fewer channels), not a zero-masked copy.

The groups come from :func:`gansearch.compress.groups.describe`; importance-based masks
(the L1-magnitude baseline) from :mod:`gansearch.compress.importance`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from gansearch.compress.dependency import anchored_group, build_dependency_graph, named_items
from gansearch.compress.plan import InvalidPlanError, check_masks
from gansearch.compress.structure import GeneratorStructure


def removed_channels(
    structure: GeneratorStructure, masks: Mapping[str, Sequence[bool]]
) -> dict[str, list[int]]:
    """Group name -> indices of the channels its mask removes (only groups that lose some).

    Raises:
        InvalidPlanError: for an unknown group, a mask of the wrong length or one that
            keeps no channel.
    """
    check_masks(masks, structure)
    removed = {}
    for group in structure.groups:
        mask = masks.get(group.name)
        if mask is None:
            continue
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
