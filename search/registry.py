"""Strategies, samplers and engines by name: the one place that lists them.

The study file names a strategy (``search.strategy``), an Optuna sampler preset
(``search.sampler``) and an engine (``search.engine``); :mod:`gansearch.config` validates
them against :data:`STRATEGY_NAMES`, :data:`SAMPLER_NAMES` and :data:`ENGINE_NAMES`, the
command line offers the same names, and :func:`make_strategy` / :func:`make_engine` turn
them into objects. This module imports neither optuna, DEAP nor Ray (the implementation
modules are imported when an object is made), so configuration and ``--help`` stay light.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from gansearch.search.base import Strategy
    from gansearch.search.engines import Engine, EvaluateFactory
    from gansearch.spaces.genes import GeneSpace

STRATEGY_NAMES = ("optuna", "deap", "hybrid")
SAMPLER_NAMES = ("tpe", "nsga2", "nsga3", "gp", "random")
ENGINE_NAMES = ("local", "ray")

#: The model of the ``"hybrid"`` strategy unless ``options`` name another sampler.
HYBRID_MODEL_SAMPLER = "tpe"


@dataclass(frozen=True)
class SamplerPreset:
    """A named Optuna sampler with its options; calling it with a seed makes a fresh sampler.

    Presets (Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011,
    for TPE; Deb et al., "A Fast and Elitist Multiobjective Genetic Algorithm: NSGA-II",
    IEEE TEVC 2002; Deb & Jain, "An Evolutionary Many-Objective Optimization Algorithm
    Using Reference-Point-Based Nondominated Sorting Approach" (NSGA-III), IEEE TEVC 2014):

    * ``"tpe"``: ``TPESampler(multivariate=True, constant_liar=True)``: proposals in flight
      are RUNNING trials with a pessimistic "lie", so several can be asked at once;
    * ``"nsga2"`` / ``"nsga3"``: Optuna's generation logic, ``population_size`` per
      generation;
    * ``"gp"``: ``GPSampler``: Optuna 5's GP handles categorical and integer parameters,
      several objectives (log EHVI) and constraints (log CEHVI); it runs on torch *inside
      Optuna* and costs seconds per proposal after a few hundred trials, so keep it for
      small budgets;
    * ``"random"``: ``RandomSampler``, the baseline.

    Attributes:
        name: one of :data:`SAMPLER_NAMES`.
        population_size: generation size of ``"nsga2"`` / ``"nsga3"``.
        n_startup_trials: random trials before ``"tpe"`` / ``"gp"`` start modelling.

    Raises:
        ValueError: for an unknown name or an option out of range.
    """

    name: str
    population_size: int = 50
    n_startup_trials: int = 10

    def __post_init__(self) -> None:
        if self.name not in SAMPLER_NAMES:
            raise ValueError(f"`sampler` must be one of {SAMPLER_NAMES}, but got {self.name!r}.")
        if self.population_size < 2:
            raise ValueError(
                f"`population_size >= 2` must hold, but got population_size={self.population_size}."
            )
        if self.n_startup_trials < 0:
            raise ValueError(
                f"`n_startup_trials >= 0` must hold, but got "
                f"n_startup_trials={self.n_startup_trials}."
            )

    def __call__(self, seed: int | None) -> optuna.samplers.BaseSampler:
        """A fresh sampler of this preset seeded with ``seed``."""
        import optuna

        if self.name == "tpe":
            return optuna.samplers.TPESampler(
                multivariate=True,
                constant_liar=True,
                n_startup_trials=self.n_startup_trials,
                seed=seed,
            )
        if self.name == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed)
        if self.name == "nsga3":
            return optuna.samplers.NSGAIIISampler(population_size=self.population_size, seed=seed)
        if self.name == "gp":
            return optuna.samplers.GPSampler(
                n_startup_trials=self.n_startup_trials, seed=seed, warn_independent_sampling=False
            )
        return optuna.samplers.RandomSampler(seed=seed)


def make_strategy(
    name: str,
    space: GeneSpace,
    directions: Sequence[str],
    *,
    seed: int | None,
    options: Mapping[str, Any] | None = None,
) -> Strategy:
    """Create the strategy called ``name``.

    ``options`` carries what the study file says about the strategy; the sampler options
    (``sampler``, ``population_size``, ``n_startup_trials``) become a :class:`SamplerPreset`
    and the rest are keyword arguments of the strategy's class:

    * ``"optuna"``: :class:`~gansearch.search.optuna_strategy.OptunaStrategy` with the
      preset ``sampler`` (default ``"tpe"``);
    * ``"deap"``: :class:`~gansearch.search.deap_strategy.DeapStrategy`;
    * ``"hybrid"``: :class:`~gansearch.search.hybrid.HybridStrategy` whose model is the
      preset ``sampler`` (default :data:`HYBRID_MODEL_SAMPLER`); ``population_size`` is the
      GA's (and an NSGA model's).

    Args:
        name: one of :data:`STRATEGY_NAMES`.
        space: the genes to search.
        directions: ``"minimize"`` / ``"maximize"`` per objective.
        seed: the strategy's seed (``None`` draws fresh entropy).
        options: e.g. ``{"sampler": "nsga2", "population_size": 40}`` for ``"optuna"``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or option value.
        TypeError: for an option the strategy does not take.
    """
    from gansearch.search.base import validate_directions

    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {name!r}; known strategies: {sorted(STRATEGY_NAMES)}.")
    options = dict(options or {})
    for reserved in ("seed", "space", "directions"):
        if reserved in options:
            raise ValueError(
                f"option {reserved!r} is given by `make_strategy` itself and must not be in "
                f"`options`."
            )
    directions = validate_directions(directions)
    try:
        if name == "deap":
            from gansearch.search.deap_strategy import DeapStrategy

            return DeapStrategy(space, directions, seed=seed, **options)
        if name == "optuna":
            from gansearch.search.optuna_strategy import OptunaStrategy

            preset = _pop_preset(options, "tpe", population_size=50)
            return OptunaStrategy(space, directions, sampler_factory=preset, seed=seed, **options)
        from gansearch.search.hybrid import HybridStrategy

        preset = _pop_preset(options, HYBRID_MODEL_SAMPLER, population_size=None)
        return HybridStrategy(space, directions, model_sampler_factory=preset, seed=seed, **options)
    except TypeError as error:
        raise TypeError(f"bad options for strategy {name!r}: {error}") from error


def _pop_preset(
    options: dict[str, Any], default: str, *, population_size: int | None
) -> SamplerPreset:
    """Take the sampler options out of ``options``; ``population_size=None`` leaves the
    strategy's own ``population_size`` in ``options`` and reuses it for the preset."""
    preset: dict[str, Any] = {"name": options.pop("sampler", default)}
    if "n_startup_trials" in options:
        preset["n_startup_trials"] = options.pop("n_startup_trials")
    if population_size is not None:
        preset["population_size"] = options.pop("population_size", population_size)
    elif "population_size" in options:
        preset["population_size"] = options["population_size"]
    return SamplerPreset(**preset)


