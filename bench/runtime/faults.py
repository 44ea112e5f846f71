"""Named points in a worker's life (opening the study, claiming a trial, training, evaluating,
logging, updating the parent run) at which a test may kill the process outright (SIGKILL), to
check that a worker dying at any moment leaves a study the others, or a rerun, can finish.
Only tests and the soak benchmark set these variables; unset, a point costs two lookups.

- VAE_BENCH_KILL_AT=NAME: SIGKILL this process when it reaches the point NAME.
- VAE_BENCH_TRACE=FOLDER: append each point's name, as it is reached, to FOLDER/<pid> (the
  soak benchmark reads the last one to say what a worker it killed was doing).
"""

import os
import signal

KILL_AT = "VAE_BENCH_KILL_AT"
TRACE = "VAE_BENCH_TRACE"


def kill_point(name: str) -> None:
    trace = os.environ.get(TRACE)
    if trace:
        with open(os.path.join(trace, str(os.getpid())), "a") as passed:
            passed.write(f"{name}\n")
    if os.environ.get(KILL_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)
