"""Test-split evaluation in nats per example: recon, KL, -ELBO, importance-weighted nll, ..."""

import math

import torch

from bench.data import Dataset
from bench.signals import raise_if_interrupted
from models.base import LOG_2PI, LatentModel, kl_normal, log_normal_std
from models.likelihood import Gaussian


def log_weights(
    model: LatentModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    q: tuple[torch.Tensor, torch.Tensor],
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ln p(x|z_i) + ln p(z_i) - ln q(z_i|x) and ln p(x|z_i) for z_i ~ q = (mu, logvar), (k, B)."""
    mu, logvar = q
    eps = torch.randn(k, *mu.shape, device=mu.device, dtype=mu.dtype)
    z = mu + eps * (0.5 * logvar).exp()
    log_px_z = -model.likelihood.neg_log_prob(model.decode(z, y), x)
    log_qz = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
    return log_px_z + log_normal_std(z) - log_qz, log_px_z


def rows_per_chunk(setting: int | str, device: torch.device) -> int:
    if setting == "auto":
        return 131072 if device.type == "cuda" else 2048
    return int(setting)


@torch.no_grad()
def iw_terms(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor | None, k: int, rows_per_chunk: int = 2048
) -> dict[str, torch.Tensor]:
    """Per-example float64 `log_px` (the IW-k bound), `recon` (mean over the k samples), `kl`."""
    samples = min(k, rows_per_chunk)
    batch = max(1, rows_per_chunk // samples)
    out: dict[str, list[torch.Tensor]] = {"log_px": [], "recon": [], "kl": []}
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        yb = None if y is None else y[start : start + batch]
        q = model.encode(xb, yb)
        lse, recon_sum = [], 0.0
        for done in range(0, k, samples):
            raise_if_interrupted()
            lw, log_px_z = log_weights(model, xb, yb, q, min(samples, k - done))
            lse.append(torch.logsumexp(lw.double(), 0))
            recon_sum = recon_sum - log_px_z.double().sum(0)
        out["log_px"].append(torch.logsumexp(torch.stack(lse), 0) - math.log(k))
        out["recon"].append(recon_sum / k)
        out["kl"].append(kl_normal(*q).double())
    return {name: torch.cat(parts) for name, parts in out.items()}


@torch.no_grad()
def elbo_parts(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> dict[str, float]:
    """Means of the training loss parts over a split, one reparameterized sample each."""
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, len(x), batch_size):
        parts = model.loss_parts(x[start : start + batch_size], y[start : start + batch_size])
        for name, value in loss_part_sums(parts).items():
            sums[name] = sums.get(name, 0) + value
    return {name: float(total) / len(x) for name, total in sums.items()}


def loss_part_sums(parts) -> dict[str, torch.Tensor]:
    sums = {"recon": parts.recon.sum(), "objective": parts.objective.sum()}
    if parts.kl is not None:
        sums["kl"] = parts.kl.sum()
        sums["neg_elbo"] = parts.neg_elbo.sum()
    return sums


@torch.no_grad()
def active_units(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor, threshold: float = 0.01
) -> int:
    """Latent dims whose posterior mean varies over the data: Var_x E_q[z_u] > threshold."""
    mu = torch.cat(
        [model.encode(x[i : i + 4096], y[i : i + 4096])[0] for i in range(0, len(x), 4096)]
    )
    return int((mu.double().var(0, unbiased=False) > threshold).sum())


def bits_per_dim(nll: float, data: Dataset, likelihood: str) -> float | None:
    """Bernoulli on binary data: a discrete likelihood. Gaussian on dequantized levels: the
    density bounds the discrete likelihood after adding D ln L (bin width 1/L). Otherwise None."""
    d = data.x_dim
    if likelihood == "bernoulli" and data.is_binary:
        return nll / (d * math.log(2))
    if likelihood == "gaussian" and not data.is_binary:
        return (nll + d * math.log(data.n_levels)) / (d * math.log(2))
    return None


@torch.no_grad()
def evaluate(
    model: LatentModel,
    data: Dataset,
    k: int,
    rows_per_chunk: int = 2048,
    threshold: float = 0.01,
    split: str = "test",
) -> dict[str, float]:
    """Metrics on the test (or val) split; one that does not apply is left out, never zero."""
    model.eval()
    x, y = data.split_x(split)
    metrics: dict[str, float] = {"active_units": active_units(model, x, y, threshold)}
    if not model.stochastic:
        recon = model.likelihood.neg_log_prob(model.decode(model.encode(x)[0]), x)
        return {**metrics, **_recon_metrics(float(recon.double().mean()), model, data)}
    terms = iw_terms(model, x, y, k, rows_per_chunk)
    metrics |= _recon_metrics(float(terms["recon"].mean()), model, data)
    metrics["kl"] = float(terms["kl"].mean())
    neg_elbo, log_px = terms["recon"] + terms["kl"], terms["log_px"]
    if model.conditional:
        metrics["neg_elbo_conditional"] = float(neg_elbo.mean())
        metrics["nll_conditional"] = float(-log_px.mean())
        neg_elbo, log_px = _marginal_over_labels(model, data, x, k, rows_per_chunk)
    metrics["neg_elbo"] = float(neg_elbo.mean())
    metrics["nll"] = float(-log_px.mean())
    metrics["bound_gap"] = metrics["neg_elbo"] - metrics["nll"]
    bpd = bits_per_dim(metrics["nll"], data, model.likelihood.name)
    if bpd is not None:
        metrics["bits_per_dim"] = bpd
    return metrics


def _recon_metrics(recon: float, model: LatentModel, data: Dataset) -> dict[str, float]:
    """recon, and for a Gaussian decoder the sigma^2 that would maximize it (the per-pixel mean
    squared error under q): how far the chosen output variance is from this run's own optimum."""
    metrics = {"recon": recon}
    if isinstance(model.likelihood, Gaussian):
        metrics["optimal_variance"] = model.likelihood.optimal_variance(recon, data.x_dim)
    return metrics


def _marginal_over_labels(
    model: LatentModel, data: Dataset, x: torch.Tensor, k: int, rows_per_chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """-ELBO and ln p(x) with the label summed out: ln p(x) = logsumexp_y ln p(y) + ln p(x|y),
    p(y) the training-label frequencies. The ELBO side uses the same sum over per-label ELBOs."""
    counts = torch.bincount(data.train.labels, minlength=data.n_classes).double()
    log_prior = (counts / counts.sum()).log()
    elbos, log_pxs = [], []
    for label in range(data.n_classes):
        y = torch.full((len(x),), label, dtype=torch.long, device=x.device)
        terms = iw_terms(model, x, y, k, rows_per_chunk)
        elbos.append(log_prior[label] - terms["recon"] - terms["kl"])
        log_pxs.append(log_prior[label] + terms["log_px"])
    return -torch.logsumexp(torch.stack(elbos), 0), torch.logsumexp(torch.stack(log_pxs), 0)
