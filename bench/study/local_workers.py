"""`study.workers=N`: this process and N-1 helper processes on this machine share one study.

Small trials leave a GPU (or a many-core CPU) mostly idle; several workers on one device keep
it busy. The helpers are ordinary study workers (`python -m bench.study`) on the same storage
and tracking store, so claiming, heartbeats and recovery are the scale-out machinery's. On the
CPU the cores are split between the workers.
"""

import os
import signal
import subprocess
import sys
import time

import torch

from bench.study.space import override_key

HELPER_EXIT_SECONDS = 60
HELPER_KEYS = {"study.workers": 1, "progress": "false"}


def cpu_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def start_helpers(workers: int, overrides: list[str]) -> list[subprocess.Popen]:
    """Start workers - 1 helpers with the study's overrides; this process takes its share of
    the cores."""
    if workers <= 1:
        return []
    threads = cpu_threads(workers)
    torch.set_num_threads(threads)
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    own = [o for o in overrides if override_key(o) not in HELPER_KEYS]
    command = [
        sys.executable,
        "-m",
        "bench.study",
        *own,
        *(f"{k}={v}" for k, v in HELPER_KEYS.items()),
    ]
    return [subprocess.Popen(command, env=env) for _ in range(workers - 1)]


def join_helpers(helpers: list[subprocess.Popen], interrupted: bool) -> list[int]:
    """Wait for the helpers (told to stop first when this worker was interrupted); the exit
    codes of those that failed."""
    if interrupted:
        for helper in helpers:
            if helper.poll() is None:
                helper.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + HELPER_EXIT_SECONDS if interrupted else None
    failed = []
    for helper in helpers:
        try:
            code = helper.wait(None if deadline is None else max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            helper.kill()
            code = helper.wait()
        if code != 0:
            failed.append(code)
    return failed
