"""An exclusive lock between the processes of one machine, held on a file beside what it guards
(`<path>.lock`); the kernel releases it when its holder ends or dies, so a SIGKILL never leaves
it held."""

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Raises OSError when the lock file cannot be created."""
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
