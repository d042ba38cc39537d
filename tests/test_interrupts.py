"""Timeouts and interrupts: the local engine enforces ``candidate_timeout`` in a child
process, and a SIGINT at any phase of ``gansearch run`` ends it with exit 130.

The engine tests use plain-function factories defined here: the engine's ``"spawn"`` child
imports this module by name (it receives the test run's ``sys.path``), so the module
imports nothing heavy at the top.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- factories


def _evaluate(params: dict) -> int:
    """A stand-in evaluator: hangs, exits its process, raises, or doubles ``x``."""
    if params.get("hang"):
        while True:
            time.sleep(1)
    if params.get("exit") is not None:
        os._exit(params["exit"])
    if params.get("raise"):
        raise ValueError("boom\nsecond line")
    return 2 * params["x"]


def _factory():
    return _evaluate


class _DiesOnce:
    """A factory whose first child to see ``{"die": True}`` exits; later ones evaluate it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self):
        def evaluate(params: dict) -> int:
            if params.get("die"):
                try:
                    os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    os._exit(7)
            return _evaluate(params)

        return evaluate


class _HangsOnce:
    """A study's evaluator (``inner``) whose ``on``-th candidate in the first child hangs."""

    def __init__(self, inner, marker: Path, on: int = 2) -> None:
        self.inner, self.marker, self.on = inner, marker, on

    def __call__(self):
        evaluate = self.inner()
        count = iter(range(1, 1_000_000))

        def hangs_once(params):
            if next(count) == self.on:
                try:
                    os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    while True:
                        time.sleep(1)
            return evaluate(params)

        return hangs_once


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _gone_soon(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(_alive(pid) for pid in pids)


# --------------------------------------------------------------------------- signals


def test_a_swallowed_sigint_still_stops_the_command_and_the_loop() -> None:
    from gansearch.runner.signals import CtrlCSeen, sigint_stops_command

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job inherits
    try:
        with pytest.raises(KeyboardInterrupt), sigint_stops_command():
            try:
                signal.raise_signal(signal.SIGINT)  # raised despite the inherited SIG_IGN...
                time.sleep(1)
            except KeyboardInterrupt:
                pass  # ...and swallowed, as a library's broad except might
            ctrl_c = CtrlCSeen()  # the run loop starts after the swallowed one
            with pytest.raises(KeyboardInterrupt):
                ctrl_c.check()
            ctrl_c.restore()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # restored afterwards
        fresh = CtrlCSeen()  # outside a command, only its own SIGINTs count
        fresh.check()
        fresh.restore()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_sigint_held_by_bookkeeping_is_delivered_after_it() -> None:
    from gansearch.runner.signals import ctrl_c_deferred, sigint_stops_command

    done = []
    with pytest.raises(KeyboardInterrupt), sigint_stops_command():
        with ctrl_c_deferred():
            signal.raise_signal(signal.SIGINT)
            done.append("bookkeeping")
        done.append("after")
    assert done == ["bookkeeping"]


# --------------------------------------------------------------------------- the engine


def test_local_engine_with_a_timeout_kills_a_hanging_candidate() -> None:
    from gansearch.search.base import Failure
    from gansearch.search.process_engine import ProcessEngine
    from gansearch.search.registry import make_engine

    with make_engine("local", _factory, timeout=1.0) as engine:
        assert isinstance(engine, ProcessEngine) and engine.slots == 1
        engine.submit("hangs", {"x": 1, "hang": True})
        engine.submit("fine", {"x": 2})
        started = time.monotonic()
        hangs = engine.wait()
        assert hangs.ticket == "hangs" and hangs.result == Failure("timeout after 1 s")
        assert hangs.attempts == 1
        assert engine.wait().result == 4  # on a fresh child
        first, second = engine.pids
        assert first != second and not _alive(first) and _alive(second)
        assert time.monotonic() - started < 30  # 1 s of candidate, plus a child's start
    assert not _alive(second)


def test_dead_child_is_replaced_and_its_candidate_retried_then_failed(tmp_path: Path) -> None:
    from gansearch.search.base import Failure
    from gansearch.search.registry import make_engine

    with make_engine("local", _DiesOnce(tmp_path / "died"), timeout=30, max_retries=1) as engine:
        engine.submit("once", {"x": 1, "die": True})  # dies, then succeeds on a new child
        engine.submit("always", {"x": 2, "exit": 3})  # dies twice: retried once, then fails
        engine.submit("raises", {"x": 3, "raise": True})
        engine.submit("fine", {"x": 4})
        once, always, raises, fine = (engine.wait() for _ in range(4))
    assert (once.result, once.attempts) == (2, 2)
    assert always.result == Failure("worker died 2 time(s): exit code 3")
    assert always.attempts == 2
    assert raises.result == Failure("worker error: ValueError: boom")
    assert fine.result == 8
    assert len(engine.pids) == 4 and not any(_alive(pid) for pid in engine.pids)


def test_cancel_and_close_leave_no_child_alive() -> None:
    from gansearch.search.registry import make_engine

    engine = make_engine("local", _factory, timeout=60)
    engine.submit(0, {"x": 0})
    assert engine.wait().result == 0
    engine.submit(1, {"x": 1, "hang": True})
    engine.submit(2, {"x": 2})
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)  # a "Ctrl-C" while the candidate hangs
        previous = signal.signal(signal.SIGALRM, signal.default_int_handler)
        with pytest.raises(KeyboardInterrupt):
            engine.wait()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    running = engine.pids[-1]
    assert engine.cancel() == [1, 2] and not _alive(running)
    engine.submit(3, {"x": 3})  # the engine still works after a cancel
    assert engine.wait().result == 6
    engine.close()
    engine.close()
    assert len(engine.pids) == 2 and not any(_alive(pid) for pid in engine.pids)


