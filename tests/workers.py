"""Study workers as processes forked from a server that has imported the harness once, so a
test can start (and SIGKILL) many of them for the price of a fork, not of a Python start-up."""

import multiprocessing
import os
import sys
from pathlib import Path

from bench.runtime.faults import KILL_AT

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["bench.run", "bench.report.markdown", "tests.worker_preload"])


def _work(
    args: list[str], folder: str, kill_at: str | None, env: dict, logs: tuple[str, str] | None
) -> None:
    os.chdir(folder)
    os.environ.update(env)
    if kill_at is None:
        os.environ.pop(KILL_AT, None)
    else:
        os.environ[KILL_AT] = kill_at
    if logs is not None:  # what Popen's pipes would have caught
        for fd, path in zip((1, 2), logs, strict=True):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    import torch

    from bench.run import main

    torch.set_num_threads(1)  # workers stand for machines of their own: here they share 2 cores
    code = main(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def start(
    args: list[str],
    folder: Path,
    kill_at: str | None = None,
    env: dict | None = None,
    logs: tuple[Path, Path] | None = None,
) -> multiprocessing.Process:
    """`python -m bench.run ARGS` in `folder`; with `kill_at`, it SIGKILLs itself there; its
    stdout and stderr go to `logs` when given."""
    logs = None if logs is None else (str(logs[0]), str(logs[1]))
    target_args = (args, str(folder), kill_at, env or {}, logs)
    process = CONTEXT.Process(target=_work, args=target_args, daemon=True)
    process.start()
    return process


class Worker:
    """A forked `python -m bench.run ARGS` with the face of subprocess.Popen that the tests use:
    pid, wait, communicate (its output as text), send_signal, returncode."""

    def __init__(self, args: list[str], folder: Path, env: dict | None = None):
        self.logs = (folder / f".worker-{id(self)}.out", folder / f".worker-{id(self)}.err")
        self.process = start(args, folder, env=env, logs=self.logs)
        self.pid = self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise TimeoutError(f"worker {self.pid} still running after {timeout} s")
        return self.process.exitcode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return tuple(path.read_text() for path in self.logs)

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)


def finish(process: multiprocessing.Process, timeout: float) -> int | None:
    """Its exit code (negative: the signal that killed it), None if it ran past `timeout`
    (then it is killed)."""
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
        return None
    return process.exitcode
