"""Channel importance of prunable groups: the L1-magnitude baseline and its channel order.

The score of a group channel is the L1 norm of every weight that pruning it removes,
summed over all coupled layers of the group: DepGraph's group-level magnitude importance
(Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023) with the L1 filter
norm of Li et al., "Pruning Filters for Efficient ConvNets" (ICLR 2017). It is
Torch-Pruning's public ``GroupMagnitudeImportance(p=1, group_reduction="sum",
normalizer=None, bias=True)`` evaluated on the group rooted at its anchor, which covers
Conv/ConvTranspose/Linear weights on both sides (a Linear reshaped to ``(N, C, h, w)``
contributes its ``h*w`` outputs per channel through Torch-Pruning's root indices), their
biases, and affine BatchNorm parameters.

One addition, with its reason: Torch-Pruning 1.6's ``GroupMagnitudeImportance`` has no
branch for InstanceNorm (its pruning function is neither the BatchNorm nor the LayerNorm
one), so the ``|gamma| + |beta|`` of an *affine* InstanceNorm member would be left out.
They are added here, as for BatchNorm, so that a group ending in an affine InstanceNorm
(the toy generator's ``side`` group) keeps the order it had before Torch-Pruning's
importance was used. Known difference from the earlier hand-written score, for models
gansearch does not ship: Torch-Pruning scores the input side of a grouped (not depthwise)
convolution and skips depthwise convolutions altogether. For a group pruned in blocks (next
to a grouped convolution, ``GroupMember.blocks > 1``) a channel's score is the sum over the
anchor channels it removes, one per block.

:func:`channel_order` ranks the channels by :func:`~gansearch.compress.structure.importance_order`
and :func:`magnitude_masks` keeps the top :func:`~gansearch.compress.structure.width_for`
of them, so the first ``w`` channels of the order are exactly what magnitude pruning keeps.
The once-for-all supernet stores this order with its weights, so it must stay stable.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from gansearch.compress.dependency import anchored_group, build_dependency_graph
from gansearch.compress.structure import (
    GeneratorStructure,
    PrunableGroup,
    importance_order,
    width_for,
)


def channel_importance(
    model: nn.Module, structure: GeneratorStructure, example_input: Any
) -> dict[str, torch.Tensor]:
    """L1 magnitude of each group channel: sum of |w| over all its coupled weights.

    Args:
        model: The unpruned teacher the structure was built from (not modified).
        structure: ``describe(model, example_input)``.
        example_input: A batch ``model`` accepts (to trace the dependency graph).

    Returns:
        Group name -> float32 tensor of shape ``(num_channels,)``.
    """
    import torch_pruning as tp

    traced = copy.deepcopy(model)  # tracing puts the model in eval mode
    graph = build_dependency_graph(traced, example_input)
    scorer = tp.importance.GroupMagnitudeImportance(
        p=1, group_reduction="sum", normalizer=None, bias=True
    )
    importance = {}
    with torch.no_grad():
        for group in structure.groups:
            channels = list(range(group.num_channels))
            scores = scorer(anchored_group(graph, traced, group, channels))
            if scores is None:  # no weighted layer in the group
                scores = torch.zeros(group.num_channels)
            elif group.anchor.blocks > 1:  # anchor channels -> group channels
                scores = scores.view(group.anchor.blocks, group.num_channels).sum(dim=0)
            importance[group.name] = scores.float() + _instance_norm_l1(traced, group)
    return importance


def _instance_norm_l1(model: nn.Module, group: PrunableGroup) -> torch.Tensor:
    """``|gamma| + |beta|`` per channel of the group's affine InstanceNorm members."""
    channels = group.num_channels
    total = torch.zeros(channels)
    for member in group.members:
        module = model.get_submodule(member.layer)
        if not isinstance(module, nn.modules.instancenorm._InstanceNorm) or not module.affine:
            continue
        index = torch.tensor([member.channels(c, channels) for c in range(channels)])
        for parameter in (module.weight, module.bias):
            total += parameter.detach().abs()[index].sum(dim=1).float()
    return total


def channel_order(
    teacher: nn.Module, structure: GeneratorStructure, example_input: Any
) -> dict[str, tuple[int, ...]]:
    """Group name -> channel indices by decreasing L1 importance (ties: lower index first)."""
    importance = channel_importance(teacher, structure, example_input)
    return {name: importance_order(scores.tolist()) for name, scores in importance.items()}


def magnitude_masks(
    structure: GeneratorStructure,
    importance: Mapping[str, Sequence[float] | torch.Tensor],
    keep_ratio: float | Mapping[str, float],
) -> dict[str, tuple[bool, ...]]:
    """Keep-masks keeping the ``width_for(keep_ratio, C)`` most important channels.

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
        kept = set(importance_order(scores)[: width_for(ratio, group.num_channels)])
        masks[group.name] = tuple(i in kept for i in range(group.num_channels))
    return masks
