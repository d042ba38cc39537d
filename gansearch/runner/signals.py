"""Ctrl-C (SIGINT): honoured at every phase of a command, held between bookkeeping steps.

A command that loads a study, scores candidates and writes results must stop on a SIGINT
whatever it is doing at the moment, and never report success afterwards:

* :func:`sigint_stops_command` is held around a whole CLI command. It makes SIGINT raise
  :class:`KeyboardInterrupt` even in a process that inherited SIGINT *ignored* (a
  background job of a non-interactive shell: Python then keeps ignoring it, and a run
  once finished with exit 0 after a SIGINT during loading), and raises
  :class:`KeyboardInterrupt` at the end when some library swallowed the one a SIGINT raised;
* :class:`CtrlCSeen` lets the run loop stop at its next check after such a swallowed one;
* :func:`ctrl_c_deferred` holds a SIGINT while the loop moves the trial in storage, the
  strategy and the strategy's saved state together, so that no candidate is recorded
  twice or not at all, and delivers it just after.

Every handler here counts the SIGINTs it sees in one process-wide count (signal handlers
are process-wide too), which is how a later check learns of an earlier swallowed one.
Only the main thread can install handlers; elsewhere these helpers do nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class _SigintCount:
    """How many SIGINTs this process has received through the handlers of this module,
    and the count when the command now running (:func:`sigint_stops_command`) started."""

    value = 0
    command_start: int | None = None


def _count(signum: int, frame: Any) -> None:
    _SigintCount.value += 1


def _count_and_raise(signum: int, frame: Any) -> None:
    _SigintCount.value += 1
    raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigint_stops_command() -> Iterator[None]:
    """Make any SIGINT while the block runs end it with :class:`KeyboardInterrupt`.

    Installs a handler that raises KeyboardInterrupt (whatever the inherited disposition,
    SIG_IGN included) and restores the previous one afterwards. A block that ends normally
    although a SIGINT arrived meanwhile (its KeyboardInterrupt was swallowed, e.g. by a
    library's broad ``except``) raises KeyboardInterrupt on the way out, and so does a block
    that fails after a SIGINT arrived: the failure is the interrupt's consequence (a
    compiled module whose import a SIGINT interrupted raises ``ImportError:
    initialization failed``, as scipy's HiGHS bindings do).
    """
    if not _main_thread():
        yield
        return
    start = _SigintCount.value
    outer, _SigintCount.command_start = _SigintCount.command_start, start
    previous = signal.signal(signal.SIGINT, _count_and_raise)
    try:
        yield
    except KeyboardInterrupt:
        raise
    except Exception as error:
        if _SigintCount.value > start:  # the interrupt surfaced as another error, e.g. an
            raise KeyboardInterrupt from error  # extension's "ImportError: initialization failed"
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        _SigintCount.command_start = outer
    if _SigintCount.value > start:
        raise KeyboardInterrupt


class CtrlCSeen:
    """Records every SIGINT during a run (and still raises KeyboardInterrupt).

    Ray's compiled calls can swallow a KeyboardInterrupt raised while they block (seen
    rarely with ``ray.wait``); the flag lets the loop stop at its next check regardless.
    Inside :func:`sigint_stops_command` it counts every SIGINT since the command started
    (one swallowed while the study was loading stops the loop at once); elsewhere those
    since it was created. Only the main thread can install it; elsewhere it records nothing.
    """

    def __init__(self) -> None:
        command = _SigintCount.command_start  # within a command: one swallowed earlier counts
        self._start = _SigintCount.value if command is None else command
        self._previous: Any = None
        if _main_thread():
            self._previous = signal.signal(signal.SIGINT, _count_and_raise)

    @property
    def seen(self) -> bool:
        """Whether a SIGINT arrived since this was created (a swallowed one included)."""
        return _SigintCount.value > self._start

    def check(self) -> None:
        """Raise KeyboardInterrupt if a SIGINT arrived since this was created."""
        if self.seen:
            raise KeyboardInterrupt

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) while bookkeeping runs, then deliver it as if it came just after.

    A SIGINT landing between "the trial is told to storage" and "it is no longer in flight"
    would otherwise be recorded twice or not at all. Only the main thread can hold it.
    """
    if not _main_thread():
        yield
        return
    start = _SigintCount.value
    previous = signal.signal(signal.SIGINT, _count)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if _SigintCount.value > start:
        signal.raise_signal(signal.SIGINT)  # with the handler that was there before
