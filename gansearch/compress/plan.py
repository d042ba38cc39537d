"""The compression plan: plain, versioned, JSON-serialisable data.

A :class:`CompressionPlan` says, for one teacher generator, which channels of each
prunable group to keep, and for each Conv/ConvTranspose/Linear layer its low-rank rank,
weight encoding and activation bit width. It holds no tensors and never touches torch,
so strategies can build it and Optuna can store it.

Conventions:

* A group missing from ``masks`` keeps all its channels; a layer missing from ``layers``
  gets ``LayerPlan()`` (no low-rank, float32 weights, float activations).
* ``widths`` (once-for-all supernet widths, one per group) is an alternative to ``masks``:
  when it is set, ``masks`` must be empty.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gansearch.errors import GansearchError

if TYPE_CHECKING:
    from gansearch.compress.structure import GeneratorStructure

PLAN_VERSION = 1
NORM_DTYPES = ("float16", "float32")
FLOAT_ACTIVATION_BITS = 32
ACTIVATION_BITS = (2, 3, 4, 5, 6, 7, 8, FLOAT_ACTIVATION_BITS)


class InvalidPlanError(GansearchError):
    """A plan that does not fit its generator; the message names the layer or group."""


class PlanNotSupportedError(GansearchError, NotImplementedError):
    """A valid plan that uses a feature this version cannot apply yet (e.g. ``widths``)."""


@dataclass(frozen=True)
class LayerPlan:
    """Per-layer choices for one Conv2d / ConvTranspose2d / Linear layer.

    Attributes:
        rank: Low-rank (SVD) rank; 0 switches factorisation off.
        weight: Weight encoding spec (see :func:`gansearch.compress.encodings.parse_encoding`).
        activation_bits: Bits of the simulated quantiser of the layer's input activations;
            32 switches it off.
    """

    rank: int = 0
    weight: str = "float32"
    activation_bits: int = FLOAT_ACTIVATION_BITS

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "weight": self.weight, "activation_bits": self.activation_bits}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "layer") -> LayerPlan:
        _reject_unknown_keys(data, ("rank", "weight", "activation_bits"), where)
        return cls(**dict(data))


@dataclass(frozen=True)
class CompressionPlan:
    """What to do to each group and layer of one teacher. Plain data; see module docs.

    Attributes:
        masks: Group name -> keep-mask over the group's channels (True = keep).
        layers: Layer qualified name -> :class:`LayerPlan`.
        norm_dtype: Storage dtype of norm parameters, running statistics and biases.
        widths: Optional group name -> number of leading channels kept (supernet widths).
        version: Plan format version, :data:`PLAN_VERSION` for plans written by this code.
    """

    masks: Mapping[str, tuple[bool, ...]] = field(default_factory=dict)
    layers: Mapping[str, LayerPlan] = field(default_factory=dict)
    norm_dtype: str = "float32"
    widths: Mapping[str, int] | None = None
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        # Normalise containers so that equality and JSON output do not depend on how the
        # plan was built (lists vs tuples, insertion order).
        masks = {str(k): tuple(bool(b) for b in v) for k, v in sorted(self.masks.items())}
        layers = {}
        for name, layer in sorted(self.layers.items()):
            if not isinstance(layer, LayerPlan):
                raise InvalidPlanError(
                    f"layer '{name}': expected a LayerPlan, but got {type(layer).__name__}."
                )
            layers[str(name)] = layer
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "layers", layers)
        if self.widths is not None:
            widths = {str(k): v for k, v in sorted(self.widths.items())}
            object.__setattr__(self, "widths", widths)

    def __hash__(self) -> int:
        return hash(self.to_json())

    def layer(self, name: str) -> LayerPlan:
        """The plan of one layer (the default ``LayerPlan()`` when not listed)."""
        return self.layers.get(name, LayerPlan())

    def mask(self, group: str, num_channels: int) -> tuple[bool, ...]:
        """The keep-mask of one group (all True when not listed)."""
        return self.masks.get(group, (True,) * num_channels)

    @classmethod
    def identity(cls, structure: GeneratorStructure) -> CompressionPlan:
        """The plan that changes nothing: every group and layer listed explicitly."""
        return cls(
            masks={g.name: (True,) * g.num_channels for g in structure.groups},
            layers={layer.name: LayerPlan() for layer in structure.layers},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "masks": {k: list(v) for k, v in self.masks.items()},
            "layers": {k: v.to_dict() for k, v in self.layers.items()},
            "norm_dtype": self.norm_dtype,
            "widths": None if self.widths is None else dict(self.widths),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressionPlan:
        _reject_unknown_keys(data, ("version", "masks", "layers", "norm_dtype", "widths"), "plan")
        version = data.get("version")
        if version != PLAN_VERSION:
            raise InvalidPlanError(
                f"plan: `version == {PLAN_VERSION}` must hold, but got {version=}. "
                "Plans from other versions cannot be read by this gansearch."
            )
        return cls(
            masks={k: tuple(v) for k, v in data.get("masks", {}).items()},
            layers={
                k: LayerPlan.from_dict(v, where=f"layer '{k}'")
                for k, v in data.get("layers", {}).items()
            },
            norm_dtype=data.get("norm_dtype", "float32"),
            widths=data.get("widths"),
            version=version,
        )

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal plans give identical strings."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CompressionPlan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidPlanError(f"plan: not valid JSON ({error}).") from error
        if not isinstance(data, dict):
            raise InvalidPlanError(f"plan: expected a JSON object, but got {type(data).__name__}.")
        return cls.from_dict(data)


def _reject_unknown_keys(data: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InvalidPlanError(
            f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}."
        )


def check_width(group: str, width: object, num_channels: int) -> None:
    """An OFA width must be an int in ``1..num_channels``."""
    if isinstance(width, bool) or not isinstance(width, int):
        raise InvalidPlanError(f"group '{group}': width must be an int, but got {width!r}.")
    if not 1 <= width <= num_channels:
        raise InvalidPlanError(
            f"group '{group}': `1 <= width <= {num_channels}` must hold, but got {width=}."
        )


def check_masks(masks: Mapping[str, Sequence[bool]], structure: GeneratorStructure) -> None:
    """Every mask names a group of ``structure``, has its length and keeps a channel.

    Raises:
        InvalidPlanError: naming the group, for an unknown group, a mask of the wrong
            length or one that keeps no channel.
    """
    groups = {g.name: g for g in structure.groups}
    for name, mask in masks.items():
        group = groups.get(name)
        if group is None:
            raise InvalidPlanError(
                f"group '{name}': unknown group; known groups are {sorted(groups)}."
            )
        if len(mask) != group.num_channels:
            raise InvalidPlanError(
                f"group '{name}': mask has {len(mask)} entries, but the group has "
                f"{group.num_channels} channels."
            )
        if not any(mask):
            raise InvalidPlanError(
                f"group '{name}': mask keeps 0 of {group.num_channels} channels; "
                "at least one channel must be kept."
            )


def validate(plan: CompressionPlan, structure: GeneratorStructure) -> None:
    """Check that ``plan`` fits the generator described by ``structure``.

    Raises:
        InvalidPlanError: naming the group or layer and the problem, for an unknown
            name, a mask of the wrong length or keeping no channel, a width out of range,
            a negative rank or one above the layer's full rank after pruning, a rank on
            a layer that cannot be factorised, a bad weight encoding spec, activation bits
            outside 2..8 (or 32 = off), or a bad ``norm_dtype`` / ``version``.
    """
    from gansearch.compress.encodings import parse_encoding

    if plan.version != PLAN_VERSION:
        raise InvalidPlanError(
            f"plan: `version == {PLAN_VERSION}` must hold, but got version={plan.version!r}."
        )
    if plan.norm_dtype not in NORM_DTYPES:
        raise InvalidPlanError(
            f"plan: norm_dtype must be one of {list(NORM_DTYPES)}, but got {plan.norm_dtype!r}."
        )

    check_masks(plan.masks, structure)
    groups = {g.name: g for g in structure.groups}
    if plan.widths is not None:
        if plan.masks:
            raise InvalidPlanError(
                f"plan: masks must be empty when widths are set, but masks are given for "
                f"groups {sorted(plan.masks)}."
            )
        for name, width in plan.widths.items():
            group = groups.get(name)
            if group is None:
                raise InvalidPlanError(
                    f"group '{name}': unknown group in widths; known groups are {sorted(groups)}."
                )
            check_width(name, width, group.num_channels)

    kept = _kept_channels(plan, structure)
    layers = {layer.name: layer for layer in structure.layers}
    for name, layer_plan in plan.layers.items():
        info = layers.get(name)
        if info is None:
            raise InvalidPlanError(
                f"layer '{name}': unknown layer; known Conv/ConvTranspose/Linear layers are "
                f"{sorted(layers)}."
            )
        rank = layer_plan.rank
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise InvalidPlanError(f"layer '{name}': rank must be an int, but got {rank!r}.")
        if rank < 0:
            raise InvalidPlanError(
                f"layer '{name}': rank must be >= 0 (0 = no low-rank), but got {rank=}."
            )
        if rank > 0:
            if not info.factorizable:
                raise InvalidPlanError(
                    f"layer '{name}': low-rank factorisation is not supported for this layer "
                    f"(groups={info.groups}); rank must be 0, but got {rank=}."
                )
            full = structure.full_rank_after_pruning(name, kept)
            if rank > full:
                raise InvalidPlanError(
                    f"layer '{name}': rank {rank} is above the layer's full rank {full} "
                    f"(min(out, in*kernel) after pruning; {info.full_rank} unpruned)."
                )
        try:
            parse_encoding(layer_plan.weight)
        except Exception as error:  # the encoding module's own message says what is wrong
            raise InvalidPlanError(
                f"layer '{name}': invalid weight encoding {layer_plan.weight!r}: {error}"
            ) from error
        bits = layer_plan.activation_bits
        if isinstance(bits, bool) or bits not in ACTIVATION_BITS:
            raise InvalidPlanError(
                f"layer '{name}': activation_bits must be in 2..8 (or 32 = off), "
                f"but got activation_bits={bits!r}."
            )


def _kept_channels(plan: CompressionPlan, structure: GeneratorStructure) -> dict[str, int]:
    """Channels kept per group under ``plan`` (masks or widths)."""
    kept = {}
    for group in structure.groups:
        if plan.widths is not None and group.name in plan.widths:
            kept[group.name] = int(plan.widths[group.name])
        else:
            kept[group.name] = sum(plan.mask(group.name, group.num_channels))
    return kept
