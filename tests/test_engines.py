"""Engines: the same study on `local` and on a real local Ray (2 CPUs), and its faults.

Each Ray test starts (and stops) its own private Ray, as `gansearch run --engine ray` does;
every test checks that no Ray process it started outlives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_study_e2e import ROOT, _study, _trials

RAY_PROCESS_NAMES = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:  # gone meanwhile
        return ""


def _ray_pids() -> set[int]:
    """Processes that look like Ray's (what `pgrep -f raylet` and friends would find)."""
    pids = {int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()}
    return {
        pid
        for pid in pids - {os.getpid()}
        if any(name in _cmdline(pid) for name in RAY_PROCESS_NAMES)
    }


@pytest.fixture
def no_ray_left():
    """Fail if Ray processes started during the test are still alive shortly after it."""
    before = _ray_pids()
    yield
    # A SIGKILLed controller cannot stop its Ray: its raylet and GCS die with it at once
    # (Ray's fate sharing), the per-node agents notice within about half a minute.
    deadline = time.monotonic() + 60
    while (left := _ray_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray processes left over: {[_cmdline(pid)[:80] for pid in left]}"


def _poll(db: Path) -> list[dict]:
    """The trials while another process may still be creating the storage's tables."""
    try:
        return _trials(db) if db.exists() else []
    except Exception:  # noqa: BLE001 - sqlite schema half-created by the running process
        return []


def _counted(trials: list[dict]) -> list[dict]:
    """Trials that count towards the budget: a FAIL without a reason was interrupted."""
    return [
        t
        for t in trials
        if t["state"] == "COMPLETE"
        or (t["state"] == "FAIL" and not (t["reason"] or "interrupted").startswith("interrupted"))
    ]


# --------------------------------------------------------------------------- the engine alone

TOY_STEP = 0.05


def _toy_evaluate(params: dict) -> float:
    """A stand-in evaluator: sleeps, exits the worker process, or doubles ``x``."""
    if params.get("exit"):
        os._exit(1)
    time.sleep(params.get("sleep", TOY_STEP))
    return 2 * params["x"]


def _toy_factory():
    return _toy_evaluate


@pytest.fixture
def toy_engine(no_ray_left):
    """A Ray engine on 2 workers whose evaluator is a plain function (no torch)."""
    import ray.cloudpickle

    from gansearch.search.engines import RayEngine

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    engine = RayEngine(_toy_factory, workers=2, timeout=2.0, max_retries=1)
    yield engine
    engine.close()


@pytest.mark.slow
def test_ray_engine_timeout_and_dead_workers_become_failures(toy_engine) -> None:
    from gansearch.search.base import Failure

    toy_engine.submit("slow", {"x": 1, "sleep": 30})
    toy_engine.submit("dies", {"x": 2, "exit": True})
    toy_engine.submit("fine", {"x": 3})
    done = {}
    for _ in range(3):
        finished = toy_engine.wait()
        done[finished.ticket] = finished
    assert done["fine"].result == 6 and done["fine"].attempts == 1
    assert done["slow"].result == Failure("timeout after 2 s")
    dies = done["dies"]  # its worker died twice: retried once (max_retries=1), then failed
    assert isinstance(dies.result, Failure) and dies.attempts == 2
    assert dies.result.reason.startswith("worker died 2 time(s)")
    toy_engine.submit("after", {"x": 4})  # replacement workers keep serving
    assert toy_engine.wait().result == 8
    assert len(toy_engine.pids) >= 4  # two originals and their replacements


@pytest.mark.slow
def test_ray_engine_cancel_returns_what_was_in_flight(toy_engine) -> None:
    for ticket in range(3):
        toy_engine.submit(ticket, {"x": ticket, "sleep": 30})
    time.sleep(0.5)
    assert sorted(toy_engine.cancel()) == [0, 1, 2]


def test_unreachable_address_is_one_line_and_fast(run_cli, tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli(
        "run", str(_study(tmp_path)), "--engine", "ray", "--address", "ray://127.0.0.1:1"
    )
    assert time.monotonic() - started < 20  # CLI start-up included; the connect gives up in 3 s
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "cannot reach a Ray cluster at ray://127.0.0.1:1" in result.stderr


# --------------------------------------------------------------------------- whole studies


@pytest.mark.slow
def test_ray_study_with_two_workers_completes(run_cli, tmp_path: Path, no_ray_left) -> None:
    study = _study(tmp_path, name="ray2")
    result = run_cli("run", str(study), "--engine", "ray", "--workers", "2", timeout=400)
    assert result.returncode == 0, result.stderr
    trials = _trials(tmp_path / "ray2" / "study.db")
    assert len(trials) == 6 and all(t["state"] in {"COMPLETE", "FAIL"} for t in trials)
    assert sum(t["state"] == "COMPLETE" for t in trials) >= 4
    assert all(t["plan"] for t in trials)


def _run_in_process(path: Path, **options: object) -> list[dict]:
    import torch

    from gansearch.config import load_study
    from gansearch.study import run_study

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray worker does, so that the numbers match bit for bit
    try:
        run_study(load_study(path), **options)
    finally:
        torch.set_num_threads(threads)
    return _trials(path.parent / path.stem / "study.db")


@pytest.mark.slow
def test_local_and_ray_with_one_worker_give_the_same_trials(tmp_path: Path, no_ray_left) -> None:
    local = _run_in_process(_study(tmp_path, name="local", strategy="deap"))
    ray = _run_in_process(_study(tmp_path, name="ray", strategy="deap"), engine="ray", workers=1)
    assert [t["plan"] for t in ray] == [t["plan"] for t in local]
    assert [t["state"] for t in ray] == [t["state"] for t in local]
    assert [t["values"] for t in ray] == [t["values"] for t in local]


class _DiesOnce:
    """A worker factory whose first worker to reach its ``on``-th candidate exits abruptly.

    ``os._exit(1)`` mid-candidate, as if the process had been killed. The worker that dies
    first creates ``marker``, so no other worker (a replacement included) ever dies.
    """

    def __init__(self, inner, marker: Path, on: int = 2) -> None:
        self.inner, self.marker, self.on = inner, marker, on

    def __call__(self):
        evaluate = self.inner()
        count = iter(range(1, 1_000_000))

        def dies_once(params):
            if next(count) == self.on:
                try:
                    os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass  # another worker died already
                else:
                    os._exit(1)
            return evaluate(params)

        return dies_once


@pytest.mark.slow
def test_worker_killed_mid_candidate_is_retried(tmp_path: Path, no_ray_left) -> None:
    import ray.cloudpickle

    from gansearch.candidates import EvaluatorHandle
    from gansearch.config import load_study
    from gansearch.search.registry import make_engine

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    path = _study(tmp_path, name="killed", trials=5)
    search = load_study(path).search
    died = tmp_path / "died"
    factory = _DiesOnce(EvaluatorHandle(load_study(path), torch_threads=1), died)
    with make_engine(
        "ray",
        factory,
        workers=2,
        cpus=search.resources.cpus,
        timeout=search.candidate_timeout,
        max_retries=search.max_retries,
    ) as engine:
        trials = _run_in_process(path, engine=engine)
    assert died.exists()
    assert len(_counted(trials)) == 5 and len(trials) == 5
    assert sum(t["state"] == "COMPLETE" for t in trials) >= 3

    import optuna

    study = optuna.load_study(
        study_name="killed", storage=f"sqlite:///{path.parent}/killed/study.db"
    )
    assert [t.user_attrs.get("attempts") for t in study.trials].count(2) == 1


def test_make_engine_local_builds_the_evaluator_once_in_process() -> None:
    from gansearch.search.engines import Engine, LocalEngine
    from gansearch.search.registry import make_engine

    built = []

    def factory():
        built.append(os.getpid())
        return lambda params: 2 * params["x"]

    with make_engine("local", factory, workers=4) as engine:  # Ray's options are ignored
        assert isinstance(engine, Engine) and isinstance(engine, LocalEngine)
        assert engine.slots == 1 and built == []
        for x in (1, 2):
            engine.submit(x, {"x": x})
        assert [engine.wait().result for _ in range(2)] == [2, 4]
    assert built == [os.getpid()]


def test_make_engine_unknown_name_lists_known() -> None:
    from gansearch.search.engines import EngineError
    from gansearch.search.registry import make_engine

    with pytest.raises(EngineError, match="unknown engine 'dask'; known: local, ray"):
        make_engine("dask", _toy_factory)


def test_engine_is_an_abstract_base_class() -> None:
    from gansearch.search.engines import Engine

    with pytest.raises(TypeError, match="abstract"):
        Engine()


@pytest.mark.slow
def test_killed_controller_resumes_with_ray(run_cli, tmp_path: Path, no_ray_left) -> None:
    # a short grace period: the re-run fails the killed run's RUNNING trials once their
    # heartbeat is 3 s old, instead of after the default 60 s
    study = _study(
        tmp_path, name="resume", strategy="deap", trials=5, heartbeat_interval=1, grace_period=3
    )
    db = tmp_path / "resume" / "study.db"
    env = {**os.environ, "GANSEARCH_CACHE": str(tmp_path / "cache")}
    script = Path(sys.executable).with_name("gansearch")
    process = subprocess.Popen(
        [str(script), "run", str(study), "--engine", "ray", "--workers", "2"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if sum(t["state"] == "COMPLETE" for t in _poll(db)) >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {t["number"]: t for t in _trials(db) if t["state"] == "COMPLETE"}
    assert len(before) >= 2

    result = run_cli("run", str(study), "--engine", "ray", "--workers", "2", timeout=400)
    assert result.returncode == 0, result.stderr
    after = _trials(db)
    for number, trial in before.items():  # completed trials are kept, never redone
        assert next(t for t in after if t["number"] == number) == trial
    assert len(_counted(after)) == 5
    assert not [t for t in after if t["state"] in {"RUNNING", "WAITING"}]


@pytest.mark.slow
def test_ctrl_c_marks_in_flight_trials_interrupted(run_cli, tmp_path: Path, no_ray_left) -> None:
    study = _study(tmp_path, name="ctrlc", trials=20)
    db = tmp_path / "ctrlc" / "study.db"
    env = {**os.environ, "GANSEARCH_CACHE": str(tmp_path / "cache")}
    script = Path(sys.executable).with_name("gansearch")
    process = subprocess.Popen(
        [str(script), "run", str(study), "--engine", "ray", "--workers", "2"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if sum(t["state"] == "COMPLETE" for t in _poll(db)) >= 1:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole group, Ray included
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "gansearch: interrupted"
    trials = _trials(db)
    assert not [t for t in trials if t["state"] in {"RUNNING", "WAITING"}]
    assert any((t["reason"] or "").startswith("interrupted") for t in trials)


@pytest.mark.slow
def test_sigint_while_ray_starts_exits_130_and_stops_ray(tmp_path: Path, no_ray_left) -> None:
    """SIGINT to the controller alone (not its group) while its private Ray starts: the
    engine itself must stop what had started."""
    from test_interrupts import _assert_interrupted, _descendants, _interrupt_run

    study = _study(tmp_path, name="raystart", trials=20)

    def ray_starting(pid: int) -> bool:
        return any("raylet" in _cmdline(child) for child in _descendants(pid))

    result, _ = _interrupt_run(
        study, tmp_path, ray_starting, args=("--engine", "ray", "--workers", "1"), group=False
    )
    _assert_interrupted(result, tmp_path / "raystart" / "study.db")
