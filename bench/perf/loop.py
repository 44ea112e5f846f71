"""python -m bench.perf: the harness's training loop and evaluator against the reference loop.

The reference is the loop of pytorch/examples' vae/main.py (`bench.perf.reference`), given the
harness's data: the same training images, dynamically binarized in its transform.
Both run in this process, alternated (A B A B ...), one seed per pair.
"""

import argparse
import statistics
import tempfile
from functools import partial
from pathlib import Path

from bench.cli import run_parsed
from bench.config import load_config
from bench.data import TORCHVISION_CLASSES, Dataset, load
from bench.estimators.iw import iw_terms, rows_per_chunk
from bench.evaluate import elbo_parts
from bench.job import build_model
from bench.perf.machine import machine, timed
from bench.perf.reference import reference_loader, reference_loop
from bench.train import pick_device, train


def main_benchmark(args: argparse.Namespace) -> None:
    overrides = [f"data={args.data}", f"trainer.epochs={args.epochs}", *args.overrides]
    cfg = load_config(overrides + ([f"data.root={args.root}"] if args.root else []))
    device = pick_device(cfg.trainer.device)
    data = load(cfg.data, device)
    loader = reference_loader(cfg, data, device)
    samples = args.epochs * len(data.train)
    rows: dict[str, list] = {"reference": [], "harness": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            reference = partial(reference_loop, loader, args.epochs, seed, Path(tmp), device)
            losses, seconds = timed(reference)
            rows["reference"].append((seed, samples / seconds, losses))
            model, (losses, seconds) = _harness_run(cfg, data, seed)
            rows["harness"].append((seed, samples / seconds, losses))
            for name in rows:
                _, speed, losses = rows[name][-1]
                print(f"{name:<9} seed {seed}: {speed:.0f} samples/s {_fmt(losses)}", flush=True)
    evaluator = _evaluator_timings(model, data, args.k, rows_per_chunk("auto", device))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(_results(args, data, rows, evaluator))
    print(f"results: {args.out}")


def _harness_run(cfg, data: Dataset, seed: int):
    model = build_model(cfg.model, data, seed).to(data.train.levels.device)
    trainer = cfg.trainer.copy()
    trainer.seed = seed
    history, seconds = timed(partial(train, model, data, trainer, progress=False))
    return model, ([h["train/neg_elbo"] for h in history], seconds)


def _evaluator_timings(model, data: Dataset, ks: list[int], rows: int) -> dict[str, float]:
    model.eval()
    x, y = data.test_x, data.test.labels
    times = {"-ELBO (1 sample)": timed(lambda: elbo_parts(model, x, y))[1]}
    for k in ks:
        times[f"IW bound, k={k}"] = timed(partial(iw_terms, model, x, y, k, rows))[1]
        print(f"IW k={k}: {times[f'IW bound, k={k}']:.1f} s", flush=True)
    return times


def _results(args, data: Dataset, rows, evaluator) -> str:
    ref = statistics.median(r[1] for r in rows["reference"])
    ours = statistics.median(r[1] for r in rows["harness"])
    lines = [
        "# Benchmark: training loop and evaluator",
        "",
        f"Command: `python -m bench.perf {' '.join(args.argv)}`".rstrip() + "  ",
        machine(data.train.levels.device),
        "",
        f"Data: {data.name}, {len(data.train)} training images, dynamically binarized; network "
        "784-400-20, Bernoulli decoder, batch 128, Adam 1e-3. Reference: pytorch/examples' VAE "
        "loop (torchvision dataset + ToTensor + bernoulli transform, DataLoader with shuffle and "
        "default workers, separate mu/logvar heads, sigmoid + summed binary_cross_entropy, default "
        "Adam, a sample grid saved per epoch). Harness: `bench.train.train` (tensor-resident data, "
        "logits BCE, fused mu/logvar head, fused Adam, denormals flushed, a validation ELBO per "
        "epoch included). Runs alternate reference/harness, one seed per pair "
        f"({len(args.seeds)} pairs).",
        "",
        "| loop | median samples/s | ratio | "
        + " | ".join(f"loss epoch {e + 1}" for e in range(args.epochs))
        + " |",
        "|---|---|---|" + "---|" * args.epochs,
    ]
    for name, median in (("reference", ref), ("harness", ours)):
        per_epoch = [statistics.mean(r[2][e] for r in rows[name]) for e in range(args.epochs)]
        lines.append(
            f"| {name} | {median:.0f} | {median / ref:.2f}× | "
            + " | ".join(f"{v:.2f}" for v in per_epoch)
            + " |"
        )
    gap = [
        abs(a[2][-1] - b[2][-1]) for a, b in zip(rows["reference"], rows["harness"], strict=True)
    ]
    lines += [
        "",
        "Loss = mean training −ELBO per example over the epoch (nats), "
        f"mean over seeds {list(args.seeds)}. "
        f"Epoch-{args.epochs} difference per seed: "
        + ", ".join(f"{g:.2f}" for g in gap)
        + " nats.",
        "",
        f"Evaluator on the {len(data.test)} test images (float32 model, logsumexp in float64):",
        "",
        "| evaluation | seconds | vs −ELBO |",
        "|---|---|---|",
    ]
    base = evaluator["-ELBO (1 sample)"]
    lines += [f"| {name} | {s:.2f} | {s / base:.0f}× |" for name, s in evaluator.items()]
    return "\n".join(lines) + "\n"


def _fmt(losses: list[float]) -> str:
    return "loss " + " ".join(f"{v:.2f}" for v in losses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", default="fashion-mnist", choices=sorted(TORCHVISION_CLASSES))
    parser.add_argument("--root", help="data.root for the dataset (default: the config's)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--out", default="benchmarks/RESULTS.md")
    parser.add_argument(
        "overrides", nargs="*", help="more config overrides, e.g. data.val_size=100"
    )
    return run_parsed(parser, argv, main_benchmark)
