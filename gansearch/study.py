"""Study orchestration: propose → decode → build → score → record, resumably.

The flow is the style guide's one direction::

    StudyConfig → JointSpace → Strategy.ask() → decode → CompressionPlan
        → CandidateEvaluator (apply plan, optional distillation, score) → trial in Optuna storage

Every evaluated candidate, whichever strategy proposed it, is one trial of one Optuna
study: its gene values (Choice genes as Optuna params, masks as bitstring attributes),
objective values, all metrics and their noise floors as user attributes, the plan JSON,
Optuna's ``constraints`` system attribute, and the reason of a failure. The Pareto
front, the dashboard, resume and export therefore do not depend on the strategy.

Resume: re-running the same study continues it. Trials left RUNNING (or WAITING) by a
killed process are marked FAIL with reason "interrupted" and do not count towards the
budget; the strategy's state (JSON, written atomically after every result) lets it
re-propose them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gansearch.config import StudyConfig
from gansearch.errors import GansearchError

INTERRUPTED = "interrupted: the process stopped while this candidate was being evaluated"
STRATEGY_STATE = "strategy-state.json"


class StorageError(GansearchError):
    """A storage URL that cannot be opened."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CandidateResult:
    """What evaluating one candidate produced: objective values or a failure reason."""

    plan_json: str
    values: tuple[float, ...] | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    spread: Mapping[str, float] = field(default_factory=dict)
    constraints: tuple[float, ...] = ()
    failure: str | None = None
    seconds: float = 0.0

    @property
    def feasible(self) -> bool:
        return self.failure is None and all(c <= 0 for c in self.constraints)


def _finite_or_none(mapping: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if math.isfinite(v) else None) for k, v in mapping.items()}


# --------------------------------------------------------------------------- storage


def default_storage(config: StudyConfig) -> str:
    directory = config.study_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'study.db'}"


