"""The importance-weighted bound (Burda et al. 2016), logsumexp in float64, chunked over rows."""

import math

import torch

from bench.errors import BenchError
from bench.runtime.progress import progress
from bench.signals import raise_if_interrupted
from models.base import LatentModel
from models.posterior import Posterior

Params = tuple[torch.Tensor, ...]  # a posterior's per-example tensors (models.posterior)


def log_weights(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor | None, q: Posterior, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """ln p(x|z_i) + ln p(z_i) - ln q(z_i|x) and ln p(x|z_i) for z_i ~ q, (k, B)."""
    z, log_q = q.rsample(k)
    log_px_z = -model.neg_log_prob_samples(z, y, x)
    return log_px_z + model.log_prior(z) - log_q, log_px_z


def prefix_sizes(k: int) -> list[int]:
    """1, 10, 100, ... below k, then k: the sample counts at which the bound is also reported."""
    return [10**i for i in range(int(math.log10(k)) + 1) if 10**i < k] + [k]


@torch.no_grad()
def iw_terms(
    model: LatentModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    k: int,
    rows_per_chunk: int = 2048,
    proposal: Params | None = None,
) -> dict[str, torch.Tensor]:
    """Per-example float64 `log_px` (the IW-k bound), `recon` (mean over the k samples), `kl`
    (closed form where there is one, else the mean of ln q - ln p(z) over the same k samples),
    and `log_px_at_k` (len(prefix_sizes(k)), N): the bound from the first 1, 10, ... of the same
    samples (nested prefixes: no extra decoder passes). The proposal is the encoder's q unless
    its parameters (models.posterior) are given for every example of x."""
    batch = max(1, rows_per_chunk // min(k, rows_per_chunk))
    out: dict[str, list[torch.Tensor]] = {"log_px_at_k": [], "recon": [], "kl": []}
    with progress(len(x), f"IW bound (k={k})", "example") as bar:
        for start in range(0, len(x), batch):
            rows = slice(start, start + batch)
            yb = None if y is None else y[rows]
            params = (
                model.variational_params(x[rows], yb)
                if proposal is None
                else tuple(t[rows] for t in proposal)
            )
            for name, value in _batch_terms(model, x[rows], yb, params, k, rows_per_chunk).items():
                out[name].append(value)
            bar.update(len(params[0]))
    terms = {"log_px_at_k": torch.cat(out["log_px_at_k"], 1)}
    terms |= {name: torch.cat(out[name]) for name in ("recon", "kl")}
    terms["log_px"] = terms["log_px_at_k"][-1]
    return terms


def _batch_terms(
    model: LatentModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    params: Params,
    k: int,
    rows_per_chunk: int,
) -> dict[str, torch.Tensor]:
    """iw_terms of one batch of examples, its k samples drawn a chunk at a time."""
    samples, sizes = min(k, rows_per_chunk), prefix_sizes(k)
    q = model.posterior(params, y)
    running = torch.full((len(params[0]),), -math.inf, dtype=torch.float64, device=x.device)
    at_k, recon_sum, kl_sum = [], 0.0, 0.0
    for done in range(0, k, samples):
        raise_if_interrupted()
        n = min(samples, k - done)
        lw, log_px_z = _fitting(log_weights, rows_per_chunk, model, x, y, q, n)
        lw = lw.double()
        at_k += [
            torch.logaddexp(running, torch.logsumexp(lw[: size - done], 0)) - math.log(size)
            for size in sizes
            if done < size <= done + n
        ]
        running = torch.logaddexp(running, torch.logsumexp(lw, 0))
        recon_sum = recon_sum - log_px_z.double().sum(0)
        kl_sum = kl_sum + (log_px_z.double() - lw).sum(0)  # ln q - ln p(z)
    exact_kl = model.analytic_kl(q)
    return {
        "log_px_at_k": torch.stack(at_k),
        "recon": recon_sum / k,
        "kl": kl_sum / k if exact_kl is None else exact_kl.double(),
    }


def _fitting(compute, rows_per_chunk: int, *args):
    """`compute(*args)`; a chunk the device's memory cannot hold is one line saying so."""
    try:
        return compute(*args)
    except torch.OutOfMemoryError:
        raise BenchError(
            f"the IW bound's chunks of eval.rows_per_chunk={rows_per_chunk} rows (k samples x "
            "examples) do not fit in the device's memory: set a smaller eval.rows_per_chunk"
        ) from None


def rows_per_chunk(setting: int | str, device: torch.device) -> int:
    if setting == "auto":
        return 131072 if device.type == "cuda" else 2048
    return int(setting)
