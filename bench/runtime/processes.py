"""Which process runs a thing, as `host:pid`, and whether it still does (told on its own host)."""

import os
import socket


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def gone(process: str) -> bool:
    """True when `process` (`host:pid`) was on this host and no longer exists; a process on
    another host (or an unreadable name) cannot be told gone from here."""
    host, _, pid = process.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not alive(int(pid))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
