"""The evaluator's rows of python -m bench.perf: seconds of the -ELBO and of the IW bound in each
precision, eager or compiled, and each one's nll against fp32 eager on the same weights and noise
(the same seed before each: the same draws of eps)."""

import time
from dataclasses import dataclass

import torch

from bench.data.dataset import Dataset
from bench.evaluation.estimators.iw import iw_terms, rows_per_chunk
from bench.evaluation.evaluator import elbo_parts
from bench.perf.machine import timed
from bench.runtime.precision import autocast, native_bf16
from models.base import LatentModel
from models.kernels import compiled_kernels

MODES = {  # name: (precision, compiled kernels)
    "fp32": ("fp32", False),
    "fp32 compiled": ("fp32", True),
    "bf16": ("bf16", False),
    "bf16 compiled": ("bf16", True),
}


@dataclass
class EvalRow:
    name: str
    seconds: float
    warmup: float | None = None  # the untimed first call on two examples: a compile, if any
    nll: float | None = None
    delta: float | None = None  # nll minus fp32 eager's, same weights and noise
    delta_se: float | None = None


def modes(device: torch.device) -> dict[str, tuple[str, bool]]:
    """Every mode, less bf16 where the hardware would only emulate it."""
    return {n: m for n, m in MODES.items() if m[0] == "fp32" or native_bf16(device)}


def evaluator_rows(
    model: LatentModel, data: Dataset, ks: list[int], rounds: int = 2
) -> list[EvalRow]:
    """Each k: every mode in turn, `rounds` times over (A B C D A B C D); each row keeps its
    fastest round, the least disturbed by whatever else shares the machine."""
    model.eval()
    x, y = data.test_x, data.test.labels
    rows = [EvalRow("-ELBO (1 sample)", timed(lambda: elbo_parts(model, x, y))[1])]
    for k in ks:
        runs: dict[str, list] = {name: [] for name in modes(x.device)}
        for _ in range(rounds):
            for name, (precision, compiled) in modes(x.device).items():
                runs[name].append(iw_nll(model, x, y, k, precision, compiled))
                print(f"IW k={k}, {name}: {runs[name][-1][1]:.1f} s", flush=True)
        base = runs["fp32"][0][0]
        for name, measured in runs.items():
            seconds = min(m[1] for m in measured)
            rows.append(
                _row(f"IW bound, k={k}, {name}", seconds, measured[0][2], measured[0][0], base)
            )
    return rows


def iw_nll(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor, k: int, precision: str, compiled: bool
) -> tuple[torch.Tensor, float, float]:
    """Per-example nll, seconds, and the seconds of a first call on two examples (a compile)."""
    rows = rows_per_chunk("auto", x.device)
    with autocast(precision, x.device), compiled_kernels(compiled):
        started = time.perf_counter()
        iw_terms(model, x[:2], y[:2], k, rows)
        warmup = time.perf_counter() - started
        torch.manual_seed(0)
        terms, seconds = timed(lambda: iw_terms(model, x, y, k, rows))
    return -terms["log_px"], seconds, warmup


def _row(
    name: str, seconds: float, warmup: float, nll: torch.Tensor, base: torch.Tensor
) -> EvalRow:
    delta = nll - base
    se = float(delta.std() / len(delta) ** 0.5)
    return EvalRow(name, seconds, warmup, float(nll.mean()), float(delta.mean()), se)
