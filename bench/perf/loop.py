"""python -m bench.perf: the harness's training loop and evaluator against the reference loop.

The reference is the loop of pytorch/examples' vae/main.py (`bench.perf.reference`), given the
harness's data: the same training images, dynamically binarized in its transform. The harness
runs in each precision, eager and compiled. All run in this process, alternated (reference,
then each harness loop), one seed per round; speeds are ratios within this run.
"""

import argparse
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.cli import run_parsed
from bench.config import load_config
from bench.data.dataset import Dataset
from bench.data.named.idx_sets import TORCHVISION_CLASSES
from bench.job import build_model, load_data
from bench.perf.blocks import write_block
from bench.perf.evaluator import evaluator_rows, modes
from bench.perf.machine import timed_training
from bench.perf.profile import epoch_profile
from bench.perf.reference import reference_loader, reference_loop
from bench.perf.results import TITLE, results
from bench.perf.trials import measure, table
from bench.training.loop import pick_device, train

HARNESS = {  # row: trainer settings
    "harness fp32": {"precision": "fp32", "compile": "none"},
    "harness fp32 compiled": {"precision": "fp32", "compile": "default"},
    "harness bf16": {"precision": "bf16", "compile": "none"},
    "harness bf16 compiled": {"precision": "bf16", "compile": "default"},
    "harness fp32 CUDA graphs": {"precision": "fp32", "compile": "reduce-overhead"},
    "harness bf16 CUDA graphs": {"precision": "bf16", "compile": "reduce-overhead"},
}


@dataclass
class LoopRuns:
    """Per seed: the loss and the seconds of each epoch."""

    losses: list[list[float]] = field(default_factory=list)
    seconds: list[list[float]] = field(default_factory=list)

    def add(self, losses: list[float], seconds: list[float]) -> None:
        self.losses.append(losses)
        self.seconds.append(seconds)


def main_benchmark(args: argparse.Namespace) -> None:
    overrides = [f"data={args.data}", f"trainer.epochs={args.epochs}", *args.overrides]
    overrides += [f"trainer.device={args.device}"]
    overrides += [f"data.root={args.root}"] if args.root else []
    cfg = load_config(overrides)
    device = pick_device(cfg.trainer.device)
    data = load_data(cfg, device)
    loops = {n: s for n, s in HARNESS.items() if _applies(s, device)}
    runs = {name: LoopRuns() for name in ["reference", *loops]}
    loader = reference_loader(cfg, data, device)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            runs["reference"].add(*reference_loop(loader, args.epochs, seed, Path(tmp), device))
            _print("reference", seed, runs["reference"], len(data.train))
            for name, settings in loops.items():
                model = _harness_run(cfg, data, seed, settings, runs[name])
                _print(name, seed, runs[name], len(data.train))
                if name == "harness fp32":
                    evaluated = model
    sections = {"evaluator": evaluator_rows(evaluated, data, args.k)}
    if args.delta_data:
        sections["delta"] = _second_dataset_rows(args, device)
    sections["profile"] = epoch_profile(build_model(cfg, data, 0).to(device), data, cfg.trainer)
    write_block(Path(args.out), device.type, results(args, data, runs, sections), TITLE)
    print(f"results: {args.out} ({device.type} block)")
    if args.trials_workers:
        trials_block(args, device)


def trials_block(args: argparse.Namespace, device, extra: tuple[str, ...] = ()) -> None:
    """Trials/hour of the z_dim grid study with study.workers 1 and each of --trials-workers,
    all on `device`, into its own block beside the loop's."""
    on_device = [f"trainer.device={device.type}", *extra]
    seconds = measure([1, *args.trials_workers], args.trials, 1, on_device)
    command = f"python -m bench.perf {' '.join(args.argv)}"
    rows = table(command, args.trials, 1, on_device, seconds, device)
    where = "GPU" if device.type == "cuda" else "CPU"
    body = [f"### Trials per hour on this {where}", "", *rows]
    write_block(Path(args.out), f"{device.type}-trials", "\n".join(body), TITLE)
    print(f"results: {args.out} ({device.type}-trials block)")


def _applies(settings: dict, device) -> bool:
    """bf16 where it is native; CUDA graphs on a GPU."""
    precisions = {precision for precision, _ in modes(device).values()}
    graphs = settings["compile"] == "reduce-overhead"
    return settings["precision"] in precisions and (device.type == "cuda" or not graphs)


def _harness_run(cfg, data: Dataset, seed: int, settings: dict, runs: LoopRuns):
    model = build_model(cfg, data, seed).to(data.train.levels.device)
    trainer = cfg.trainer.copy()
    trainer.seed = seed
    trainer.precision, trainer.compile = settings["precision"], settings["compile"]
    history, seconds = timed_training(model, data, trainer)
    runs.add([h["train/neg_elbo"] for h in history], seconds)
    return model


def _second_dataset_rows(args: argparse.Namespace, device):
    """The IW rows (largest k) for a model trained on a second dataset: Δ nll of each mode."""
    cfg = load_config([f"data={args.delta_data}"])
    data = load_data(cfg, device)
    model = build_model(cfg, data, 0).to(device)
    train(model, data, cfg.trainer, progress=False)
    return data, cfg.trainer.epochs, evaluator_rows(model, data, [max(args.k)])[1:]


def _print(name: str, seed: int, runs: LoopRuns, n_train: int) -> None:
    losses = " ".join(f"{v:.2f}" for v in runs.losses[-1])
    speed = n_train / statistics.median(runs.seconds[-1])
    print(f"{name:<22} seed {seed}: {speed:.0f} samples/s, loss {losses}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", default="fashion-mnist", choices=sorted(TORCHVISION_CLASSES))
    parser.add_argument("--root", help="data.root for the dataset (default: the config's)")
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="trainer.device"
    )
    parser.add_argument(
        "--trials-workers",
        type=int,
        nargs="*",
        default=[],
        help="also trials/hour of the z_dim grid study with study.workers 1 and each of these",
    )
    parser.add_argument("--trials", type=int, default=16, help="grid points of that study")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--delta-data", default="digits", help="second dataset for bf16's Δ nll ('' for none)"
    )
    parser.add_argument("--out", default="benchmarks/RESULTS.md")
    parser.add_argument(
        "overrides", nargs="*", help="more config overrides, e.g. data.val_size=100"
    )
    return run_parsed(parser, argv, main_benchmark)
