"""What a benchmark ran on, and timings with the GPU's queued work inside them."""

import platform
import time

import torch
from omegaconf import DictConfig

from bench.data.dataset import Dataset
from bench.runtime.precision import cpu_flags, cpuinfo
from bench.tracking.mlflow_runs import PACKAGES, package_version
from bench.training.loop import History, train


def timed(fn):
    """(fn(), seconds), with the GPU's queued work finished inside the timing."""
    synchronize()
    started = time.perf_counter()
    result = fn()
    synchronize()
    return result, time.perf_counter() - started


def timed_training(
    model: torch.nn.Module, data: Dataset, trainer: DictConfig
) -> tuple[History, list[float]]:
    """train() without a progress bar, and each epoch's seconds (the GPU's queued work finished
    inside each)."""
    ends = [time.perf_counter()]

    def epoch_end(*_) -> None:
        synchronize()
        ends.append(time.perf_counter())

    history = train(model, data, trainer, epoch_end, False)
    return history, [b - a for a, b in zip(ends, ends[1:], strict=False)]


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def machine(device: torch.device) -> str:
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (
        f"Machine: {_cpu_name()} ({_simd()}), {torch.get_num_threads()} threads{gpu}, "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}; "
        + ", ".join(f"{p} {package_version(p)}" for p in PACKAGES if p != "vae-bench")
    )


SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _simd() -> str:
    flags = cpu_flags()
    return "flags " + " ".join(f if f in flags else f"no-{f}" for f in SIMD_FLAGS)


def _cpu_name() -> str:
    return cpuinfo("model name") or platform.processor() or "unknown CPU"
