"""The strategy base class: what every search strategy offers the engine.

A strategy decides *what to evaluate next*; the engine decides *where it runs* (the split
DEAP makes between an algorithm and its ``map``). :class:`Strategy` is as small as Optuna's
``BaseSampler``: two abstract methods,

* :meth:`Strategy.ask` returns a :class:`Proposal` (a strategy-local number and the params);
* :meth:`Strategy.tell` reports the objective values, or a :class:`Failure`, and optional
  constraint values (``<= 0`` means feasible, Optuna's convention),

and optional hooks that do nothing by default, so that callers use them unconditionally:

* :meth:`Strategy.enqueue`: evaluate given params soon (the teacher, a uniform int8 start);
* :meth:`Strategy.reseed`: restart the strategy's own random generators from a seed;
* :meth:`Strategy.state_dict` / :meth:`Strategy.load_state_dict`: JSON-serialisable state
  to resume from (``None``: nothing to save).

Several proposals may be in flight at once (ask several times before telling). Each
strategy documents how its proposals depend on the order in which results come back.

Strategies see only genes (:mod:`gansearch.spaces.genes`) and never touch torch. Objective
directions arrive as a tuple of ``"minimize"`` / ``"maximize"`` derived elsewhere from one
declaration; helpers here turn them into DEAP fitness weights.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from gansearch.spaces.genes import Choice, GeneSpace, Mask

DIRECTIONS = ("minimize", "maximize")


@dataclass(frozen=True)
class Proposal:
    """A candidate handed out by :meth:`Strategy.ask`.

    Attributes:
        number: strategy-local id, increasing with each ask.
        params: gene name to value; :class:`~gansearch.spaces.genes.Mask` values are
            ``tuple[bool, ...]``.
    """

    number: int
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Failure:
    """The evaluation of a proposal failed (out of memory, NaN loss, crashed worker...)."""

    reason: str


Result = Sequence[float] | Failure


class Strategy(abc.ABC):
    """Base class of the search strategies (see the module docstring).

    Subclasses implement :meth:`ask` and :meth:`tell`; the other methods are optional hooks
    whose defaults do nothing, as Optuna's ``BaseSampler.before_trial`` / ``reseed_rng`` do.
    """

    @abc.abstractmethod
    def ask(self) -> Proposal:
        """Propose the next candidate; its number is larger than every earlier one's."""

    @abc.abstractmethod
    def tell(
        self,
        proposal: Proposal,
        result: Sequence[float] | Failure,
        constraints: Sequence[float] | None = None,
    ) -> None:
        """Report the objective values (or a failure) and constraint values of ``proposal``.

        Raises:
            ValueError: for a proposal that is not in flight, or a malformed result.
        """

    def enqueue(self, params: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Propose ``params`` (verbatim) soon, e.g. the teacher as a seed of the search.

        The default ignores seeds: a strategy that cannot take them proposes as usual.
        """

    def reseed(self, seed: int | None) -> None:  # noqa: B027 - optional hook
        """Restart the strategy's own random generators from ``seed`` (default: no-op)."""

    def state_dict(self) -> dict[str, Any] | None:
        """JSON-serialisable state to resume from; ``None`` (the default): nothing to save."""
        return None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Resume from what :meth:`state_dict` returned (default: no-op).

        Raises:
            ValueError: for a state that does not fit this strategy.
        """


def validate_directions(directions: Sequence[str]) -> tuple[str, ...]:
    """Check ``directions`` and return them as a tuple.

    Raises:
        ValueError: if empty or a direction is neither ``"minimize"`` nor ``"maximize"``.
    """
    directions = tuple(directions)
    if not directions:
        raise ValueError("`directions` must name at least one objective, but got ().")
    unknown = [d for d in directions if d not in DIRECTIONS]
    if unknown:
        raise ValueError(
            f"every direction must be one of {DIRECTIONS}, but got {directions} "
            f"(unknown: {unknown})."
        )
    return directions


def fitness_weights(directions: Sequence[str]) -> tuple[float, ...]:
    """DEAP fitness weights (``-1.0`` to minimise, ``+1.0`` to maximise) from directions."""
    return tuple(-1.0 if d == "minimize" else 1.0 for d in validate_directions(directions))


def total_violation(constraints: Sequence[float] | None) -> float:
    """The summed positive constraint values (Deb's constraint violation); 0 when feasible."""
    if constraints is None:
        return 0.0
    return float(sum(c for c in constraints if c > 0))


def in_flight(pending: dict[int, Any], proposal: Proposal) -> Any:
    """What a strategy keeps for ``proposal`` while it is in flight (error if it is not)."""
    if proposal.number not in pending:
        raise ValueError(
            f"proposal {proposal.number} is not in flight (never asked, or already told)."
        )
    return pending[proposal.number]


def check_result(
    result: Sequence[float] | Failure,
    constraints: Sequence[float] | None,
    n_objectives: int,
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Validate a result passed to ``tell``.

    Returns:
        ``(values, constraints)`` as float tuples; ``values`` is ``None`` for a
        :class:`Failure`. Non-finite objective values are turned into ``None`` too (the
        candidate is then handled like a failure), as Optuna fails trials reporting NaN.

    Raises:
        ValueError: on a wrong number of values or NaN constraint values.
    """
    if constraints is not None:
        constraints = tuple(float(c) for c in constraints)
        if any(math.isnan(c) for c in constraints):
            raise ValueError(f"constraint values must not be NaN, but got {constraints}.")
    if isinstance(result, Failure):
        return None, constraints
    if isinstance(result, (str, bytes)) or not isinstance(result, Sequence):
        raise ValueError(
            f"`result` must be a sequence of {n_objectives} floats or a Failure, "
            f"but got {result!r}."
        )
    values = tuple(float(v) for v in result)
    if len(values) != n_objectives:
        raise ValueError(
            f"`len(result) == len(directions)` must hold, but got "
            f"({len(values)=}, {n_objectives=})."
        )
    if not all(math.isfinite(v) for v in values):
        return None, constraints
    return values, constraints


def is_ordinal(gene: Choice) -> bool:
    """Whether a choice gene is ordinal: all its choices are numbers (bools excluded)."""
    return all(isinstance(c, Real) and not isinstance(c, bool) for c in gene.choices)


def make_rng(seed: int | None) -> np.random.Generator:
    """A strategy-owned generator (fresh OS entropy when ``seed is None``)."""
    return np.random.default_rng(seed)


def entropy(seed: int | None) -> int:
    """``seed`` itself, or fresh OS entropy (an int that can be saved) when ``seed is None``.

    Raises:
        ValueError: for a negative seed.
    """
    if seed is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if seed < 0:
        raise ValueError(f"`seed >= 0` must hold, but got {seed=}.")
    return int(seed)


def child_seed(seed: int, index: int) -> int:
    """A 32-bit seed from the ``index``-th child of ``np.random.SeedSequence(seed)``.

    The same as ``SeedSequence(seed).spawn(index + 1)[index].generate_state(1)[0]``: children
    are statistically independent streams, and any one is computed without the others.
    """
    return int(np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1)[0])


def encode_params(space: GeneSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe form of ``params``: choice index per Choice gene, 0/1 list per Mask gene.

    Raises:
        ValueError: if ``params`` is not inside ``space``.
    """
    if not space.contains(params):
        raise ValueError(f"params are not inside the space {space.names}: {dict(params)!r}.")
    encoded: dict[str, Any] = {}
    for gene in space.genes:
        value = params[gene.name]
        if isinstance(gene, Mask):
            encoded[gene.name] = [int(bit) for bit in value]
        else:
            encoded[gene.name] = gene.choices.index(value)
    return encoded


def decode_params(space: GeneSpace, encoded: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_params`."""
    params: dict[str, Any] = {}
    for gene in space.genes:
        value = encoded[gene.name]
        if isinstance(gene, Mask):
            params[gene.name] = tuple(bool(bit) for bit in value)
        else:
            params[gene.name] = gene.choices[int(value)]
    return params


def genome_key(space: GeneSpace, params: Mapping[str, Any]) -> tuple[Any, ...]:
    """A hashable identity of ``params`` (to spot duplicate genomes)."""
    return tuple(
        params[gene.name] if isinstance(gene, Mask) else gene.choices.index(params[gene.name])
        for gene in space.genes
    )
