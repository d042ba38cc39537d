"""Every strategy runs the shared :mod:`strategy_suite`; then strategy-specific checks."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from gansearch.search import (
    DeapStrategy,
    Failure,
    HybridStrategy,
    OptunaStrategy,
    Strategy,
    make_strategy,
)
from gansearch.search.base import fitness_weights
from gansearch.spaces.genes import GeneSpace

sys.path.insert(0, str(Path(__file__).parent))
from strategy_suite import (  # noqa: E402
    MINMIN,
    StrategySuite,
    mixed_objective,
    mixed_space,
    run,
)

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


class TestOptunaTPE(StrategySuite):
    zdt1_min_hypervolume = 0.5
    constrained_min_hypervolume = 0.5

    def make(self, space: GeneSpace, directions: Sequence[str], seed: int | None) -> Strategy:
        return OptunaStrategy(space, directions, sampler="tpe", seed=seed)


class TestOptunaNSGAII(StrategySuite):
    def make(self, space: GeneSpace, directions: Sequence[str], seed: int | None) -> Strategy:
        return OptunaStrategy(space, directions, sampler="nsga2", seed=seed, population_size=12)


class TestOptunaRandom(StrategySuite):
    zdt1_min_hypervolume = None  # the baseline: must stay below the bar
    constrained_min_hypervolume = None

    def make(self, space: GeneSpace, directions: Sequence[str], seed: int | None) -> Strategy:
        return OptunaStrategy(space, directions, sampler="random", seed=seed)


class TestDeap(StrategySuite):
    zdt1_min_hypervolume = 0.35
    constrained_min_hypervolume = 0.3

    def make(self, space: GeneSpace, directions: Sequence[str], seed: int | None) -> Strategy:
        return DeapStrategy(space, directions, seed=seed, population_size=12)


class TestHybrid(StrategySuite):
    zdt1_min_hypervolume = 0.5
    constrained_min_hypervolume = 0.5

    def make(self, space: GeneSpace, directions: Sequence[str], seed: int | None) -> Strategy:
        return HybridStrategy(space, directions, seed=seed, population_size=12)


# -- DEAP specifics ----------------------------------------------------------------------------


def _deap(seed: int = 0) -> DeapStrategy:
    return DeapStrategy(mixed_space(), MINMIN, seed=seed, population_size=6)


def test_deap_generation_advances_only_when_all_told() -> None:
    strategy = _deap()
    proposals = [strategy.ask() for _ in range(6)]
    for proposal in proposals[:-1]:
        strategy.tell(proposal, mixed_objective(proposal.params))
    assert strategy.generation == 0
    extra = strategy.ask()  # never blocks: bred into the same generation
    strategy.tell(proposals[-1], mixed_objective(proposals[-1].params))
    assert strategy.generation == 0
    strategy.tell(extra, mixed_objective(extra.params))
    assert strategy.generation == 1


@pytest.mark.parametrize("order", ["forward", "reverse", "shuffled"])
def test_deap_selection_ignores_completion_order(order: str) -> None:
    def generations(tell_order: str) -> list[dict]:
        strategy = _deap()
        asked = []
        for _ in range(3):
            batch = [strategy.ask() for _ in range(6)]
            asked += [dict(p.params) for p in batch]
            if tell_order == "reverse":
                batch.reverse()
            elif tell_order == "shuffled":
                batch = batch[3:] + batch[:3]
            for proposal in batch:
                strategy.tell(proposal, mixed_objective(proposal.params))
        return asked

    assert generations(order) == generations("forward")


def test_deap_state_dict_resumes_exactly() -> None:
    uninterrupted = _deap(seed=4)
    run(uninterrupted, mixed_objective, 15, in_flight=2)
    saved = json.loads(json.dumps(uninterrupted.state_dict()))
    expected = [dict(p.params) for p, _, _ in run(uninterrupted, mixed_objective, 30)]

    resumed = _deap(seed=99)  # the saved generator state wins over the seed
    resumed.load_state_dict(saved)
    assert [dict(p.params) for p, _, _ in run(resumed, mixed_objective, 30)] == expected


def test_deap_in_flight_individuals_are_asked_again_after_resume() -> None:
    strategy = _deap()
    in_flight = [strategy.ask() for _ in range(3)]
    resumed = _deap()
    resumed.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
    assert [dict(resumed.ask().params) for _ in range(3)] == [dict(p.params) for p in in_flight]


def test_deap_failures_rank_below_infeasible() -> None:
    strategy = _deap()
    for i in range(6):
        proposal = strategy.ask()
        if i < 3:
            strategy.tell(proposal, Failure("oom"))
        else:
            strategy.tell(proposal, mixed_objective(proposal.params), constraints=(float(i),))
    state = strategy.state_dict()
    assert [p["failed"] for p in state["parents"]] == [False, False, False, True, True, True]
    assert [p["constraints"] for p in state["parents"][:3]] == [[3.0], [4.0], [5.0]]


def test_fitness_weights_follow_directions() -> None:
    assert fitness_weights(("minimize", "maximize")) == (-1.0, 1.0)
    with pytest.raises(ValueError, match="direction"):
        fitness_weights(("min",))


# -- Optuna specifics --------------------------------------------------------------------------


def test_optuna_masks_are_top_k() -> None:
    space = mixed_space()
    strategy = OptunaStrategy(space, MINMIN, sampler="tpe", seed=0)
    for proposal, _, _ in run(strategy, mixed_objective, 15):
        mask = space["mask.conv1"]
        assert proposal.params[mask.name] == mask.top(sum(proposal.params[mask.name]))


def test_optuna_nsga3_runs() -> None:
    strategy = OptunaStrategy(mixed_space(), MINMIN, sampler="nsga3", seed=0, population_size=6)
    run(strategy, mixed_objective, 20, constraints=lambda p: (p["bits.conv1"] - 8.0,))


def test_optuna_gp_supports_the_space_with_constraints() -> None:
    pytest.importorskip("torch")
    strategy = OptunaStrategy(mixed_space(), MINMIN, sampler="gp", seed=0, n_startup_trials=4)
    history = run(strategy, mixed_objective, 7, constraints=lambda p: (p["bits.conv1"] - 8.0,))
    assert all(mixed_space().contains(p.params) for p, _, _ in history)


def test_optuna_unknown_sampler_raises() -> None:
    with pytest.raises(ValueError, match="`sampler` must be one of"):
        OptunaStrategy(mixed_space(), MINMIN, sampler="cmaes")


# -- registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["optuna", "deap", "hybrid"])
def test_make_strategy_builds_each(name: str) -> None:
    strategy = make_strategy(name, mixed_space(), MINMIN, seed=0, options=None)
    assert isinstance(strategy, Strategy)
    assert mixed_space().contains(strategy.ask().params)


def test_make_strategy_passes_options() -> None:
    strategy = make_strategy(
        "optuna", mixed_space(), MINMIN, seed=0, options={"sampler": "nsga2", "population_size": 8}
    )
    assert strategy.sampler_name == "nsga2"


def test_make_strategy_unknown_name_lists_known() -> None:
    with pytest.raises(ValueError, match=r"known strategies: \['deap', 'hybrid', 'optuna'\]"):
        make_strategy("cmaes", mixed_space(), MINMIN, seed=0)


def test_make_strategy_unknown_option_names_it() -> None:
    with pytest.raises(TypeError, match="populaton"):
        make_strategy("deap", mixed_space(), MINMIN, seed=0, options={"populaton": 3})
