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
  ``h*w`` Linear outputs ``c*h*w .. (c+1)*h*w - 1`` (``GroupMember.unit == h*w``);
* a grouped convolution (``groups=g``, not depthwise) on either side: it keeps a multiple
  of ``g`` channels, so the group is pruned in ``g`` blocks (``GroupMember.blocks``) and a
  mask entry removes the same position in every block (Torch-Pruning's own rule for
  grouped convolutions); depthwise convolutions simply lose channels with their input.

A group is counted in channels of its *coarsest* member (the anchor), so for the Linear
projection a mask has ``C`` entries, not ``C*h*w``, and ``C / g`` next to a grouped conv.

In-place operations after a layer (``nn.ReLU(inplace=True)`` after InstanceNorm, as the
CycleGAN reference code writes it, or ``F.relu(x, inplace=True)`` / ``torch.relu_`` in a
functional forward) cost no groups: the trace copies each layer's output (see
:func:`~gansearch.compress.dependency.fresh_outputs`), and the pruned model keeps them.

Each candidate group is verified by actually pruning one of its channels on a copy and
running the example forward. A group that cannot be pruned is listed in
``excluded_groups`` with a reason that states what was observed, never a guess:

* the forward fails: the reason names the file, line and code of the model's forward where
  it fails and torch's error, plus the cause where the error shows it (a view/reshape to a
  fixed channel count such as ``view(n, self.width, 4, 4)``, a split with fixed sizes, or
  a fixed-size buffer/constant combined with the group's channels);
* the output shape changes;
* a grouped convolution takes only part of its channels from the group, the group's
  channels do not split evenly over its convolution groups, or it cannot lose any;
* the group is coupled to the output channels of an output layer;
* a member of a type gansearch cannot prune (e.g. GroupNorm), a bare ``nn.Parameter``,
  or a coupling that is not a contiguous block of channels.

