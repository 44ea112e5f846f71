"""SIGINT and SIGTERM as KeyboardInterrupt, never lost.

Python runs a signal handler between bytecodes, which can be inside a finalizer or a weakref
callback; an exception raised there is printed as "Exception ignored" and dropped, and the
process would go on as if never signalled. So the handler also records the signal, and the
long-running loops call `raise_if_interrupted` at safe points (each training step, each
evaluation chunk, each pass of the study loop).

A signal raised inside a database write can leave the store locked (SQLite) or the transaction
half done, and the run's ending then fails too; writes to the tracking and study stores run
`deferred`: a signal there is recorded and raised when the write is over.
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_received: str | None = None
_count = 0  # signals received
_deferring = 0


def install() -> None:
    global _received
    _received = None
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def raise_if_interrupted() -> None:
    if _received is not None:
        raise KeyboardInterrupt(_received)


@contextmanager
def deferred() -> Iterator[None]:
    """Runs the block to its end under SIGINT and SIGTERM; one that came meanwhile is raised after
    it (one that came before, being handled, is not raised again)."""
    global _deferring
    before = _count
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if _deferring == 0 and _count > before:
        raise KeyboardInterrupt(_received)


def _interrupt(signum: int, frame: object) -> None:
    global _received, _count
    _received, _count = signal.Signals(signum).name, _count + 1
    if _deferring == 0:
        raise KeyboardInterrupt(_received)
