"""Search strategies and execution engines (installed as ``gansearch.search``).

A strategy proposes params over a :class:`~gansearch.spaces.genes.GeneSpace` and learns from
the results (:class:`Strategy`: ``ask`` / ``tell``); where candidates run is the engine's
business.
"""

from gansearch.search.base import Failure, Proposal, Strategy
from gansearch.search.deap_strategy import DeapStrategy
from gansearch.search.engines import Engine, LocalEngine, RayEngine
from gansearch.search.hybrid import HybridStrategy
from gansearch.search.optuna_strategy import OptunaStrategy
from gansearch.search.registry import STRATEGIES, make_strategy

__all__ = [
    "STRATEGIES",
    "DeapStrategy",
    "Engine",
    "Failure",
    "HybridStrategy",
    "LocalEngine",
    "OptunaStrategy",
    "Proposal",
    "RayEngine",
    "Strategy",
    "make_strategy",
]
