"""python -m bench.perf.nets: what each network costs. Training samples/s of every built-in
network on 28×28 grey and 32×32×3 colour images (random 8-bit pixels in an .npz, read by the
files loader; the speed does not depend on them) under the discretized logistic, eager fp32,
compiled, channels_last and bf16 where the hardware has it, each as a ratio to the MLP's eager
fp32 in the same run; and the IW bound's milliseconds per test image at k."""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.cli import run_parsed
from bench.config import load_config
from bench.job import build_model, load_data
from bench.perf.blocks import write_block
from bench.perf.evaluator import iw_nll
from bench.perf.machine import machine, timed_training
from bench.runtime.precision import native_bf16
from bench.training.loop import pick_device
from models.nets import NETS

IMAGES = {"28×28": (28, 28, 1), "32×32×3": (32, 32, 3)}  # H, W, C
MODES = {  # name: (trainer.precision, trainer.compile, channels_last)
    "fp32": ("fp32", "none", False),
    "fp32 compiled": ("fp32", "default", False),
    "fp32 channels_last": ("fp32", "none", True),
    "bf16": ("bf16", "none", False),
    "bf16 compiled": ("bf16", "default", False),
}
TITLE = "# What each network costs (python -m bench.perf.nets)"


def images(folder: Path, shape: tuple[int, int, int], n_train: int, n_test: int) -> Path:
    rng = np.random.default_rng(0)
    path = folder / f"{'x'.join(map(str, shape))}.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
    )
    return path


def samples_per_s(cfg, data, mode: tuple[str, str, bool]) -> float:
    """The second epoch's speed (the first pays for any compile)."""
    model = build_model(cfg, data, 0).to(data.test_x.device)
    if mode[2]:
        model = model.to(memory_format=torch.channels_last)
    trainer = cfg.trainer.copy()
    trainer.precision, trainer.compile = mode[0], mode[1]
    return len(data.train) / timed_training(model, data, trainer)[1][-1]


def iw_ms_per_image(cfg, data, k: int) -> float:
    """fp32 eager, after an untimed call on two images."""
    model = build_model(cfg, data, 0).to(data.test_x.device).eval()
    _, seconds, _ = iw_nll(model, data.test_x, data.test.labels, k, "fp32", False)
    return 1000 * seconds / len(data.test_x)


def rows(args: argparse.Namespace, folder: Path, device: torch.device) -> list[str]:
    modes = {n: MODES[n] for n in args.modes if MODES[n][0] == "fp32" or native_bf16(device)}
    lines = [
        f"| image | net | {' | '.join(f'{m} samples/s (× mlp fp32)' for m in modes)} "
        f"| IW k={args.k} ms/image |",
        "|" + "---|" * (len(modes) + 3),
    ]
    for image, shape in IMAGES.items():
        path = images(folder, shape, args.train, args.test)
        baseline = None
        for net in NETS:
            cfg = load_config(_overrides(path, net, device, args.batch))
            data = load_data(cfg, device)
            cells = []
            for name, mode in modes.items():
                if mode[2] and net == "mlp":
                    cells.append("n/a")
                    continue
                speed = samples_per_s(cfg, data, mode)
                baseline = baseline or speed
                cells.append(f"{speed:,.0f} ({speed / baseline:.2f})")
                print(f"{image} {net} {name}: {speed:,.0f} samples/s", flush=True)
            ms = iw_ms_per_image(cfg, data, args.k)
            lines.append(f"| {image} | {net} | {' | '.join(cells)} | {ms:.2f} |")
    return lines


def _overrides(path: Path, net: str, device: torch.device, batch: int) -> list[str]:
    return [
        "data=files",
        f"data.path={path}",
        "data.binarize=none",
        "data.cache=null",
        "model.likelihood=discretized_logistic",
        f"net={net}",
        "trainer.epochs=2",
        f"trainer.batch_size={batch}",
        f"trainer.device={device.type}",
    ]


def run_benchmark(args: argparse.Namespace) -> None:
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        lines = rows(args, Path(tmp), device)
    default_sizes = ", ".join(
        f"{n} {load_config([f'net={n}']).net.get('channels', 'h_dim 400, 1 hidden layer')}"
        for n in NETS
    )
    body = [
        f"### {device.type.upper()}: {args.train} training and {args.test} test images, batch "
        f"{args.batch}, z_dim 20, default sizes ({default_sizes})",
        "",
        machine(device),
        "",
        *lines,
    ]
    write_block(Path(args.out), f"{device.type}-nets", "\n".join(body), TITLE)
    print(f"results: {args.out} ({device.type}-nets block)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf.nets", description=__doc__)
    parser.add_argument("--train", type=int, default=4096, help="training images per epoch")
    parser.add_argument("--test", type=int, default=256, help="test images of the IW bound")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--out", default="benchmarks/NETS.md")
    return run_parsed(parser, argv, run_benchmark)


if __name__ == "__main__":
    raise SystemExit(main())
