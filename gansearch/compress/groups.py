"""What can be compressed in a teacher generator: prunable channel groups and layers.

:func:`describe` traces the teacher once with Torch-Pruning's ``DependencyGraph``
(Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023) and returns a
:class:`GeneratorStructure`: plain, JSON-able data that plans are validated against.

Only the *what is coupled* part of Torch-Pruning is used. Each :class:`PrunableGroup`
lists every (layer, dimension) that must lose channels together, e.g.

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
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from gansearch.errors import GansearchError

COMPRESSIBLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)
OUT = "out"
IN = "in"


class StructureError(GansearchError):
    """A generator (or example input) that cannot be described for compression."""


@dataclass(frozen=True)
class GroupMember:
    """One (layer, dimension) of a group.

    Attributes:
        layer: Qualified module name.
        dim: ``"out"`` (output channels / norm features) or ``"in"`` (input channels).
        unit: Channels of this dimension removed per channel of the group.
        offset: First channel of this dimension that belongs to the group (non-zero for
            the consumer of a concatenation). Channel ``c`` of the group is channels
            ``offset + c*unit .. offset + (c+1)*unit - 1`` of this dimension, in the
            unpruned teacher.
    """

    layer: str
    dim: str
    unit: int = 1
    offset: int = 0


@dataclass(frozen=True)
class PrunableGroup:
    """Channels that must be pruned together.

    Attributes:
        name: Qualified name of the first (in module order) Conv/Linear whose output
            channels belong to the group.
        num_channels: Length of the group's keep-mask.
        members: Every (layer, dimension) touched, in module order.
        anchor: The member whose channel ``i`` is the group's channel ``i``; pruning is
            rooted there.
    """

    name: str
    num_channels: int
    members: tuple[GroupMember, ...]
    anchor: GroupMember

    @property
    def member_layers(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for member in self.members:
            seen.setdefault(member.layer, None)
        return tuple(seen)


@dataclass(frozen=True)
class ExcludedGroup:
    """A coupled group that is not offered for pruning, and why."""

    name: str
    num_channels: int
    reason: str


@dataclass(frozen=True)
class LayerInfo:
    """A Conv2d / ConvTranspose2d / Linear layer (the unit of low-rank and encodings).

    Attributes:
        full_rank: ``min(out, in * kh * kw)`` (``min(out, in)`` for Linear), the largest
            useful SVD rank (see :mod:`gansearch.compress.lowrank`).
    """

    name: str
    type: str
    weight_shape: tuple[int, ...]
    in_channels: int
    out_channels: int
    has_bias: bool
    groups: int
    full_rank: int

    @property
    def factorizable(self) -> bool:
        return self.groups == 1

    @property
    def kernel_numel(self) -> int:
        numel = 1
        for size in self.weight_shape[2:]:
            numel *= size
        return numel

    def param_count(self, in_channels: int, out_channels: int) -> int:
        """Parameters of this layer with the given channel counts."""
        if self.groups == 1:
            weight = out_channels * in_channels * self.kernel_numel
        elif self.groups == self.in_channels == self.out_channels:  # depthwise stays depthwise
            weight = out_channels * self.kernel_numel
        else:
            weight = out_channels * (in_channels // self.groups) * self.kernel_numel
        return weight + (out_channels if self.has_bias else 0)


@dataclass(frozen=True)
class NormInfo:
    """A BatchNorm / InstanceNorm layer."""

    name: str
    type: str
    num_features: int
    affine: bool
    running_stats: bool


@dataclass(frozen=True)
class GeneratorStructure:
    """JSON-able description of a teacher, built by :func:`describe`.

    Attributes:
        groups: Prunable groups in module order of their names.
        layers: Compressible layers in module order.
        norms: Norm layers in module order.
        output_layers: Layers producing the generator output (output channels fixed).
        excluded_groups: Coupled groups not offered for pruning, with reasons.
        other_param_count: Parameters outside ``layers`` and ``norms`` (never pruned).
    """

    groups: tuple[PrunableGroup, ...]
    layers: tuple[LayerInfo, ...]
    norms: tuple[NormInfo, ...]
    output_layers: tuple[str, ...]
    excluded_groups: tuple[ExcludedGroup, ...] = ()
    other_param_count: int = 0

    def group(self, name: str) -> PrunableGroup:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(f"unknown group '{name}'; known groups are {[g.name for g in self.groups]}")

    def layer(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"unknown layer '{name}'; known layers are {[x.name for x in self.layers]}")

    def channels_after_pruning(self, kept: Mapping[str, int]) -> dict[tuple[str, str], int]:
        """(layer, dim) -> channel count once each group keeps ``kept[group]`` channels.

        Groups missing from ``kept`` keep all their channels.
        """
        sizes: dict[tuple[str, str], int] = {}
        for layer in self.layers:
            sizes[(layer.name, IN)] = layer.in_channels
            sizes[(layer.name, OUT)] = layer.out_channels
        for norm in self.norms:
            sizes[(norm.name, OUT)] = norm.num_features
        for group in self.groups:
            removed = group.num_channels - kept.get(group.name, group.num_channels)
            for member in group.members:
                sizes[(member.layer, member.dim)] -= member.unit * removed
        return sizes

    def full_rank_after_pruning(self, layer: str, kept: Mapping[str, int]) -> int:
        info = self.layer(layer)
        sizes = self.channels_after_pruning(kept)
        in_channels, out_channels = sizes[(layer, IN)], sizes[(layer, OUT)]
        return min(out_channels, in_channels * info.kernel_numel)

    def param_count(self, kept: Mapping[str, int] | None = None) -> int:
        """Parameters of the generator once each group keeps ``kept[group]`` channels."""
        sizes = self.channels_after_pruning(kept or {})
        total = self.other_param_count
        for layer in self.layers:
            total += layer.param_count(sizes[(layer.name, IN)], sizes[(layer.name, OUT)])
        for norm in self.norms:
            if norm.affine:
                total += 2 * sizes[(norm.name, OUT)]
        return total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratorStructure:
        def group(g: Mapping[str, Any]) -> PrunableGroup:
            return PrunableGroup(
                name=g["name"],
                num_channels=g["num_channels"],
                members=tuple(GroupMember(**m) for m in g["members"]),
                anchor=GroupMember(**g["anchor"]),
            )

        return cls(
            groups=tuple(group(g) for g in data["groups"]),
            layers=tuple(
                LayerInfo(**{**x, "weight_shape": tuple(x["weight_shape"])}) for x in data["layers"]
            ),
            norms=tuple(NormInfo(**x) for x in data["norms"]),
            output_layers=tuple(data["output_layers"]),
            excluded_groups=tuple(ExcludedGroup(**x) for x in data["excluded_groups"]),
            other_param_count=data["other_param_count"],
        )

    @classmethod
    def from_json(cls, text: str) -> GeneratorStructure:
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------
# Torch-Pruning helpers (shared with prune.py)
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# describe()
# ---------------------------------------------------------------------------------------


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
    from gansearch.compress.prune import prune_channels

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
