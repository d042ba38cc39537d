"""The joint compression search space of one teacher generator.

:class:`JointSpace` turns a :class:`~gansearch.spaces.config.SpaceConfig` and the
teacher's :class:`~gansearch.compress.structure.GeneratorStructure` into genes
(:class:`~gansearch.spaces.genes.GeneSpace`) that strategies search, and back:
:meth:`JointSpace.decode` maps ``params`` to a :class:`CompressionPlan`,
:meth:`JointSpace.encode` maps a plan to ``params`` (to enqueue known plans as starting
points). The user never lists layers: groups and layers come from
:func:`~gansearch.compress.groups.describe`.

Genes, in this order (``{group}`` / ``{layer}`` are qualified module names):

* ``source``: ``"mask"`` or ``"ofa"``, only when both ``prune`` and ``ofa`` are on. With
  ``"ofa"`` the plan takes the ``width:*`` genes and the ``mask:*`` genes are ignored;
  with ``"mask"`` it is the other way round. Strategies still carry both.
* per prunable group: ``mask:{group}`` (:class:`Mask`; ``order`` is the L1-magnitude
  importance order, ``min_keep = ceil(min_keep * C)``, ``keep_choices`` from
  ``keep_ratios``) and ``width:{group}`` (supernet width in channels).
* per Conv2d / ConvTranspose2d / Linear layer (the output layer included):
  ``bits:{layer}`` and ``codebook:{layer}``: the weight encoding. ``codebook > 0`` means
  ``codebook{k}`` and overrides ``bits`` (1 = binary, ``"ternary"``, 2..8 = int, 16 / 32 =
  float). Two genes rather than one combined spec keep each ordinal (neighbouring values
  are similar), which mutation and TPE exploit. ``bits`` genes are omitted when every
  codebook size is > 0 (they could never matter).
* ``rank:{layer}``: rank ratio (see :meth:`JointSpace.decode`). Omitted for layers that
  cannot be factorised (grouped convolutions) and for layers whose factorisation can
  never save parameters, e.g. an output layer with one output channel.
* ``activation_bits:{layer}``.
* ``norm_dtype``.

A family whose value list has a single entry (e.g. the default ``norm_dtype:
[float32]``) contributes no gene: that value is fixed in every plan (see
:attr:`JointSpace.fixed`), so strategies never see dead dimensions.

Decoded plans are canonical: every layer is listed, and either every group has a mask
(all True when pruning is off) or every group has a width.

Length (about 480 lines): ``decode`` and its inverse ``encode`` must be read side by side
to see that they round-trip, so they stay in one module with the space they belong to.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gansearch.compress.plan import CompressionPlan, LayerPlan, validate
from gansearch.compress.structure import IN, OUT, GeneratorStructure, width_for
from gansearch.errors import GansearchError
from gansearch.spaces.config import SpaceConfig, bits_spec
from gansearch.spaces.genes import Choice, Gene, GeneSpace, Mask

if TYPE_CHECKING:
    from torch import nn

SPACE_FORMAT_VERSION = 1
SOURCE = "source"
NORM_DTYPE = "norm_dtype"
MASK_SOURCE, OFA_SOURCE = "mask", "ofa"


class ParamsNotInSpaceError(GansearchError, ValueError):
    """``params`` that do not assign every gene of the space a valid value."""


class PlanNotInSpaceError(GansearchError, ValueError):
    """A plan that the space cannot represent; the message names the group or layer."""


def _min_keep(fraction: float, num_channels: int) -> int:
    # The tolerance keeps e.g. 0.3 * 10 = 3.0000000000000004 from rounding up to 4.
    return max(1, min(num_channels, math.ceil(fraction * num_channels - 1e-9)))


def mask_gene(name: str) -> str:
    return f"mask:{name}"


def width_gene(name: str) -> str:
    return f"width:{name}"


def bits_gene(name: str) -> str:
    return f"bits:{name}"


def codebook_gene(name: str) -> str:
    return f"codebook:{name}"


def rank_gene(name: str) -> str:
    return f"rank:{name}"


def activation_gene(name: str) -> str:
    return f"activation_bits:{name}"


@dataclass(frozen=True)
class JointSpace:
    """Genes over pruning, OFA widths, weight encodings, low-rank and activation bits.

    Build it with :meth:`from_generator` (or :meth:`from_json` in a worker without the
    teacher). Pure and torch-free once built: :meth:`decode` and :meth:`encode` touch
    plain data only.

    Attributes:
        structure: The teacher's structure (groups and layers).
        config: The ``space:`` section.
        channel_order: Group name -> channel indices, most important first.
        genes: The searched genes (see module docs for names and order).
        fixed: Gene name -> value of every single-valued family (not in ``genes``).
    """

    structure: GeneratorStructure
    config: SpaceConfig
    channel_order: Mapping[str, tuple[int, ...]]
    genes: GeneSpace = field(init=False)
    fixed: Mapping[str, Hashable] = field(init=False)

    def __post_init__(self) -> None:
        order = {str(k): tuple(int(i) for i in v) for k, v in self.channel_order.items()}
        missing = [g.name for g in self.structure.groups if g.name not in order]
        if missing:
            raise ValueError(f"`channel_order` lacks groups {missing}; give one order per group.")
        object.__setattr__(self, "channel_order", order)
        genes: list[Gene] = []
        fixed: dict[str, Hashable] = {}

        def choice(name: str, choices: tuple[Hashable, ...]) -> None:
            if len(choices) == 1:
                fixed[name] = choices[0]
            else:
                genes.append(Choice(name, choices))

        config = self.config
        if config.prune is not None and config.ofa is not None:
            genes.append(Choice(SOURCE, (MASK_SOURCE, OFA_SOURCE)))
        for group in self.structure.groups:
            n = group.num_channels
            if config.prune is not None:
                min_keep = _min_keep(config.prune.min_keep, n)
                keeps = sorted({max(min_keep, width_for(r, n)) for r in config.prune.keep_ratios})
                genes.append(
                    Mask(mask_gene(group.name), n, min_keep, order[group.name], tuple(keeps))
                )
            if config.ofa is not None:
                choice(width_gene(group.name), self._width_choices(n))
        for layer in self.structure.layers:
            if 0 in config.codebook_sizes:
                choice(bits_gene(layer.name), config.weight_bits)
            choice(codebook_gene(layer.name), config.codebook_sizes)
            if _can_save_by_factorizing(layer) and config.rank_ratios != (0.0,):
                choice(rank_gene(layer.name), config.rank_ratios)
            choice(activation_gene(layer.name), config.activation_bit_widths)
        choice(NORM_DTYPE, config.norm_dtype)
        object.__setattr__(self, "genes", GeneSpace(tuple(genes)))
        object.__setattr__(self, "fixed", fixed)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_generator(
        cls, teacher: nn.Module, config: SpaceConfig, example_input: Any
    ) -> JointSpace:
        """Build the space of ``teacher``: groups and layers are found automatically.

        Args:
            teacher: The generator (not modified).
            config: The ``space:`` section.
            example_input: A batch ``teacher`` accepts (for tracing).
        """
        from gansearch.compress.groups import describe
        from gansearch.compress.importance import channel_order

        structure = describe(teacher, example_input)
        return cls(structure, config, channel_order(teacher, structure, example_input))

    def to_json(self) -> str:
        """Plain JSON (config, structure, channel orders) that :meth:`from_json` rebuilds."""
        return json.dumps(
            {
                "version": SPACE_FORMAT_VERSION,
                "config": self.config.model_dump(mode="json"),
                "structure": self.structure.to_dict(),
                "channel_order": {k: list(v) for k, v in self.channel_order.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> JointSpace:
        """Rebuild a space from :meth:`to_json` output, without the teacher."""
        data = json.loads(text)
        version = data.get("version") if isinstance(data, dict) else None
        if version != SPACE_FORMAT_VERSION:
            raise ValueError(
                f"`version == {SPACE_FORMAT_VERSION}` must hold for a joint space, but got "
                f"{version=}; rebuild the space with JointSpace.from_generator."
            )
        return cls(
            GeneratorStructure.from_dict(data["structure"]),
            SpaceConfig.model_validate(data["config"]),
            {k: tuple(v) for k, v in data["channel_order"].items()},
        )

    # ------------------------------------------------------------------ params -> plan

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """Random params (each gene's own sampler)."""
        return self.genes.sample(rng)

    def decode(self, params: Mapping[str, Any]) -> CompressionPlan:
        """The plan of ``params``. Pure: equal params give equal plans.

        * Masks / widths: ``source`` picks them (see module docs); with pruning off every
          mask is all True.
        * Weight: ``codebook{k}`` if the codebook gene is ``k > 0``, else the spec of
          the bits gene.
        * Rank: ratio ``q`` of the layer's full rank ``F`` after pruning
          (``min(out, in*kernel)`` of the pruned layer): 0 if ``q == 0``, else
          ``clamp(round(q * F), 1, F)``; a rank ``r`` that would not save parameters,
          ``r * (out + in*kernel) >= out * in*kernel`` (always the case at ``q == 1``),
          is mapped to 0.

        Raises:
            ParamsNotInSpaceError: for missing or unknown genes, or a value outside its
                gene, naming the gene.
        """
        values = self._checked(params)

        def value(name: str) -> Any:
            return values[name] if name in values else self.fixed[name]

        groups = self.structure.groups
        source = self._source(values)
        masks: dict[str, tuple[bool, ...]] = {}
        widths: dict[str, int] | None = None
        if source == OFA_SOURCE:
            widths = {g.name: int(value(width_gene(g.name))) for g in groups}
            kept = dict(widths)
        else:
            for g in groups:
                pruned = self.config.prune is not None
                masks[g.name] = value(mask_gene(g.name)) if pruned else (True,) * g.num_channels
            kept = {name: sum(mask) for name, mask in masks.items()}

        sizes = self.structure.channels_after_pruning(kept)
        layers = {}
        for layer in self.structure.layers:
            k = value(codebook_gene(layer.name))
            weight = f"codebook{k}" if k > 0 else bits_spec(value(bits_gene(layer.name)))
            ratio = value(rank_gene(layer.name)) if self._has(rank_gene(layer.name)) else 0.0
            layers[layer.name] = LayerPlan(
                rank=self._rank(layer.name, ratio, sizes),
                weight=weight,
                activation_bits=int(value(activation_gene(layer.name))),
            )
        return CompressionPlan(
            masks=masks, layers=layers, norm_dtype=str(value(NORM_DTYPE)), widths=widths
        )

    # ------------------------------------------------------------------ plan -> params

    def encode(self, plan: CompressionPlan) -> dict[str, Any]:
        """Params that decode to ``plan`` (to enqueue a known plan as a starting point).

        ``decode(encode(plan)) == plan`` for every plan :meth:`decode` can return. Other
        plans that the space represents (layers or groups left out, meaning defaults)
        encode to the params of their canonical, fully listed form. Genes that a plan
        does not use take a fixed canonical value: masks all True when ``source`` is
        ``"ofa"``, the largest width when it is ``"mask"``, the highest ``bits`` when a
        codebook overrides them, and the first rank ratio giving the plan's rank.

        Raises:
            InvalidPlanError: if the plan does not fit the structure at all.
            PlanNotInSpaceError: if the space cannot represent it, naming the group or
                layer, the value, and what the space allows.
        """
        from gansearch.compress.encodings import CodebookEncoding, parse_encoding

        validate(plan, self.structure)
        config = self.config
        values: dict[str, Any] = {}
        kept = self._encode_masks(plan, values)
        sizes = self.structure.channels_after_pruning(kept)

        for layer in self.structure.layers:
            name = layer.name
            layer_plan = plan.layer(name)
            encoding = parse_encoding(layer_plan.weight)
            if isinstance(encoding, CodebookEncoding):
                self._require(
                    encoding.k in config.codebook_sizes,
                    f"layer '{name}': weight {layer_plan.weight!r} is not in this space; "
                    f"space.codebook allows {list(config.codebook_sizes)}.",
                )
                values[codebook_gene(name)] = encoding.k
                values[bits_gene(name)] = config.weight_bits[-1]
            else:
                bits = [b for b in config.weight_bits if bits_spec(b) == encoding.spec]
                self._require(
                    bool(bits),
                    f"layer '{name}': weight {layer_plan.weight!r} is not in this space; "
                    f"space.bits allows {[bits_spec(b) for b in config.weight_bits]}.",
                )
                self._require(
                    0 in config.codebook_sizes,
                    f"layer '{name}': weight {layer_plan.weight!r} needs codebook 0 (none), "
                    f"but space.codebook is {list(config.codebook_sizes)}.",
                )
                values[codebook_gene(name)] = 0
                values[bits_gene(name)] = bits[0]
            values[rank_gene(name)] = self._encode_rank(name, layer_plan.rank, sizes)
            self._require(
                layer_plan.activation_bits in config.activation_bit_widths,
                f"layer '{name}': activation_bits={layer_plan.activation_bits} is not in this "
                f"space; space.activation_bits allows {list(config.activation_bit_widths)} "
                "(32 = float).",
            )
            values[activation_gene(name)] = layer_plan.activation_bits
        self._require(
            plan.norm_dtype in config.norm_dtype,
            f"plan: norm_dtype {plan.norm_dtype!r} is not in this space; space.norm_dtype "
            f"allows {list(config.norm_dtype)}.",
        )
        values[NORM_DTYPE] = plan.norm_dtype
        return {gene.name: values[gene.name] for gene in self.genes.genes}

    def _encode_masks(self, plan: CompressionPlan, values: dict[str, Any]) -> dict[str, int]:
        """Fill the source / mask / width genes of ``plan``; return kept channels per group."""
        config = self.config
        groups = self.structure.groups
        kept: dict[str, int] = {}
        if plan.widths is not None:
            self._require(
                config.ofa is not None,
                "plan: uses supernet widths, but space.ofa is off; switch it on "
                "(space.ofa: {widths: [...]}) or encode a plan with masks.",
            )
            values[SOURCE] = OFA_SOURCE
            for g in groups:
                width = plan.widths.get(g.name, g.num_channels)
                allowed = self._width_choices(g.num_channels)
                self._require(
                    width in allowed,
                    f"group '{g.name}': width {width} is not in this space; space.ofa.widths "
                    f"give {list(allowed)} channels.",
                )
                values[width_gene(g.name)] = width
                values[mask_gene(g.name)] = (True,) * g.num_channels
                kept[g.name] = width
            return kept

        for g in groups:
            mask = plan.mask(g.name, g.num_channels)
            kept[g.name] = sum(mask)
            if config.prune is not None:
                gene = self.genes[mask_gene(g.name)]
                self._require(
                    gene.contains(mask),
                    f"group '{g.name}': the mask keeps {sum(mask)} of {g.num_channels} "
                    f"channels, below space.prune.min_keep ({gene.min_keep} channels).",
                )
            else:
                self._require(
                    all(mask),
                    f"group '{g.name}': the plan removes channels with a mask, but "
                    "space.prune is off; switch it on or encode a plan without pruning.",
                )
            values[mask_gene(g.name)] = mask
            if config.ofa is not None:
                values[width_gene(g.name)] = self._width_choices(g.num_channels)[-1]
        if config.prune is not None:
            values[SOURCE] = MASK_SOURCE
        elif config.ofa is not None:
            # An OFA-only space: an unpruned plan is the full-width supernet.
            values[SOURCE] = OFA_SOURCE
            for g in groups:
                allowed = self._width_choices(g.num_channels)
                self._require(
                    g.num_channels in allowed,
                    f"group '{g.name}': the unpruned width {g.num_channels} is not in this "
                    f"space; add 1.0 to space.ofa.widths.",
                )
                values[width_gene(g.name)] = g.num_channels
        return kept

    def _encode_rank(self, layer: str, rank: int, sizes: Mapping[tuple[str, str], int]) -> float:
        name = rank_gene(layer)
        if not self._has(name):
            self._require(
                rank == 0,
                f"layer '{layer}': rank {rank} is not in this space; low-rank is off for "
                "this layer (space.lowrank is off, or factorising it never saves parameters).",
            )
            return 0.0
        ratios = self.config.rank_ratios
        reachable = [self._rank(layer, q, sizes) for q in ratios]
        self._require(
            rank in reachable,
            f"layer '{layer}': rank {rank} is not in this space; with the plan's pruning, "
            f"space.lowrank.ratios {list(ratios)} give ranks {reachable}.",
        )
        return ratios[reachable.index(rank)]

    # ------------------------------------------------------------------ helpers

    def _width_choices(self, num_channels: int) -> tuple[int, ...]:
        """Widths (channels) a group of ``num_channels`` may take; empty when OFA is off."""
        ratios = self.config.ofa.widths if self.config.ofa is not None else ()
        return tuple(sorted({width_for(w, num_channels) for w in ratios}))

    def _has(self, name: str) -> bool:
        return name in self.fixed or name in self.genes.names

    def _source(self, values: Mapping[str, Any]) -> str:
        if SOURCE in values:
            return values[SOURCE]
        if self.config.prune is None and self.config.ofa is not None:
            return OFA_SOURCE
        return MASK_SOURCE

    def _rank(self, layer: str, ratio: float, sizes: Mapping[tuple[str, str], int]) -> int:
        if ratio == 0:
            return 0
        rows = sizes[(layer, OUT)]
        cols = sizes[(layer, IN)] * self.structure.layer(layer).kernel_numel
        full = min(rows, cols)
        rank = max(1, min(full, math.floor(ratio * full + 0.5)))
        return 0 if rank * (rows + cols) >= rows * cols else rank

    def _checked(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with every value checked and replaced by its gene's own choice."""
        names = self.genes.names
        missing = [n for n in names if n not in params]
        unknown = sorted(set(params) - set(names))
        if missing or unknown:
            raise ParamsNotInSpaceError(
                f"params must assign exactly the space's genes, but miss {missing} and have "
                f"unknown {unknown}; build params with JointSpace.sample or encode."
            )
        checked = {}
        for gene in self.genes.genes:
            value = params[gene.name]
            if (
                isinstance(gene, Mask)
                and isinstance(value, (list, tuple, np.ndarray))
                and all(isinstance(bit, (bool, np.bool_)) for bit in value)
            ):
                value = tuple(bool(bit) for bit in value)
            if not gene.contains(value):
                raise ParamsNotInSpaceError(
                    f"gene {gene.name!r}: value {value!r} is not in the space; "
                    + (
                        f"expected a tuple of {gene.length} bools keeping >= {gene.min_keep}."
                        if isinstance(gene, Mask)
                        else f"choices are {list(gene.choices)}."
                    )
                )
            if isinstance(gene, Choice):  # canonical object: 4.0 -> 4, np.int64 -> int
                value = gene.choices[gene.choices.index(value)]
            checked[gene.name] = value
        return checked

    @staticmethod
    def _require(condition: bool, message: str) -> None:
        if not condition:
            raise PlanNotInSpaceError(message)


def _can_save_by_factorizing(layer: Any) -> bool:
    """Whether some rank of ``layer`` has fewer parameters than the layer itself.

    Rank ``r >= 1`` of an ``R x C`` weight matrix costs ``r * (R + C)``; rank 1 saves iff
    ``R * C > R + C``. Pruning only shrinks ``R`` and ``C`` and ``R*C - R - C`` grows with
    both, so a layer where rank 1 does not save at full size never saves.
    """
    if not layer.factorizable:
        return False
    rows, cols = layer.out_channels, layer.in_channels * layer.kernel_numel
    return rows * cols > rows + cols