The layers producing the generator output (found from the example forward, not by name)
are never pruned on their output side.
"""

from __future__ import annotations

import copy
import math
import re
import traceback
from collections.abc import Mapping
from pathlib import Path
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
    for tp_group in graph.get_all_groups(root_module_types=COMPRESSIBLE_TYPES):
        outputs = _output_members(graph, tp_group, output_modules, names)
        if outputs is None:  # the output layers' own group: never pruned, by design
            continue
        candidate, reason = _group_from_tp(graph, model, tp_group, names, order)
        if candidate is None:
            continue
        if outputs:
            reason = (
                f"its channels are coupled to the output channels of output layer(s) "
                f"{', '.join(repr(o) for o in outputs)}, which are never pruned"
            )
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


def _output_members(
    graph: Any, tp_group: Any, output_modules: list[nn.Module], names: Mapping[nn.Module, str]
) -> list[str] | None:
    """Output layers whose output channels are in ``tp_group``; None if only they are.

    Torch-Pruning's own ``ignored_layers`` would drop a group coupled to an output layer
    without a word; here it is reported (excluded, with the output layers named).
    """
    outputs, others = [], []
    for layer, dim, _, _, module in named_items(graph, tp_group, names):
        if dim != OUT or not isinstance(module, COMPRESSIBLE_TYPES):
            continue
        if any(module is m for m in output_modules):
            outputs.append(layer)
        else:
            others.append(layer)
    if outputs and not others:
        return None
    return outputs


def _group_from_tp(
    graph: Any,
    model: nn.Module,
    tp_group: Any,
    names: Mapping[nn.Module, str],
    order: Mapping[str, int],
) -> tuple[PrunableGroup | None, str | None]:
    """Turn a full Torch-Pruning group into a PrunableGroup (or a reason it cannot be one)."""
    items = _channel_items(named_items(graph, tp_group, names))
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
    blocks, reason = _conv_groups(items, num_channels, dim_size)
    if reason is not None:
        return placeholder, reason

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

    regrouped = _channel_items(
        named_items(
            graph, anchored_group(graph, model, placeholder, list(range(num_channels))), names
        )
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
        members.append(GroupMember(layer, dim, unit * blocks, offset, blocks))
    if {(m.layer, m.dim) for m in members} != {(i[0], i[1]) for i in items}:
        return placeholder, "re-rooting the group at its anchor changed its members"
    members.sort(key=lambda m: (order[m.layer], m.dim != OUT))
    anchor = GroupMember(anchor_layer, anchor_dim, blocks, 0, blocks)
    return PrunableGroup(name, num_channels // blocks, tuple(members), anchor), None


def _channel_items(items: list[tuple]) -> list[tuple]:
    """The members whose size follows the group's channels.

    Torch-Pruning lists a scalar ``nn.PReLU`` (one slope for every channel, PyTorch's
    default and SRGAN's activation; Ledig et al., CVPR 2017) in the group of the layer it
    follows, but it has no channel dimension and its pruner leaves it unchanged, so it is
    no member. A per-channel ``PReLU(num_parameters=C)`` stays a member (unsupported).
    """
    return [
        item
        for item in items
        if not (isinstance(item[4], nn.PReLU) and item[4].num_parameters == 1)
    ]


def _conv_groups(items: list[tuple], num_channels: int, dim_size: Any) -> tuple[int, str | None]:
    """Blocks the group is pruned in: the lcm of its grouped convolutions' ``groups``.

    A grouped convolution (``groups=g``, not depthwise) keeps a multiple of ``g`` channels
    on both sides, the same positions in every convolution group on its input side
    (Torch-Pruning's ``ConvPruner`` slices the per-group input weights once). So the
    group's channels are split into ``blocks`` equal blocks and each mask entry removes one
    position in every block. Depthwise convolutions (``groups == out_channels``) lose
    whole groups in Torch-Pruning and need no blocks.

    Returns:
        ``(blocks, None)``, or ``(1, reason)`` when the group cannot be pruned that way.
    """
    blocks = 1
    for layer, dim, idxs, _, module in items:
        if not isinstance(module, nn.modules.conv._ConvNd) or module.groups == 1:
            continue
        if module.groups == module.out_channels:  # depthwise: Torch-Pruning drops groups
            continue
        groups = module.groups
        side = "output" if dim == OUT else "input"
        if len(idxs) != dim_size(module, dim):
            return 1, (
                f"grouped convolution '{layer}' (groups={groups}) takes only part of its "
                f"{side} channels from this group, so its convolution groups cannot lose "
                "the same channels"
            )
        blocks = math.lcm(blocks, groups)
    if num_channels % blocks:
        return 1, (
            f"the group's {num_channels} channels cannot be split evenly over the "
            f"{blocks} groups of its grouped convolutions"
        )
    if blocks > 1 and num_channels // blocks < 2:
        return 1, (
            f"its grouped convolutions keep a multiple of {blocks} of its {num_channels} "
            "channels, so it cannot lose any"
        )
    return blocks, None


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
    except Exception as error:
        return f"Torch-Pruning fails to remove one channel ({type(error).__name__}: {error})"
    try:
        with torch.no_grad():
            shapes = _output_shapes(run_forward(pruned, example_input))
    except Exception as error:
        return _failure_reason(error)
    if shapes != reference_shapes:
        return f"pruning this group changes the output shape from {reference_shapes} to {shapes}"
    return None


# What a failure message of torch shows about the model's forward code.
_FAILURE_CAUSES = (
    (
        re.compile(r"shape '\[[-\d, ]*\]' is invalid for input of size"),
        "a view/reshape in the forward code fixes the channel count; infer it instead "
        "(e.g. view(n, -1, h, w))",
    ),
    (
        re.compile(r"pixel_shuffle expects its input's 'channel' dimension to be divisible"),
        "a PixelShuffle takes its input channels in blocks of upscale_factor**2, but the "
        "dependency trace couples them one by one (not supported)",
    ),
    (
        re.compile(r"split_with_sizes expects split_sizes to sum exactly"),
        "a split in the forward code uses fixed sizes",
    ),
    (
        re.compile(
            r"size of tensor a \(\d+\) must match the size of tensor b \(\d+\) "
            r"at non-singleton dimension 1"
        ),
        "the forward code combines the group's channels with a tensor whose channel count "
        "is fixed (a buffer, or a constant made in forward), which the dependency trace "
        "cannot couple to the group",
    ),
)


def _failure_reason(error: Exception) -> str:
    """Why the pruned forward fails: where it fails, the error, and its cause if known."""
    message = str(error).splitlines()[0] if str(error) else ""
    where = _user_frame(error)
    reason = (
        f"the forward fails once this group is pruned{where} ({type(error).__name__}: {message})"
    )
    for pattern, cause in _FAILURE_CAUSES:
        if pattern.search(message):
            return f"{reason}: {cause}"
    return reason


def _user_frame(error: Exception) -> str:
    """`` at FILE:LINE (`code`)`` of the innermost frame outside torch, or ``""``."""
    torch_dir = Path(torch.__file__).parent
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if Path(frame.filename).is_relative_to(torch_dir):
            continue
        code = f" (`{frame.line}`)" if frame.line else ""
        return f" at {Path(frame.filename).name}:{frame.lineno}{code}"
    return ""
