"""The study's Optuna storage: opening it, and which trials count towards the budget.

Every evaluated candidate is one trial of one Optuna study, whichever strategy proposed
it, and several controllers (``gansearch run`` processes) may share one study. Storage
URLs:

* any SQLAlchemy URL Optuna's ``RDBStorage`` takes (``sqlite:///study.db``,
  ``postgresql://user:password@host/db``...), opened with Optuna's heartbeat so that only
  trials whose controller died are ever failed (:mod:`gansearch.runner.heartbeat`);
* ``journal:///abs/path.log`` or ``journal://relative/path.log``: Optuna's
  ``JournalStorage`` over a ``JournalFileBackend``, for controllers on a shared file system
  where SQLite's locking cannot be trusted (NFS).

A storage that lives in memory (``sqlite://``, ``sqlite:///:memory:``) is refused: the
study would vanish with the process that ran it. Passwords in URLs never reach a message
(:func:`redact`).

A trial that is FAIL *without* a ``fail_reason`` user attribute was interrupted: the
recorder writes a reason for every failure it sees, so a reason is missing only when the
process evaluating the trial died (or was stopped) first, which is also how Optuna's
``fail_stale_trials`` leaves a trial. Interrupted trials, and trials withdrawn because
other controllers had already taken the whole budget (:data:`NOT_EVALUATED`), do not count.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gansearch.errors import GansearchError

if TYPE_CHECKING:
    from gansearch.config import StudyConfig

INTERRUPTED = "interrupted: the process stopped while this candidate was being evaluated"
NOT_EVALUATED = "not evaluated: other controllers had already taken the study's whole budget"
JOURNAL_SCHEME = "journal:"
HEARTBEAT_INTERVAL = 10  # seconds between two heartbeats of a trial being evaluated
GRACE_PERIOD = 60  # seconds without a heartbeat before a RUNNING trial counts as dead
SQLITE_TIMEOUT = 30  # seconds a SQLite writer waits for another controller's lock

_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][\w+.-]*://[^/\s:@]*:)[^@\s/]*@")


class StorageError(GansearchError):
    """A storage URL that cannot be opened."""


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _PASSWORD.sub(r"\g<head>***@", text)


@dataclass(frozen=True)
class Heartbeat:
    """How often a controller proves its trials alive, and how long others wait for that.

    Attributes:
        interval: seconds between two heartbeats of a trial being evaluated.
        grace_period: seconds without a heartbeat after which another controller fails the
            trial as interrupted (Optuna's ``grace_period``); it must exceed ``interval``.
    """

    interval: int = HEARTBEAT_INTERVAL
    grace_period: int = GRACE_PERIOD

    def __post_init__(self) -> None:
        if not 0 < self.interval < self.grace_period:
            raise StorageError(
                "`0 < search.heartbeat_interval < search.grace_period` must hold, but got "
                f"(heartbeat_interval={self.interval}, grace_period={self.grace_period}); "
                "raise the grace period"
            )


@dataclass(frozen=True)
class SharedStudy:
    """An opened study and the storage object it was opened on.

    Attributes:
        study: the ``optuna.Study``.
        storage: the ``RDBStorage`` or ``JournalStorage`` built here (the heartbeat and
            the trial creation of :mod:`gansearch.runner.recording` use its public methods).
        url: the storage URL (print it through :func:`redact`).
        heartbeat: the heartbeat settings, ``None`` when the storage was opened only to read.
    """

    study: Any
    storage: Any
    url: str
    heartbeat: Heartbeat | None


def default_storage(config: StudyConfig) -> str:
    """The SQLite file of a study that names no storage: ``<study dir>/study.db``."""
    directory = config.study_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'study.db'}"


def storage_url(config: StudyConfig, storage: str | None = None) -> str:
    """The storage a command uses: ``storage``, else the study file's, else the default."""
    return storage or config.search.storage or default_storage(config)


def connect(
    config: StudyConfig,
    storage: str | None = None,
    *,
    create: bool = True,
    heartbeat: Heartbeat | None = None,
) -> SharedStudy:
    """Create or load the study's Optuna study, with one-line errors for a bad storage.

    Args:
        config: the study file (its name and objective directions).
        storage: a storage URL overriding :func:`storage_url`'s choice.
        create: create the study when it does not exist (else that is an error), and check
            that the storage can be written.
        heartbeat: open an RDB storage with these heartbeat settings (a run needs them).
    """
    import optuna

    from gansearch.evaluators.objectives import directions

    url = storage_url(config, storage)
    shown, name = redact(url), config.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with _creation_lock(url if create else None):
            backend = open_storage(url, heartbeat)
            if create:
                study = optuna.create_study(
                    study_name=name,
                    storage=backend,
                    directions=directions(config.objectives),
                    load_if_exists=True,
                )
                study.set_user_attr("objectives", list(config.objectives))  # fails if read-only
            else:
                study = optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        raise StorageError(
            f"no study named {name!r} in {shown}; run `gansearch run` first"
        ) from None
    except StorageError:
        raise
    except ValueError as error:
        if "direction" in str(error).lower():
            raise StorageError(
                f"study {name!r} in {shown} was created with other objectives; "
                "rename the study or use another storage"
            ) from None
        raise StorageError(_cannot_open(shown, error)) from None
    except Exception as error:  # noqa: BLE001 - SQLAlchemy/driver errors vary by backend
        raise StorageError(_cannot_open(shown, error)) from None
    return SharedStudy(study, backend, url, heartbeat)


def open_study(config: StudyConfig, storage: str | None = None, *, create: bool = True) -> Any:
    """The study's ``optuna.Study`` (see :func:`connect`), for commands that only read it."""
    return connect(config, storage, create=create).study


def _cannot_open(shown: str, error: BaseException) -> str:
    """One line for a storage that failed to open: read-only named as such, URL redacted."""
    first = redact(str(error).splitlines()[0]) if str(error) else type(error).__name__
    causes = []
    cause: BaseException | None = error
    while cause is not None and len(causes) < 10:  # Optuna wraps the driver's error
        causes.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    if any(re.search(r"read-?only", text, re.IGNORECASE) for text in causes):
        return (
            f"storage {shown} is read-only; make the database (and its folder) writable, or "
            "copy it somewhere writable and pass the copy with --storage"
        )
    return (
        f"cannot open storage {shown} ({type(error).__name__}: {first}); "
        "check the URL and that the database is reachable"
    )


def open_storage(url: str, heartbeat: Heartbeat | None = None) -> Any:
    """The Optuna storage object for ``url``: RDB (with ``heartbeat``), or a journal file.

    Raises:
        StorageError: for a storage in memory or a journal file in a missing folder
            (driver errors, e.g. an unreachable server, propagate as they are).
    """
    import optuna
    from optuna.exceptions import ExperimentalWarning

    if _in_memory(url):
        raise StorageError(
            f"storage {redact(url)} lives in memory and would vanish with this process; use a "
            "file, e.g. --storage sqlite:///study.db (or no --storage for studies/<name>/study.db)"
        )

    if url.startswith(JOURNAL_SCHEME):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url.removeprefix(JOURNAL_SCHEME).removeprefix("//"))
        if not path.name:
            raise StorageError(f"storage {url} names no file; write journal:///abs/path.log")
        if not path.parent.is_dir():
            raise StorageError(
                f"the folder of journal file {path} does not exist; create it or fix the URL"
            )
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}} if _is_sqlite(url) else None
    with warnings.catch_warnings():  # Optuna marks the heartbeat arguments experimental
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat.interval if heartbeat else None,
            grace_period=heartbeat.grace_period if heartbeat else None,
        )


