"""Writing candidates into the study's Optuna storage, one trial each.

A trial records its gene values (:class:`~gansearch.spaces.genes.Choice` genes as Optuna
params; a :class:`~gansearch.spaces.genes.Mask` as its kept-channel count, so the
dashboard can plot it, plus the bitstring as the ``bits:<gene>`` user attribute), the
objective values, every metric and its noise floor (``metrics`` / ``spread``), the plan
JSON, the fidelity it was scored at (``fidelity``: ``"full"`` or ``"low"``, see
:mod:`gansearch.fidelity`), the constraint values (Optuna's public
``Trial.set_constraint``, read back as ``FrozenTrial.constraints``; ``<= 0`` is feasible)
and, for a failure, ``fail_reason``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gansearch.candidates import CandidateResult
from gansearch.fidelity import FIDELITY_ATTR
from gansearch.runner.heartbeat import HEARTBEAT_ATTR, HeartbeatKeeper
from gansearch.runner.storage import INTERRUPTED, NOT_EVALUATED, SharedStudy
from gansearch.spaces.genes import Choice, GeneSpace


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
    """Writes candidates into the Optuna study: RUNNING while evaluated, then told.

    Each trial is created RUNNING with exactly its candidate's params in one storage call
    (``create_new_trial`` with a template from ``optuna.trial.create_trial``), so no other
    controller can take it, and no WAITING trial is ever created. Its heartbeat is kept by
    ``heartbeat`` (when given) from creation until it is told.
    """

    def __init__(
        self, shared: SharedStudy, genes: GeneSpace, heartbeat: HeartbeatKeeper | None = None
    ) -> None:
        self.shared = shared
        self.study = shared.study
        self.genes = genes
        self.heartbeat = heartbeat
        self.distributions = trial_distributions(genes)
        self.study_id = shared.storage.get_study_id_from_name(shared.study.study_name)
        self._ids: dict[int, int] = {}  # trial number -> storage trial id

    def start(self, params: Mapping[str, Any], attrs: Mapping[str, Any]) -> Any:
        """A new RUNNING trial holding ``params`` and the user attributes ``attrs``."""
        import optuna
        from optuna.trial import TrialState, create_trial

        template = create_trial(
            state=TrialState.RUNNING,
            params=trial_params(self.genes, params),
            distributions=self.distributions,
            user_attrs={
                **attrs,
                **({HEARTBEAT_ATTR: self.heartbeat.marker()} if self.heartbeat else {}),
            },
        )
        trial_id = self.shared.storage.create_new_trial(self.study_id, template_trial=template)
        if self.heartbeat is not None:
            self.heartbeat.add(trial_id)
        trial = optuna.trial.Trial(self.study, trial_id)
        self._ids[trial.number] = trial_id
        return trial

    def withdraw(self, trial: Any) -> None:
        """Fail a trial that will not be evaluated, as :data:`NOT_EVALUATED` (never counted)."""
        self.finish(trial, CandidateResult("{}", failure=NOT_EVALUATED))

    def finish(
        self, trial: Any, result: CandidateResult, attrs: Mapping[str, Any] | None = None
    ) -> None:
        """Record ``result`` (and user attributes ``attrs``) on ``trial``; tell the storage.

        A trial another controller failed meanwhile (this one missed its heartbeats for
        longer than the grace period, e.g. suspended) stays as it is, interrupted; the
        result is kept in a new finished trial with the same params, whose ``replaces``
        user attribute names the old one.
        """
        from optuna.exceptions import UpdateFinishedTrialError

        trial_id = self._ids.pop(trial.number, None)
        try:
            self._tell(trial, result, attrs or {})
        except (UpdateFinishedTrialError, ValueError):
            if not self._failed_by_another(trial.number):
                raise
            if result.failure not in (INTERRUPTED, NOT_EVALUATED):  # else nothing to keep
                self._record_anew(trial, result, attrs or {})
        finally:
            if self.heartbeat is not None and trial_id is not None:
                self.heartbeat.discard(trial_id)

    def _tell(self, trial: Any, result: CandidateResult, attrs: Mapping[str, Any]) -> None:
        from optuna.trial import TrialState

        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("plan", result.plan_json)
        trial.set_user_attr("seconds", result.seconds)
        if result.finetune_seconds:
            trial.set_user_attr("finetune_seconds", result.finetune_seconds)
        trial.set_user_attr(FIDELITY_ATTR, result.fidelity)
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

    def _failed_by_another(self, number: int) -> bool:
        from optuna.trial import TrialState

        now = self.study.get_trials(deepcopy=False)[number]
        return now.state == TrialState.FAIL and "fail_reason" not in now.user_attrs

    def _record_anew(self, trial: Any, result: CandidateResult, extra: Mapping[str, Any]) -> None:
        """Store ``result`` of the stale-failed ``trial`` as a new finished trial."""
        from optuna.trial import TrialState, create_trial

        old = self.study.get_trials(deepcopy=False)[trial.number]
        attrs = {key: value for key, value in old.user_attrs.items() if key != HEARTBEAT_ATTR}
        attrs.update(extra)
        attrs.update(plan=result.plan_json, seconds=result.seconds, replaces=trial.number)
        attrs[FIDELITY_ATTR] = result.fidelity
        if result.metrics:
            attrs.update(
                metrics=finite_or_none(result.metrics), spread=finite_or_none(result.spread)
            )
        failed = result.failure is not None
        if failed:
            attrs["fail_reason"] = result.failure
        template = create_trial(
            state=TrialState.FAIL if failed else TrialState.COMPLETE,
            values=None if failed else list(result.values or ()),
            params=old.params,
            distributions=old.distributions,
            user_attrs=attrs,
            constraints=None
            if failed or not result.constraints
            else {str(k): float(v) for k, v in enumerate(result.constraints)},
        )
        self.shared.storage.create_new_trial(self.study_id, template_trial=template)
