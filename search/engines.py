"""Execution engines: *where* candidates are evaluated (DEAP's ``map``, made asynchronous).

The strategy decides what to evaluate next; an engine only runs it. Both engines subclass
the same small abstract base class (:class:`Engine`):

* ``slots``: how many candidates may be in flight at once;
* ``submit(ticket, params, fidelity="full")``: start evaluating ``params`` at
  ``fidelity`` (see :func:`call_evaluate`); ``ticket`` is the caller's id;
* ``wait() -> Finished``: block until one submitted candidate is done (in any order);
* ``cancel() -> list[ticket]``: drop everything in flight (Ctrl-C), returning the tickets;
* ``close()``: stop the workers (and the Ray it started, if any). Engines are context managers.

:func:`gansearch.search.registry.make_engine` builds an engine from its name.

An engine never raises for a broken candidate: the evaluator's own result comes back as
``Finished.result``, and what the engine itself saw go wrong (a worker process that died
more than ``max_retries`` times, a candidate over its ``timeout``, a worker out of memory)
comes back as a :class:`~gansearch.search.base.Failure` with the reason.

Engines receive a *factory*: a picklable zero-argument callable that builds, once per
worker, the function ``params -> result``. This keeps this module free of torch: the
factory (in :mod:`gansearch.candidates`) loads the teacher, supernet, data and reference
statistics when a worker starts, never once per candidate.

* :class:`LocalEngine` (the default) evaluates in this process, one at a time, and uses no
  Ray at all. It cannot interrupt a running candidate, so ``engine: local`` with a
  ``timeout`` gets :class:`~gansearch.search.process_engine.ProcessEngine` instead: one
  child process, killed and replaced when a candidate runs over ``timeout`` or the child
  dies, with the same failures and retries as Ray's.
* :class:`RayEngine` keeps ``workers`` long-lived Ray actors, each holding one evaluator.
  A dead actor is replaced and its candidate retried up to ``max_retries`` times; a
  candidate past ``timeout`` seconds gets its actor killed (and replaced) and fails with
  ``"timeout after S s"``. Without an address it starts a private local Ray with
  ``workers * cpus`` CPUs and shuts it down on :meth:`close`; with one it joins that
  cluster and leaves it running.

Length (about 450 lines): the local and the Ray engine implement one small protocol and
are easiest to compare in one file; Ray's fault handling (retries, timeouts, Ctrl-C) is
most of it.
"""

from __future__ import annotations

import abc
import contextlib
import math
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gansearch.errors import GansearchError
from gansearch.search.base import Failure

Params = Mapping[str, Any]
EvaluateFactory = Callable[[], Callable[..., Any]]
FULL_FIDELITY = "full"

CONNECT_TIMEOUT_S = 3.0


def call_evaluate(evaluate: Callable[..., Any], params: Params, fidelity: str) -> Any:
    """``evaluate(params)`` at full fidelity, else ``evaluate(params, fidelity)``.

    A multi-fidelity study (:mod:`gansearch.fidelity`) scores a candidate first at
    ``"low"`` fidelity; every engine carries the fidelity to the worker through this one
    call, so that a plain ``params -> result`` function still serves single-fidelity runs.
    """
    if fidelity == FULL_FIDELITY:
        return evaluate(params)
    return evaluate(params, fidelity)


class EngineError(GansearchError):
    """An engine that cannot start or reach its workers."""


@dataclass(frozen=True)
class Finished:
    """One candidate that is done: the evaluator's result, or a Failure the engine saw."""

    ticket: Hashable
    result: Any
    attempts: int = 1


