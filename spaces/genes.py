"""Genes: the plain-data description of a search space that strategies see.

A space is a tuple of genes; a candidate is ``params``, a mapping from gene name to
value. Strategies (Optuna, DEAP) work on genes alone and never on torch: everything
they need, including the importance order of a mask's channels, is stored here.

* :class:`Choice`: one value out of an ordered tuple (bit-widths, codebook sizes,
  ranks, OFA widths). Numeric choices are ordinal: neighbours are similar.
* :class:`Mask`: a keep-mask bitstring over a channel group, with a minimum number of
  kept channels and the channels' importance order (most important first), so that a
  strategy which cannot search bitstrings can use the low-dimensional "keep the top-k"
  parameterisation (:meth:`Mask.top`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Choice:
    """A categorical (or ordinal, when numeric) gene."""

    name: str
    choices: tuple[Hashable, ...]

    def __post_init__(self) -> None:
        if len(self.choices) == 0:
            raise ValueError(f"gene {self.name!r}: `choices` must not be empty.")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"gene {self.name!r}: `choices` repeat a value: {self.choices}.")

    def contains(self, value: Any) -> bool:
        return value in self.choices

    def sample(self, rng: np.random.Generator) -> Hashable:
        return self.choices[int(rng.integers(len(self.choices)))]


@dataclass(frozen=True)
class Mask:
    """A keep-mask over ``length`` channels keeping at least ``min_keep`` of them.

    Attributes:
        order: channel indices from most to least important (a permutation).
        keep_choices: the keep counts offered to strategies that use :meth:`top`.
    """

    name: str
    length: int
    min_keep: int
    order: tuple[int, ...]
    keep_choices: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.min_keep <= self.length:
            raise ValueError(
                f"gene {self.name!r}: `1 <= min_keep <= length` must hold, but got "
                f"({self.min_keep=}, {self.length=})."
            )
        if sorted(self.order) != list(range(self.length)):
            raise ValueError(
                f"gene {self.name!r}: `order` must be a permutation of range({self.length})."
            )
        if not self.keep_choices or any(
            not self.min_keep <= k <= self.length for k in self.keep_choices
        ):
            raise ValueError(
                f"gene {self.name!r}: every keep choice must lie in "
                f"[{self.min_keep}, {self.length}], but got {self.keep_choices}."
            )

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, tuple)
            and len(value) == self.length
            and all(isinstance(bit, bool) for bit in value)
            and sum(value) >= self.min_keep
        )

    def top(self, keep: int) -> tuple[bool, ...]:
        """The mask keeping the ``keep`` most important channels."""
        kept = set(self.order[:keep])
        return tuple(channel in kept for channel in range(self.length))

    def repair(self, value: tuple[bool, ...]) -> tuple[bool, ...]:
        """Re-enable the most important dropped channels until ``min_keep`` hold."""
        bits = list(value)
        for channel in self.order:
            if sum(bits) >= self.min_keep:
                break
            bits[channel] = True
        return tuple(bits)

    def sample(self, rng: np.random.Generator) -> tuple[bool, ...]:
        keep = self.keep_choices[int(rng.integers(len(self.keep_choices)))]
        chosen = set(rng.choice(self.length, size=keep, replace=False).tolist())
        return tuple(channel in chosen for channel in range(self.length))


Gene = Choice | Mask


@dataclass(frozen=True)
class GeneSpace:
    """An ordered, named collection of genes."""

    genes: tuple[Gene, ...]

    def __post_init__(self) -> None:
        names = [gene.name for gene in self.genes]
        if len(set(names)) != len(names):
            raise ValueError(f"gene names must be unique, but got {names}.")

    def __getitem__(self, name: str) -> Gene:
        for gene in self.genes:
            if gene.name == name:
                return gene
        raise KeyError(f"no gene named {name!r}; genes: {[gene.name for gene in self.genes]}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(gene.name for gene in self.genes)

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` assigns every gene (and nothing else) a valid value."""
        return set(params) == set(self.names) and all(
            gene.contains(params[gene.name]) for gene in self.genes
        )

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {gene.name: gene.sample(rng) for gene in self.genes}
