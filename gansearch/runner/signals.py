"""Ctrl-C during a run: recorded always, delivered only between bookkeeping steps.

A run moves three things together after each result: the trial in storage, the
strategy, and the strategy's saved state. A SIGINT landing between two of those writes
would record a candidate twice or not at all, so :func:`ctrl_c_deferred` holds it until
the step is done; :class:`CtrlCSeen` remembers every SIGINT so that one swallowed by a
blocking library call still stops the run at its next check.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class CtrlCSeen:
    """Records every SIGINT during a run (and still raises KeyboardInterrupt).

    Ray's compiled calls can swallow a KeyboardInterrupt raised while they block (seen
    rarely with ``ray.wait``); the flag lets the loop stop at its next check regardless.
    Only the main thread can install it; elsewhere it records nothing.
    """

    def __init__(self) -> None:
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
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) while bookkeeping runs, then deliver it as if it came just after.

    A SIGINT landing between "the trial is told to storage" and "it is no longer in flight"
    would otherwise be recorded twice or not at all. Only the main thread can hold it.
    """
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
