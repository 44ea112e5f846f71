"""The one training loop: every variant trains through `LatentModel.loss_parts`."""

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import torch
from tqdm import tqdm

from bench.data import Dataset
from bench.errors import BenchError
from bench.evaluate import elbo_parts, loss_part_sums
from bench.precision import autocast
from bench.signals import raise_if_interrupted
from models.base import LatentModel, LossParts

EpochCallback = Callable[[int, dict[str, float]], None]


class DivergedError(BenchError):
    """The loss became NaN or infinite."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"trainer.device={name} but CUDA is not available here")
    return torch.device(name)


# Compiling costs ~30 s of host time with CUDA graphs; on a GPU it saves (unmeasured here) a
# fraction of a millisecond per step of this small network. On the CPU it costs ~6 s and saves
# ~0.8 ms of a ~5.5 ms step of 784-400-20 at batch 128 (13 %, AMD EPYC Zen 4, 2 threads; fused
# elementwise forward and backward): it pays after ~8k steps, taken with a margin for a cold
# compile cache.
AUTO_COMPILE_MIN_STEPS = {"cuda": 50_000, "cpu": 20_000}


def compile_mode(setting: str, device: torch.device, steps: int) -> str:
    """`auto`: torch.compile for long runs only; on a GPU with CUDA graphs, where launching
    many small kernels dominates a step."""
    if setting != "auto":
        return setting
    if steps < AUTO_COMPILE_MIN_STEPS.get(device.type, math.inf):
        return "none"
    return "reduce-overhead" if device.type == "cuda" else "default"


def compiled(model: LatentModel, mode: str) -> Callable[[torch.Tensor, torch.Tensor], LossParts]:
    if mode == "none":
        return model.loss_parts
    torch._dynamo.reset()  # each run's model is new: past runs' graphs only fill the cache
    return torch.compile(model.loss_parts, mode=mode)


def steps(cfg: Any, n_train: int) -> int:
    return cfg.epochs * math.ceil(n_train / cfg.batch_size)


def train(
    model: LatentModel,
    data: Dataset,
    cfg: Any,
    on_epoch: EpochCallback | None = None,
    progress: bool | None = None,
) -> list[dict[str, float]]:
    """Train for `cfg.epochs`; returns per-epoch `train/*` and `val/*` means (nats per example).

    `progress=None` shows a bar only on a terminal. Raises DivergedError on a non-finite loss.
    """
    torch.manual_seed(cfg.seed)
    device = data.train.levels.device
    loss_parts = compiled(model, compile_mode(cfg.compile, device, steps(cfg, len(data.train))))
    torch.set_flush_denormal(True)  # Adam's moments go subnormal from epoch 2 and slow every step
    generator = torch.Generator(device).manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    precision = partial(autocast, cfg.precision, device)
    history = []
    bar = tqdm(range(1, cfg.epochs + 1), desc="train", unit="epoch", disable=_quiet(progress))
    for epoch in bar:
        model.train()
        sums = _epoch(loss_parts, optimizer, data, generator, cfg.batch_size, precision)
        metrics = {f"train/{name}": float(total) / len(data.train) for name, total in sums.items()}
        _check_finite(metrics, epoch)
        model.eval()
        with precision():
            val = elbo_parts(model, data.val_x, data.val.labels)
        metrics |= {f"val/{name}": value for name, value in val.items()}
        history.append(metrics)
        bar.set_postfix(objective=f"{metrics['train/objective']:.2f}")
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    return history


def _epoch(
    loss_parts: Callable[[torch.Tensor, torch.Tensor], LossParts],
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    generator: torch.Generator,
    batch_size: int,
    precision: Callable[[], AbstractContextManager],
) -> dict[str, torch.Tensor]:
    """One pass over a fresh permutation; sums stay on the device (no sync per step). The
    forward pass runs in `precision`, the backward pass as autocast recommends, outside it."""
    x, y = data.train_x(generator), data.train.labels
    perm = torch.randperm(len(x), generator=generator, device=x.device)
    sums: dict[str, torch.Tensor] = {}
    for idx in perm.split(batch_size):
        raise_if_interrupted()
        with precision():
            parts = loss_parts(x[idx].float(), y[idx])
        optimizer.zero_grad(set_to_none=True)
        parts.objective.mean().backward()
        optimizer.step()
        for name, value in loss_part_sums(parts).items():
            sums[name] = sums.get(name, 0) + value.detach()
    return sums


def _check_finite(metrics: dict[str, float], epoch: int) -> None:
    bad = {k: v for k, v in metrics.items() if not torch.isfinite(torch.tensor(v))}
    if bad:
        shown = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise DivergedError(f"training diverged in epoch {epoch}: non-finite loss ({shown})")


def _quiet(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