def open_study(config: StudyConfig, storage: str | None = None, *, create: bool = True) -> Any:
    """Create or load the study's Optuna study, with one-line errors for bad storage."""
    import optuna

    from gansearch.evaluators.objectives import directions

    url = storage or config.search.storage or default_storage(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if create:
            return optuna.create_study(
                study_name=config.name,
                storage=url,
                directions=directions(config.objectives),
                load_if_exists=True,
            )
        return optuna.load_study(study_name=config.name, storage=url)
    except KeyError:
        raise StorageError(
            f"no study named {config.name!r} in {url}; run `gansearch run` first"
        ) from None
    except ValueError as error:
        if "direction" in str(error).lower():
            raise StorageError(
                f"study {config.name!r} in {url} was created with other objectives; "
                "rename the study or use another storage"
            ) from None
        raise StorageError(f"cannot open storage {url!r}: {error}; check the URL") from None
    except Exception as error:  # noqa: BLE001 - SQLAlchemy/driver errors vary by backend
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StorageError(
            f"cannot open storage {url!r} ({type(error).__name__}: {first}); "
            "check the URL and that the database is reachable"
        ) from None


def recover_interrupted(study: Any) -> int:
    """Fail trials a killed process left RUNNING or WAITING; returns how many."""
    from optuna.trial import TrialState

    storage = study._storage
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", INTERRUPTED)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        recovered += 1
    return recovered


def finished_trials(study: Any) -> list[Any]:
    """Trials that count towards the budget: everything finished except interruptions."""
    from optuna.trial import TrialState

    return [
        trial
        for trial in study.get_trials(deepcopy=False)
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (trial.state == TrialState.FAIL and trial.user_attrs.get("fail_reason") != INTERRUPTED)
    ]


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, sort_keys=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------- recording


def _trial_distributions(genes: Any) -> dict[str, Any]:
    """Optuna distributions for what a trial records as params."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    from gansearch.spaces.genes import Choice

    distributions: dict[str, Any] = {}
    for gene in genes.genes:
        if isinstance(gene, Choice):
            distributions[gene.name] = CategoricalDistribution(list(gene.choices))
        else:  # a Mask: the dashboard sees its kept-channel count; the bits are a user attr
            distributions[f"kept:{gene.name}"] = IntDistribution(gene.min_keep, gene.length)
    return distributions


def _trial_params(genes: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    from gansearch.spaces.genes import Choice

    recorded: dict[str, Any] = {}
    for gene in genes.genes:
        value = params[gene.name]
        if isinstance(gene, Choice):
            recorded[gene.name] = value
        else:
            recorded[f"kept:{gene.name}"] = int(sum(value))
    return recorded


def mask_attrs(params: Mapping[str, Any]) -> dict[str, str]:
    return {
        f"bits:{name}": "".join("1" if bit else "0" for bit in value)
        for name, value in params.items()
        if isinstance(value, tuple)
    }


class TrialRecorder:
    """Writes candidates into the Optuna study: RUNNING while evaluated, then told."""

    def __init__(self, study: Any, genes: Any) -> None:
        self.study = study
        self.genes = genes
        self.distributions = _trial_distributions(genes)

    def start(self, params: Mapping[str, Any], attrs: Mapping[str, Any]) -> Any:
        self.study.enqueue_trial(_trial_params(self.genes, params), user_attrs=dict(attrs))
        return self.study.ask(self.distributions)

    def finish(self, trial: Any, result: CandidateResult) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr("plan", result.plan_json)
        trial.set_user_attr("seconds", result.seconds)
        if result.metrics:
            trial.set_user_attr("metrics", _finite_or_none(result.metrics))
            trial.set_user_attr("spread", _finite_or_none(result.spread))
        if result.failure is not None:
            trial.set_user_attr("fail_reason", result.failure)
            self.study.tell(trial, state=TrialState.FAIL)
            return
        self.study._storage.set_trial_system_attr(
            trial._trial_id, "constraints", list(result.constraints)
        )
        self.study.tell(trial, list(result.values or ()))


# --------------------------------------------------------------------------- the loop


Evaluate = Callable[[Mapping[str, Any]], CandidateResult]


def run_loop(
    study: Any,
    genes: Any,
    strategy: Any,
    evaluate: Evaluate | Any,
    *,
    budget: int,
    timeout: float | None,
    state_path: Path,
    on_result: Callable[[CandidateResult, Any], None] | None = None,
    attrs: Callable[[Any], Mapping[str, Any]] | None = None,
) -> int:
    """Evaluate proposals until ``budget`` trials are finished in storage.

    ``evaluate`` is either a function (evaluated serially here) or an engine of
    :mod:`gansearch.search.engines` with ``slots`` candidates in flight. Each proposal
    becomes a RUNNING Optuna trial when it is handed to the engine, and is told to the
    storage and then to the strategy as soon as its result comes back, in completion
    order (with several slots, later proposals therefore depend on which results were
    back when they were asked, as each strategy documents). After every result the
    strategy's state is saved atomically. Any interruption (Ctrl-C, an engine error)
    marks the trials in flight FAIL with reason :data:`INTERRUPTED` before it propagates,
    so the storage never keeps RUNNING trials and a re-run re-proposes them.

    Returns the number of candidates evaluated by this call.
    """
    from gansearch.search.base import Failure
    from gansearch.search.engines import LocalEngine

    engine = evaluate if hasattr(evaluate, "submit") else LocalEngine(evaluate=evaluate)
    recorder = TrialRecorder(study, genes)
    start = time.monotonic()
    evaluated = 0
    in_flight: dict[int, tuple[Any, Any]] = {}  # trial number -> (proposal, trial)
    ctrl_c = CtrlCSeen()
    try:
        while True:
            ctrl_c.check()  # a Ctrl-C that an engine call swallowed still stops the run here
            while len(in_flight) < engine.slots and (
                len(finished_trials(study)) + len(in_flight) < budget
                and (timeout is None or time.monotonic() - start < timeout)
            ):
                with ctrl_c_deferred():  # a trial is RUNNING in storage iff it is in flight
                    proposal = strategy.ask()
                    trial = recorder.start(
                        proposal.params,
                        {**mask_attrs(proposal.params), **(attrs(proposal) if attrs else {})},
                    )
                    in_flight[trial.number] = (proposal, trial)
                    engine.submit(trial.number, proposal.params)
            if not in_flight:
                break
            done = engine.wait()  # where Ctrl-C normally lands
            with ctrl_c_deferred():  # storage, strategy and its saved state move together
                proposal, trial = in_flight[done.ticket]
                result = done.result
                if isinstance(result, Failure):  # what the engine saw: dead worker, timeout
                    result = CandidateResult("{}", failure=result.reason)
                if done.attempts > 1:
                    trial.set_user_attr("attempts", done.attempts)
                recorder.finish(trial, result)
                del in_flight[done.ticket]
                outcome = Failure(result.failure) if result.failure is not None else result.values
                strategy.tell(proposal, outcome, result.constraints or None)
                if hasattr(strategy, "state_dict"):
                    write_json_atomic(state_path, strategy.state_dict())
            evaluated += 1
            if on_result is not None:
                on_result(result, trial)
    except BaseException:  # Ctrl-C or an engine error: leave storage consistent, then stop
        ctrl_c.restore()
        with ctrl_c_deferred():
            with contextlib.suppress(Exception):  # the storage matters more than the workers
                engine.cancel()
            for _, trial in in_flight.values():
                with contextlib.suppress(Exception):  # one bad trial must not strand the rest
                    recorder.finish(trial, CandidateResult("{}", failure=INTERRUPTED))
        raise
    ctrl_c.restore()
    return evaluated


class CtrlCSeen:
    """Records every SIGINT during :func:`run_loop` (and still raises KeyboardInterrupt).

    Ray's compiled calls can swallow a KeyboardInterrupt raised while they block (seen
    rarely with ``ray.wait``); the flag lets the loop stop at its next check regardless.
    Only the main thread can install it; elsewhere it records nothing.
    """

    def __init__(self) -> None:
        import signal
        import threading

        self.seen = False
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt

    def restore(self) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


@contextlib.contextmanager
def ctrl_c_deferred() -> Any:
    """Hold Ctrl-C (SIGINT) while bookkeeping runs, then deliver it as if it came just after.

    A SIGINT landing between "the trial is told to storage" and "it is no longer in flight"
    would otherwise be recorded twice or not at all. Only the main thread can hold it.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)  # with the handler that was there before


