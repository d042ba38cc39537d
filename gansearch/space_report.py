"""What a study will search, as plain data: genes, groups, exclusions and the space's size.

:func:`space_report` reads a built :class:`~gansearch.spaces.joint.JointSpace` (torch-free
once built) and answers the questions a user asks before a search: which genes exist and
what each controls, which channel groups can be pruned, which were excluded and why, and
how many distinct genomes the strategies choose from. ``gansearch space`` prints it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from gansearch.spaces.genes import Choice, Mask
from gansearch.spaces.joint import NORM_DTYPE, SOURCE, JointSpace

TECHNIQUES: dict[str, str] = {
    "mask": "prune",
    "width": "ofa",
    "bits": "bits",
    "codebook": "codebook",
    "rank": "lowrank",
    "activation_bits": "activation_bits",
    NORM_DTYPE: "norm_dtype",
}
"""Gene family (the part of a gene name before ``:``) -> the ``space:`` key that sets it."""


@dataclass(frozen=True)
class GeneRow:
    """One gene.

    Attributes:
        name: The gene's name, e.g. ``mask:net.0``.
        kind: ``"choice"`` or ``"mask"``.
        controls: The group or layer the gene acts on (``"generator"`` for global genes).
        choices: A choice gene's values (empty for a mask).
        length: A mask's channel count (0 for a choice).
        min_keep: A mask's minimum kept channels (0 for a choice).
        count: Distinct values: choices, or masks keeping at least ``min_keep`` channels.
    """

    name: str
    kind: str
    controls: str
    choices: tuple[Hashable, ...]
    length: int
    min_keep: int
    count: int


@dataclass(frozen=True)
class SpaceReport:
    """The space of one study (see the module docs)."""

    study: str
    genes: tuple[GeneRow, ...]
    groups: tuple[dict[str, Any], ...]
    excluded: tuple[dict[str, Any], ...]
    techniques: dict[str, bool]
    fixed: dict[str, Hashable]

    @property
    def genomes(self) -> int:
        """The exact number of distinct genomes: the product of every gene's count."""
        return math.prod(gene.count for gene in self.genes)

    @property
    def log10_genomes(self) -> float:
        return math.log10(self.genomes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (``genomes`` is an exact integer)."""
        return {
            "study": self.study,
            "genes": [
                {
                    "name": g.name,
                    "kind": g.kind,
                    "controls": g.controls,
                    **(
                        {"length": g.length, "min_keep": g.min_keep}
                        if g.kind == "mask"
                        else {"choices": list(g.choices)}
                    ),
                    "count": g.count,
                }
                for g in self.genes
            ],
            "groups": [dict(group) for group in self.groups],
            "excluded_groups": [dict(group) for group in self.excluded],
            "techniques": dict(self.techniques),
            "fixed": dict(self.fixed),
            "size": {
                "genes": len(self.genes),
                "genomes": self.genomes,
                "log10_genomes": round(self.log10_genomes, 3),
            },
        }


def masks_allowed(length: int, min_keep: int) -> int:
    """Keep-masks over ``length`` channels keeping at least ``min_keep``: sum of C(n, k)."""
    return sum(math.comb(length, k) for k in range(min_keep, length + 1))


def _controls(name: str) -> str:
    if name == SOURCE:
        return "generator (masks or supernet widths)"
    if name == NORM_DTYPE:
        return "generator (every norm layer and bias)"
    return name.partition(":")[2]


def _row(gene: Choice | Mask) -> GeneRow:
    if isinstance(gene, Mask):
        count = masks_allowed(gene.length, gene.min_keep)
        return GeneRow(
            gene.name, "mask", _controls(gene.name), (), gene.length, gene.min_keep, count
        )
    return GeneRow(gene.name, "choice", _controls(gene.name), gene.choices, 0, 0, len(gene.choices))


def space_report(space: JointSpace, study: str) -> SpaceReport:
    """Describe ``space`` (the one the search of study ``study`` uses)."""
    structure = space.structure
    groups = tuple(
        {
            "name": group.name,
            "channels": group.num_channels,
            "layers": list(group.member_layers),
            "members": [{"layer": m.layer, "dim": m.dim} for m in group.members],
        }
        for group in structure.groups
    )
    excluded = tuple(
        {"name": group.name, "channels": group.num_channels, "reason": group.reason}
        for group in structure.excluded_groups
    )
    families = {gene.name.partition(":")[0] for gene in space.genes.genes}
    techniques = {key: family in families for family, key in TECHNIQUES.items()}
    return SpaceReport(
        study=study,
        genes=tuple(_row(gene) for gene in space.genes.genes),
        groups=groups,
        excluded=excluded,
        techniques=techniques,
        fixed=_fixed_by_family(space),
    )


def _fixed_by_family(space: JointSpace) -> dict[str, Hashable]:
    """The value each family without genes takes in every plan, e.g. ``norm_dtype``.

    A family's value is the same for all its layers (one ``space:`` list); only OFA widths
    are per group, and then the distinct values are listed.
    """
    values: dict[str, list[Hashable]] = {}
    for name, value in space.fixed.items():
        family = values.setdefault(TECHNIQUES.get(name.partition(":")[0], name), [])
        if value not in family:
            family.append(value)
    return {key: found[0] if len(found) == 1 else tuple(found) for key, found in values.items()}
