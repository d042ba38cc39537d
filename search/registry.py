"""Build a strategy by name from the study configuration.

``make_strategy("hybrid", space, ("minimize", "minimize"), seed=0, options={...})``; the
``options`` mapping carries what the study YAML says about the strategy (sampler name,
population size, rates) and is passed on as keyword arguments, so an unknown option is a
``TypeError`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gansearch.search.base import Strategy, validate_directions
from gansearch.search.deap_strategy import DeapStrategy
from gansearch.search.hybrid import HybridStrategy
from gansearch.search.optuna_strategy import OptunaStrategy
from gansearch.spaces.genes import GeneSpace

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "optuna": OptunaStrategy,
    "deap": DeapStrategy,
    "hybrid": HybridStrategy,
}


def make_strategy(
    name: str,
    space: GeneSpace,
    directions: Sequence[str],
    *,
    seed: int | None,
    options: Mapping[str, Any] | None = None,
) -> Strategy:
    """Create the strategy called ``name``.

    Args:
        name: ``"optuna"``, ``"deap"`` or ``"hybrid"``.
        space: the genes to search.
        directions: ``"minimize"`` / ``"maximize"`` per objective.
        seed: the strategy's seed (``None`` draws fresh entropy).
        options: keyword arguments of the strategy's class, e.g. ``{"sampler": "nsga2",
            "population_size": 40}`` for ``"optuna"``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
        TypeError: for an option the strategy does not take.
    """
    factory = STRATEGIES.get(name)
    if factory is None:
        raise ValueError(f"unknown strategy {name!r}; known strategies: {sorted(STRATEGIES)}.")
    options = dict(options or {})
    for reserved in ("seed", "space", "directions"):
        if reserved in options:
            raise ValueError(
                f"option {reserved!r} is given by `make_strategy` itself and must not be in "
                f"`options`."
            )
    try:
        return factory(space, validate_directions(directions), seed=seed, **options)
    except TypeError as error:
        raise TypeError(f"bad options for strategy {name!r}: {error}") from error