# --------------------------------------------------------------------------- the study API


@dataclass(frozen=True)
class RunSummary:
    """What one ``run_study`` call did."""

    study_name: str
    storage: str
    evaluated: int
    finished: int
    failed: int
    recovered: int
    seconds: float


def strategy_options(config: StudyConfig, name: str) -> dict[str, Any]:
    """The strategy's keyword options, taken from the study's ``search`` section."""
    search = config.search
    if name == "optuna":
        return {"sampler": search.sampler, "population_size": search.population}
    if name == "deap":
        return {
            "population_size": search.population,
            "crossover_prob": search.crossover_prob,
            "mutation_prob": search.mutation_prob,
        }
    return {"population_size": search.population}


def state_path(config: StudyConfig, strategy: str, seed: int, storage: str) -> Path:
    """Where the strategy's state is saved: one file per storage, strategy and seed.

    Keyed by the storage URL, so a fresh storage never resumes another storage's strategy.
    """
    import hashlib

    key = hashlib.sha256(storage.encode()).hexdigest()[:12]
    stem = STRATEGY_STATE.removesuffix(".json")
    return config.study_dir() / f"{stem}-{strategy}-{seed}-{key}.json"


def _reference_label(name: str, plan: Any) -> str:
    """A reference's plot label; a plan the space can only reach through supernet weights
    (e.g. the teacher in an OFA-only space) says so."""
    if plan.widths is not None and not name.startswith("ofa"):
        return f"{name} (supernet weights)"
    return name


