"""The study's Optuna storage: opening it, recovering it, and what counts as finished.

Every evaluated candidate is one trial of one Optuna study, whichever strategy proposed
it. A trial that is FAIL *without* a ``fail_reason`` user attribute was interrupted: the
recorder writes a reason for every failure it sees, so a reason is missing only when
the process evaluating the trial died (or was stopped) first, which is also how Optuna's
own ``fail_stale_trials`` leaves a trial. Interrupted trials do not count towards the
budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gansearch.errors import GansearchError

if TYPE_CHECKING:
    from gansearch.config import StudyConfig

INTERRUPTED = "interrupted: the process stopped while this candidate was being evaluated"


class StorageError(GansearchError):
    """A storage URL that cannot be opened."""


def default_storage(config: StudyConfig) -> str:
    """The SQLite file of a study that names no storage: ``<study dir>/study.db``."""
    directory = config.study_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'study.db'}"


def storage_url(config: StudyConfig, storage: str | None = None) -> str:
    """The storage a command uses: ``storage``, else the study file's, else the default."""
    return storage or config.search.storage or default_storage(config)


def open_study(config: StudyConfig, storage: str | None = None, *, create: bool = True) -> Any:
    """Create or load the study's Optuna study, with one-line errors for bad storage.

    Args:
        config: the study file (its name and objective directions).
        storage: an Optuna storage URL overriding :func:`storage_url`'s choice.
        create: create the study when it does not exist (else that is an error).
    """
    import optuna

    from gansearch.evaluators.objectives import directions

    url = storage_url(config, storage)
    name = config.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if create:
            return optuna.create_study(
                study_name=name,
                storage=url,
                directions=directions(config.objectives),
                load_if_exists=True,
            )
        return optuna.load_study(study_name=name, storage=url)
    except KeyError:
        raise StorageError(f"no study named {name!r} in {url}; run `gansearch run` first") from None
    except ValueError as error:
        if "direction" in str(error).lower():
            raise StorageError(
                f"study {name!r} in {url} was created with other objectives; "
                "rename the study or use another storage"
            ) from None
        raise StorageError(f"cannot open storage {url!r}: {error}; check the URL") from None
    except Exception as error:  # noqa: BLE001 - SQLAlchemy/driver errors vary by backend
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StorageError(
            f"cannot open storage {url!r} ({type(error).__name__}: {first}); "
            "check the URL and that the database is reachable"
        ) from None


def failure_reason(trial: Any) -> str:
    """Why a FAIL trial failed (:data:`INTERRUPTED` when no reason was recorded)."""
    return str(trial.user_attrs.get("fail_reason") or INTERRUPTED)


def is_interrupted(trial: Any) -> bool:
    """A FAIL trial whose evaluation never finished (see the module docstring)."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and failure_reason(trial) == INTERRUPTED


def recover_interrupted(study: Any) -> int:
    """Fail the trials a killed process left RUNNING or WAITING; returns how many.

    Uses only ``Study.ask`` / ``Study.tell``: a RUNNING trial is told FAIL by number; a
    WAITING one (enqueued, never asked) can only be reached by asking it first.
    """
    from optuna.trial import TrialState

    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        recovered += 1
    for _ in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.tell(study.ask(), state=TrialState.FAIL)
        recovered += 1
    return recovered


def finished_trials(study: Any) -> list[Any]:
    """Trials that count towards the budget: everything finished except interruptions."""
    from optuna.trial import TrialState

    return [
        trial
        for trial in study.get_trials(deepcopy=False)
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (trial.state == TrialState.FAIL and not is_interrupted(trial))
    ]
