"""The study API: run (or continue) a study file's search.

:func:`run_study` wires the flow of the style guide, each arrow a collaborator that can
be injected::

    StudyConfig → JointSpace → Strategy.ask() → decode → CompressionPlan
        → CandidateEvaluator (apply plan, optional distillation, score)
        → trial in Optuna storage (gansearch.runner)

Resume: re-running the same study continues it, and several runs (controllers) may share
one study at the same time. Trials a killed controller left RUNNING are failed as
interrupted once their heartbeat is older than ``search.grace_period``
(:mod:`gansearch.runner.heartbeat`) and do not count towards the budget; a live
controller's trials are never touched. The strategy's state is kept in the study's own
storage (the study user attribute ``strategy_state:<strategy>:<seed>``, written after
every result), so it lives and dies with the storage and lets the strategy re-propose
interrupted trials; a new storage always starts a new strategy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gansearch.candidates import CandidateEvaluator, CandidateResult, EvaluatorHandle
from gansearch.config import StudyConfig
from gansearch.errors import GansearchError
from gansearch.evaluators.objectives import directions
from gansearch.runner.heartbeat import fail_stale
from gansearch.runner.loop import run_loop
from gansearch.runner.promotion import PromotionGate
from gansearch.runner.recording import finite_or_none
from gansearch.runner.storage import Heartbeat, connect, finished_trials, storage_url
from gansearch.search.base import Strategy, genome_key
from gansearch.search.engines import Engine
from gansearch.search.registry import make_engine, make_strategy
from gansearch.spaces.joint import JointSpace
from gansearch.spaces.references import reference_params

STRATEGY_STATE = "strategy_state"


@dataclass(frozen=True)
class RunSummary:
    """What one :func:`run_study` call did."""

    study_name: str
    storage: str
    evaluated: int
    finished: int
    failed: int
    recovered: int
    seconds: float
    promoted: int = 0  # multi-fidelity: cheap candidates this call scored in full
    low_only: int = 0  # ... and those it kept at low fidelity


def state_key(strategy: str, seed: int) -> str:
    """The study user attribute holding the state of ``strategy`` run with ``seed``."""
    return f"{STRATEGY_STATE}:{strategy}:{seed}"


def run_study(
    config: StudyConfig,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    strategy: str | Strategy | None = None,
    storage: str | None = None,
    seed: int | None = None,
    evaluator: CandidateEvaluator | None = None,
    engine: str | Engine | None = None,
    workers: int | None = None,
    address: str | None = None,
    on_start: Callable[[Any, CandidateEvaluator], None] | None = None,
    on_result: Callable[[CandidateResult, Any], None] | None = None,
) -> RunSummary:
    """Run (or continue) the study until ``trials`` trials are finished in storage.

    Args:
        config: the study file.
        trials, timeout, storage, seed: override the study file's values.
        strategy: a strategy name (built by :func:`gansearch.search.registry.make_strategy`
            from the study's ``search`` section), or a ready :class:`Strategy` over the
            study's space (its state is saved under its class name).
        evaluator: a ready :class:`~gansearch.candidates.CandidateEvaluator` (tests reuse
            one). With the Ray engine it only supplies the space and the teacher's
            metrics; the workers build their own.
        engine: an engine name (overrides ``search.engine``), or a ready
            :class:`~gansearch.search.engines.Engine`, which the caller then owns and closes.
        workers, address: override ``search.workers`` / ``search.address``.
        on_start: called with ``(study, evaluator)`` once everything is loaded.
        on_result: called with ``(result, trial)`` after every candidate.
    """
    started = time.monotonic()
    search = config.search
    seed = config.seed if seed is None else seed
    url = storage_url(config, storage)
    shared = connect(
        config, url, heartbeat=Heartbeat(search.heartbeat_interval, search.grace_period)
    )
    study = shared.study
    handle = EvaluatorHandle(config, torch_threads=max(1, int(search.resources.cpus)))
    if evaluator is not None:
        handle.attach(evaluator)
    if isinstance(engine, Engine):  # a ready engine: the caller owns (and closes) it
        where, scope = engine, contextlib.nullcontext()
    else:  # Ray workers start loading now, while the controller loads below
        where = make_engine(
            engine or search.engine,
            handle,
            workers=workers if workers is not None else search.workers,
            address=address if address is not None else search.address,
            cpus=search.resources.cpus,
            gpus=search.resources.gpus,
            timeout=search.candidate_timeout,
            max_retries=search.max_retries,
        )
        scope = where
    with scope:
        evaluator = handle.evaluator()
        space = evaluator.space
        recovered = len(fail_stale(shared))
        study.set_user_attr("teacher_metrics", finite_or_none(evaluator.teacher_score.values))
        study.set_user_attr("objectives", list(config.objectives))
        study.set_user_attr("constraints", list(search.constraints))
        chosen, name = _strategy(config, space, strategy, seed)
        key = state_key(name, seed)
        if search.sensitivity and key not in study.user_attrs and not finished_trials(study):
            from gansearch.sensitivity_measure import guided_params  # measured once, cached

            for params in guided_params(evaluator):  # the first proposals of a fresh study
                chosen.enqueue(params)
        _restore_or_seed(chosen, name, key, study, space, config)
        gate = PromotionGate(evaluator) if search.fidelity is not None else None
        if on_start is not None:
            on_start(study, evaluator)
        evaluated = run_loop(
            shared,
            space.genes,
            chosen,
            where,
            budget=trials if trials is not None else search.trials,
            timeout=timeout if timeout is not None else search.timeout,
            state_key=key,
            on_result=on_result,
            attrs=_trial_attrs(space, name, seed),
            gate=gate,
        )
    finished = finished_trials(study)
    return RunSummary(
        config.name,
        url,
        evaluated,
        len(finished),
        sum(t.state.name == "FAIL" for t in finished),
        recovered,
        time.monotonic() - started,
        gate.promoted if gate is not None else 0,
        gate.dropped if gate is not None else 0,
    )


def _strategy(
    config: StudyConfig, space: JointSpace, strategy: str | Strategy | None, seed: int
) -> tuple[Strategy, str]:
    """The run's strategy and the name its state is saved under."""
    if isinstance(strategy, Strategy):
        return strategy, type(strategy).__name__.lower()
    name = strategy or config.search.strategy
    try:
        built = make_strategy(
            name,
            space.genes,
            directions(config.objectives),
            seed=seed,
            options=config.search.strategy_options(name),
        )
    except (ValueError, TypeError) as error:
        raise GansearchError(f"cannot create strategy {name!r}: {error}") from None
    return built, name


def _restore_or_seed(
    strategy: Strategy, name: str, key: str, study: Any, space: JointSpace, config: StudyConfig
) -> None:
    """Resume the strategy from its state in the storage, or seed a fresh study's proposals."""
    saved = study.user_attrs.get(key)
    if saved is not None:
        try:
            strategy.load_state_dict(saved)
        except (ValueError, KeyError, TypeError) as error:
            raise GansearchError(
                f"the {name} state saved in study {study.study_name!r} (user attribute "
                f"{key!r}) does not fit this study ({error}); use the settings it was saved "
                "with, or another --seed to start a new strategy"
            ) from None
    elif not finished_trials(study) and config.search.enqueue_reference_plans:
        for params in reference_params(space).values():
            strategy.enqueue(params)


def _trial_attrs(space: JointSpace, name: str, seed: int) -> Callable[[Any], dict[str, Any]]:
    """User attributes of a proposal's trial: who proposed it, and its reference label."""
    references = {
        genome_key(space.genes, params): _reference_label(label, space.decode(params))
        for label, params in reference_params(space).items()
    }

    def attrs(proposal: Any) -> dict[str, Any]:
        recorded: dict[str, Any] = {"strategy": name, "seed": seed, "proposal": proposal.number}
        reference = references.get(genome_key(space.genes, proposal.params))
        if reference is not None:
            recorded["reference"] = reference
        return recorded

    return attrs


def _reference_label(name: str, plan: Any) -> str:
    """A reference's plot label; a plan the space can only reach through supernet weights
    (e.g. the teacher in an OFA-only space) says so."""
    if plan.widths is not None and not name.startswith("ofa"):
        return f"{name} (supernet weights)"
    return name
