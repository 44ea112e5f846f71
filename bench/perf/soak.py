"""python -m bench.perf.soak: many workers on one study, SIGKILLed at random, and the study still
ends at exactly its target.

N workers (`python -m bench.run study=smoke` over a z_dim grid, as a user starts them: start-up
included) share an Optuna study on PostgreSQL (a throwaway local cluster unless --storage is
given) and one SQLite MLflow store that does not exist when they start. Every 3-7 s a random
live worker is SIGKILLed and a fresh one started in its place, until at least --kills kills;
the workers left then finish, and one more worker is started at the end, as a user would. What
each killed worker was doing is read from the stores (no trial yet, claiming, in a trial,
between trials). Then the study is audited (`bench.study.audit`). Results: benchmarks/SOAK.md.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import optuna
from sqlalchemy.pool import NullPool

from bench.cli import run_parsed
from bench.errors import BenchError
from bench.perf.machine import machine
from bench.perf.postgres import fresh_database, postgres, postgres_bin
from bench.runtime.faults import TRACE
from bench.study.audit import Audit, audit
from bench.study.loop import finished
from bench.tracking.redaction import redact
from bench.training.loop import pick_device

STUDY = "soak"
PASSED = (
    "passed: exactly the target, each point COMPLETE once, nothing RUNNING or WAITING, "
    "one FINISHED run per COMPLETE trial, the parent FINISHED"
)
PHASES = {  # the last point a worker passed (bench.runtime.faults) -> what it was doing after it
    None: "starting up",
    "study:opened": "opening the study, or waiting for the study lock",
    "parent:created": "opening the study, or waiting for the study lock",
    "claim:asked": "claiming a trial",
    "claim:suggested": "claiming a trial",
    "claim:beating": "claiming a trial",
    "claim:tagged": "starting a trial (config, MLflow run)",
    "trial:run-created": "training",
    "job:trained": "evaluating",
    "job:evaluated": "logging results, images and the model",
    "trial:evaluated": "recording the trial in Optuna",
    "trial:told": "ending a trial's run, or waiting for the others",
    "parent:finishing": "updating the parent run",
}


def worker_command(storage: str, tracking_uri: str, trials: int, overrides: list[str]):
    grid = ",".join(str(z) for z in range(2, trials + 2))
    return [
        sys.executable,
        "-m",
        "bench.run",
        "study=smoke",
        f"study.name={STUDY}",
        f"study.space.model.z_dim=[{grid}]",
        "study.heartbeat_seconds=2",
        "study.grace_seconds=10",
        f"storage={storage}",
        f"tracking_uri={tracking_uri}",
        "progress=false",
        *overrides,
    ]


class Workers:
    """The live worker processes, each with its start time."""

    def __init__(self, command: list[str], folder: Path):
        self.command, self.folder = command, folder
        self.trace = folder / "trace"
        self.trace.mkdir()
        self.env = os.environ | {TRACE: str(self.trace)}
        self.live: dict[int, tuple[subprocess.Popen, float]] = {}
        self.exit_codes: list[int] = []
        self.started = 0

    def start(self) -> None:
        self.started += 1
        with open(self.folder / f"worker-{self.started}.log", "w") as log:  # the child keeps it
            proc = subprocess.Popen(
                self.command, cwd=self.folder, env=self.env, stdout=log, stderr=log
            )
        self.live[proc.pid] = (proc, time.monotonic())

    def reap(self) -> None:
        for pid, (proc, _) in list(self.live.items()):
            if proc.poll() is not None:
                self.exit_codes.append(proc.returncode)
                del self.live[pid]

    def kill_one(self) -> tuple[int, float]:
        """SIGKILL a random live worker: its pid and age in seconds."""
        pid = random.choice(list(self.live))
        proc, started = self.live.pop(pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return pid, time.monotonic() - started


def phase(trace: Path, pid: int) -> str:
    """What the worker `pid` was doing when killed: after the last point its trace names."""
    passed = (trace / str(pid)).read_text().split() if (trace / str(pid)).exists() else []
    return PHASES[passed[-1] if passed else None]


def soak(args: argparse.Namespace, storage: str, folder: Path) -> tuple[Audit, dict, float]:
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"  # does not exist yet
    workers = Workers(worker_command(storage, tracking_uri, args.trials, args.overrides), folder)
    started = time.monotonic()
    for _ in range(args.workers):
        workers.start()
    kills: list[tuple[float, str]] = []
    while len(kills) < args.kills:
        time.sleep(random.uniform(3, 7))
        workers.reap()
        if not workers.live or finished_trials(storage) >= args.trials:
            break  # the study finished before the kills did
        pid, age = workers.kill_one()
        kills.append((age, phase(workers.trace, pid)))
        print(f"kill {len(kills)}: a worker {age:.0f} s old, {kills[-1][1]}", flush=True)
        workers.start()
    for proc, _ in list(workers.live.values()):
        proc.wait()
    workers.reap()
    last = subprocess.run(workers.command, cwd=folder, capture_output=True, text=True)
    wall = time.monotonic() - started
    result = audit(storage, tracking_uri, STUDY, args.trials, "model.z_dim")
    counts = {
        "kills": len(kills),
        "phases": Counter(p for _, p in kills),
        "ages": sorted(a for a, _ in kills),
        "exit_codes": Counter(workers.exit_codes + [last.returncode]),
        "workers": workers.started + 1,
    }
    return result, counts, wall


def finished_trials(storage: str) -> int:
    polled = optuna.storages.RDBStorage(storage, engine_kwargs={"poolclass": NullPool})
    try:
        return finished(optuna.load_study(study_name=STUDY, storage=polled))
    except KeyError:
        return 0
    finally:
        polled.engine.dispose()


def run_benchmark(args: argparse.Namespace) -> None:
    random.seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="vae-bench-soak-") as tmp, ExitStack() as stack:
        storage = args.storage or fresh_database(stack.enter_context(local_cluster()), STUDY)
        result, counts, wall = soak(args, storage, Path(tmp))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report(args, result, counts, wall))
    print(f"results: {args.out}")
    if result.problems:
        raise BenchError("the study did not end as it must: " + "; ".join(result.problems))


@contextmanager
def local_cluster() -> Iterator[str]:
    try:
        postgres_bin()
    except RuntimeError as e:
        raise BenchError(f"{e}, or give --storage postgresql://...") from None
    with postgres() as cluster:
        yield cluster


def report(args: argparse.Namespace, result: Audit, counts: dict, wall: float) -> str:
    ages = counts["ages"]
    median = ages[len(ages) // 2] if ages else 0
    spread = f"{ages[0]:.0f} to {ages[-1]:.0f} s, median {median:.0f} s" if ages else "none"
    storage = redact(args.storage) if args.storage else "a local PostgreSQL cluster"
    lines = [
        "# Soak: workers SIGKILLed at random, the study still ends at exactly its target",
        "",
        f"Command: `python -m bench.perf.soak {redact(' '.join(args.argv))}`".rstrip() + "  ",
        machine(pick_device("cpu")),
        "",
        f"{args.workers} workers (`python -m bench.run study=smoke` over a {args.trials}-point "
        f"z_dim grid{', ' + ' '.join(args.overrides) if args.overrides else ''}) on one study in "
        f"{storage}, one SQLite MLflow store created by the workers themselves. A random live "
        "worker SIGKILLed every 3-7 s and a fresh one started in its place; then the workers "
        "left finish and one more is started at the end. What a killed worker was doing is the "
        "last named point it passed (`bench.runtime.faults`). The moments too brief for a random "
        "kill to land in often (claiming a trial, recording it, updating the parent run) are "
        "killed point by point in `tests/test_kill_points.py`.",
        "",
        "| | |",
        "|---|---|",
        f"| SIGKILLs | {counts['kills']} (workers started: {counts['workers']}) |",
        f"| killed worker's age | {spread} |",
        *(f"| killed while {p} | {n} |" for p, n in counts["phases"].most_common()),
        f"| wall time | {wall:.0f} s |",
        f"| finished trials (target) | {result.finished} ({args.trials}) |",
        f"| Optuna trial states | {_counts(result.states)} |",
        f"| trials cut short and requeued | {result.requeued} |",
        f"| MLflow trial runs | {_counts(result.run_states)} |",
        f"| worker exit codes | {_counts({str(k): v for k, v in counts['exit_codes'].items()})} |",
        f"| audit | {'; '.join(result.problems) or PASSED} |",
    ]
    return "\n".join(lines) + "\n"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--storage", help="an Optuna PostgreSQL URL (default: a local cluster)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/SOAK.md")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. trainer.epochs=10")
    return run_parsed(parser, argv, run_benchmark)


if __name__ == "__main__":
    raise SystemExit(main())
