"""A reusable test suite that every search strategy runs (cf. optuna/testing/pytest_samplers.py).

Subclass :class:`StrategySuite`, implement :meth:`StrategySuite.make` and set the class
attributes; pytest then collects every ``test_*`` method for that strategy. The analytic
problems here need no GAN: ZDT1 (Zitzler, Deb & Thiele, "Comparison of Multiobjective
Evolutionary Algorithms: Empirical Results", Evolutionary Computation 2000) over ordinal
choice genes, joined by a pruning mask whose "true" channel importance differs from the
static importance order the space carries, as in real pruning.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume

from gansearch.search.base import Failure, Proposal, Strategy
from gansearch.spaces.genes import Choice, GeneSpace, Mask

MINMIN = ("minimize", "minimize")

# -- ZDT1 with a mask ------------------------------------------------------------------------

ZDT1_VARIABLES = 8
ZDT1_LEVELS = 11
MASK_LENGTH = 12
MASK_COST_WEIGHT = 0.3  # share of f1 that is the mask's keep ratio (a compression cost)
MASK_PENALTY = 3.0  # weight of the mask's wrongly kept channels in ZDT1's g
REFERENCE_POINT = (1.1, 1.1)
_ORDER = tuple(int(i) for i in np.random.default_rng(123).permutation(MASK_LENGTH))
# The channel ranked 11th by the static order is truly the 3rd most important one.
_TRUE_ORDER = (*_ORDER[:2], _ORDER[10], *_ORDER[2:10], _ORDER[11])


def zdt1_space() -> GeneSpace:
    """8 ordinal choices with 11 levels in [0, 1] and a 12-channel mask."""
    levels = tuple(float(v) for v in np.linspace(0.0, 1.0, ZDT1_LEVELS))
    choices = tuple(Choice(f"x{i}", levels) for i in range(ZDT1_VARIABLES))
    mask = Mask("mask", MASK_LENGTH, 2, _ORDER, tuple(range(2, MASK_LENGTH + 1, 2)))
    return GeneSpace((*choices, mask))


def zdt1(params: Mapping[str, Any]) -> tuple[float, float]:
    """ZDT1 where f1 also pays for kept channels and g for channels wrongly kept.

    A mask keeping ``k`` channels is penalised for each kept channel outside the ``k`` truly
    most important ones; top-k masks by the static order are close but not optimal.
    """
    x = [params[f"x{i}"] for i in range(ZDT1_VARIABLES)]
    bits = params["mask"]
    kept = sum(bits)
    truly_top = set(_TRUE_ORDER[:kept])
    wrong = sum(1 for channel, bit in enumerate(bits) if bit and channel not in truly_top)
    g = 1.0 + 9.0 * sum(x[1:]) / (ZDT1_VARIABLES - 1) + MASK_PENALTY * wrong / MASK_LENGTH
    f1 = (1.0 - MASK_COST_WEIGHT) * x[0] + MASK_COST_WEIGHT * kept / MASK_LENGTH
    return f1, g * (1.0 - math.sqrt(f1 / g))


def zdt1_constraints(params: Mapping[str, Any]) -> tuple[float]:
    """Feasible when ``x0 >= 0.3`` (value ``<= 0``); cuts off the front's low-f1 end."""
    return (0.3 - params["x0"],)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Hypervolume (minimisation) of the points dominating ``reference``, via Optuna."""
    ref = np.asarray(reference, dtype=float)
    inside = [p for p in points if np.all(np.asarray(p) < ref)]
    if not inside:
        return 0.0
    return float(compute_hypervolume(np.asarray(inside, dtype=float), ref))


def run(
    strategy: Strategy,
    objective: Callable[[Mapping[str, Any]], Sequence[float]],
    budget: int,
    *,
    constraints: Callable[[Mapping[str, Any]], Sequence[float]] | None = None,
    in_flight: int = 1,
) -> list[tuple[Proposal, Sequence[float], Sequence[float] | None]]:
    """Ask ``in_flight`` proposals at a time, tell them in reverse order, ``budget`` in all."""
    history = []
    while len(history) < budget:
        batch = [strategy.ask() for _ in range(min(in_flight, budget - len(history)))]
        for proposal in reversed(batch):
            values = objective(proposal.params)
            cons = constraints(proposal.params) if constraints is not None else None
            strategy.tell(proposal, values, cons)
            history.append((proposal, values, cons))
    return history


# -- a small mixed space for the contract tests -----------------------------------------------


def mixed_space() -> GeneSpace:
    """Ordinal and categorical choices, a one-choice gene and two masks."""
    return GeneSpace(
        (
            Choice("bits.conv1", (2, 4, 8, 16)),
            Choice("rank.res1", (4, 8, 16, 32, 64)),
            Choice("source", ("teacher", "ofa", "distilled")),
            Choice("fixed", (8,)),
            Mask("mask.conv1", 10, 3, (3, 1, 4, 0, 9, 2, 6, 5, 8, 7), (3, 5, 8, 10)),
            Mask("mask.res1", 6, 1, (0, 1, 2, 3, 4, 5), (1, 2, 4, 6)),
        )
    )


def mixed_objective(params: Mapping[str, Any]) -> tuple[float, float]:
    """A deterministic two-objective function of the mixed space (size vs quality)."""
    size = params["bits.conv1"] * sum(params["mask.conv1"]) + params["rank.res1"] * sum(
        params["mask.res1"]
    )
    quality = 100.0 / size + {"teacher": 0.0, "ofa": 0.5, "distilled": 0.2}[params["source"]]
    return float(size), float(quality)


def _params_sequence(strategy: Strategy, n: int) -> list[dict[str, Any]]:
    return [dict(p.params) for p, _, _ in run(strategy, mixed_objective, n)]


class StrategySuite:
    """The behaviour every strategy must show. Subclasses implement :meth:`make`.

    Class attributes:
        zdt1_min_hypervolume: the bar the strategy must clear on ZDT1 after
            ``zdt1_budget`` evaluations; ``None`` marks a baseline that must stay *below*
            ``ZDT1_BAR`` (that is what makes the bar meaningful).
        constrained_min_hypervolume: the same bar for the constrained variant.
    """

    ZDT1_BAR: ClassVar[float] = 0.2
    zdt1_budget: ClassVar[int] = 300
    zdt1_min_hypervolume: ClassVar[float | None] = ZDT1_BAR
    constrained_min_hypervolume: ClassVar[float | None] = ZDT1_BAR

    def make(self, space: GeneSpace, directions: Sequence[str], seed: int | None) -> Strategy:
        raise NotImplementedError

    # -- determinism -----------------------------------------------------------------------

    def test_same_seed_same_proposals(self) -> None:
        first = _params_sequence(self.make(mixed_space(), MINMIN, seed=7), 40)
        second = _params_sequence(self.make(mixed_space(), MINMIN, seed=7), 40)
        assert first == second

    def test_different_seed_different_proposals(self) -> None:
        first = _params_sequence(self.make(mixed_space(), MINMIN, seed=7), 20)
        second = _params_sequence(self.make(mixed_space(), MINMIN, seed=8), 20)
        assert first != second

    def test_reseed_restarts_the_sequence(self) -> None:
        strategy = self.make(mixed_space(), MINMIN, seed=1)
        if not hasattr(strategy, "reseed"):
            pytest.skip("this strategy has no reseed hook")
        reseeded = self.make(mixed_space(), MINMIN, seed=1)
        reseeded.reseed(1)
        assert _params_sequence(strategy, 15) == _params_sequence(reseeded, 15)

    # -- the space and the protocol ----------------------------------------------------------

    def test_proposals_stay_inside_the_space(self) -> None:
        space = mixed_space()
        strategy = self.make(space, MINMIN, seed=0)
        for proposal, _, _ in run(strategy, mixed_objective, 60):
            assert space.contains(proposal.params), proposal.params

    def test_numbers_increase(self) -> None:
        history = run(self.make(mixed_space(), MINMIN, seed=0), mixed_objective, 20, in_flight=3)
        numbers = sorted(p.number for p, _, _ in history)
        assert len(set(numbers)) == len(numbers)

    def test_failures_are_recorded_and_skipped(self) -> None:
        space = mixed_space()
        strategy = self.make(space, MINMIN, seed=0)
        for i in range(50):
            proposal = strategy.ask()
            assert space.contains(proposal.params)
            if i % 3 == 0:
                strategy.tell(proposal, Failure("out of memory"))
            elif i % 7 == 0:
                strategy.tell(proposal, (math.nan, 1.0))  # NaN values count as a failure
            else:
                strategy.tell(proposal, mixed_objective(proposal.params))

    def test_all_failures_keep_proposing(self) -> None:
        space = mixed_space()
        strategy = self.make(space, MINMIN, seed=0)
        for _ in range(30):
            proposal = strategy.ask()
            assert space.contains(proposal.params)
            strategy.tell(proposal, Failure("crashed worker"))

    def test_several_in_flight_told_in_reverse(self) -> None:
        space = mixed_space()
        strategy = self.make(space, MINMIN, seed=0)
        history = run(strategy, mixed_objective, 48, in_flight=4)
        assert all(space.contains(p.params) for p, _, _ in history)

    def test_tell_of_unknown_or_finished_proposal_raises(self) -> None:
        strategy = self.make(mixed_space(), MINMIN, seed=0)
        proposal = strategy.ask()
        with pytest.raises(ValueError, match="not in flight"):
            strategy.tell(Proposal(number=10_000, params=proposal.params), (1.0, 1.0))
        strategy.tell(proposal, (1.0, 1.0))
        with pytest.raises(ValueError, match="not in flight"):
            strategy.tell(proposal, (1.0, 1.0))

    def test_wrong_number_of_values_raises(self) -> None:
        strategy = self.make(mixed_space(), MINMIN, seed=0)
        proposal = strategy.ask()
        with pytest.raises(ValueError, match="len"):
            strategy.tell(proposal, (1.0,))
        strategy.tell(proposal, (1.0, 2.0))  # still in flight after the rejected tell

    def test_enqueued_params_are_proposed_verbatim(self) -> None:
        space = mixed_space()
        strategy = self.make(space, MINMIN, seed=0)
        if not hasattr(strategy, "enqueue"):
            pytest.skip("this strategy has no enqueue hook")
        teacher = space.sample(np.random.default_rng(5))
        strategy.enqueue(teacher)
        assert dict(strategy.ask().params) == teacher

    def test_state_dict_is_json_and_resumes(self) -> None:
        space = mixed_space()
        strategy = self.make(space, MINMIN, seed=3)
        if not hasattr(strategy, "state_dict"):
            pytest.skip("this strategy has no state_dict hook")
        run(strategy, mixed_objective, 25)
        state = json.loads(json.dumps(strategy.state_dict()))
        resumed = self.make(space, MINMIN, seed=3)
        resumed.load_state_dict(state)
        for proposal, _, _ in run(resumed, mixed_objective, 20):
            assert space.contains(proposal.params)

    # -- multi-objective quality -------------------------------------------------------------

    def test_zdt1_hypervolume(self) -> None:
        strategy = self.make(zdt1_space(), MINMIN, seed=0)
        history = run(strategy, zdt1, self.zdt1_budget)
        value = hypervolume([v for _, v, _ in history], REFERENCE_POINT)
        if self.zdt1_min_hypervolume is None:
            assert value < self.ZDT1_BAR, f"the baseline reached HV {value:.3f}"
        else:
            assert value >= self.zdt1_min_hypervolume, f"HV {value:.3f}"

    def test_constrained_zdt1_hypervolume(self) -> None:
        """Constrained ZDT1 with the second objective maximised (its sign flipped)."""
        strategy = self.make(zdt1_space(), ("minimize", "maximize"), seed=0)

        def flipped(params: Mapping[str, Any]) -> tuple[float, float]:
            f1, f2 = zdt1(params)
            return f1, -f2

        history = run(strategy, flipped, self.zdt1_budget, constraints=zdt1_constraints)
        feasible = [(f1, -f2) for _, (f1, f2), c in history if c[0] <= 0.0]
        value = hypervolume(feasible, REFERENCE_POINT)
        if self.constrained_min_hypervolume is None:
            assert value < self.ZDT1_BAR, f"the baseline reached HV {value:.3f}"
        else:
            assert value >= self.constrained_min_hypervolume, f"HV {value:.3f}"