def make_engine(
    name: str,
    factory: EvaluateFactory,
    *,
    workers: int = 1,
    address: str | None = None,
    cpus: float = 1.0,
    gpus: float = 0.0,
    timeout: float | None = None,
    max_retries: int = 1,
) -> Engine:
    """Create the engine called ``name`` (see :mod:`gansearch.search.engines`).

    Args:
        name: one of :data:`ENGINE_NAMES`.
        factory: a zero-argument callable building ``params -> result``. ``"local"``
            without a ``timeout`` calls it once, in this process, when the first candidate
            is evaluated (so it may return an evaluator built meanwhile); ``"ray"`` (and
            ``"local"`` with a ``timeout``) pickles it to every worker process, which calls
            it once when it starts.
        workers, address, cpus, gpus: the Ray engine's options (see
            :class:`~gansearch.search.engines.RayEngine`); ``"local"`` runs one candidate at
            a time and ignores them.
        timeout, max_retries: seconds one candidate may take (``None``: no limit), and
            re-runs of a candidate whose worker process died. ``"local"`` with a
            ``timeout`` runs candidates in one child process that it kills and replaces
            when a candidate runs over (a
            :class:`~gansearch.search.process_engine.ProcessEngine`; the factory must then
            be picklable, and the child builds its own evaluator); without one it
            evaluates in this process (:class:`~gansearch.search.engines.LocalEngine`) and
            ``max_retries`` has no use.

    Raises:
        EngineError: for an unknown name (the message lists the known ones), or when Ray
            cannot start or its cluster cannot be reached.
        ValueError: for an option out of range.
    """
    from gansearch.search.engines import EngineError, LocalEngine, RayEngine

    if name not in ENGINE_NAMES:
        raise EngineError(f"unknown engine {name!r}; known: {', '.join(ENGINE_NAMES)}")

    if name == "local":
        if timeout is None:
            return LocalEngine(factory)
        from gansearch.search.process_engine import ProcessEngine

        return ProcessEngine(factory, timeout=timeout, max_retries=max_retries)
    return RayEngine(
        factory,
        workers=workers,
        address=address,
        cpus=cpus,
        gpus=gpus,
        timeout=timeout,
        max_retries=max_retries,
    )