class Engine(abc.ABC):
    """Where candidates run (see the module docstring); a context manager that closes itself.

    Attributes:
        slots: how many candidates may be in flight at once.
    """

    slots: int

    @abc.abstractmethod
    def submit(self, ticket: Hashable, params: Params, fidelity: str = FULL_FIDELITY) -> None:
        """Start evaluating ``params`` at ``fidelity``; ``ticket`` identifies it in
        :meth:`wait`'s answer (and may be submitted again once it has come back)."""

    @abc.abstractmethod
    def wait(self) -> Finished:
        """Block until one submitted candidate is done, in any order.

        Raises:
            RuntimeError: when nothing is submitted.
        """

    @abc.abstractmethod
    def cancel(self) -> list[Hashable]:
        """Drop every candidate submitted and not yet finished; return their tickets."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the workers; calling it again does nothing."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- local


class LocalEngine(Engine):
    """Serial, in-process evaluation: the evaluator is built once, on first use.

    Args:
        factory: builds ``params -> result``, called once on the first :meth:`wait`.
        evaluate: the ready ``params -> result`` instead (give exactly one of the two).
    """

    slots = 1

    def __init__(self, factory: EvaluateFactory | None = None, *, evaluate: Any = None) -> None:
        if (factory is None) == (evaluate is None):
            raise ValueError("give exactly one of `factory` and `evaluate`.")
        self._factory = factory
        self._evaluate = evaluate
        self._queue: deque[tuple[Hashable, Params, str]] = deque()

    def submit(self, ticket: Hashable, params: Params, fidelity: str = FULL_FIDELITY) -> None:
        self._queue.append((ticket, params, fidelity))

    def wait(self) -> Finished:
        if not self._queue:
            raise RuntimeError("wait() with nothing submitted.")
        if self._evaluate is None:
            self._evaluate = self._factory()  # type: ignore[misc]
        ticket, params, fidelity = self._queue[0]
        # a Ctrl-C here leaves the ticket queued for cancel()
        result = call_evaluate(self._evaluate, params, fidelity)
        self._queue.popleft()
        return Finished(ticket, result)

    def cancel(self) -> list[Hashable]:
        tickets = [ticket for ticket, _, _ in self._queue]
        self._queue.clear()
        return tickets

    def close(self) -> None:
        self._queue.clear()


# --------------------------------------------------------------------------- ray


class _CandidateWorker:
    """The body of one Ray actor: builds the evaluator once, then evaluates candidates."""

    def __init__(self, factory: EvaluateFactory) -> None:
        self._evaluate = factory()

    def ready(self) -> int:
        return os.getpid()

    def evaluate(self, params: Params, fidelity: str = FULL_FIDELITY) -> Any:
        return call_evaluate(self._evaluate, params, fidelity)


@dataclass
class _Task:
    ticket: Hashable
    params: Params
    fidelity: str = FULL_FIDELITY
    attempts: int = 0
    started: float = 0.0


def preflight(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, with one line, when ``address`` (``ray://HOST:PORT`` or ``HOST:PORT``) is closed.

    ``ray.init`` retries an unreachable address for a long time; a plain TCP connect with
    a short timeout answers in seconds. ``"auto"`` is left to Ray (it fails at once).
    """
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise EngineError(
            f"bad Ray address {address!r}; use `auto`, `HOST:PORT` or `ray://HOST:PORT`"
        )
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise EngineError(
            f"cannot reach a Ray cluster at {address} ({error.strerror or error}); "
            "start one with `ray start --head` or fix `--address`"
        ) from None


