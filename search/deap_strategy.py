"""NSGA-II over the full genome (masks as bitstrings), built on DEAP, driven by ask/tell.

Algorithm (Deb et al., "A Fast and Elitist Multiobjective Genetic Algorithm: NSGA-II",
IEEE TEVC 2002), generation by generation:

1. Generation 0 is the enqueued seeds (:meth:`DeapStrategy.enqueue`: the teacher, a uniform
   int8 start...) followed by random genomes from ``space.sample``, except that each mask
   is, with probability ``topk_init_prob``, replaced by the top-k mask of a random keep
   choice: random channel subsets are poor pruning masks, the importance order is a good
   prior, and half-random masks keep the diversity that bitstring search needs.
2. :meth:`ask` hands out the generation's individuals one by one; the generation is complete
   once ``population_size`` of them (plus any extra, see below) have all been told.
3. Environmental selection on parents + offspring (mu + lambda) with Deb's constraint
   domination: feasible individuals are ranked by non-dominated sorting and crowding
   distance (DEAP's ``tools.selNSGA2``); infeasible ones come after every feasible one,
   ordered by total violation (sum of positive constraint values); a failure counts as
   infeasible with infinite violation.
4. Variation: binary tournaments with the crowded-comparison operator, then

   * masks (Shu et al., "Co-Evolutionary Compression for Unpaired Image Translation",
     ICCV 2019): two-point crossover of each mask's bitstring, bit-flip mutation
     (``bitflip_prob`` per bit) and, with probability ``segment_prob``, a segment flip: a
     run of channels that are adjacent in the mask's *importance order* is flipped, which
     moves the keep boundary by a block of similarly important channels (each gene of a
     child is mutated with probability ``gene_mutation_prob``, a mask counting as one gene);
     :meth:`Mask.repair` then restores ``min_keep``;
   * choices: uniform crossover (each gene swapped with probability 1/2) and random-reset
     mutation; for an ordinal gene (numeric choices),
     with probability ``ordinal_step_prob`` the reset is a single step up or down instead;
   * a child identical to a genome already in the population is mutated again (a few
     times at most): in discrete spaces duplicates otherwise waste evaluations.

Randomness: the strategy owns one ``np.random.Generator``. DEAP's variation operators and
``selTournamentDCD`` draw from the global ``random`` module, so they are re-implemented here
in a few lines with the strategy's generator (each cites the DEAP operator it mirrors).
From DEAP we use only the deterministic parts: ``tools.sortNondominated``,
``tools.emo.assignCrowdingDist`` and ``tools.selNSGA2`` (whose tie-breaks are by input
order, which we fix). DEAP's global ``creator`` is not used; :class:`JointFitness` is a
module-level ``deap.base.Fitness`` subclass whose weights come from the directions.

In flight: proposals may be told in any order; individuals enter selection sorted by their
proposal number, so the result does not depend on completion order. :meth:`ask` never
blocks: once the whole generation is in flight, extra offspring are bred from the current
parents and join the generation (so the generation only advances when they are told too).

Resume: :meth:`state_dict` holds parents, the current generation, the queue and the
generator state as JSON data; :meth:`load_state_dict` continues the evolution exactly
(individuals in flight when saving are handed out again).

Length: this module is longer than ~400 lines because it is one algorithm whose selection,
variation and state share the population's bookkeeping; split, each part would need the
others' private state.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from deap import base, tools

from gansearch.search.base import (
    Failure,
    Proposal,
    Strategy,
    check_result,
    decode_params,
    encode_params,
    fitness_weights,
    genome_key,
    in_flight,
    is_ordinal,
    make_rng,
    total_violation,
    validate_directions,
)
from gansearch.spaces.genes import Choice, GeneSpace, Mask


class JointFitness(base.Fitness):
    """A DEAP fitness with per-instance weights (no runtime ``creator.create``).

    Args:
        weights: ``-1.0`` per minimised and ``+1.0`` per maximised objective, from
            :func:`gansearch.search.base.fitness_weights`.
        values: the objective values, if already known.
    """

    def __init__(self, weights: Sequence[float], values: Sequence[float] = ()) -> None:
        self.weights = tuple(weights)
        super().__init__(tuple(values))

    def __deepcopy__(self, memo: dict) -> JointFitness:
        copy = JointFitness(self.weights)
        copy.wvalues = self.wvalues
        return copy


class Individual:
    """One genome and what is known about it (DEAP's selection needs only ``fitness``)."""

    __slots__ = ("params", "fitness", "constraints", "failed", "number", "status")

    def __init__(self, params: dict[str, Any], weights: Sequence[float]) -> None:
        self.params = params
        self.fitness = JointFitness(weights)
        self.constraints: tuple[float, ...] | None = None
        self.failed = False
        self.number: int | None = None
        self.status = "new"  # "new" -> "asked" -> "told"

    @property
    def violation(self) -> float:
        """Deb's total constraint violation; infinite for a failure."""
        return math.inf if self.failed else total_violation(self.constraints)


class DeapStrategy(Strategy):
    """NSGA-II over the full genome (see the module docstring).

    Args:
        space: the genes to search.
        directions: ``"minimize"`` / ``"maximize"`` per objective.
        seed: seed of the strategy's generator; ``None`` draws fresh entropy.
        population_size: parents kept and offspring bred per generation.
        crossover_prob: probability that a pair of parents is crossed over.
        mutation_prob: probability that a child is mutated at all.
        bitflip_prob: per-bit flip probability in a mutated mask; ``None`` means one over
            the mask's length (at least one bit is flipped).
        segment_prob: probability that a mutated mask gets a segment flip instead.
        max_segment: longest flipped segment, as a fraction of the mask length.
        gene_mutation_prob: probability that a gene of a mutated child is mutated; ``None``
            means one over the number of genes (about one mutation per child).
        ordinal_step_prob: probability that an ordinal reset is a single +-1 step.
        topk_init_prob: probability that a random mask of generation 0 is a top-k mask.
        max_duplicate_retries: extra mutations tried on a child duplicating the population.
    """

    def __init__(
        self,
        space: GeneSpace,
        directions: Sequence[str],
        *,
        seed: int | None = None,
        population_size: int = 32,
        crossover_prob: float = 0.9,
        mutation_prob: float = 1.0,
        bitflip_prob: float | None = None,
        segment_prob: float = 0.3,
        max_segment: float = 0.25,
        gene_mutation_prob: float | None = None,
        ordinal_step_prob: float = 0.5,
        topk_init_prob: float = 0.5,
        max_duplicate_retries: int = 10,
    ) -> None:
        if population_size < 2:
            raise ValueError(f"`population_size >= 2` must hold, but got {population_size=}.")
        probabilities = {
            "crossover_prob": crossover_prob,
            "mutation_prob": mutation_prob,
            "bitflip_prob": bitflip_prob,
            "segment_prob": segment_prob,
            "max_segment": max_segment,
            "gene_mutation_prob": gene_mutation_prob,
            "ordinal_step_prob": ordinal_step_prob,
            "topk_init_prob": topk_init_prob,
        }
        for name, p in probabilities.items():
            if p is not None and not 0.0 <= p <= 1.0:
                raise ValueError(f"`0 <= {name} <= 1` must hold, but got {name}={p}.")
        self.space = space
        self.directions = validate_directions(directions)
        self.population_size = population_size
        self._weights = fitness_weights(self.directions)
        self._masks = [g for g in space.genes if isinstance(g, Mask)]
        self._choices = [g for g in space.genes if isinstance(g, Choice)]
        self._crossover_prob = crossover_prob
        self._mutation_prob = mutation_prob
        self._bitflip_prob = bitflip_prob
        self._segment_prob = segment_prob
        self._max_segment = max_segment
        self._gene_mutation_prob = (
            gene_mutation_prob if gene_mutation_prob is not None else 1.0 / len(space.genes)
        )
        self._ordinal_step_prob = ordinal_step_prob
        self._topk_init_prob = topk_init_prob
        self._max_duplicate_retries = max_duplicate_retries
        self._rng = make_rng(seed)

        self.generation = 0
        self._parents: list[Individual] = []
        self._members: list[Individual] = []  # the current generation
        self._spare: deque[dict[str, Any]] = deque()  # second child of the last crossover
        self._queue: deque[dict[str, Any]] = deque()
        self._in_flight: dict[int, Individual] = {}
        self._next_number = 0
        self._rank: list[int] = []
        self._crowding: list[float] = []

    # -- the strategy ------------------------------------------------------------------------

    def ask(self) -> Proposal:
        """Hand out the next individual of the current generation (breeding it if needed)."""
        individual = next((m for m in self._members if m.status == "new"), None)
        if individual is None:
            params = self._queue.popleft() if self._queue else self._make_params()
            individual = Individual(params, self._weights)
            self._members.append(individual)
        individual.status = "asked"
        individual.number = self._next_number
        self._next_number += 1
        self._in_flight[individual.number] = individual
        return Proposal(number=individual.number, params=dict(individual.params))

    def tell(
        self,
        proposal: Proposal,
        result: Sequence[float] | Failure,
        constraints: Sequence[float] | None = None,
    ) -> None:
        """Record a result; the last result of a generation triggers selection and variation.

        Raises:
            ValueError: for a proposal that is not in flight, or a malformed result.
        """
        individual = in_flight(self._in_flight, proposal)
        values, constraints = check_result(result, constraints, len(self.directions))
        del self._in_flight[proposal.number]
        individual.constraints = constraints
        if values is None:
            individual.failed = True
        else:
            individual.fitness.values = values
        individual.status = "told"
        if len(self._members) >= self.population_size and all(
            m.status == "told" for m in self._members
        ):
            self._advance()

    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Hand out ``params`` at the next ask, as a member of the current generation.

        Raises:
            ValueError: if ``params`` is not inside the space.
        """
        encode_params(self.space, params)  # validates
        self._queue.append(dict(params))

    def reseed(self, seed: int | None) -> None:
        """Restart the strategy's generator from ``seed``."""
        self._rng = make_rng(seed)

    @property
    def n_members(self) -> int:
        """How many individuals of the current generation have been created."""
        return len(self._members)

    @property
    def parent_numbers(self) -> tuple[int, ...]:
        """Proposal numbers of the current parents (survivors of the last selection)."""
        return tuple(p.number for p in self._parents if p.number is not None)

    @property
    def told_numbers(self) -> tuple[int, ...]:
        """Proposal numbers of the current generation's members already told."""
        return tuple(m.number for m in self._members if m.status == "told")

    @property
    def has_pending_reask(self) -> bool:
        """Whether an individual restored by :meth:`load_state_dict` awaits a new ask."""
        return any(m.status == "new" for m in self._members)

    def state_dict(self) -> dict[str, Any]:
        """The evolution's state as JSON-serialisable data (save it after each generation)."""
        return {
            "version": 1,
            "generation": self.generation,
            "next_number": self._next_number,
            "rng": self._rng.bit_generator.state,
            "parents": [self._individual_state(i) for i in self._parents],
            "members": [self._individual_state(i) for i in self._members],
            "spare": [encode_params(self.space, p) for p in self._spare],
            "queue": [encode_params(self.space, p) for p in self._queue],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; individuals in flight then are asked again.

        Raises:
            ValueError: for a state of an unknown version.
        """
        if state.get("version") != 1:
            raise ValueError(f"unsupported state version {state.get('version')!r}; known: 1.")
        self.generation = int(state["generation"])
        self._next_number = int(state["next_number"])
        bit_generator = np.random.PCG64()
        bit_generator.state = state["rng"]
        self._rng = np.random.Generator(bit_generator)
        self._parents = [self._load_individual(s) for s in state["parents"]]
        self._members = [self._load_individual(s) for s in state["members"]]
        self._spare = deque(decode_params(self.space, p) for p in state["spare"])
        self._queue = deque(decode_params(self.space, p) for p in state["queue"])
        self._in_flight = {}
        self._rank_parents()

    # -- selection ---------------------------------------------------------------------------

    def _advance(self) -> None:
        offspring = sorted(self._members, key=lambda m: m.number)
        self._parents = select_constrained_nsga2(self._parents + offspring, self.population_size)
        self._members = []
        self._spare.clear()
        self.generation += 1
        self._rank_parents()

    def _rank_parents(self) -> None:
        """Front rank and crowding distance of each parent, for the tournaments."""
        feasible = [p for p in self._parents if p.violation == 0.0]
        rank = {id(p): 0 for p in self._parents}
        crowding = {id(p): 0.0 for p in self._parents}
        fronts = tools.sortNondominated(feasible, len(feasible)) if feasible else []
        for r, front in enumerate(fronts):
            tools.emo.assignCrowdingDist(front)
            for p in front:
                rank[id(p)] = r
                crowding[id(p)] = p.fitness.crowding_dist
        infeasible = sorted(
            (p for p in self._parents if p.violation > 0.0), key=lambda p: p.violation
        )
        for r, p in enumerate(infeasible, start=len(fronts)):
            rank[id(p)] = r
        self._rank = [rank[id(p)] for p in self._parents]
        self._crowding = [crowding[id(p)] for p in self._parents]

    def _tournament(self) -> Individual:
        """Binary tournament with NSGA-II's crowded comparison (Deb et al. 2002).

        Mirrors DEAP's ``tools.selTournamentDCD`` with the strategy's own generator.
        """
        i, j = (int(x) for x in self._rng.integers(len(self._parents), size=2))
        key_i = (self._rank[i], -self._crowding[i])
        key_j = (self._rank[j], -self._crowding[j])
        return self._parents[j if key_j < key_i else i]

    # -- variation ---------------------------------------------------------------------------

    def _make_params(self) -> dict[str, Any]:
        if not self._parents:
            return self._unique(self._sample(), resample=True)
        if self._spare:
            return self._spare.popleft()
        first = dict(self._tournament().params)
        second = dict(self._tournament().params)
        if self._rng.random() < self._crossover_prob:
            first, second = self._crossover(first, second)
        children = []
        for child in (first, second):
            if self._rng.random() < self._mutation_prob:
                child = self._mutate(child)
            children.append(self._unique(child, resample=False))
        self._spare.append(children[1])
        return children[0]

    def _sample(self) -> dict[str, Any]:
        """A random genome; each mask is, with probability ``topk_init_prob``, the top-k mask
        of a random keep choice (importance-seeded) instead of a random subset."""
        params = self.space.sample(self._rng)
        for mask in self._masks:
            if self._rng.random() < self._topk_init_prob:
                keep = mask.keep_choices[int(self._rng.integers(len(mask.keep_choices)))]
                params[mask.name] = mask.top(keep)
        return params

    def _unique(self, params: dict[str, Any], *, resample: bool) -> dict[str, Any]:
        """Re-mutate (or re-sample) ``params`` while it duplicates the population."""
        seen = {genome_key(self.space, m.params) for m in self._parents + self._members}
        seen.update(genome_key(self.space, p) for p in self._spare)
        for _ in range(self._max_duplicate_retries):
            if genome_key(self.space, params) not in seen:
                break
            params = self._sample() if resample else self._mutate(params)
        return params

    def _crossover(
        self, first: dict[str, Any], second: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Two-point crossover per mask (DEAP's ``cxTwoPoint``; Shu et al. ICCV 2019) and
        uniform crossover of choices (DEAP's ``cxUniform`` with ``indpb=0.5``)."""
        first, second = dict(first), dict(second)
        for mask in self._masks:
            if mask.length < 2:
                continue
            a, b = list(first[mask.name]), list(second[mask.name])
            cut1, cut2 = sorted(int(x) for x in self._rng.choice(mask.length + 1, 2, False))
            a[cut1:cut2], b[cut1:cut2] = b[cut1:cut2], a[cut1:cut2]
            first[mask.name] = mask.repair(tuple(a))
            second[mask.name] = mask.repair(tuple(b))
        for gene in self._choices:
            if self._rng.random() < 0.5:
                first[gene.name], second[gene.name] = second[gene.name], first[gene.name]
        return first, second

    def _mutate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Mutate each gene with probability ``gene_mutation_prob``.

        A mask gets a bit-flip (DEAP's ``mutFlipBit``, ``bitflip_prob`` per bit, at least one
        bit) or, with probability ``segment_prob``, a segment flip along its importance order
        (Shu et al. ICCV 2019), then :meth:`Mask.repair`; a choice gets a random reset, or a
        +-1 step for an ordinal gene with probability ``ordinal_step_prob``.
        """
        params = dict(params)
        for gene in self.space.genes:
            if self._rng.random() >= self._gene_mutation_prob:
                continue
            if isinstance(gene, Mask):
                params[gene.name] = self._mutate_mask(gene, params[gene.name])
            elif len(gene.choices) > 1:
                params[gene.name] = self._mutate_choice(gene, params[gene.name])
        return params

    def _mutate_mask(self, mask: Mask, value: tuple[bool, ...]) -> tuple[bool, ...]:
        bits = np.array(value, dtype=bool)
        if self._rng.random() < self._segment_prob:
            longest = max(1, int(self._max_segment * mask.length))
            size = int(self._rng.integers(1, longest + 1))
            start = int(self._rng.integers(mask.length - size + 1))
            channels = list(mask.order[start : start + size])
        else:
            bitflip_prob = self._bitflip_prob or 1.0 / mask.length
            flips = self._rng.random(mask.length) < bitflip_prob
            if not flips.any():
                flips[int(self._rng.integers(mask.length))] = True
            channels = np.flatnonzero(flips).tolist()
        bits[channels] = ~bits[channels]
        return mask.repair(tuple(bool(b) for b in bits))

    def _mutate_choice(self, gene: Choice, value: Any) -> Any:
        n = len(gene.choices)
        index = gene.choices.index(value)
        if is_ordinal(gene) and self._rng.random() < self._ordinal_step_prob:
            step = 1 if self._rng.random() < 0.5 else -1
            new = index + step if 0 <= index + step < n else index - step
        else:
            new = int(self._rng.integers(n - 1))
            new += new >= index  # any other choice, uniformly
        return gene.choices[new]

    # -- state -------------------------------------------------------------------------------

    def _individual_state(self, individual: Individual) -> dict[str, Any]:
        return {
            "params": encode_params(self.space, individual.params),
            "number": individual.number,
            "status": individual.status,
            "values": list(individual.fitness.values) if individual.fitness.valid else None,
            "constraints": list(individual.constraints)
            if individual.constraints is not None
            else None,
            "failed": individual.failed,
        }

    def _load_individual(self, state: Mapping[str, Any]) -> Individual:
        individual = Individual(decode_params(self.space, state["params"]), self._weights)
        individual.failed = bool(state["failed"])
        if state["values"] is not None:
            individual.fitness.values = tuple(state["values"])
        if state["constraints"] is not None:
            individual.constraints = tuple(state["constraints"])
        if state["status"] == "told":
            individual.status = "told"
            individual.number = state["number"]
        return individual


def select_constrained_nsga2(pool: Sequence[Individual], k: int) -> list[Individual]:
    """NSGA-II environmental selection with Deb's constraint-domination rule.

    Feasible individuals are selected first by non-dominated sorting and crowding distance
    (DEAP's ``tools.selNSGA2``; Deb et al. 2002); the remaining places go to infeasible
    individuals in order of increasing total violation (failures last). Ties keep the order
    of ``pool``, so the selection is deterministic.
    """
    feasible = [i for i in pool if i.violation == 0.0]
    chosen = tools.selNSGA2(feasible, min(k, len(feasible))) if feasible else []
    infeasible = sorted(
        (i for i in pool if i.violation > 0.0), key=lambda i: i.violation
    )  # sorted() is stable: pool order breaks ties
    return chosen + infeasible[: k - len(chosen)]
