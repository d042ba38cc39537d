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

import moocore
import numpy as np
import pytest

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
    """Hypervolume (minimisation) of the points dominating ``reference`` (``moocore``)."""
    ref = np.asarray(reference, dtype=float)
    inside = [p for p in points if np.all(np.asarray(p) < ref)]
    if not inside:
        return 0.0
    return float(moocore.hypervolume(np.asarray(inside, dtype=float), ref=ref))


Objective = Callable[[Mapping[str, Any]], "Sequence[float] | Failure"]
History = list[tuple[Proposal, "Sequence[float] | Failure", "Sequence[float] | None"]]


def run(
    strategy: Strategy,
    objective: Objective,
    budget: int,
    *,
    constraints: Callable[[Mapping[str, Any]], Sequence[float]] | None = None,
    in_flight: int = 1,
) -> History:
    """Ask ``in_flight`` proposals at a time, tell them in reverse order, ``budget`` in all.

    ``objective`` may return a :class:`Failure`, which is told as such.
    """
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


OUT_OF_MEMORY = Failure("out of memory")


def failing_every(
    k: int, objective: Objective = mixed_objective, failure: Any = OUT_OF_MEMORY
) -> Objective:
    """``objective``, except that every ``k``-th call (the 1st, the k+1-th...) gives ``failure``
    (a :class:`Failure`, or values such as NaN); ``k == 0`` never fails."""
    calls = iter(range(1_000_000))

    def scripted(params: Mapping[str, Any]) -> Sequence[float] | Failure:
        if k and next(calls) % k == 0:
            return failure
        return objective(params)

    return scripted


def mixed_constraints(params: Mapping[str, Any]) -> tuple[float]:
    """Feasible with at least 4 bits (value ``<= 0``)."""
    return (4.0 - params["bits.conv1"],)


def _params(history: History) -> list[dict[str, Any]]:
    return [dict(p.params) for p, _, _ in history]


def _params_sequence(strategy: Strategy, n: int) -> list[dict[str, Any]]:
    return _params(run(strategy, mixed_objective, n))


def _json(state: Any) -> Any:
    return json.loads(json.dumps(state))


