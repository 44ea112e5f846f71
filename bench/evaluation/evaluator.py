"""Test-split evaluation in nats per example, each mean with its standard error: recon, KL,
-ELBO, the importance-weighted nll (and at k = 1, 10, 100, ...), where the data's density is known
its entropy and the run's excess over it, the gap decomposition on a fixed subset, and the
certified rung below the IW bound (bench.evaluation.certified)."""

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from bench.data.dataset import Dataset
from bench.evaluation.certified import (
    CertifiedSettings,
    add_certified,
    chain_settings,
    label_log_prior,
)
from bench.evaluation.estimators.gaps import decompose
from bench.evaluation.estimators.iw import iw_terms, prefix_sizes
from bench.evaluation.estimators.optimal_q import Search
from bench.evaluation.result import Evaluation, padded
from bench.runtime.precision import autocast
from models.base import LatentModel
from models.kernels import compiled_kernels
from models.likelihood import Gaussian, Likelihood


@dataclass(frozen=True)
class EvalSettings:
    k: int = 1000
    rows_per_chunk: int = 2048
    active_units_threshold: float = 0.01
    gap_examples: int = 0  # the first N test examples get the gap decomposition; 0: none
    search: Search = Search()
    precision: str = "fp32"  # bench.runtime.precision
    compile: bool = False  # the likelihood's elementwise kernels compiled (models.kernels)
    certified: CertifiedSettings = CertifiedSettings()

    @classmethod
    def from_config(cls, cfg: Any) -> "EvalSettings":
        """From a resolved `eval` node (no `auto` left: see bench.job.resolved)."""
        return cls(
            k=int(cfg.k),
            rows_per_chunk=int(cfg.rows_per_chunk),
            active_units_threshold=float(cfg.active_units_threshold),
            gap_examples=int(cfg.gap_examples),
            search=Search(**cfg.gap_search),
            precision=str(cfg.precision),
            compile=bool(cfg.compile),
            certified=CertifiedSettings(
                ais=chain_settings(cfg.ais),
                ais_examples=int(cfg.ais.examples),
                bdmc_examples=int(cfg.ais.bdmc_examples),
                exact_examples=int(cfg.exact_examples),
            ),
        )


# Compiled, the likelihood's per-pixel sums are one pass instead of ~8: the IW bound of
# Fashion-MNIST's test split (7.8e9 elements at k=1000) took 52 s against 68 s eager (AMD EPYC
# Zen 4, 2 threads; benchmarks/RESULTS.md). The compile costs ~14 s the first time on a machine,
# ~0.3 s from Inductor's disk cache after that: from 1e9 elements (k x examples x pixels) on it
# pays; digits at k=1000 (2.3e7) stays eager.
AUTO_COMPILE_MIN_ELEMENTS = 10**9


def compile_pays(elements: int) -> bool:
    return elements >= AUTO_COMPILE_MIN_ELEMENTS


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
    if parts.neg_elbo is not None:
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


def bits_per_dim(nll: float, data: Dataset, likelihood: Likelihood) -> float | None:
    """A discrete likelihood (Bernoulli on binary draws, the discretized logistic on grey
    levels): exactly nll/(D ln 2). A density on dequantized levels (Gaussian, continuous
    Bernoulli): it bounds the discrete likelihood after adding D ln L (bin width 1/L).
    Continuous data (a density on R^D), mismatched pairs and a loss that is not a likelihood:
    None."""
    if not likelihood.normalized:
        return None
    d, grey = data.x_dim, not data.is_binary and not data.is_continuous
    if (likelihood.takes == "binary" and data.is_binary) or (likelihood.takes == "levels" and grey):
        return nll / (d * math.log(2))
    if likelihood.takes == "dequantized" and grey:
        return (nll + d * math.log(data.n_levels)) / (d * math.log(2))
    return None


@torch.no_grad()
def evaluate(
    model: LatentModel, data: Dataset, settings: EvalSettings, split: str = "test"
) -> Evaluation:
    """Metrics on the test (or val) split; one that does not apply is left out, never zero.
    The per-example vectors, nll at each k and the gap decomposition: test split only."""
    model.eval()
    x, y = data.split_x(split)
    with autocast(settings.precision, x.device), compiled_kernels(settings.compile):
        return _evaluate(model, data, settings, split, x, y)


def _evaluate(
    model: LatentModel,
    data: Dataset,
    settings: EvalSettings,
    split: str,
    x: torch.Tensor,
    y: torch.Tensor,
) -> Evaluation:
    result = Evaluation(
        {"active_units": active_units(model, x, y, settings.active_units_threshold)}
    )
    neg_log_p_data = data.neg_log_p_data(split)
    if neg_log_p_data is not None:
        result.add("neg_log_p_data", neg_log_p_data, "data_entropy")
    if not model.bounds_likelihood:
        _add_loss(result, model, data, x, y)
        return _test_only(result, split)
    started = time.perf_counter()
    terms = iw_terms(model, x, y, settings.k, settings.rows_per_chunk)
    _add_recon(result, terms["recon"], model, data)
    result.add("kl", terms["kl"])
    neg_elbo, log_px_at_k = terms["recon"] + terms["kl"], terms["log_px_at_k"]
    if model.conditional:
        result.add("neg_elbo_conditional", neg_elbo)
        result.add("nll_conditional", -terms["log_px"])
        neg_elbo, log_px_at_k = _marginal_over_labels(model, data, x, settings)
    result.metrics["iw_seconds"] = time.perf_counter() - started
    _add_bound(result, neg_elbo, -log_px_at_k, settings.k, data, model)
    if split == "test" and settings.gap_examples > 0:
        _add_gaps(result, model, x, y, terms, settings)
    if split == "test":
        add_certified(result, model, data, x, y, settings.certified, settings.rows_per_chunk)
    return _test_only(result, split)


