"""What can be compressed in a teacher generator: prunable channel groups and layers.

:func:`describe` traces the teacher once with Torch-Pruning's ``DependencyGraph``
(Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023) and returns a
:class:`~gansearch.compress.structure.GeneratorStructure`: plain, JSON-able data that
plans are validated against.

Only the *what is coupled* part of Torch-Pruning is used (see
:mod:`gansearch.compress.dependency`). Each
:class:`~gansearch.compress.structure.PrunableGroup` lists every (layer, dimension) that
must lose channels together, e.g.

* a residual add: the block's last conv/norm, the layer feeding the skip, and every
  consumer of the sum;
* a concatenation skip: the concatenated branch and the slice of the consumer's input
  channels it occupies;
* ConvTranspose2d (weight laid out ``(in, out, kh, kw)``), BatchNorm and affine
  InstanceNorm (its parameters, and its running statistics if it tracks them);
* a Linear projection reshaped to ``(N, C, h, w)``: channel ``c`` of the group removes the
  ``h*w`` Linear outputs ``c*h*w .. (c+1)*h*w - 1`` (``GroupMember.unit == h*w``).

A group is counted in channels of its *coarsest* member (the anchor), so for the Linear
projection a mask has ``C`` entries, not ``C*h*w``.

Each candidate group is verified by actually pruning one of its channels on a copy and
running the example forward. A group whose pruned model fails or changes the output shape
is listed in ``excluded_groups`` with the reason instead of being offered to the search.
The typical case is a ``view(n, self.width, 4, 4)`` that hard-codes the channel count in
Python: Torch-Pruning couples the Linear and the next layer correctly, but the forward code
cannot follow, so the Linear's output features stay unpruned.

The layers producing the generator output (found from the example forward, not by name)
are never pruned on their output side.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from gansearch.compress.dependency import (
    COMPRESSIBLE_TYPES,
    NORM_TYPES,
    anchored_group,
    build_dependency_graph,
    named_items,
    run_forward,
)
from gansearch.compress.prune import prune_channels
from gansearch.compress.structure import (
    OUT,
    ExcludedGroup,
    GeneratorStructure,
    GroupMember,
    LayerInfo,
    NormInfo,
    PrunableGroup,
    StructureError,
)


def describe(teacher: nn.Module, example_input: Any) -> GeneratorStructure:
    """Describe the prunable groups and compressible layers of ``teacher``.

    The teacher is not modified (tracing happens on a deep copy in eval mode).

    Args:
        teacher: The generator.
        example_input: A batch it accepts (tensor, tuple of positional args, or dict).

    Returns:
        The structure, with deterministic group order and names.
    """
    model = copy.deepcopy(teacher).eval()
    with torch.no_grad():
        try:
            reference = run_forward(model, example_input)
        except Exception as error:
            raise StructureError(
                f"the teacher fails on the example input ({type(error).__name__}: {error})."
            ) from error
    reference_shapes = _output_shapes(reference)
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    names = {module: name for name, module in model.named_modules()}

    layers, norms, other = _describe_layers(model)
    output_modules = _output_layers(model, example_input)
    output_names = tuple(sorted((names[m] for m in output_modules), key=order.__getitem__))

    graph = build_dependency_graph(model, example_input)
    groups: list[PrunableGroup] = []
    excluded: list[ExcludedGroup] = []
    for tp_group in graph.get_all_groups(
        ignored_layers=list(output_modules), root_module_types=COMPRESSIBLE_TYPES
    ):
        candidate, reason = _group_from_tp(graph, model, tp_group, names, order)
        if candidate is None:
            continue
        if reason is None:
            reason = _verify_group(teacher, candidate, example_input, reference_shapes)
        if reason is None:
            groups.append(candidate)
        else:
            excluded.append(ExcludedGroup(candidate.name, candidate.num_channels, reason))

    groups.sort(key=lambda g: order[g.name])
    excluded.sort(key=lambda g: order[g.name])
    return GeneratorStructure(
        groups=tuple(groups),
        layers=tuple(layers),
        norms=tuple(norms),
        output_layers=output_names,
        excluded_groups=tuple(excluded),
        other_param_count=other,
    )


def _output_shapes(output: Any) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in _flatten_tensors(output)]


def _flatten_tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for v in output.values() for t in _flatten_tensors(v)]
    if isinstance(output, (tuple, list)):
        return [t for v in output for t in _flatten_tensors(v)]
    return []


def _describe_layers(model: nn.Module) -> tuple[list[LayerInfo], list[NormInfo], int]:
    layers: list[LayerInfo] = []
    norms: list[NormInfo] = []
    covered: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, COMPRESSIBLE_TYPES):
            shape = tuple(module.weight.shape)
            if isinstance(module, nn.Linear):
                in_ch, out_ch, groups = module.in_features, module.out_features, 1
            else:
                in_ch, out_ch, groups = module.in_channels, module.out_channels, module.groups
            kernel = 1
            for size in shape[2:]:
                kernel *= size
            layers.append(
                LayerInfo(
                    name=name,
                    type=type(module).__name__,
                    weight_shape=shape,
                    in_channels=in_ch,
                    out_channels=out_ch,
                    has_bias=module.bias is not None,
                    groups=groups,
                    full_rank=min(out_ch, in_ch * kernel),
                )
            )
        elif isinstance(module, NORM_TYPES):
            norms.append(
                NormInfo(
                    name=name,
                    type=type(module).__name__,
                    num_features=module.num_features,
                    affine=bool(module.affine),
                    running_stats=bool(module.track_running_stats),
                )
            )
        else:
            continue
        covered.update(id(p) for p in module.parameters(recurse=False))
    other = sum(p.numel() for p in model.parameters() if id(p) not in covered)
    return layers, norms, other


def _output_layers(model: nn.Module, example_input: Any) -> list[nn.Module]:
    """Conv/Linear layers whose outputs reach the generator output without another one.

    Found by walking autograd from the output of one example forward back to the first
    recorded Conv/Linear output on every path (so a final norm/activation is skipped).
    """
    produced: dict[Any, nn.Module] = {}

    def record(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            produced[output.grad_fn] = module

    hooks = [
        m.register_forward_hook(record)
        for m in model.modules()
        if isinstance(m, COMPRESSIBLE_TYPES)
    ]
    try:
        with torch.enable_grad():
            output = run_forward(model, example_input)
    finally:
        for hook in hooks:
            hook.remove()

    found: list[nn.Module] = []
    seen: set[Any] = set()
    stack = [t.grad_fn for t in _flatten_tensors(output) if t.grad_fn is not None]
    while stack:
        grad_fn = stack.pop()
        if grad_fn in seen:
            continue
        seen.add(grad_fn)
        module = produced.get(grad_fn)
        if module is not None:
            if all(module is not m for m in found):
                found.append(module)
            continue
        stack.extend(f for f, _ in getattr(grad_fn, "next_functions", ()) if f is not None)
    return found


def _group_from_tp(
    graph: Any,
    model: nn.Module,
    tp_group: Any,
    names: Mapping[nn.Module, str],
    order: Mapping[str, int],
) -> tuple[PrunableGroup | None, str | None]:
    """Turn a full Torch-Pruning group into a PrunableGroup (or a reason it cannot be one)."""
    items = named_items(graph, tp_group, names)
    out_layers = [
        name
        for name, dim, _, _, module in items
        if dim == OUT and isinstance(module, COMPRESSIBLE_TYPES)
    ]
    if not out_layers:
        return None, None
    name = min(out_layers, key=order.__getitem__)

    def dim_size(module: nn.Module, dim: str) -> int | None:
        get = graph.get_out_channels if dim == OUT else graph.get_in_channels
        return get(module)

    # The anchor: the coarsest dimension that the group owns entirely.
    owned = [
        (len(idxs), dim != OUT, order[layer], layer, dim)
        for layer, dim, idxs, _, module in items
        if dim_size(module, dim) == len(idxs)
    ]
    if not owned:
        size = len(items[0][2])
        return PrunableGroup(name, size, (), GroupMember(name, OUT)), (
            "no member dimension is owned entirely by the group"
        )
    num_channels, _, _, anchor_layer, anchor_dim = min(owned)
    anchor = GroupMember(anchor_layer, anchor_dim, 1)
    placeholder = PrunableGroup(name, num_channels, (), anchor)

    unsupported = sorted(
        {
            f"'{layer}' ({type(module).__name__})"
            for layer, _, _, _, module in items
            if not isinstance(module, COMPRESSIBLE_TYPES + NORM_TYPES)
        }
    )
    if unsupported:
        return placeholder, f"members of unsupported type: {', '.join(unsupported)}"
    if any(isinstance(item.dep.target.module, nn.Parameter) for item in tp_group):
        return placeholder, "the group prunes parameters outside Conv/Linear/norm modules"

    regrouped = named_items(
        graph, anchored_group(graph, model, placeholder, list(range(num_channels))), names
    )
    members = []
    for layer, dim, idxs, root_idxs, _ in regrouped:
        if len(idxs) % num_channels:
            return placeholder, (
                f"member '{layer}' ({dim}) has {len(idxs)} coupled channels, "
                f"not a multiple of {num_channels}"
            )
        unit, offset = len(idxs) // num_channels, min(idxs)
        contiguous = sorted(idxs) == list(range(offset, offset + len(idxs))) and all(
            (idx - offset) // unit == root for idx, root in zip(idxs, root_idxs, strict=True)
        )
        if not contiguous:
            return placeholder, (
                f"member '{layer}' ({dim}) maps the group's channels to a non-contiguous "
                "set of its channels"
            )
        members.append(GroupMember(layer, dim, unit, offset))
    if {(m.layer, m.dim) for m in members} != {(i[0], i[1]) for i in items}:
        return placeholder, "re-rooting the group at its anchor changed its members"
    members.sort(key=lambda m: (order[m.layer], m.dim != OUT))
    return PrunableGroup(name, num_channels, tuple(members), anchor), None


def _verify_group(
    teacher: nn.Module,
    group: PrunableGroup,
    example_input: Any,
    reference_shapes: list[tuple[int, ...]],
) -> str | None:
    """Prune one channel of ``group`` on a copy and run the example forward."""
    if group.num_channels < 2:
        return None
    structure = GeneratorStructure(groups=(group,), layers=(), norms=(), output_layers=())
    mask = (True,) * (group.num_channels - 1) + (False,)
    try:
        pruned = prune_channels(teacher, structure, {group.name: mask}, example_input).eval()
        with torch.no_grad():
            shapes = _output_shapes(run_forward(pruned, example_input))
    except Exception as error:
        return (
            f"the forward fails once this group is pruned ({type(error).__name__}: {error}); "
            "the model's code probably hard-codes the channel count"
        )
    if shapes != reference_shapes:
        return f"pruning this group changes the output shape from {reference_shapes} to {shapes}"
    return None
