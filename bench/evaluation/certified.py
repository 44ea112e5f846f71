"""The ladder's certified rung, on the first N test examples (the same N for every run of a
dataset): -ln p(x) by annealed importance sampling, its chains checked by BDMC on data simulated
from the model, and for z_dim <= 2 by quadrature; the IW bound's slack against the tightest of
them, and the excess and approximation gap re-split on it.

On the ladder H(data) <= -ln p(x) <= nll_IW <= -ELBO(q*) <= -ELBO(q) the IW bound's slack
(nll_IW - -ln p) sits inside the measured excess (overstating it) and is missing from the measured
approximation gap (understating it): the certified rung moves it from one to the other."""

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bench.data.dataset import Dataset
from bench.evaluation.estimators.ais import AISResult, AISSettings, ais
from bench.evaluation.estimators.quadrature import (
    MAX_Z_DIM,
    Quadrature,
    QuadratureSettings,
    exact_log_px,
)
from bench.evaluation.estimators.stats import paired_difference
from bench.evaluation.result import Evaluation, padded
from models.base import LatentModel

AUTO_CAP = 1000  # the most examples auto picks
# A batched gradient pass on fewer rows (chains x examples) takes about as long as one on this
# many on a CPU: AIS's thousands of sequential passes on a few rows are latency, not arithmetic
# (Intel Xeon, KVM, family 6 model 167, 2 cores: a gradient pass of a 64-400-64 MLP took
# 0.31 ms on 8 rows, 0.66 on 128, 4.3 on 2048; of the 784-300-300-40 gated one 0.70, 2.4, 33)
MIN_ROWS = 128


@dataclass(frozen=True)
class CertifiedSettings:
    ais: AISSettings = AISSettings()
    ais_examples: int = 0  # the first N test examples; 0: no AIS
    bdmc_examples: int = 0  # examples simulated from the model for BDMC; 0: none
    exact_examples: int = 0  # the first N test examples by quadrature (z_dim <= 2); 0: none
    quadrature: QuadratureSettings = QuadratureSettings()


SUBSETS = ("examples", "bdmc_examples")  # eval.ais keys that are not the chains' settings


def chain_settings(ais_cfg: Mapping[str, Any]) -> AISSettings:
    """The chains' settings from an `eval.ais` config node."""
    return AISSettings(**{key: ais_cfg[key] for key in ais_cfg if key not in SUBSETS})


