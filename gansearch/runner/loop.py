"""The propose → evaluate → record loop of a run (what DEAP calls the algorithm's ``map``).

The strategy decides *what* to evaluate next, the engine *where* it runs
(:mod:`gansearch.search.engines`); this loop keeps the engine's slots busy and records
every result, in the order results come back, into storage first and then into the
strategy, saving the strategy's state after each one.

With a :class:`~gansearch.runner.promotion.PromotionGate` (``search.fidelity``), each
proposal is first scored at low fidelity; the gate then either sends it on to the full
protocol in the same (still RUNNING) trial, or the trial is finished with its cheap
values, calibrated to the full protocol's scale (:mod:`gansearch.fidelity`). Either way
the strategy is told once, the final values.
Past the run's ``timeout`` nothing more is promoted, so that both kinds of run stop alike.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from gansearch.candidates import CandidateResult
from gansearch.fidelity import FULL, LOW, LOW_METRICS_ATTR, Promotion
from gansearch.runner.heartbeat import HeartbeatKeeper, fail_stale
from gansearch.runner.promotion import PromotionGate
from gansearch.runner.recording import TrialRecorder, finite_or_none, mask_attrs
from gansearch.runner.signals import CtrlCSeen, ctrl_c_deferred
from gansearch.runner.storage import INTERRUPTED, SharedStudy, budget_taken, finished_trials
from gansearch.search.base import Failure, Proposal, Strategy
from gansearch.search.engines import Engine
from gansearch.spaces.genes import GeneSpace

_POLL_SECONDS = 1.0  # how often a controller with nothing in flight looks at the others


def run_loop(
    shared: SharedStudy,
    genes: GeneSpace,
    strategy: Strategy,
    engine: Engine,
    *,
    budget: int,
    timeout: float | None,
    state_key: str,
    on_result: Callable[[CandidateResult, Any], None] | None = None,
    attrs: Callable[[Proposal], Mapping[str, Any]] | None = None,
    gate: PromotionGate | None = None,
) -> int:
    """Evaluate proposals until ``budget`` trials are finished in storage.

    The engine keeps ``engine.slots`` candidates in flight. Each proposal becomes a
    RUNNING Optuna trial when it is handed to the engine, and is told to the storage and
    then to the strategy as soon as its result comes back, in completion order (with
    several slots, later proposals therefore depend on which results were back when they
    were asked, as each strategy documents). After every result the strategy's state, when
    it has one, is saved as the study's ``state_key`` user attribute. Any interruption
    (Ctrl-C, an engine error) marks the trials in flight FAIL with reason
    :data:`~gansearch.runner.storage.INTERRUPTED` before it propagates, so the storage
    never keeps RUNNING trials and a re-run re-proposes them.

    The budget is shared by every controller on the study: trials that count plus RUNNING
    ones (:func:`~gansearch.runner.storage.budget_taken`). A trial created when the budget
    was already taken (two controllers raced for the last slot; the lower trial number
    wins) is withdrawn unevaluated, and its proposal held for the next free slot. With
    nothing in flight and the budget taken only by other controllers' RUNNING trials, the
    loop waits for them, failing those whose controller died
    (:func:`~gansearch.runner.heartbeat.fail_stale`) so that their share returns to the
    budget.

    Args:
        shared: the opened study (with heartbeat settings) that records every candidate.
        genes: the space the strategy proposes in.
        strategy: what to evaluate next.
        engine: where candidates run.
        budget: stop once this many trials count in storage.
        timeout: stop proposing after this many seconds (``None``: no limit).
        state_key: the study user attribute the strategy's state is saved under.
        on_result: called with ``(result, trial)`` after every candidate.
        attrs: extra user attributes of a proposal's trial.
        gate: decides which cheaply scored candidates are scored in full (multi-fidelity);
            ``None``: every candidate is scored in full at once.

    Returns:
        The number of candidates evaluated by this call.
    """
    study = shared.study
    start = time.monotonic()
    evaluated = 0
    in_flight: dict[int, tuple[Proposal, Any]] = {}  # trial number -> (proposal, trial)
    held: list[Proposal] = []  # asked, but withdrawn unevaluated: the budget was taken
    promoted: dict[int, CandidateResult] = {}  # trial number -> its cheap result

    def fidelity(number: int) -> str:
        """The fidelity trial ``number`` is (being) scored at."""
        return LOW if gate is not None and number not in promoted else FULL

    ctrl_c = CtrlCSeen()
    with HeartbeatKeeper(shared) as heartbeat:
        recorder = TrialRecorder(shared, genes, heartbeat)
        try:
            while True:
                ctrl_c.check()  # a Ctrl-C an engine call swallowed still stops the run here
                in_time = timeout is None or time.monotonic() - start < timeout
                while in_time and len(in_flight) < engine.slots:
                    fail_stale(shared)
                    if budget_taken(study) >= budget:
                        break
                    with ctrl_c_deferred():  # a trial is RUNNING in storage iff it is in flight
                        proposal = held.pop() if held else strategy.ask()
                        trial = recorder.start(
                            proposal.params,
                            {**mask_attrs(proposal.params), **(attrs(proposal) if attrs else {})},
                        )
                        if budget_taken(study, before=trial.number) >= budget:
                            recorder.withdraw(trial)
                            held.append(proposal)  # proposed again if the budget frees up
                            break
                        in_flight[trial.number] = (proposal, trial)
                        engine.submit(trial.number, proposal.params, fidelity(trial.number))
                if not in_flight:
                    if not in_time or len(finished_trials(study)) >= budget:
                        break
                    time.sleep(_POLL_SECONDS)  # other controllers hold the rest of the budget
                    continue
                done = engine.wait()  # where Ctrl-C normally lands
                with ctrl_c_deferred():  # storage, strategy and its saved state move together
                    proposal, trial = in_flight[done.ticket]
                    result = done.result
                    if isinstance(result, Failure):  # what the engine saw: dead worker, timeout
                        result = CandidateResult(
                            "{}", failure=result.reason, fidelity=fidelity(done.ticket)
                        )
                    decision = None
                    if gate is not None and result.fidelity == LOW:
                        in_time = timeout is None or time.monotonic() - start < timeout
                        decision = gate.decide(result, study, in_time=in_time)
                    if decision is not None and decision.promote:  # stays RUNNING, in flight
                        promoted[done.ticket] = result
                        engine.submit(done.ticket, proposal.params, FULL)
                        continue
                    extra = _fidelity_attrs(promoted.pop(done.ticket, None), decision, result)
                    if gate is not None and decision is not None:  # kept at low fidelity:
                        result = gate.calibrated(result)  # recorded and told in full scale
                    if done.attempts > 1:
                        extra["attempts"] = done.attempts
                    recorder.finish(trial, result, extra)
                    del in_flight[done.ticket]
                    outcome = (
                        Failure(result.failure) if result.failure is not None else result.values
                    )
                    strategy.tell(proposal, outcome, result.constraints or None)
                    state = strategy.state_dict()
                    if state is not None:
                        study.set_user_attr(state_key, state)
                evaluated += 1
                if on_result is not None:
                    on_result(result, trial)
        except BaseException:  # Ctrl-C or an engine error: leave storage consistent, then stop
            try:
                with ctrl_c_deferred():  # a second Ctrl-C waits until storage is consistent
                    with contextlib.suppress(Exception):  # storage matters more than workers
                        engine.cancel()
                    for number, (_, trial) in in_flight.items():
                        interrupted = CandidateResult(
                            "{}", failure=INTERRUPTED, fidelity=fidelity(number)
                        )
                        with contextlib.suppress(Exception):  # one bad trial strands no other
                            recorder.finish(trial, interrupted)
            finally:
                ctrl_c.restore()
            raise
    ctrl_c.restore()
    return evaluated


def _fidelity_attrs(
    cheap: CandidateResult | None, decision: Promotion | None, result: CandidateResult
) -> dict[str, Any]:
    """Extra user attributes of a finished trial: its measured cheap metrics (``metrics``
    then holds the full-protocol ones, or the calibrated cheap ones of a trial that was not
    promoted, which also says why)."""
    if decision is not None:
        return {"not_promoted": decision.reason, LOW_METRICS_ATTR: finite_or_none(result.metrics)}
    if cheap is None:
        return {}
    return {
        LOW_METRICS_ATTR: finite_or_none(cheap.metrics),
        "low_spread": finite_or_none(cheap.spread),
        "low_seconds": cheap.seconds,
    }