def run_study(
    config: StudyConfig,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    strategy: str | None = None,
    storage: str | None = None,
    seed: int | None = None,
    evaluator: Any | None = None,
    engine: str | Any | None = None,
    workers: int | None = None,
    address: str | None = None,
    on_start: Callable[[Any, Any], None] | None = None,
    on_result: Callable[[CandidateResult, Any], None] | None = None,
) -> RunSummary:
    """Run (or continue) the study until ``trials`` trials are finished in storage.

    Args:
        config: the study file.
        trials, timeout, strategy, storage, seed: override the study file's values.
        evaluator: a ready :class:`~gansearch.candidates.CandidateEvaluator` (tests reuse one).
            With the Ray engine it only supplies the space and the teacher's metrics; the
            workers build their own.
        engine, workers, address: override ``search.engine`` / ``.workers`` / ``.address``;
            ``engine`` may also be a ready engine of :mod:`gansearch.search.engines`.
        on_start: called with ``(study, evaluator)`` once everything is loaded.
        on_result: called with ``(result, trial)`` after every candidate.
    """
    from gansearch.candidates import CandidateEvaluator
    from gansearch.search.engines import LocalEngine

    started = time.monotonic()
    name = strategy or config.search.strategy
    seed = config.seed if seed is None else seed
    budget = trials if trials is not None else config.search.trials
    timeout = timeout if timeout is not None else config.search.timeout
    url = storage or config.search.storage or default_storage(config)
    study = open_study(config, url)
    if hasattr(engine, "submit"):  # a ready engine: the caller owns (and closes) it
        ray, scope = engine, contextlib.nullcontext()
    else:
        ray = _ray_engine(config, engine, workers, address)  # workers start loading now
        scope = ray if ray is not None else contextlib.nullcontext()
    with scope:
        if evaluator is None:
            evaluator = CandidateEvaluator(config)
        where = ray if ray is not None else LocalEngine(evaluate=evaluator.evaluate)
        return _run_with(
            config,
            study,
            url,
            evaluator,
            where,
            name,
            seed,
            budget,
            timeout,
            started,
            on_start,
            on_result,
        )


def _ray_engine(
    config: StudyConfig, engine: str | None, workers: int | None, address: str | None
) -> Any | None:
    """The Ray engine of this run, or ``None`` for the local one (the controller's evaluator)."""
    from gansearch.search.engines import EngineError, RayEngine

    search = config.search
    name = engine or search.engine
    if name == "local":
        return None
    if name != "ray":
        raise EngineError(f"unknown engine {name!r}; known: local, ray")
    from gansearch.candidates import WorkerEvaluate

    return RayEngine(
        WorkerEvaluate(config, torch_threads=max(1, int(search.resources.cpus))),
        workers=workers if workers is not None else search.workers,
        address=address if address is not None else search.address,
        cpus=search.resources.cpus,
        gpus=search.resources.gpus,
        timeout=search.candidate_timeout,
        max_retries=search.max_retries,
    )


def _run_with(
    config: StudyConfig,
    study: Any,
    url: str,
    evaluator: Any,
    engine: Any,
    name: str,
    seed: int,
    budget: int,
    timeout: float | None,
    started: float,
    on_start: Callable[[Any, Any], None] | None,
    on_result: Callable[[CandidateResult, Any], None] | None,
) -> RunSummary:
    from gansearch.evaluators.objectives import directions
    from gansearch.search.base import genome_key
    from gansearch.search.registry import make_strategy
    from gansearch.spaces.joint import reference_params

    recovered = recover_interrupted(study)
    study.set_user_attr("teacher_metrics", _finite_or_none(evaluator.teacher_score.values))
    study.set_user_attr("objectives", list(config.objectives))
    study.set_user_attr("constraints", list(config.search.constraints))
    try:
        search = make_strategy(
            name,
            evaluator.space.genes,
            directions(config.objectives),
            seed=seed,
            options=strategy_options(config, name),
        )
    except (ValueError, TypeError) as error:
        raise GansearchError(f"cannot create strategy {name!r}: {error}") from None
    saved = state_path(config, name, seed, url)
    if saved.is_file() and hasattr(search, "load_state_dict"):
        try:
            search.load_state_dict(json.loads(saved.read_text()))
        except (ValueError, KeyError, TypeError) as error:
            raise GansearchError(
                f"the saved {name} state {saved} does not fit this study ({error}); "
                "use the settings it was saved with, or delete the file to restart the strategy"
            ) from None
    elif (
        not finished_trials(study)
        and config.search.enqueue_reference_plans
        and hasattr(search, "enqueue")
    ):
        for params in reference_params(evaluator.space).values():
            search.enqueue(params)
    genes = evaluator.space.genes
    references = {
        genome_key(genes, p): _reference_label(ref, evaluator.space.decode(p))
        for ref, p in reference_params(evaluator.space).items()
    }
    if on_start is not None:
        on_start(study, evaluator)
    evaluated = run_loop(
        study,
        evaluator.space.genes,
        search,
        engine,
        budget=budget,
        timeout=timeout,
        state_path=saved,
        on_result=on_result,
        attrs=lambda proposal: {
            "strategy": name,
            "seed": seed,
            "proposal": proposal.number,
            **(
                {"reference": references[key]}
                if (key := genome_key(genes, proposal.params)) in references
                else {}
            ),
        },
    )
    finished = finished_trials(study)
    from optuna.trial import TrialState

    return RunSummary(
        config.name,
        url,
        evaluated,
        len(finished),
        sum(t.state == TrialState.FAIL for t in finished),
        recovered,
        time.monotonic() - started,
    )