class StrategySuite:
    """The behaviour every strategy must show. Subclasses implement :meth:`make`.

    Class attributes:
        zdt1_min_hypervolume: the bar the strategy must clear on ZDT1 after
            ``zdt1_budget`` evaluations; ``None`` marks a baseline that must stay *below*
            ``ZDT1_BAR`` (that is what makes the bar meaningful).
        constrained_min_hypervolume: the same bar for the constrained variant.
        learns: whether results steer the proposals (``False`` for random search, whose
            proposals must then *not* depend on them).
    """

    ZDT1_BAR: ClassVar[float] = 0.2
    zdt1_budget: ClassVar[int] = 300
    zdt1_min_hypervolume: ClassVar[float | None] = ZDT1_BAR
    constrained_min_hypervolume: ClassVar[float | None] = ZDT1_BAR
    learns: ClassVar[bool] = True

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
        reseeded = self.make(mixed_space(), MINMIN, seed=2)
        reseeded.reseed(1)
        assert _params_sequence(strategy, 15) == _params_sequence(reseeded, 15)

    def test_results_steer_the_proposals(self) -> None:
        """Told values matter to a learning strategy, and not at all to random search."""
        told = _params_sequence(self.make(mixed_space(), MINMIN, seed=0), 40)
        reversed_values = _params(
            run(
                self.make(mixed_space(), MINMIN, seed=0),
                lambda params: tuple(-v for v in mixed_objective(params)),
                40,
            )
        )
        assert (told != reversed_values) == self.learns

    # -- the space and the protocol ----------------------------------------------------------

    def test_proposals_stay_inside_the_space(self) -> None:
        space = mixed_space()
        strategy = self.make(space, MINMIN, seed=0)
        for proposal, _, _ in run(strategy, mixed_objective, 60):
            assert space.contains(proposal.params), proposal.params

    def test_numbers_increase(self) -> None:
        """Numbers grow strictly in the order of the asks, whatever the order of the tells."""
        strategy = self.make(mixed_space(), MINMIN, seed=0)
        asked = []
        for _ in range(8):
            batch = [strategy.ask() for _ in range(3)]
            asked += [p.number for p in batch]
            for proposal in reversed(batch):
                strategy.tell(proposal, mixed_objective(proposal.params))
        assert all(a < b for a, b in zip(asked, asked[1:], strict=False)), asked

    def test_failures_are_recorded_and_skipped(self) -> None:
        """A failure stays in the space's history as a failure: not values, not forgotten.

        * NaN values are recorded exactly as a :class:`Failure` (identical later proposals);
        * a failure is not a result: a learning strategy then proposes otherwise than when
          the same candidates had been told their values (random search proposes the same);
        * the failures survive :meth:`Strategy.state_dict` (a restored strategy continues
          exactly; see also :meth:`test_state_dict_resumes_exactly`).
        """
        space = mixed_space()
        failed = run(self.make(space, MINMIN, seed=0), failing_every(3), 50)
        assert all(space.contains(p.params) for p, _, _ in failed)
        assert sum(isinstance(v, Failure) for _, v, _ in failed) == 17
        nan = run(self.make(space, MINMIN, seed=0), failing_every(3, failure=(math.nan, 1.0)), 50)
        assert _params(nan) == _params(failed)
        told = _params_sequence(self.make(space, MINMIN, seed=0), 50)
        assert (told != _params(failed)) == self.learns

        uninterrupted = self.make(space, MINMIN, seed=0)
        run(uninterrupted, failing_every(3), 24)
        saved = _json(uninterrupted.state_dict())
        resumed = self.make(space, MINMIN, seed=0)
        resumed.load_state_dict(saved)
        continuation = failing_every(0)
        assert _params(run(resumed, continuation, 20)) == _params(
            run(uninterrupted, continuation, 20)
        )

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
        teacher = space.sample(np.random.default_rng(5))
        strategy.enqueue(teacher)
        assert dict(strategy.ask().params) == teacher

    # -- resume ------------------------------------------------------------------------------

    def test_state_dict_resumes_exactly(self) -> None:
        """Restored from its JSON state, a strategy proposes what the uninterrupted one does.

        The history holds failures, constraints, an enqueued seed and several proposals in
        flight; the restored strategy is made with another seed (the saved state wins), and
        in the end both save the same state.
        """
        space = mixed_space()
        uninterrupted = self.make(space, MINMIN, seed=3)
        uninterrupted.enqueue(space.sample(np.random.default_rng(5)))
        run(uninterrupted, failing_every(4), 27, constraints=mixed_constraints, in_flight=2)
        uninterrupted.enqueue(space.sample(np.random.default_rng(6)))  # still queued when saved
        saved = _json(uninterrupted.state_dict())
        expected = run(uninterrupted, failing_every(5), 30, constraints=mixed_constraints)

        resumed = self.make(space, MINMIN, seed=99)
        resumed.load_state_dict(saved)
        history = run(resumed, failing_every(5), 30, constraints=mixed_constraints)
        assert _params(history) == _params(expected)
        assert _json(resumed.state_dict()) == _json(uninterrupted.state_dict())

    def test_in_flight_proposals_are_handed_out_again_after_resume(self) -> None:
        space = mixed_space()
        uninterrupted = self.make(space, MINMIN, seed=2)
        run(uninterrupted, mixed_objective, 14)
        in_flight = [uninterrupted.ask() for _ in range(3)]
        resumed = self.make(space, MINMIN, seed=2)
        resumed.load_state_dict(_json(uninterrupted.state_dict()))
        again = [resumed.ask() for _ in range(3)]
        assert [dict(p.params) for p in again] == [dict(p.params) for p in in_flight]
        for first, second in zip(in_flight, again, strict=True):
            uninterrupted.tell(first, mixed_objective(first.params))
            resumed.tell(second, mixed_objective(second.params))
        assert _params_sequence(resumed, 20) == _params_sequence(uninterrupted, 20)

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
