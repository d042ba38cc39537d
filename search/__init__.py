"""Search strategies and execution engines (installed as ``gansearch.search``).

A strategy proposes params over a :class:`~gansearch.spaces.genes.GeneSpace` and learns from
the results (:class:`Strategy`: ``ask`` / ``tell``); where candidates run is the engine's
business (:class:`Engine`). :mod:`gansearch.search.registry` makes both from their names.
Exports are imported lazily, so importing this package (or its registry) pulls in neither
optuna, DEAP nor Ray.
"""

from __future__ import annotations

from gansearch.lazy import lazy_exports

_EXPORTS = {
    "Failure": "base",
    "Proposal": "base",
    "Strategy": "base",
    "DeapStrategy": "deap_strategy",
    "Engine": "engines",
    "EngineError": "engines",
    "Finished": "engines",
    "LocalEngine": "engines",
    "RayEngine": "engines",
    "HybridStrategy": "hybrid",
    "OptunaStrategy": "optuna_strategy",
    "ProcessEngine": "process_engine",
    "SamplerFactory": "optuna_strategy",
    "ENGINE_NAMES": "registry",
    "SAMPLER_NAMES": "registry",
    "STRATEGY_NAMES": "registry",
    "SamplerPreset": "registry",
    "make_engine": "registry",
    "make_strategy": "registry",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
