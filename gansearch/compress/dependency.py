"""Torch-Pruning's dependency graph, as gansearch uses it.

Only the *what is coupled* part of Torch-Pruning (Fang et al., "DepGraph: Towards Any
Structural Pruning", CVPR 2023) is used: :func:`build_dependency_graph` traces a model,
:func:`anchored_group` asks it which (layer, dimension) slices go with channels ``idxs``
of a :class:`~gansearch.compress.structure.PrunableGroup`, and :func:`named_items` reads
such a group back as plain names. Which channels to cut comes from the plan (pruning,
:mod:`gansearch.compress.prune`) or from an importance score
(:mod:`gansearch.compress.importance`); what can be cut is found by
:func:`gansearch.compress.groups.describe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gansearch.compress.structure import IN, OUT, PrunableGroup, StructureError

COMPRESSIBLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def run_forward(model: nn.Module, example_input: Any) -> Any:
    """Call ``model`` on ``example_input`` (a tensor, a tuple of positional args or a dict)."""
    if isinstance(example_input, torch.Tensor):
        return model(example_input)
    if isinstance(example_input, Mapping):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    raise StructureError(
        f"example_input must be a tensor, a tuple of tensors or a dict, "
        f"but got {type(example_input).__name__}."
    )


def build_dependency_graph(model: nn.Module, example_input: Any) -> Any:
    """Trace ``model`` (which Torch-Pruning puts in eval mode) into a ``DependencyGraph``."""
    import torch_pruning as tp

    with torch.enable_grad():
        return tp.DependencyGraph().build_dependency(
            model,
            example_inputs=example_input,
            forward_fn=run_forward,  # never let tp try model(*tensor) on a batch
            verbose=False,
        )


def pruning_fn(graph: Any, module: nn.Module, dim: str) -> Any:
    """Torch-Pruning's function removing ``dim`` (:data:`OUT` / :data:`IN`) channels."""
    pruner = graph.get_pruner_of_module(module)
    return pruner.prune_out_channels if dim == OUT else pruner.prune_in_channels


def anchored_group(graph: Any, model: nn.Module, group: PrunableGroup, idxs: list[int]) -> Any:
    """Torch-Pruning group removing channels ``idxs`` of ``group`` (rooted at its anchor)."""
    module = model.get_submodule(group.anchor.layer)
    return graph.get_pruning_group(module, pruning_fn(graph, module, group.anchor.dim), idxs)


def named_items(graph: Any, tp_group: Any, names: Mapping[nn.Module, str]) -> list[tuple]:
    """(layer name, dim, idxs, root_idxs, module) of the named modules in a tp group."""
    items = []
    for item in tp_group:
        module = item.dep.target.module
        if module not in names:
            continue
        dim = OUT if graph.is_out_channel_pruning_fn(item.dep.handler) else IN
        items.append((names[module], dim, list(item.idxs), list(item.root_idxs), module))
    return items
