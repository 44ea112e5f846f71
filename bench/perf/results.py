"""benchmarks/RESULTS.md from python -m bench.perf's measurements."""

import statistics

import torch

from bench.data.dataset import Dataset
from bench.perf.machine import machine
from bench.runtime.precision import cpuinfo, native_bf16

SETUP = (
    "Network 784-400-20, Bernoulli decoder, batch 128, Adam 1e-3. Reference: pytorch/examples' "
    "VAE loop (torchvision dataset + ToTensor + bernoulli transform, DataLoader with shuffle and "
    "default workers, separate mu/logvar heads, sigmoid + summed binary_cross_entropy, default "
    "Adam, a sample grid saved per epoch). Harness: `bench.training.loop.train` (tensor-resident "
    "data, logits BCE, fused mu/logvar head, fused Adam, denormals flushed, a validation ELBO per "
    "epoch included) with `trainer.precision` and `trainer.compile` as the row says."
)


TITLE = (
    "# Benchmark: training loop and evaluator\n\n"
    "One block per device, each written by one run of `python -m bench.perf --device D` "
    "(a run rewrites only its own block). Speeds compare only inside a block: same machine, "
    "same run."
)


def device_heading(device) -> str:
    if device.type == "cuda":
        return f"## On the GPU: {torch.cuda.get_device_name(device)}"
    return f"## On the CPU: {cpuinfo('model name') or 'unknown CPU'}"


def results(args, data: Dataset, runs: dict, sections: dict) -> str:
    """The device's block of benchmarks/RESULTS.md."""
    device = data.train.levels.device
    lines = [
        device_heading(device),
        "",
        f"Command: `python -m bench.perf {' '.join(args.argv)}`".rstrip() + "  ",
        machine(device) + "  ",
        _bf16_line(device),
        "",
        f"Data: {data.name}, {len(data.train)} training images, dynamically binarized. {SETUP}",
        "",
        *_training(args, data, runs),
        "",
        *_evaluator(data, sections["evaluator"]),
    ]
    if "delta" in sections:
        lines += ["", *_delta(*sections["delta"])]
    lines += [
        "",
        f"### Where one epoch goes (harness fp32, eager; {data.name}, epoch 2 of 2, "
        "torch.profiler)",
        "",
        sections["profile"],
    ]
    return "\n".join(lines) + "\n"


def _bf16_line(device) -> str:
    if native_bf16(device):
        return "bf16: native on this device (bf16 rows measured)."
    if device.type == "cuda":
        return "bf16: not native on this GPU: the bf16 rows are not applicable."
    return "bf16: not native here (no avx512_bf16 or AMX): the bf16 rows are not applicable."


def _training(args, data: Dataset, runs: dict) -> list[str]:
    epochs = range(args.epochs)
    speed = {name: _steady_speed(r, len(data.train)) for name, r in runs.items()}
    lines = [
        "### Training",
        "",
        f"Samples/s: the median over seeds {list(args.seeds)} of each run's median epoch "
        f"(epochs 2-{args.epochs} when there are several: the first holds a compile). Loss: the "
        "mean training −ELBO per example over each epoch (nats), mean over seeds.",
        "",
        "| loop | samples/s | ratio | first epoch s | "
        + " | ".join(f"loss epoch {e + 1}" for e in epochs)
        + " |",
        "|---|---|---|---|" + "---|" * args.epochs,
    ]
    for name, r in runs.items():
        first = statistics.median(s[0] for s in r.seconds)
        losses = [statistics.mean(seed[e] for seed in r.losses) for e in epochs]
        lines.append(
            f"| {name} | {speed[name]:.0f} | {speed[name] / speed['reference']:.2f}× | "
            f"{first:.2f} | " + " | ".join(f"{v:.2f}" for v in losses) + " |"
        )
    lines += ["", f"Epoch-{args.epochs} loss minus the reference's, per seed:", ""]
    ref = [seed[-1] for seed in runs["reference"].losses]
    for name, r in runs.items():
        if name != "reference":
            gaps = ", ".join(f"{s[-1] - b:+.2f}" for s, b in zip(r.losses, ref, strict=True))
            lines.append(f"- {name}: {gaps} nats")
    return lines


def _steady_speed(runs, n_train: int) -> float:
    per_seed = [statistics.median(s[1:] or s) for s in runs.seconds]
    return n_train / statistics.median(per_seed)


def _evaluator(data: Dataset, rows: list) -> list[str]:
    base = rows[0].seconds
    lines = [
        "### Evaluator",
        "",
        f"On the {len(data.test)} test images with the harness fp32 model of the last seed; "
        "logsumexp in float64. Seconds: the fastest of the rounds (the modes alternate). Δ nll: "
        "minus fp32 eager's, on the same weights and noise, ± its paired SE. Warm-up: an "
        "untimed first call on two images (holds the compile, if any).",
        "",
        "| evaluation | seconds | vs −ELBO | warm-up s | nll | Δ nll |",
        "|---|---|---|---|---|---|",
    ]
    return lines + [_eval_row(row, base) for row in rows]


def _eval_row(row, base: float) -> str:
    if row.nll is None:
        return f"| {row.name} | {row.seconds:.2f} | 1× | | | |"
    return (
        f"| {row.name} | {row.seconds:.2f} | {row.seconds / base:.0f}× | {row.warmup:.2f} | "
        f"{row.nll:.3f} | {row.delta:+.4f} ± {row.delta_se:.4f} |"
    )


def _delta(data: Dataset, epochs: int, rows: list) -> list[str]:
    return [
        f"#### The same on {data.name} ({len(data.test)} test images; vae trained {epochs} epochs)",
        "",
        "| evaluation | seconds | warm-up s | nll | Δ nll |",
        "|---|---|---|---|---|",
        *(
            f"| {r.name} | {r.seconds:.2f} | {r.warmup:.2f} | {r.nll:.3f} | "
            f"{r.delta:+.4f} ± {r.delta_se:.4f} |"
            for r in rows
        ),
    ]
