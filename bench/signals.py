"""SIGINT and SIGTERM as KeyboardInterrupt, never lost.

Python runs a signal handler between bytecodes, which can be inside a finalizer or a weakref
callback; an exception raised there is printed as "Exception ignored" and dropped, and the
process would go on as if never signalled. So the handler also records the signal, and the
long-running loops call `raise_if_interrupted` at safe points (each training step, each
evaluation chunk, each pass of the study loop).
"""

import signal

_received: str | None = None


def install() -> None:
    global _received
    _received = None
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def raise_if_interrupted() -> None:
    if _received is not None:
        raise KeyboardInterrupt(_received)


def _interrupt(signum: int, frame: object) -> None:
    global _received
    _received = signal.Signals(signum).name
    raise KeyboardInterrupt(_received)