def _is_sqlite(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] == "sqlite"


def _sqlite_database(url: str) -> str | None:
    """The database part of a SQLite URL (``None`` for other URLs and ``sqlite://``)."""
    if not _is_sqlite(url):
        return None
    from sqlalchemy.engine import make_url

    return make_url(url).database or ""


def _in_memory(url: str) -> bool:
    """Whether Optuna would keep this storage in memory (SQLite without a file)."""
    database = _sqlite_database(url)
    if database is None:
        return False
    return (
        database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in url
    )


@contextlib.contextmanager
def _creation_lock(url: str | None) -> Iterator[None]:
    """Hold an exclusive lock on ``<file>.lock`` while a SQLite storage is created.

    Optuna creates the tables, the version row and the alembic stamp in separate steps, so
    two processes creating one fresh file race ("table studies already exists", "UNIQUE
    constraint failed: alembic_version"). A lock file beside the database serialises that
    step across processes on one machine; server databases are left to their own
    transactions. Without write access to the folder there is nothing to create, so no lock.
    """
    database = _sqlite_database(url) if url is not None else None
    if not database or database.startswith("file:") or _in_memory(url or ""):
        yield
        return
    import fcntl

    try:
        handle = open(f"{database}.lock", "a")  # noqa: SIM115 - held across the yield
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def failure_reason(trial: Any) -> str:
    """Why a FAIL trial failed (:data:`INTERRUPTED` when no reason was recorded)."""
    return str(trial.user_attrs.get("fail_reason") or INTERRUPTED)


def is_interrupted(trial: Any) -> bool:
    """A FAIL trial whose evaluation never finished (see the module docstring)."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and failure_reason(trial) == INTERRUPTED


def counts(trial: Any) -> bool:
    """Whether ``trial`` counts towards the budget: finished, neither interrupted nor withdrawn."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and failure_reason(trial) not in (
        INTERRUPTED,
        NOT_EVALUATED,
    )


def finished_trials(study: Any) -> list[Any]:
    """Trials that count towards the budget: everything finished except interruptions."""
    return [trial for trial in study.get_trials(deepcopy=False) if counts(trial)]


def budget_taken(study: Any, *, before: int | None = None) -> int:
    """Trials that count or are RUNNING (in any controller), optionally numbered below ``before``.

    Several controllers share one budget: a RUNNING trial will count once it finishes, so
    it takes its share now.
    """
    from optuna.trial import TrialState

    return sum(
        counts(trial) or trial.state == TrialState.RUNNING
        for trial in study.get_trials(deepcopy=False)
        if before is None or trial.number < before
    )
