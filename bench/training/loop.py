"""The one training loop: every variant trains through `LatentModel.loss_parts`."""

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from tqdm import tqdm

from bench.data.dataset import Dataset
from bench.errors import BenchError
from bench.evaluation.evaluator import elbo_parts, loss_part_sums
from bench.runtime.faults import kill_point
from bench.runtime.precision import autocast
from bench.signals import deferred, raise_if_interrupted
from bench.training.checkpoint import Checkpointing, TrainingParts
from bench.training.schedules import EarlyStopping, kl_weight, lr_schedule
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


VALIDATION_STREAM = 7919  # offset of the validation noise's seed from the training seed


class History(list):
    """Per-epoch `train/*` and `val/*` means (nats per example); `best_epoch`: the epoch whose
    weights the model holds after training (the best validation epoch with early stopping,
    else the last)."""

    best_epoch: int = 0


def train(
    model: LatentModel,
    data: Dataset,
    cfg: Any,
    on_epoch: EpochCallback | None = None,
    progress: bool | None = None,
    checkpoint: Checkpointing | None = None,
    resume: dict[str, Any] | None = None,
) -> History:
    """Train for at most `cfg.epochs`: the regularizer's weight warmed up over
    `cfg.warmup_epochs`, the learning rate on `cfg.lr_schedule`, stopped after `cfg.patience`
    epochs without a better validation -ELBO (the objective where there is none: ae's recon, the
    seed's BCE loss), the best
    epoch's weights restored.

    `progress=None` shows a bar only on a terminal. `checkpoint` is handed the training state
    at the end of an epoch when due, and, once it has been handed one, at training's end (marked
    trained); `resume`, such a state, goes on from its epoch with the numbers an uninterrupted run
    has (from a trained one: no epoch more). Raises DivergedError on a non-finite loss.
    """
    torch.manual_seed(cfg.seed)
    device = data.train.levels.device
    loss_parts = compiled(model, compile_mode(cfg.compile, device, steps(cfg, len(data.train))))
    torch.set_flush_denormal(True)  # Adam's moments go subnormal from epoch 2 and slow every step
    generator = torch.Generator(device).manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=True)
    schedule, stopping = lr_schedule(optimizer, cfg), EarlyStopping(cfg.patience, cfg.warmup_epochs)
    precision = partial(autocast, cfg.precision, device)
    history = History()
    parts = TrainingParts(model, optimizer, schedule, stopping, history, generator)
    first = 1 if resume is None else parts.restore(resume)
    last = first - 1 if resume is not None and resume.get("trained") else cfg.epochs
    epochs, quiet = range(first, last + 1), _quiet(progress)
    bar = tqdm(epochs, "train", cfg.epochs, unit="epoch", initial=first - 1, disable=quiet)
    epoch = first - 1  # a run resumed at its last epoch runs none
    for epoch in bar:
        model.train()
        run = Steps(loss_parts, optimizer, precision, kl_weight(epoch, cfg.warmup_epochs))
        sums = _epoch(run, data, generator, cfg.batch_size)
        metrics = {f"train/{name}": float(total) / len(data.train) for name, total in sums.items()}
        metrics |= {"train/kl_weight": run.kl_weight, "train/lr": schedule.get_last_lr()[0]}
        _check_finite(metrics, epoch)
        with precision():
            val = validation_elbo(model, data, cfg.seed)
        metrics |= {f"val/{name}": value for name, value in val.items()}
        history.append(metrics)
        schedule.step()
        bar.set_postfix(objective=f"{metrics['train/objective']:.2f}")
        if on_epoch is not None:
            with deferred():  # it writes to the tracking and study stores
                on_epoch(epoch, metrics)
        if stopping.update(epoch, val.get("neg_elbo", val["objective"]), model):
            break
        if checkpoint is not None and checkpoint.due():
            with deferred():
                checkpoint(parts.state(epoch))
            kill_point("train:checkpointed")
    if checkpoint is not None and checkpoint.written and epoch >= first:
        with deferred():  # the evaluation, killed, is then all a resume has to do again
            checkpoint(parts.state(epoch, trained=True))
    history.best_epoch = stopping.restore(model, epoch)
    return history


def validation_elbo(model: LatentModel, data: Dataset, seed: int) -> dict[str, float]:
    """The validation split's loss parts, one sample each, drawn with the same noise every epoch
    (common random numbers: epochs compare on the same draws, and early stopping's best is
    reproducible); the training stream is left as it was."""
    device = data.val_x.device
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + VALIDATION_STREAM)
        return elbo_parts(model, data.val_x, data.val.labels)


@dataclass
class Steps:
    """How one epoch's steps run: the (maybe compiled) loss, the optimizer, the precision
    context of the forward pass, and the warm-up's weight on the regularizer."""

    loss_parts: Callable[[torch.Tensor, torch.Tensor], LossParts]
    optimizer: torch.optim.Optimizer
    precision: Callable[[], AbstractContextManager]
    kl_weight: float = 1.0

    def objective(self, parts: LossParts) -> torch.Tensor:
        """recon + weight x (objective - recon): the regularizer (KL, penalty, the IWAE's
        KL-minus-tightening) weighted; the objective itself at weight 1."""
        if self.kl_weight == 1.0:
            return parts.objective
        return parts.recon + self.kl_weight * (parts.objective - parts.recon)


def _epoch(
    steps: Steps, data: Dataset, generator: torch.Generator, batch_size: int
) -> dict[str, torch.Tensor]:
    """One pass over a fresh permutation, each batch binarized (or dequantized) as it is taken;
    sums stay on the device (no sync per step). The
    forward pass runs in `steps.precision`, the backward pass, as autocast recommends, outside
    it. The sums are of the unweighted parts."""
    y = data.train.labels
    perm = torch.randperm(len(y), generator=generator, device=y.device)
    sums: dict[str, torch.Tensor] = {}
    for idx in perm.split(batch_size):
        raise_if_interrupted()
        x = data.train_batch(idx, generator)
        with steps.precision():
            parts = steps.loss_parts(x, y[idx])
        steps.optimizer.zero_grad(set_to_none=True)
        steps.objective(parts).mean().backward()
        steps.optimizer.step()
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
