"""python -m bench.perf.variants [OVERRIDES ...]: what each variant costs against the VAE. For
every registered variant that bounds a likelihood, at its configured defaults on one network and
dataset (Hydra overrides, `data=mixture` unless given): the seconds of a training epoch (the
second: the first pays for any warm-up) and of the IW bound on the test images, each as a
ratio to the VAE's in the same run."""

import argparse
from pathlib import Path

from bench.cli import run_parsed
from bench.config import load_config
from bench.data.dataset import Dataset
from bench.job import build_model, load_data
from bench.perf.blocks import write_block
from bench.perf.evaluator import iw_nll
from bench.perf.machine import machine, timed_training
from bench.training.loop import pick_device
from models import LIKELIHOODS, variant, variant_names

TITLE = "# What each variant costs against the VAE (python -m bench.perf.variants)"
BASELINE = "vae"


def bounded_variants(likelihood: str) -> list[str]:
    """The VAE first, then every variant with a stochastic encoder (one that has a bound)."""
    if not LIKELIHOODS[likelihood].normalized:
        return []
    names = [n for n in variant_names() if variant(n).stochastic and n != BASELINE]
    return [BASELINE, *names]


def measure(overrides: list[str], name: str, k: int, data: Dataset) -> tuple[float, float]:
    """(seconds of the second training epoch, seconds of the IW bound on the test split)."""
    cfg = load_config([*overrides, f"model={name}", "trainer.epochs=2"])
    if variant(name).conditional and not data.labelled:
        return float("nan"), float("nan")
    model = build_model(cfg, data, 0).to(data.test_x.device)
    epoch = timed_training(model, data, cfg.trainer)[1][-1]
    _, seconds, _ = iw_nll(model.eval(), data.test_x, data.test.labels, k, "fp32", False)
    return epoch, seconds


def rows(args: argparse.Namespace, data: Dataset) -> list[str]:
    """Every variant on the one dataset (loaded once: the variants share its config)."""
    overrides = [f"trainer.device={data.test_x.device.type}", *args.overrides]
    lines = [
        "| variant | epoch s | × vae | IW bound s (test split) | × vae |",
        "|---|---|---|---|---|",
    ]
    base = None
    for name in bounded_variants(load_config(overrides).model.likelihood):
        epoch, iw = measure(overrides, name, args.k, data)
        base = base or (epoch, iw)
        lines.append(
            f"| {name} | {epoch:.3g} | {epoch / base[0]:.2f} | {iw:.3g} | {iw / base[1]:.2f} |"
        )
        print(f"{name}: epoch {epoch:.2f} s, IW bound {iw:.2f} s", flush=True)
    return lines


def run_benchmark(args: argparse.Namespace) -> None:
    device = pick_device(args.device)
    cfg = load_config(args.overrides)
    data = load_data(cfg, device)
    body = [
        f"### {device.type.upper()}: {cfg.data.name}, {len(data.train)} training and "
        f"{len(data.test)} test images, batch {cfg.trainer.batch_size}, z_dim {cfg.model.z_dim}, "
        f"h_dim {cfg.model.h_dim}, each variant at its config's defaults, IW bound at k={args.k}"
        + (f" (overrides: {' '.join(args.overrides)})" if args.overrides else ""),
        "",
        machine(device),
        "",
        *rows(args, data),
    ]
    key = f"{device.type}-{cfg.data.name}"
    write_block(Path(args.out), key, "\n".join(body), TITLE)
    print(f"results: {args.out} ({key} block)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.variants", description=__doc__)
    parser.add_argument("overrides", nargs="*", default=["data=mixture"])
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/VARIANTS.md")
    return run_parsed(parser, argv, run_benchmark)


if __name__ == "__main__":
    raise SystemExit(main())
