"""Where the ELBO's looseness goes (Cremer, Li & Duvenaud 2018), on a fixed subset of examples:
-ELBO(q_phi) - nll = amortization gap [-ELBO(q_phi) - -ELBO(q*)] + approximation gap
[-ELBO(q*) - nll], q* each example's best member of the variant's posterior family (a diagonal
Gaussian for most: bench.evaluation.estimators.optimal_q). Exactly additive on the subset."""

import time
from dataclasses import dataclass

import torch

from bench.evaluation.estimators.iw import iw_terms
from bench.evaluation.estimators.optimal_q import Search, optimal_q
from bench.evaluation.estimators.stats import mean_se, paired_difference
from models.base import LatentModel

PROPOSALS = ("encoder", "optimal")  # the q whose IW bound stands for nll: the tighter one


@dataclass
class Gaps:
    metrics: dict[str, float]
    neg_elbo_optimal: torch.Tensor  # per example of the subset
    nll: torch.Tensor  # per example of the subset: the tighter proposal's IW bound
    proposal: str  # which IW bound gave the subset's nll


def decompose(
    model: LatentModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    encoder_terms: dict[str, torch.Tensor],
    k: int,
    rows_per_chunk: int,
    search: Search,
) -> Gaps:
    """`encoder_terms`: the subset's per-example `recon`, `kl`, `log_px` under the encoder's q
    (the evaluation's own, so its -ELBO and nll are the ones logged)."""
    started = time.perf_counter()
    found = optimal_q(model, x, y, search)
    optimal_terms = iw_terms(model, x, y, k, rows_per_chunk, proposal=found.q)
    neg_elbo_optimal = optimal_terms["recon"] + optimal_terms["kl"]
    neg_elbo_encoder = encoder_terms["recon"] + encoder_terms["kl"]
    bounds = [encoder_terms["log_px"], optimal_terms["log_px"]]
    tighter = int(bounds[1].mean() > bounds[0].mean())
    nll = -bounds[tighter]
    metrics = _with_se("neg_elbo_optimal", mean_se(neg_elbo_optimal))
    metrics |= _with_se("amortization_gap", paired_difference(neg_elbo_encoder, neg_elbo_optimal))
    metrics |= _with_se("approximation_gap", paired_difference(neg_elbo_optimal, nll))
    metrics |= {
        "gap_subset_neg_elbo": float(neg_elbo_encoder.mean()),
        "gap_subset_nll": float(nll.mean()),
        "gap_examples": len(x),
        "gap_steps": found.steps,
        "gap_last_gain": found.last_gain,
        "gap_seconds": time.perf_counter() - started,
    }
    return Gaps(metrics, neg_elbo_optimal, nll, PROPOSALS[tighter])


def auto_examples(n_test: int, k: int, search: Search, cap: int = 1000) -> int:
    """The most examples (at most `cap`) whose longest search (`max_cycles` cycles) and q*'s own
    IW bound cost no more decoder passes than the IW bound of the whole test split (a backward
    pass counted as two forward ones): the decomposition never costs more than the IW evaluation."""
    cycle = search.cycle_steps * search.samples * 3 + search.check_samples
    per_example = search.max_cycles * cycle + k
    return max(1, min(cap, n_test, n_test * k // per_example))


def _with_se(name: str, mean_and_se: tuple[float, float]) -> dict[str, float]:
    return {name: mean_and_se[0], f"{name}_se": mean_and_se[1]}