def _script(body: str) -> list[str]:
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r})\n" + textwrap.dedent(body)
    return [sys.executable, "-c", code]


ENGINE_SCRIPT = """
    from gansearch.search.registry import make_engine
    from test_interrupts import _factory

    if __name__ == "__main__":
        try:
            with make_engine("local", _factory, timeout=600) as engine:
                engine.submit(0, {"x": 0})
                engine.wait()
                print(engine.pids[0], flush=True)
                engine.submit(1, {"x": 1, "hang": True})
                engine.wait()
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
"""


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_child_never_outlives_its_controller(how: str) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops the child
    with the controller, without a traceback from either; a SIGKILLed controller's child
    exits by itself."""
    process = subprocess.Popen(
        _script(ENGINE_SCRIPT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    child = int(process.stdout.readline())
    time.sleep(0.3)  # the hanging candidate is on its way
    if how == "ctrl-c":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.kill()
    _, stderr = process.communicate(timeout=30)
    if how == "ctrl-c":
        assert process.returncode == 130 and stderr.strip() == "interrupted", stderr
        assert not _alive(child)  # close() waited for it
    else:
        assert _gone_soon([child]), "the orphaned child kept running"


# --------------------------------------------------------------------------- whole studies


def _study(tmp_path: Path, name: str, **search: object) -> Path:
    from test_study_e2e import _study as e2e_study

    return e2e_study(tmp_path, name=name, strategy="deap", **search)


def _in_process(path: Path, **options: object):
    import torch

    from gansearch.config import load_study
    from gansearch.study import run_study

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_study(load_study(path), **options)
    finally:
        torch.set_num_threads(threads)


def test_run_study_with_candidate_timeout_fails_a_hanging_candidate_and_continues(
    tmp_path: Path,
) -> None:
    from test_study_e2e import _trials

    from gansearch.candidates import EvaluatorHandle
    from gansearch.config import load_study
    from gansearch.search.registry import make_engine

    path = _study(tmp_path, "hangs", trials=3, candidate_timeout=5)
    search = load_study(path).search
    marker = tmp_path / "hung"
    factory = _HangsOnce(EvaluatorHandle(load_study(path), torch_threads=1), marker)
    with make_engine(
        search.engine,
        factory,
        timeout=search.candidate_timeout,
        max_retries=search.max_retries,
    ) as engine:
        summary = _in_process(path, engine=engine)
    assert marker.exists()
    trials = _trials(tmp_path / "hangs" / "study.db")
    assert [t["state"] for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[1]["reason"] == "timeout after 5 s"
    assert summary.evaluated == 3 and summary.failed == 1
    assert not any(_alive(pid) for pid in engine.pids)


# --------------------------------------------------------------------------- SIGINT


def _states(db: Path) -> list[str]:
    """Trial states straight from SQLite (fast enough to poll; empty while it is created)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return [row[0] for row in connection.execute("SELECT state FROM trials")]
    except sqlite3.Error:
        return []


