"""The torch-free description of a generator's compressible structure.

:func:`gansearch.compress.groups.describe` builds a :class:`GeneratorStructure` from a
teacher; everything here is plain, JSON-able data, so that plans, search spaces and
strategies can use it without importing torch. It also holds the two channel rules every
consumer shares:

* :func:`width_for`: the channels kept at a width ratio, ``round(ratio * C)`` (halves
  up) within ``[1, C]``; used by magnitude pruning, the supernet and the search space.
* :func:`importance_order`: channel indices by decreasing importance, ties keeping the
  lower index first, so that the first ``w`` channels of the order are exactly the
  channels magnitude pruning keeps at width ``w``.

Dimensions of a member are named :data:`OUT` (output channels / norm features) and
:data:`IN` (input channels).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gansearch.errors import GansearchError

OUT = "out"
IN = "in"


def width_for(ratio: float, num_channels: int) -> int:
    """Channels kept at ``ratio``: ``round(ratio * C)`` with halves up, within ``[1, C]``."""
    return max(1, min(num_channels, math.floor(ratio * num_channels + 0.5)))


def importance_order(scores: Iterable[float]) -> tuple[int, ...]:
    """Channel indices from most to least important; ties keep the lower index first."""
    values = [float(s) for s in scores]
    return tuple(sorted(range(len(values)), key=lambda i: (-values[i], i)))


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
            unpruned teacher (when ``blocks == 1``).
        blocks: For a group coupled to a grouped convolution (``groups=g``, not
            depthwise), which keeps a multiple of ``g`` channels: the member's channels
            ``offset ..`` are split into ``blocks`` equal blocks (``g`` divides ``blocks``)
            and channel ``c`` of the group removes ``unit // blocks`` channels at the same
            position in every block, so every convolution group loses the same channels.
    """

    layer: str
    dim: str
    unit: int = 1
    offset: int = 0
    blocks: int = 1

    def channels(self, channel: int, num_channels: int) -> list[int]:
        """Channels of this dimension removed with channel ``channel`` of its group.

        Args:
            channel: A channel of the group, in ``[0, num_channels)``.
            num_channels: The group's ``num_channels``.
        """
        per_block = self.unit // self.blocks
        stride = num_channels * per_block
        start = self.offset + channel * per_block
        return [
            start + block * stride + i for block in range(self.blocks) for i in range(per_block)
        ]


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
    """JSON-able description of a teacher, built by :func:`~gansearch.compress.groups.describe`.

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
