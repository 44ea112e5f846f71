"""python -m bench.perf.trials: trials/hour of one grid study, one worker against several.

The same study (by default a 16-point z_dim grid, unpruned) runs end to end as the user runs it
(`python -m bench.run study=zdim ...`, start-up and report included), first with
`study.workers=1`, then with `study.workers=N` on this machine, alternated when repeated, each in
fresh stores. Results go to benchmarks/TRIALS.md.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from bench.cli import run_parsed
from bench.errors import BenchError
from bench.perf.machine import machine
from bench.training.loop import pick_device

STUDY_SHOWN = ["study=zdim", "study.space.model.z_dim=[1,…,{trials}]", "study.pruner=none"]


def study_command(workers: int, trials: int, folder: Path, overrides: list[str]) -> list[str]:
    grid = ",".join(str(z) for z in range(1, trials + 1))
    return [
        sys.executable,
        "-m",
        "bench.run",
        "study=zdim",
        f"study.space.model.z_dim=[{grid}]",
        "study.pruner=none",
        f"study.workers={workers}",
        "study.name=perf-trials",
        f"storage=sqlite:///{folder / 'optuna.db'}",
        f"tracking_uri=sqlite:///{folder / 'mlflow.db'}",
        f"report_dir={folder / 'reports'}",
        "progress=false",
        *overrides,
    ]


def timed_study(workers: int, trials: int, overrides: list[str]) -> tuple[float, int]:
    """Wall seconds for the whole study and how many workers took trials; fails unless every
    trial completed."""
    with tempfile.TemporaryDirectory() as tmp:
        command = study_command(workers, trials, Path(tmp), overrides)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BenchError(f"the study with {workers} worker(s) failed: {last}")
        storage = f"sqlite:///{Path(tmp) / 'optuna.db'}"
        study = optuna.load_study(study_name="perf-trials", storage=storage)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) != trials:
            raise BenchError(f"{len(complete)} of {trials} trials completed with {workers} workers")
        workers_used = len({t.user_attrs["worker"] for t in complete})
    print(f"{workers} worker(s): {seconds:.1f} s, {workers_used} took trials", flush=True)
    return seconds, workers_used


def measure(
    workers: list[int], trials: int, repeats: int, overrides: list[str]
) -> dict[int, list[tuple[float, int]]]:
    """Per worker count: (wall seconds, workers that took trials) of each repeat, the counts
    alternated within each repeat."""
    seconds: dict[int, list[tuple[float, int]]] = {w: [] for w in workers}
    for _ in range(repeats):
        for count in seconds:
            seconds[count].append(timed_study(count, trials, overrides))
    return seconds


def run_benchmark(args: argparse.Namespace) -> None:
    if min(args.workers) < 2:
        raise BenchError(f"--workers must be >= 2 to compare with one worker, got {args.workers}")
    seconds = measure([1, *args.workers], args.trials, args.repeats, args.overrides)
    command = f"python -m bench.perf.trials {' '.join(args.argv)}"
    lines = [
        "# Benchmark: trials per hour, one worker against several on one machine",
        "",
        *table(command, args.trials, args.repeats, args.overrides, seconds, pick_device("auto")),
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"results: {args.out}")


def table(
    command: str,
    trials: int,
    repeats: int,
    overrides: list[str],
    seconds: dict[int, list[tuple[float, int]]],
    device,
) -> list[str]:
    median = {w: statistics.median(s for s, _ in runs) for w, runs in seconds.items()}
    used = {w: min(u for _, u in runs) for w, runs in seconds.items()}
    lines = [
        f"Command: `{command.rstrip()}`  ",
        machine(device),
        "",
        f"Study: `{' '.join([*STUDY_SHOWN, *overrides]).format(trials=trials)}`, "
        "run end to end (start-up and report included), "
        f"{repeats} time(s) for each worker count, alternating; median wall time.",
        "",
        "| workers | took trials | wall s | trials/hour | ratio |",
        "|---|---|---|---|---|",
    ]
    for workers, wall in median.items():
        per_hour = trials / wall * 3600
        lines.append(
            f"| {workers} | {used[workers]} | {wall:.1f} | {per_hour:.0f} | "
            f"{median[1] / wall:.2f}× |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf.trials", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[2], help="worker counts against one worker"
    )
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/TRIALS.md")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data=fashion-mnist")
    return run_parsed(parser, argv, run_benchmark)


if __name__ == "__main__":
    raise SystemExit(main())