def _parent(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):  # gone meanwhile
        return None


def _descendants(pid: int) -> set[int]:
    """Processes whose parent is ``pid``, and theirs."""
    parents = {int(e.name): _parent(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()}
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _interrupt_run(
    study: Path,
    tmp_path: Path,
    when: Callable[[int], bool],
    *,
    args: tuple[str, ...] = (),
    ignored: bool = False,
    group: bool = True,
) -> tuple[subprocess.CompletedProcess, set[int]]:
    """Start ``gansearch run``, send SIGINT once ``when(pid)`` holds, and return what it
    printed and the processes it had started.

    Args:
        when: polled every 50 ms with the run's process id.
        args: more options of ``gansearch run``.
        ignored: start it with SIGINT ignored, as a background job of a non-interactive
            shell is.
        group: signal its whole process group, as a terminal's Ctrl-C does (else only it).
    """
    from conftest import gansearch_executable

    process = subprocess.Popen(
        [*gansearch_executable(), "run", str(study), *args],
        cwd=ROOT,
        env={**os.environ, "GANSEARCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None,
    )
    children: set[int] = set()
    deadline = time.monotonic() + 120
    while process.poll() is None and not when(process.pid) and time.monotonic() < deadline:
        children |= _descendants(process.pid)
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    children |= _descendants(process.pid)
    (os.killpg if group else os.kill)(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), children


def _after(seconds: float) -> Callable[[int], bool]:
    """A ``when`` of :func:`_interrupt_run`: ``seconds`` after it is made."""
    start = time.monotonic()
    return lambda pid: time.monotonic() - start >= seconds


def _scoring(db: Path) -> Callable[[int], bool]:
    """A ``when``: a trial is COMPLETE and the next one RUNNING."""

    def when(pid: int) -> bool:
        states = _states(db)
        return "COMPLETE" in states and "RUNNING" in states

    return when


def _assert_interrupted(result: subprocess.CompletedProcess, db: Path) -> None:
    assert result.returncode == 130, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "gansearch: interrupted"
    assert "RUNNING" not in _states(db) and "WAITING" not in _states(db)


@pytest.mark.parametrize(
    ("delay", "ignored"), [(0.5, False), (2.0, False), (2.0, True)], ids=["0.5s", "2s", "2s-ign"]
)
def test_sigint_while_loading_exits_130(tmp_path: Path, delay: float, ignored: bool) -> None:
    study = _study(tmp_path, "loading", trials=50)
    result, _ = _interrupt_run(study, tmp_path, _after(delay), ignored=ignored)
    _assert_interrupted(result, tmp_path / "loading" / "study.db")


@pytest.mark.parametrize("timeout", [None, 120], ids=["in-process", "child-process"])
def test_sigint_while_scoring_exits_130_and_fails_the_running_trial(
    tmp_path: Path, timeout
) -> None:
    """With ``candidate_timeout`` the study file's run scores in a child process (started
    here with SIGINT ignored, as a background job): its results are recorded as in-process
    ones are, and Ctrl-C stops it too."""
    from test_study_e2e import _trials

    study = _study(tmp_path, "scoring", trials=50, candidate_timeout=timeout)
    db = tmp_path / "scoring" / "study.db"
    result, children = _interrupt_run(study, tmp_path, _scoring(db), ignored=timeout is not None)
    _assert_interrupted(result, db)
    trials = _trials(db)
    assert trials[0]["state"] == "COMPLETE" and trials[0]["values"] and trials[0]["plan"]
    assert trials[-1]["state"] == "FAIL" and trials[-1]["reason"].startswith("interrupted")
    assert _gone_soon(list(children)), "a process the run started outlived it"


def test_an_error_caused_by_a_sigint_still_stops_the_command_as_interrupted() -> None:
    """A compiled module whose import a SIGINT interrupts raises ``ImportError:
    initialization failed`` instead of KeyboardInterrupt (seen with scipy's HiGHS bindings
    while a run was loading); the command must still end as interrupted (exit 130)."""
    from gansearch.runner.signals import sigint_stops_command

    def import_that_swallows_the_interrupt() -> None:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler raises KeyboardInterrupt here
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None

    with pytest.raises(KeyboardInterrupt), sigint_stops_command():
        import_that_swallows_the_interrupt()
    # without a SIGINT, an error stays what it is
    with pytest.raises(ImportError), sigint_stops_command():
        raise ImportError("initialization failed")