def auto_ais_examples(n_test: int, k: int, ais_settings: AISSettings, n_labels: int = 1) -> int:
    """The most test examples (at most AUTO_CAP) whose AIS, and BDMC on as many simulated ones
    (a forward and a reverse chain each), cost no more decoder passes than the IW bound of the
    test split (a backward pass counted as two forward ones, a pass on fewer than MIN_ROWS rows
    as one on MIN_ROWS); a cvae's AIS and IW bound run once per label. 0 when the chains' floor
    of MIN_ROWS rows does not fit: on small data (digits, the mixture at k = 1000) AIS is off
    unless asked for."""
    rows = n_test * k * n_labels // (ais_settings.passes_per_chain() * (n_labels + 2))
    if rows < MIN_ROWS:
        return 0
    return min(AUTO_CAP, n_test, rows // ais_settings.chains)


def auto_exact_examples(n_test: int, k: int, z_dim: int) -> int:
    """For z_dim <= 2, the most test examples whose quadrature costs no more decoder passes than
    the IW bound of the test split (a cvae's both once per label); 0 above z_dim 2."""
    if z_dim > MAX_Z_DIM:
        return 0
    per_example = QuadratureSettings().passes_per_example(z_dim)
    return min(n_test, n_test * k // per_example)


def add_certified(
    result: Evaluation,
    model: LatentModel,
    data: Dataset,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: CertifiedSettings,
    rows_per_chunk: int,
) -> None:
    """Its metrics and per-example vectors into `result`, which has the IW bound's already."""
    n_ais = min(settings.ais_examples, len(x))
    if n_ais > 0:
        _add_ais(result, model, data, x[:n_ais], y[:n_ais], settings.ais, rows_per_chunk)
    if settings.bdmc_examples > 0:
        _add_bdmc(result, model, data, x, settings, rows_per_chunk)
    n_exact = min(settings.exact_examples, len(x)) if model.latent_dim <= MAX_Z_DIM else 0
    if n_exact > 0:
        _add_exact(result, model, data, x[:n_exact], settings.quadrature, rows_per_chunk)
    if n_ais > 0 or n_exact > 0:
        _add_rung(result, model.conditional)


def _add_ais(result, model, data, x, y, settings: AISSettings, rows: int) -> None:
    started = time.perf_counter()
    size = max(1, rows // settings.chains)
    found = _over_labels(model, data, x, y, lambda xb, yb: ais(model, xb, yb, settings), size)
    n_test = len(result.per_example["nll"])
    result.add_subset("nll_ais", -found.log_px, n_test)
    result.per_example["nll_ais_chain_se"] = padded(found.chain_se, n_test)  # each example's
    result.metrics["nll_ais_chain_se"] = float(found.chain_se.pow(2).sum().sqrt()) / len(x)
    result.add_paired("iw_slack", "nll", "nll_ais", slice(0, len(x)))
    result.metrics |= {
        "ais_examples": len(x),
        "ais_acceptance": found.acceptance,
        "ais_seconds": time.perf_counter() - started,
    }


def _add_bdmc(result, model, data, like: torch.Tensor, settings: CertifiedSettings, rows: int):
    """Forward AIS errs low on ln p(x), reverse AIS from the z that drew x errs high: on data
    simulated from the model the two sandwich ln p(x), and their gap bounds the AIS error
    there. A cvae's on its conditional p(x|y), the labels drawn from the training frequencies."""
    started = time.perf_counter()
    z, x, y = simulate(model, data, like, settings.bdmc_examples)
    size = max(1, rows // settings.ais.chains)
    lower = _batched(lambda a, b, c: ais(model, a, b, settings.ais), x, y, None, size)
    upper = _batched(lambda a, b, c: ais(model, a, b, settings.ais, c), x, y, z, size)
    gap, se = paired_difference(upper.log_px, lower.log_px)
    result.metrics |= {
        "bdmc_gap": gap,
        "bdmc_gap_se": se,
        "bdmc_examples": len(x),
        "bdmc_seconds": time.perf_counter() - started,
    }


@torch.no_grad()
def simulate(model: LatentModel, data: Dataset, like: torch.Tensor, n: int):
    """n draws (z, x, y) from the model, x with the device and dtype of `like`."""
    z = model.sample_prior(n, like)
    y = None
    if model.conditional:
        y = torch.multinomial(label_log_prior(data).exp().float(), n, replacement=True)
        y = y.to(z.device)
    x = model.likelihood.sample(model.decode(z, y)).to(like.dtype)
    return z, x, y


def _add_exact(result, model, data, x, settings: QuadratureSettings, rows: int) -> None:
    started = time.perf_counter()
    grids: list[Quadrature] = []

    def quadrature(xb: torch.Tensor, yb: torch.Tensor | None) -> AISResult:
        grids.append(exact_log_px(model, xb, yb, settings, rows))
        return AISResult(grids[-1].log_px, torch.zeros_like(grids[-1].log_px), math.nan)

    log_px = _over_labels(model, data, x, data.test.labels[: len(x)], quadrature, len(x)).log_px
    result.add_subset("nll_exact", -log_px, len(result.per_example["nll"]))
    result.add_paired("iw_slack_exact", "nll", "nll_exact", slice(0, len(x)))
    if "nll_ais" in result.per_example:
        overlap = slice(0, min(len(x), int(result.metrics["ais_examples"])))
        result.add_paired("ais_slack_exact", "nll_ais", "nll_exact", overlap)
    result.metrics |= {
        "exact_examples": len(x),
        "exact_points": max(g.points for g in grids),
        "exact_refinement": max(g.refinement for g in grids),
        "exact_seconds": time.perf_counter() - started,
    }
    result.tags["exact_converged"] = str(all(g.converged for g in grids)).lower()


def _add_rung(result: Evaluation, conditional: bool) -> None:
    """The tightest -ln p(x) the run has: quadrature, else AIS where it is below the IW bound
    (its slack positive), else the IW bound itself; the metrics re-split on it. A cvae's gaps
    are of p(x|y) and its rungs of p(x): its approximation gap stays as measured."""
    m = result.metrics
    source = "exact" if "nll_exact" in m else "ais"
    key = "iw_slack_exact" if source == "exact" else "iw_slack"
    slack, slack_se = m[key], m[f"{key}_se"]
    rung = "iw" if source == "ais" and slack <= 0 else source
    if rung == "iw":
        slack_se = 0.0
    slack = max(slack, 0.0)  # below 0 the quadrature's: noise in the IW bound of few examples
    result.tags["nll_rung"] = rung
    _shift(m, "nll_certified", "nll", -slack, slack_se)
    if "excess" in m:
        _shift(m, "excess_certified", "excess", -slack, slack_se)
    if "approximation_gap" in m and rung != "iw" and not conditional:
        _add_gap_slack(result, f"nll_{rung}", slice(0, int(m[f"{rung}_examples"])))


def _add_gap_slack(result: Evaluation, rung: str, subset: slice) -> None:
    """The approximation gap against the rung: -ELBO(q*) - -ln p = the measured one (against
    the gap subset's IW bound) plus that IW bound's slack, taken on the examples both have."""
    both = slice(0, min(subset.stop, int(result.metrics["gap_examples"])))
    slack, slack_se = paired_difference(
        result.per_example["gap_subset_nll"][both], result.per_example[rung][both]
    )
    slack = max(slack, 0.0)  # the rung is looser than the gap subset's IW bound: that is the rung
    result.metrics["gap_iw_slack"], result.metrics["gap_iw_slack_se"] = slack, slack_se
    _shift(result.metrics, "approximation_gap_certified", "approximation_gap", slack, slack_se)


def _shift(m: dict[str, float], name: str, base: str, by: float, by_se: float) -> None:
    m[name] = m[base] + by
    m[f"{name}_se"] = math.hypot(m[f"{base}_se"], by_se)


def label_log_prior(data: Dataset) -> torch.Tensor:
    """ln p(y): the training-label frequencies, float64."""
    counts = torch.bincount(data.train.labels, minlength=data.n_classes).double()
    return (counts / counts.sum()).log()


Estimator = Callable[[torch.Tensor, torch.Tensor | None], AISResult]


def _over_labels(model, data, x, y, estimate: Estimator, size: int) -> AISResult:
    """ln p(x) by `estimate` in batches; a cvae's summed over labels: ln sum_y p(y) p(x|y),
    its chain SE by the delta method over the labels' terms."""
    if not model.conditional:
        return _batched(lambda a, b, c: estimate(a, b), x, None, None, size)
    log_prior = label_log_prior(data).to(x.device)
    per_label = []
    for label in range(data.n_classes):
        labels = torch.full((len(x),), label, dtype=torch.long, device=x.device)
        per_label.append(_batched(lambda a, b, c: estimate(a, b), x, labels, None, size))
    terms = torch.stack([log_prior[i] + r.log_px for i, r in enumerate(per_label)])
    share = torch.softmax(terms, 0)
    se = (share.pow(2) * torch.stack([r.chain_se for r in per_label]).pow(2)).sum(0).sqrt()
    acceptance = sum(r.acceptance for r in per_label) / len(per_label)
    return AISResult(torch.logsumexp(terms, 0), se, acceptance)


def _batched(estimate, x, y, z, size: int) -> AISResult:
    """`estimate(x, y, z)` on batches of `size` examples."""
    parts = [
        estimate(
            x[i : i + size],
            None if y is None else y[i : i + size],
            None if z is None else z[i : i + size],
        )
        for i in range(0, len(x), size)
    ]
    acceptance = sum(p.acceptance * len(p.log_px) for p in parts) / len(x)
    return AISResult(
        torch.cat([p.log_px for p in parts]), torch.cat([p.chain_se for p in parts]), acceptance
    )
