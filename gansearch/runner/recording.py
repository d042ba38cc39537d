"""Writing candidates into the study's Optuna storage, one trial each.

A trial records its gene values (:class:`~gansearch.spaces.genes.Choice` genes as Optuna
params; a :class:`~gansearch.spaces.genes.Mask` as its kept-channel count, so the
dashboard can plot it, plus the bitstring as the ``bits:<gene>`` user attribute), the
objective values, every metric and its noise floor (``metrics`` / ``spread``), the plan
JSON, the constraint values (Optuna's public ``Trial.set_constraint``, read back as
``FrozenTrial.constraints``; ``<= 0`` is feasible) and, for a failure, ``fail_reason``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gansearch.spaces.genes import Choice, GeneSpace

if TYPE_CHECKING:
    from gansearch.candidates import CandidateResult


def finite_or_none(mapping: Mapping[str, float]) -> dict[str, float | None]:
    """``mapping`` with NaN / inf as ``None`` (JSON, and Optuna's attributes, have no NaN)."""
    return {k: (float(v) if math.isfinite(v) else None) for k, v in mapping.items()}


def trial_distributions(genes: GeneSpace) -> dict[str, Any]:
    """Optuna distributions for what a trial records as params."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    distributions: dict[str, Any] = {}
    for gene in genes.genes:
        if isinstance(gene, Choice):
            distributions[gene.name] = CategoricalDistribution(list(gene.choices))
        else:  # a Mask: the dashboard sees its kept-channel count; the bits are a user attr
            distributions[f"kept:{gene.name}"] = IntDistribution(gene.min_keep, gene.length)
    return distributions


def trial_params(genes: GeneSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial records as params for gene values ``params``."""
    recorded: dict[str, Any] = {}
    for gene in genes.genes:
        value = params[gene.name]
        if isinstance(gene, Choice):
            recorded[gene.name] = value
        else:
            recorded[f"kept:{gene.name}"] = int(sum(value))
    return recorded


def mask_attrs(params: Mapping[str, Any]) -> dict[str, str]:
    """The ``bits:<gene>`` user attributes of the mask genes in ``params``."""
    return {
        f"bits:{name}": "".join("1" if bit else "0" for bit in value)
        for name, value in params.items()
        if isinstance(value, tuple)
    }


class TrialRecorder:
    """Writes candidates into the Optuna study: RUNNING while evaluated, then told."""

    def __init__(self, study: Any, genes: GeneSpace) -> None:
        self.study = study
        self.genes = genes
        self.distributions = trial_distributions(genes)

    def start(self, params: Mapping[str, Any], attrs: Mapping[str, Any]) -> Any:
        """A new RUNNING trial holding ``params`` and the user attributes ``attrs``."""
        self.study.enqueue_trial(trial_params(self.genes, params), user_attrs=dict(attrs))
        return self.study.ask(self.distributions)

    def finish(self, trial: Any, result: CandidateResult) -> None:
        """Record ``result`` on ``trial`` and tell the storage (COMPLETE or FAIL)."""
        from optuna.trial import TrialState

        trial.set_user_attr("plan", result.plan_json)
        trial.set_user_attr("seconds", result.seconds)
        if result.metrics:
            trial.set_user_attr("metrics", finite_or_none(result.metrics))
            trial.set_user_attr("spread", finite_or_none(result.spread))
        if result.failure is not None:
            trial.set_user_attr("fail_reason", result.failure)
            self.study.tell(trial, state=TrialState.FAIL)
            return
        for key, value in enumerate(result.constraints):
            trial.set_constraint(str(key), value)
        self.study.tell(trial, list(result.values or ()))