class RayEngine(Engine):
    """Evaluate candidates on long-lived Ray actors (see the module docstring).

    Args:
        factory: picklable; builds ``params -> result`` once per actor.
        workers: actors (and candidates in flight).
        address: ``None`` starts a private local Ray; ``"auto"``, ``HOST:PORT`` or
            ``ray://HOST:PORT`` join a running cluster.
        cpus, gpus: resources reserved per actor.
        timeout: seconds one candidate may take; ``None`` for no limit.
        max_retries: re-runs of a candidate whose worker process died.
    """

    def __init__(
        self,
        factory: EvaluateFactory,
        *,
        workers: int = 1,
        address: str | None = None,
        cpus: float = 1.0,
        gpus: float = 0.0,
        timeout: float | None = None,
        max_retries: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError(f"`workers >= 1` must hold, but got ({workers=}).")
        if max_retries < 0:
            raise ValueError(f"`max_retries >= 0` must hold, but got ({max_retries=}).")
        self.slots = workers
        self._factory = factory
        self._cpus, self._gpus = cpus, gpus
        self._timeout = timeout
        self._max_retries = max_retries
        self._owns_ray = address is None
        self._closed = False
        self._pending: deque[_Task] = deque()
        self._starting: dict[Any, Any] = {}  # ready ref -> actor
        self._idle: list[Any] = []
        self._running: dict[Any, tuple[Any, _Task]] = {}  # result ref -> (actor, task)
        self.pids: list[int] = []  # of every actor started (tests check they are gone)
        self._ray: Any = None  # the ray module once imported
        started = time.perf_counter()
        try:
            self._connect(address, workers)
            self.connect_seconds = time.perf_counter() - started
            for _ in range(workers):
                self._start_actor()
        except BaseException:  # Ctrl-C while Ray starts included: stop what did start
            self.close()
            raise

    # ------------------------------------------------------------------ lifecycle

    def _connect(self, address: str | None, workers: int) -> None:
        import ray

        self._ray = ray  # so that close() can shut down a half-started Ray
        if address is not None:
            preflight(address)
        try:
            with _sigint_held():  # Ray interrupted half-way through starting leaves processes
                if self._owns_ray:
                    ray.init(
                        address="local",
                        num_cpus=max(1, int(round(workers * self._cpus))),
                        num_gpus=math.ceil(workers * self._gpus) or None,
                        include_dashboard=False,
                        log_to_driver=False,
                        logging_level="ERROR",
                        configure_logging=True,
                    )
                else:
                    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            where = "start a local Ray" if self._owns_ray else f"join the Ray cluster {address}"
            raise EngineError(f"cannot {where}: {first}") from None
        self._actor_class = ray.remote(_CandidateWorker).options(
            num_cpus=self._cpus, num_gpus=self._gpus, max_restarts=0, max_task_retries=0
        )

    def _start_actor(self) -> None:
        actor = self._actor_class.remote(self._factory)
        self._starting[actor.ready.remote()] = actor

    def _kill(self, actor: Any) -> None:
        with contextlib.suppress(Exception):  # already gone, or Ray itself is going away
            self._ray.kill(actor, no_restart=True)

    def _replace(self, actor: Any) -> None:
        self._kill(actor)
        self._start_actor()

    def close(self) -> None:
        """Kill the actors; shut Ray down if this engine started it."""
        if self._closed or self._ray is None:
            return
        self._closed = True
        for actor in [
            *self._starting.values(),
            *self._idle,
            *(a for a, _ in self._running.values()),
        ]:
            self._kill(actor)
        self._starting.clear()
        self._idle.clear()
        self._running.clear()
        # Stops the private Ray this engine started; on a joined cluster it only disconnects.
        self._ray.shutdown()

    # ------------------------------------------------------------------ the engine

    def submit(self, ticket: Hashable, params: Params, fidelity: str = FULL_FIDELITY) -> None:
        self._pending.append(_Task(ticket, params, fidelity))
        self._dispatch()

    def cancel(self) -> list[Hashable]:
        tickets = [task.ticket for task in self._pending]
        tickets += [task.ticket for _, task in self._running.values()]
        for actor, _ in self._running.values():
            self._kill(actor)  # the next run_study starts fresh actors anyway
        self._pending.clear()
        self._running.clear()
        return tickets

    def _dispatch(self) -> None:
        while self._pending and self._idle:
            task, actor = self._pending.popleft(), self._idle.pop()
            task.attempts += 1
            task.started = time.monotonic()
            self._running[actor.evaluate.remote(task.params, task.fidelity)] = (actor, task)

    def wait(self) -> Finished:
        ray = self._ray
        if not self._pending and not self._running:
            raise RuntimeError("wait() with nothing submitted.")
        while True:
            self._dispatch()
            refs = [*self._running, *self._starting]
            ready, _ = ray.wait(refs, num_returns=1, timeout=self._next_deadline())
            if not ready:
                finished = self._expire()
                if finished is not None:
                    return finished
                continue
            ref = ready[0]
            if ref in self._starting:
                self._started(ref)
                continue
            actor, task = self._running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.OutOfMemoryError as error:
                self._replace(actor)
                return Finished(
                    task.ticket, Failure(f"out of memory: {_first(error)}"), task.attempts
                )
            except ray.exceptions.RayActorError as error:
                self._replace(actor)
                if task.attempts <= self._max_retries:
                    self._pending.appendleft(task)
                    continue
                reason = f"worker died {task.attempts} time(s): {_first(error)}"
                return Finished(task.ticket, Failure(reason), task.attempts)
            except ray.exceptions.RayTaskError as error:  # the evaluator raised: a bug
                self._idle.append(actor)
                return Finished(
                    task.ticket, Failure(f"worker error: {_first(error)}"), task.attempts
                )
            self._idle.append(actor)
            return Finished(task.ticket, result, task.attempts)

    def wait_ready(self) -> None:
        """Block until every worker has loaded its evaluator (benchmarks time start-up so)."""
        while self._starting:
            ready, _ = self._ray.wait(list(self._starting), num_returns=1)
            self._started(ready[0])
        self._dispatch()

    def _started(self, ref: Any) -> None:
        actor = self._starting.pop(ref)
        try:
            self.pids.append(self._ray.get(ref))
        except self._ray.exceptions.RayError as error:
            self.close()
            raise EngineError(f"a Ray worker could not load the study: {_first(error)}") from None
        self._idle.append(actor)

    def _next_deadline(self) -> float | None:
        if self._timeout is None or not self._running:
            return None
        oldest = min(task.started for _, task in self._running.values())
        return max(0.0, oldest + self._timeout - time.monotonic())

    def _expire(self) -> Finished | None:
        if self._timeout is None:
            return None
        now = time.monotonic()
        for ref, (actor, task) in list(self._running.items()):
            if now - task.started >= self._timeout:
                del self._running[ref]
                self._replace(actor)
                return Finished(
                    task.ticket, Failure(f"timeout after {self._timeout:g} s"), task.attempts
                )
        return None


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold a first SIGINT until the block is done, then deliver it; a second one at once.

    ``ray.init`` interrupted half-way leaves some of the node's processes running for
    minutes after ``ray.shutdown()``; held, Ctrl-C waits the seconds Ray takes to start and
    then stops it cleanly. Only the main thread can hold it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:  # the user insists: do not wait for Ray any longer
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)  # with the handler that was there before


def _first(error: BaseException) -> str:
    """The first meaningful line of a (possibly multi-line) Ray error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__
