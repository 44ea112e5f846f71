"""Precision is a setting of how the one training loop and the one evaluator run: `fp32`, or
`bf16` matmuls (torch.autocast: bf16 inputs, fp32 accumulation, bf16 outputs) with every
likelihood, KL and logsumexp still in fp32/fp64 (the model casts its encoder and decoder outputs
back to fp32)."""

import contextlib
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run in hardware here (else they are emulated, slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)


def cpu_flags() -> set[str]:
    return set((cpuinfo("flags") or "").split())


def cpuinfo(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo (Linux); None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
