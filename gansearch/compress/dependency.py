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

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


@contextmanager
def fresh_outputs(model: nn.Module) -> Iterator[None]:
    """While tracing, every Conv/Linear/norm layer of ``model`` returns a copy of its output.

    An in-place operation on a layer output that is a view (InstanceNorm's output is a view
    of a reshaped batch-norm result) makes autograd replace the node that produced it, so
    the layer disappears from the graph Torch-Pruning traces and its channels are left out
    of their group. ``nn.ReLU(inplace=True)`` after ``InstanceNorm2d``, the CycleGAN
    reference pattern, is the common case; ``torch.relu_``, ``F.relu(x, inplace=True)`` and
    ``x += skip`` in a functional forward are others. A copy is never a view, so the
    in-place operation rewrites the copy's node and the layer's own node stays in the
    graph. Outputs are numerically unchanged and the hooks are removed on exit, so the
    module that is traced (and later pruned) keeps its in-place activations.
    """

    def copy_output(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        return output.clone() if isinstance(output, torch.Tensor) else None

    handles = [
        module.register_forward_hook(copy_output)
        for module in model.modules()
        if isinstance(module, COMPRESSIBLE_TYPES + NORM_TYPES)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def build_dependency_graph(model: nn.Module, example_input: Any) -> Any:
    """Trace ``model`` (which Torch-Pruning puts in eval mode) into a ``DependencyGraph``.

    The trace runs under :func:`fresh_outputs`, so in-place operations after a layer do not
    hide it from the graph.
    """
    import torch_pruning as tp

    with torch.enable_grad(), fresh_outputs(model):
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
    """Torch-Pruning group removing channels ``idxs`` of ``group`` (rooted at its anchor).

    Group channel ``c`` is the anchor channels ``group.anchor.channels(c, num_channels)``:
    one channel, or one per block for a group pruned in whole grouped-convolution groups.
    """
    module = model.get_submodule(group.anchor.layer)
    anchor_idxs = sorted(i for c in idxs for i in group.anchor.channels(c, group.num_channels))
    return graph.get_pruning_group(module, pruning_fn(graph, module, group.anchor.dim), anchor_idxs)


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
