"""The local engine with a time limit: candidates run in one child process that can be killed.

A candidate evaluated in the controller's own process cannot be stopped once it hangs, so
``make_engine("local", ..., timeout=S)`` builds a :class:`ProcessEngine` instead of the
in-process :class:`~gansearch.search.engines.LocalEngine`. It keeps one child process
(multiprocessing's ``"spawn"`` context: a fresh interpreter, never a fork of the
controller's torch threads) that builds the evaluator once from the picklable factory and
then evaluates the candidates it receives over a pipe, one at a time. What the engine sees
go wrong comes back as a :class:`~gansearch.search.base.Failure`, with the reasons the Ray
engine gives:

* a candidate past its deadline: the child is killed (SIGTERM, then SIGKILL), a fresh one
  is started for the next candidate, and the candidate fails with ``"timeout after S s"``;
* a child that dies (the out-of-memory killer, ``os._exit``): it is replaced and its
  candidate re-run up to ``max_retries`` times, then fails with
  ``"worker died N time(s): exit code C"`` (or ``killed by SIGKILL``);
* an evaluator that raises: ``"worker error: Type: message"``.

The deadline starts when the candidate is handed to a child that has loaded its evaluator;
loading (once per child) is not timed.

Ctrl-C belongs to the controller. The child ignores SIGINT (a terminal's Ctrl-C reaches the
whole process group); it is created with SIGINT blocked, as CPython's own resource tracker
is, so that no early signal leaves a traceback behind. The controller's KeyboardInterrupt
then reaches :meth:`ProcessEngine.cancel` / :meth:`ProcessEngine.close`, which kill the
child. A child whose controller vanished without closing it (SIGKILL) exits by itself
within a second.

As with any ``"spawn"`` child, the factory must be picklable and importable by module name
(the child receives the controller's ``sys.path``), and a script that starts a study must
guard its entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from typing import Any

from gansearch.search.base import Failure
from gansearch.search.engines import (
    FULL_FIDELITY,
    Engine,
    EngineError,
    EvaluateFactory,
    Finished,
    Params,
    call_evaluate,
)

#: Seconds a terminated child gets to exit before it is killed.
TERMINATE_GRACE_S = 1.0
#: How often an orphaned child checks whether its controller is still alive.
ORPHAN_CHECK_S = 1.0


class ProcessEngine(Engine):
    """Evaluate candidates one at a time in a child process, with a time limit per candidate.

    The child starts loading its evaluator at once (while the controller loads its own).

    Args:
        factory: picklable; builds ``params -> result`` once per child.
        timeout: seconds one candidate may take; ``None`` for no limit.
        max_retries: re-runs of a candidate whose child process died.

    Attributes:
        pids: the process id of every child started (tests check that they are gone).
    """

    slots = 1

    def __init__(
        self, factory: EvaluateFactory, *, timeout: float | None = None, max_retries: int = 1
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"`timeout > 0` must hold, but got ({timeout=}).")
        if max_retries < 0:
            raise ValueError(f"`max_retries >= 0` must hold, but got ({max_retries=}).")
        self._factory = factory
        self._timeout = timeout
        self._max_retries = max_retries
        self._context = multiprocessing.get_context("spawn")
        self._queue: deque[tuple[Hashable, Params, str]] = deque()
        self._attempts = 0  # of the candidate at the head of the queue
        self._child: _Child | None = None
        self.pids: list[int] = []
        self._start_child()

    # ------------------------------------------------------------------ the engine

    def submit(self, ticket: Hashable, params: Params, fidelity: str = FULL_FIDELITY) -> None:
        self._queue.append((ticket, params, fidelity))

    def wait(self) -> Finished:
        if not self._queue:
            raise RuntimeError("wait() with nothing submitted.")
        while True:
            child = self._child or self._start_child()
            if not child.ready:
                self._await_ready(child)
            ticket, params, fidelity = self._queue[0]
            self._attempts += 1
            # a Ctrl-C here leaves the ticket to cancel()
            reply = self._evaluate(child, params, fidelity)
            attempts = self._attempts
            if reply is None:  # the child died
                code = self._stop_child()
                if attempts <= self._max_retries:
                    continue
                result: Any = Failure(f"worker died {attempts} time(s): {_exit_reason(code)}")
            elif reply == "timeout":
                self._stop_child()
                result = Failure(f"timeout after {self._timeout:g} s")
            else:
                kind, value = reply
                result = value if kind == "ok" else Failure(f"worker error: {value}")
            self._queue.popleft()
            self._attempts = 0
            return Finished(ticket, result, attempts)

    def cancel(self) -> list[Hashable]:
        tickets = [ticket for ticket, _, _ in self._queue]
        if self._attempts:  # a candidate is (or may be) running: only a new child is safe
            self._stop_child()
        self._queue.clear()
        self._attempts = 0
        return tickets

    def close(self) -> None:
        """Stop the child (waiting at most about a second); calling it again does nothing."""
        self._queue.clear()
        self._attempts = 0
        self._stop_child()

    # ------------------------------------------------------------------ the child

    def _start_child(self) -> _Child:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve, args=(self._factory, theirs, os.getpid()), daemon=True
        )
        with _sigint_blocked():  # the child starts with it blocked, then ignores it
            process.start()
        theirs.close()  # so that a dead child reads as EOF here
        self._child = _Child(process, ours)
        self.pids.append(process.pid)
        return self._child

    def _await_ready(self, child: _Child) -> None:
        """Block until the child has built its evaluator."""
        reply = self._receive(child, timeout=None)
        if reply is None:
            code = self._stop_child()
            self.close()
            raise EngineError(f"the candidate process died while loading ({_exit_reason(code)})")
        kind, value = reply
        if kind != "ready":
            self.close()
            raise EngineError(f"the candidate process could not load the study: {value}")
        child.ready = True

    def _evaluate(
        self, child: _Child, params: Params, fidelity: str
    ) -> tuple[str, Any] | str | None:
        """Hand ``params`` to the child; its reply, ``"timeout"``, or ``None`` if it died."""
        try:
            child.connection.send((params, fidelity))
        except (BrokenPipeError, ConnectionResetError, EOFError):
            return None
        return self._receive(child, timeout=self._timeout)

    @staticmethod
    def _receive(child: _Child, timeout: float | None) -> tuple[str, Any] | str | None:
        """The child's next message, ``"timeout"`` after ``timeout`` s, ``None`` if it died."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait_for([child.connection, child.process.sentinel], timeout=left)
            if child.connection in ready:
                try:
                    return child.connection.recv()
                except (EOFError, OSError):
                    return None
            if ready:  # only the sentinel: the child exited without a word
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"

    def _stop_child(self) -> int | None:
        """Terminate, then kill, the child; return its exit code (``None``: there was none)."""
        child = self._child
        if child is None:
            return None
        child.connection.close()
        process = child.process
        if process.exitcode is None:
            process.terminate()
            process.join(TERMINATE_GRACE_S)
        if process.exitcode is None:
            process.kill()
            process.join()
        self._child = None  # only now: a Ctrl-C above leaves it for close() to stop
        code = process.exitcode
        process.close()
        return code


@dataclass
class _Child:
    """One child process, the controller's end of its pipe, and whether it has loaded."""

    process: Any
    connection: Connection
    ready: bool = False


def serve(factory: EvaluateFactory, connection: Connection, controller: int) -> None:
    """The child's body: build the evaluator once, then answer one message per candidate.

    Replies are ``("ready", pid)`` or ``("load-error", text)`` once, then ``("ok", result)``
    or ``("error", text)`` per candidate. It ends when the pipe closes.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides (see the module)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_exit_when_orphaned, args=(controller,), daemon=True).start()
    try:
        evaluate = factory()
    except Exception as error:  # noqa: BLE001 - reported to the controller, which raises
        connection.send(("load-error", _one_line(error)))
        return
    connection.send(("ready", os.getpid()))
    while True:
        try:
            params, fidelity = connection.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[str, Any] = ("ok", call_evaluate(evaluate, params, fidelity))
        except Exception as error:  # noqa: BLE001 - the evaluator raised: a bug, reported
            reply = ("error", _one_line(error))
        connection.send(reply)


def _exit_when_orphaned(controller: int) -> None:
    """Exit the child once its controller is gone (then it has been re-parented)."""
    while os.getppid() == controller:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread meanwhile; one that arrives is delivered afterwards."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
