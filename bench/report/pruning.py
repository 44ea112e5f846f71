"""python -m bench.report.pruning --study NAME [--study NAME ...]: how long a warm-up the median
pruner needs before early epochs predict the final order.

Reads unpruned studies back from MLflow (each trial's per-epoch validation -ELBO, the value the
pruner sees, and its final objective) and replays Optuna's MedianPruner over them in trial order
for every warm-up: a trial is stopped at epoch e >= warm-up when its best value so far is worse
than the median, at e, of the trials completed before it (after `--startup` completed trials),
never at the last epoch (the harness does not prune a trial that has finished training). A
pruned trial is a mistake when it would have finished in the best quarter of its study: the
pruner must not take away the candidates for the answer. Replaying a TPE study is an
approximation: with pruning on, the sampler would have seen other results.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.cli import run_parsed
from bench.errors import BenchError
from bench.report.runs import StudyRuns, epoch_series, load_study_runs
from bench.tracking import mlflow_runs

OBJECTIVE_KEYS = ("metrics.val_eval/nll", "metrics.val/nll")  # the latter: runs before val_eval


@dataclass
class Trial:
    number: int
    curve: np.ndarray  # validation -ELBO of epochs 1..E
    final: float  # the trial's objective


@dataclass
class Replay:
    pruned: dict[int, int]  # trial number -> epoch it would be stopped after
    mistakes: list[int]  # pruned trials that would have finished in the best quarter
    epochs_saved: float  # fraction of all trained epochs the pruner would have saved


def load_trials(uri: str, study: str) -> tuple[list[Trial], str]:
    """The study's trials in order, and a line saying how the study was run."""
    runs = load_study_runs(uri, study)
    if len(runs.stopped):
        raise BenchError(f"study {study!r} has pruned or failed trials: replay an unpruned one")
    trials = []
    for _, run in runs.finished.iterrows():
        final = next((run[k] for k in OBJECTIVE_KEYS if k in run and pd.notna(run[k])), None)
        if final is None:
            raise BenchError(f"run {run['run_id']} of {study!r} has no validation nll")
        curve = epoch_series(run["run_id"], "val/neg_elbo")["value"].to_numpy()
        trials.append(Trial(int(run["tags.trial"]), curve, float(final)))
    return sorted(trials, key=lambda t: t.number), _setup(runs, len(trials))


def _setup(runs: StudyRuns, n: int) -> str:
    p = runs.parent
    swept = ", ".join(k for k in runs.swept() if k != "trainer.seed")
    return (
        f"{p['params.study.sampler']} (sampler seed {p['params.study.sampler_seed']}) over "
        f"{swept} on {p['params.data.name']}, {n} trials × {p['params.trainer.epochs']} epochs"
    )


def replay(trials: list[Trial], warmup: int, startup: int) -> Replay:
    completed: list[np.ndarray] = []
    pruned: dict[int, int] = {}
    for trial in trials:
        stop = _stop_epoch(trial.curve, completed, warmup, startup)
        if stop is None:
            completed.append(trial.curve)
        else:
            pruned[trial.number] = stop
    finals = sorted(t.final for t in trials)
    cutoff = finals[max(1, len(finals) // 4) - 1]
    mistakes = [t.number for t in trials if t.number in pruned and t.final <= cutoff]
    total = sum(len(t.curve) for t in trials)
    saved = sum(len(t.curve) - pruned[t.number] for t in trials if t.number in pruned)
    return Replay(pruned, mistakes, saved / total)


def _stop_epoch(
    curve: np.ndarray, completed: list[np.ndarray], warmup: int, startup: int
) -> int | None:
    if len(completed) < max(1, startup):
        return None
    for epoch in range(max(1, warmup), len(curve)):
        at_epoch = [c[epoch - 1] for c in completed if len(c) >= epoch]
        if at_epoch and curve[:epoch].min() > np.median(at_epoch):
            return epoch
    return None


def rank_correlation(trials: list[Trial]) -> list[float]:
    """Spearman rho between each epoch's validation -ELBO and the final objective."""
    epochs = min(len(t.curve) for t in trials)
    final = pd.Series([t.final for t in trials]).rank()
    return [
        float(pd.Series([t.curve[e] for t in trials]).rank().corr(final)) for e in range(epochs)
    ]


def smallest_safe_warmup(replays: dict[str, list[Replay]]) -> int:
    """The smallest warm-up from which on no longer one makes a mistake in any study (replays
    are not monotone: other completed trials move the later medians)."""
    epochs = min(len(r) for r in replays.values())
    safe = epochs
    for warmup in range(epochs, 0, -1):
        if any(r[warmup - 1].mistakes for r in replays.values()):
            break
        safe = warmup
    return safe


def measure(args: argparse.Namespace) -> None:
    uri = mlflow_runs.tracking_uri(args.tracking_uri)
    loaded = {name: load_trials(uri, name) for name in args.study}
    studies = {name: trials for name, (trials, _) in loaded.items()}
    setups = {name: setup for name, (_, setup) in loaded.items()}
    replays = {
        name: [replay(trials, w, args.startup) for w in range(1, len(trials[0].curve) + 1)]
        for name, trials in studies.items()
    }
    text = results(args, studies, setups, replays)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text, end="")
    print(f"results: {args.out}")


def results(
    args: argparse.Namespace,
    studies: dict[str, list[Trial]],
    setups: dict[str, str],
    replays: dict[str, list[Replay]],
) -> str:
    names = list(studies)
    safe = smallest_safe_warmup(replays)
    rho = {name: rank_correlation(trials) for name, trials in studies.items()}
    lines = [
        "# Pruning warm-up: when does the early order predict the final one?",
        "",
        f"Command: `python -m bench.report.pruning {' '.join(args.argv)}`".rstrip(),
        "",
        __doc__.split("\n\n", 1)[1].strip().replace("\n", " "),
        "",
        *[f"- `{name}`: {setup}" for name, setup in setups.items()],
        "",
        f"Median pruner after {args.startup} completed trials.",
        "",
        f"**Smallest warm-up from which no study has a mistake: {safe} epochs. First epoch at "
        f"which the early order predicts the final one with Spearman ρ ≥ 0.9 in every study: "
        f"{_predictive_epoch(rho)}.**",
        "",
        "| warm-up | " + " | ".join(f"{n}: pruned / mistakes / epochs saved" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for w in range(1, min(len(r) for r in replays.values()) + 1):
        cells = [_cell(replays[n][w - 1]) for n in names]
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Spearman ρ between the validation −ELBO at each epoch and the final objective:",
        "",
        "| epoch | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for e in range(min(len(r) for r in rho.values())):
        lines.append(f"| {e + 1} | " + " | ".join(f"{rho[n][e]:.2f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def _predictive_epoch(rho: dict[str, list[float]], at_least: float = 0.9) -> str:
    epochs = min(len(r) for r in rho.values())
    first = next((e for e in range(epochs) if all(r[e] >= at_least for r in rho.values())), None)
    return "none" if first is None else str(first + 1)


def _cell(r: Replay) -> str:
    mistakes = (
        f"{len(r.mistakes)} (trials {', '.join(map(str, r.mistakes))})" if r.mistakes else "0"
    )
    return f"{len(r.pruned)} / {mistakes} / {r.epochs_saved:.0%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report.pruning", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--study", action="append", required=True, help="an unpruned study")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    parser.add_argument("--startup", type=int, default=5, help="study.pruner_startup_trials")
    parser.add_argument("--out", default="benchmarks/PRUNING.md")
    return run_parsed(parser, argv, measure)


if __name__ == "__main__":
    raise SystemExit(main())