# --------------------------------------------------------------------------- export


def write_sample_grid(path: Path, teacher_images: Any, student_images: Any) -> None:
    """A PNG grid: teacher samples on top, the student's on the same latents below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = teacher_images.shape[0]
    figure, axes = plt.subplots(2, n, figsize=(n * 0.8, 2.0), squeeze=False)
    for row, images in enumerate((teacher_images, student_images)):
        for column in range(n):
            image = images[column].detach().float().cpu()
            image = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
            axes[row][column].imshow((image.clamp(-1, 1) + 1) / 2, cmap="gray", vmin=0, vmax=1)
            axes[row][column].axis("off")
    axes[0][0].set_title("teacher", fontsize=7, loc="left")
    axes[1][0].set_title("student", fontsize=7, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def choose_trial(
    study: Any, objectives: tuple[str, ...], *, trial: int | None, pick: str | None
) -> Any:
    """The COMPLETE trial named by number, or picked on the feasible Pareto front."""
    from optuna.trial import TrialState

    from gansearch.pareto import pareto_front
    from gansearch.pareto import pick as pick_point

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if trial is None:
        front = pareto_front(study, objectives)
        if not front:
            raise GansearchError(
                "the Pareto front is empty (no feasible completed trial); run more trials"
            )
        try:
            trial = pick_point(
                front, pick or "knee", objectives, study.user_attrs["teacher_metrics"]
            ).number
        except ValueError as error:
            raise GansearchError(str(error)) from None
    chosen = trials.get(trial)
    if chosen is None:
        raise GansearchError(
            f"no trial {trial} in study {study.study_name!r} (it has {len(trials)})"
        )
    if chosen.state != TrialState.COMPLETE:
        reason = chosen.user_attrs.get("fail_reason", chosen.state.name)
        raise GansearchError(
            f"trial {trial} is {chosen.state.name} ({reason}); pick a COMPLETE trial"
        )
    return chosen


def export_trial(
    study_file: str | Path | StudyConfig,
    out: str | Path,
    *,
    trial: int | None = None,
    pick: str | None = None,
    finetune_steps: int = 0,
    storage: str | None = None,
    evaluator: Any | None = None,
) -> dict[str, Any]:
    """Rebuild a trial's candidate, optionally distil it, export it, and re-measure the artifact.

    Writes the artifact (``weights.safetensors``, ``manifest.json``, ``model.onnx``) plus
    ``samples.png`` (teacher and student on the same latents) into ``out``.
    """
    from gansearch.candidates import CandidateEvaluator
    from gansearch.compress.export import export, load
    from gansearch.config import load_study

    config = study_file if isinstance(study_file, StudyConfig) else load_study(study_file)
    study = open_study(config, storage, create=False)
    chosen = choose_trial(study, config.objectives, trial=trial, pick=pick)
    if evaluator is None:
        evaluator = CandidateEvaluator(config)
    compressed = evaluator.compressed_from_json(
        chosen.user_attrs["plan"], finetune_steps=finetune_steps
    )
    in_memory = evaluator.scorer.score(compressed)
    path = export(
        compressed,
        Path(out),
        metrics={
            "trial": chosen.number,
            "finetune_steps": finetune_steps,
            **_finite_or_none(in_memory.values),
        },
        example_input=evaluator.example[:1],
    )
    loaded = load(path)
    artifact = evaluator.scorer.score(loaded)
    write_sample_grid(
        path / "samples.png",
        evaluator.samples(evaluator.teacher, 12),
        evaluator.samples(loaded, 12),
    )
    return {
        "trial": chosen.number,
        "artifact": str(path),
        "files": sorted(p.name for p in path.iterdir()),
        "trial_metrics": chosen.user_attrs.get("metrics", {}),
        "artifact_metrics": _finite_or_none(artifact.values),
        "artifact_spread": _finite_or_none(artifact.spread),
    }
