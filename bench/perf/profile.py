"""Where one epoch of the harness's training loop spends its time: torch.profiler over the second
epoch of `bench.training.loop.train` (the first warms allocations; the validation ELBO included)."""

import torch
from torch.profiler import ProfilerActivity, profile

from bench.data.dataset import Dataset
from bench.training.loop import train
from models.base import LatentModel


def epoch_profile(model: LatentModel, data: Dataset, trainer, rows: int = 12) -> str:
    """A markdown table of the ops with the most self time in epoch 2 (trainer.epochs is set
    to 2)."""
    profiler = profile(activities=[ProfilerActivity.CPU, *_gpu(data.train.levels.device)])

    def start_after_first(epoch: int, _metrics: dict[str, float]) -> None:
        if epoch == 1:
            profiler.start()

    trainer = trainer.copy()
    trainer.epochs = 2
    train(model, data, trainer, on_epoch=start_after_first, progress=False)
    profiler.stop()
    return _table(profiler.key_averages(), rows)


def _gpu(device: torch.device) -> list[ProfilerActivity]:
    return [ProfilerActivity.CUDA] if device.type == "cuda" else []


def _table(averages, rows: int) -> str:
    ops = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in averages)
    lines = ["| op | self CPU s | share | calls |", "|---|---|---|---|"]
    for event in ops[:rows]:
        seconds = event.self_cpu_time_total / 1e6
        share = event.self_cpu_time_total / total
        lines.append(f"| `{event.key}` | {seconds:.3f} | {share:.0%} | {event.count} |")
    lines.append(f"| all ops | {total / 1e6:.3f} | 100% | |")
    return "\n".join(lines)
