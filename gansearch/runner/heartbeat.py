"""Heartbeats of the trials a controller evaluates, and failing the trials of dead controllers.

Optuna's ``RDBStorage(heartbeat_interval=..., grace_period=...)`` records a heartbeat per
RUNNING trial, and ``optuna.storages.fail_stale_trials`` fails only the trials whose
heartbeat is older than the grace period, i.e. whose process died. Optuna beats only
inside ``Study.optimize``; gansearch asks and tells, so :class:`HeartbeatKeeper` beats for
every trial this controller has in flight from one daemon thread, with the storage's
public ``record_heartbeat``.

Optuna's ``JournalStorage`` has no heartbeat. There the keeper writes the wall-clock time
as the trial's ``heartbeat`` user attribute, and :func:`fail_stale` fails RUNNING trials
whose attribute is older than the grace period (so controllers sharing a journal file
need clocks that agree within the grace period, as NFS already requires). A RUNNING
trial created without any heartbeat (by a gansearch older than heartbeats, or another
client) is failed once it is older than the grace period, so no controller waits for it
forever.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings

from gansearch.runner.storage import SharedStudy

HEARTBEAT_ATTR = "heartbeat"
OPTUNA_KEEPS_IT = "optuna"  # the HEARTBEAT_ATTR of a trial whose beats are in Optuna's table


def _uses_optuna_heartbeat(shared: SharedStudy) -> bool:
    import optuna

    return isinstance(shared.storage, optuna.storages.RDBStorage)


class HeartbeatKeeper:
    """Proves, every ``heartbeat.interval`` seconds, that this controller's trials are alive.

    Use as a context manager around the run; :meth:`add` a trial (by Optuna trial id) as
    soon as it is created and :meth:`discard` it once it is told.
    """

    def __init__(self, shared: SharedStudy) -> None:
        if shared.heartbeat is None:
            raise ValueError("`shared` must be opened with heartbeat settings to keep them.")
        self._shared = shared
        self._interval = shared.heartbeat.interval
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gansearch-heartbeat", daemon=True)

    def __enter__(self) -> HeartbeatKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def marker(self) -> float | str:
        """The :data:`HEARTBEAT_ATTR` a new trial is created with (proof it has a keeper)."""
        return OPTUNA_KEEPS_IT if _uses_optuna_heartbeat(self._shared) else time.time()

    def add(self, trial_id: int) -> None:
        """Beat for ``trial_id`` now and from now on."""
        self.beat(trial_id)
        with self._lock:
            self._trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        """Stop beating for ``trial_id`` (told, or failed by someone else)."""
        with self._lock:
            self._trial_ids.discard(trial_id)

    def beat(self, trial_id: int) -> None:
        """Record one heartbeat of ``trial_id``."""
        storage = self._shared.storage
        if _uses_optuna_heartbeat(self._shared):
            storage.record_heartbeat(trial_id)
        else:
            storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                trial_ids = sorted(self._trial_ids)
            for trial_id in trial_ids:
                # told meanwhile, or a busy database: the next beat retries
                with contextlib.suppress(Exception):
                    self.beat(trial_id)


def fail_stale(shared: SharedStudy) -> list[int]:
    """Fail the RUNNING trials whose controller stopped beating; returns their numbers.

    Trials of live controllers are never touched. Failed trials get no ``fail_reason`` and
    so count as interrupted (:mod:`gansearch.runner.storage`).
    """
    import optuna
    from optuna.trial import TrialState

    if shared.heartbeat is None:
        raise ValueError("`shared` must be opened with heartbeat settings to judge staleness.")
    study = shared.study
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return []
    if _uses_optuna_heartbeat(shared):
        with warnings.catch_warnings():  # Optuna marks fail_stale_trials experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    deadline = time.time() - shared.heartbeat.grace_period
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.user_attrs.get(HEARTBEAT_ATTR)
        if beat == OPTUNA_KEEPS_IT:
            continue  # judged by fail_stale_trials above
        # a journal beat, or no heartbeat at all (a trial of an older gansearch, or of
        # another client): nobody will ever beat for it, so it is stale after the grace
        last = beat if isinstance(beat, float) else trial.datetime_start.timestamp()
        if last < deadline:
            # its controller may tell it just now: then it was alive after all
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    after = {t.number: t for t in study.get_trials(deepcopy=False)}
    return sorted(
        n
        for n in running
        if after[n].state == TrialState.FAIL and "fail_reason" not in after[n].user_attrs
    )
