"""The propose → evaluate → record loop of a run (what DEAP calls the algorithm's ``map``).

The strategy decides *what* to evaluate next, the engine *where* it runs
(:mod:`gansearch.search.engines`); this loop keeps the engine's slots busy and records
every result, in the order results come back, into storage first and then into the
strategy, saving the strategy's state after each one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from gansearch.candidates import CandidateResult
from gansearch.runner.heartbeat import HeartbeatKeeper, fail_stale
from gansearch.runner.recording import TrialRecorder, mask_attrs
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

    Returns:
        The number of candidates evaluated by this call.
    """
    study = shared.study
    start = time.monotonic()
    evaluated = 0
    in_flight: dict[int, tuple[Proposal, Any]] = {}  # trial number -> (proposal, trial)
    held: list[Proposal] = []  # asked, but withdrawn unevaluated: the budget was taken
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
                        engine.submit(trial.number, proposal.params)
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
                        result = CandidateResult("{}", failure=result.reason)
                    extra = {"attempts": done.attempts} if done.attempts > 1 else {}
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
                    for _, trial in in_flight.values():
                        with contextlib.suppress(Exception):  # one bad trial strands no other
                            recorder.finish(trial, CandidateResult("{}", failure=INTERRUPTED))
            finally:
                ctrl_c.restore()
            raise
    ctrl_c.restore()
    return evaluated
