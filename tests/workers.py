"""Study workers as processes forked from a server that has imported the harness once, so a
test can start (and SIGKILL) many of them for the price of a fork, not of a Python start-up."""

import multiprocessing
import os
from pathlib import Path

from bench.runtime.faults import KILL_AT

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["bench.run", "bench.report.markdown"])


def _work(args: list[str], folder: str, kill_at: str | None) -> None:
    os.chdir(folder)
    if kill_at is None:
        os.environ.pop(KILL_AT, None)
    else:
        os.environ[KILL_AT] = kill_at
    from bench.run import main

    os._exit(main(args))


def start(args: list[str], folder: Path, kill_at: str | None = None) -> multiprocessing.Process:
    """`python -m bench.run ARGS` in `folder`; with `kill_at`, it SIGKILLs itself there."""
    process = CONTEXT.Process(target=_work, args=(args, str(folder), kill_at), daemon=True)
    process.start()
    return process


def finish(process: multiprocessing.Process, timeout: float) -> int | None:
    """Its exit code (negative: the signal that killed it), None if it ran past `timeout`
    (then it is killed)."""
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
        return None
    return process.exitcode