def _add_loss(
    result: Evaluation, model: LatentModel, data: Dataset, x: torch.Tensor, y: torch.Tensor
) -> None:
    """What a model that bounds no likelihood has: a deterministic encoder's recon at its code;
    under a loss that is not a likelihood (the seed's BCE on grey levels) recon, KL and their
    sum, the `loss`, with one reparameterized sample per example, as the seed reports it."""
    if not model.stochastic:
        recon = model.likelihood.neg_log_prob(model.decode(model.encode(x, y)[0], y), x).double()
        _add_recon(result, recon, model, data)
        return
    parts = [model.loss_parts(x[i : i + 1000], y[i : i + 1000]) for i in range(0, len(x), 1000)]
    _add_recon(result, torch.cat([p.recon for p in parts]), model, data)
    result.add("kl", torch.cat([p.kl for p in parts]))
    result.add("loss", torch.cat([p.recon + p.kl for p in parts]))


def _add_recon(result: Evaluation, recon: torch.Tensor, model: LatentModel, data: Dataset) -> None:
    """recon, and for a Gaussian decoder the sigma^2 that would maximize it (the per-pixel mean
    squared error under q): how far the chosen output variance is from this run's own optimum."""
    result.add("recon", recon)
    if isinstance(model.likelihood, Gaussian):
        optimal = model.likelihood.optimal_variance
        result.metrics["optimal_variance"] = optimal(result.metrics["recon"], data.x_dim)
        scale = 2 * model.likelihood.variance / data.x_dim  # sigma^2* is linear in recon
        result.metrics["optimal_variance_se"] = scale * result.metrics["recon_se"]


def _add_bound(
    result: Evaluation,
    neg_elbo: torch.Tensor,
    nll_at_k: torch.Tensor,
    k: int,
    data: Dataset,
    model: LatentModel,
) -> None:
    """-ELBO, nll (and at each prefix k of the same samples: rows of `nll_at_k`), their gap, and
    where the data's density is known the excess of each over it."""
    result.add("neg_elbo", neg_elbo)
    result.add("nll", nll_at_k[-1])
    result.add_paired("bound_gap", "neg_elbo", "nll")
    result.nll_at_k = {k: float(v.mean()) for k, v in zip(prefix_sizes(k), nll_at_k, strict=True)}
    bpd = bits_per_dim(result.metrics["nll"], data, model.likelihood)
    if bpd is not None:
        result.metrics["bits_per_dim"] = bpd
        # bits/dim is nll/(D ln 2) plus a constant (D ln L for a density): its SE is the nll's
        # scaled, not bpd·se/nll (wrong with the constant, and negative for a negative nll)
        result.metrics["bits_per_dim_se"] = result.metrics["nll_se"] / (data.x_dim * math.log(2))
    if "neg_log_p_data" in result.per_example:
        result.add_paired("excess", "nll", "neg_log_p_data")
        result.add_paired("elbo_excess", "neg_elbo", "neg_log_p_data")


def _add_gaps(
    result: Evaluation,
    model: LatentModel,
    x: torch.Tensor,
    y: torch.Tensor,
    terms: dict[str, torch.Tensor],
    settings: EvalSettings,
) -> None:
    """On the first `gap_examples` test examples; the cvae's conditional on the true label."""
    subset = slice(0, min(settings.gap_examples, len(x)))
    encoder_terms = {name: terms[name][subset] for name in ("recon", "kl", "log_px")}
    labels = y[subset] if model.conditional else None
    gaps = decompose(
        model,
        x[subset],
        labels,
        encoder_terms,
        settings.k,
        settings.rows_per_chunk,
        settings.search,
    )
    result.metrics |= gaps.metrics
    result.per_example["neg_elbo_optimal"] = padded(gaps.neg_elbo_optimal, len(x))
    result.per_example["gap_subset_nll"] = padded(gaps.nll, len(x))
    result.tags["approximation_gap_nll_from"] = gaps.proposal


def _test_only(result: Evaluation, split: str) -> Evaluation:
    """The val split's evaluation ranks trials: its means only."""
    if split != "test":
        result.per_example, result.nll_at_k = {}, {}
    return result


def _marginal_over_labels(
    model: LatentModel, data: Dataset, x: torch.Tensor, settings: EvalSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """-ELBO and ln p(x) (at each prefix k) with the label summed out: ln p(x) = logsumexp_y
    ln p(y) + ln p(x|y), p(y) the training-label frequencies. The ELBO side uses the same sum
    over per-label ELBOs."""
    log_prior = label_log_prior(data)
    elbos, log_pxs = [], []
    for label in range(data.n_classes):
        y = torch.full((len(x),), label, dtype=torch.long, device=x.device)
        terms = iw_terms(model, x, y, settings.k, settings.rows_per_chunk)
        elbos.append(log_prior[label] - terms["recon"] - terms["kl"])
        log_pxs.append(log_prior[label] + terms["log_px_at_k"])
    return -torch.logsumexp(torch.stack(elbos), 0), torch.logsumexp(torch.stack(log_pxs), 0)
