"""python -m bench.perf: the harness's training loop and evaluator against the reference loop.

The reference is the loop of pytorch/examples' vae/main.py: a torchvision dataset through
ToTensor and a DataLoader (shuffle, default workers), two separate mu/logvar heads, a sigmoid
decoder with summed binary_cross_entropy, default Adam, a sample grid saved every epoch. It is
given the harness's data: the same training images, dynamically binarized in its transform.
Both run in this process, alternated (A B A B ...), one seed per pair.
"""

import argparse
import platform
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms
from torchvision.utils import save_image

from bench.cli import run_parsed
from bench.config import load_config
from bench.data import TORCHVISION_CLASSES, Dataset, load
from bench.evaluate import elbo_parts, iw_terms, rows_per_chunk
from bench.job import build_model
from bench.tracking import PACKAGES, package_version
from bench.train import pick_device, train


class ReferenceVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def reference_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def reference_loop(
    loader: DataLoader, epochs: int, seed: int, out: Path, device: torch.device
) -> list[float]:
    """Mean training loss (nats per example) of each epoch."""
    torch.manual_seed(seed)
    torch.set_flush_denormal(False)  # as the tutorial runs; the harness turns it on for itself
    model = ReferenceVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for data, _ in loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = reference_loss(recon, data, mu, logvar)
            loss.backward()
            total += loss.item()
            optimizer.step()
        losses.append(total / len(loader.dataset))
        with torch.no_grad():
            sample = model.decode(torch.randn(64, 20).to(device)).cpu()
            save_image(sample.view(64, 1, 28, 28), out / f"sample_{epoch}.png")
    return losses


def reference_loader(cfg, data: Dataset, device: torch.device) -> DataLoader:
    """The tutorial's pipeline over exactly the harness's training images."""
    root = Path(str(cfg.data.root)).expanduser()
    binarized = transforms.Compose([transforms.ToTensor(), torch.bernoulli])
    full = getattr(datasets, TORCHVISION_CLASSES[cfg.data.name])(
        root, train=True, transform=binarized
    )
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(int(cfg.data.seed)))
    train_ids = perm[int(cfg.data.val_size) :].tolist()
    on_gpu = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    return DataLoader(Subset(full, train_ids), batch_size=128, shuffle=True, **on_gpu)


def timed(fn):
    """(fn(), seconds), with the GPU's queued work finished inside the timing."""
    synchronize()
    started = time.perf_counter()
    result = fn()
    synchronize()
    return result, time.perf_counter() - started


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


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


def machine(device: torch.device) -> str:
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (
        f"Machine: {_cpu_name()}, {torch.get_num_threads()} threads{gpu}, "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}; "
        + ", ".join(f"{p} {package_version(p)}" for p in PACKAGES if p != "vae-bench")
    )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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


if __name__ == "__main__":
    raise SystemExit(main())
