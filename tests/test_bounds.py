"""The estimators against a linear-Gaussian VAE, whose ln p(x) and ELBO are closed-form.

p(z) = N(0, I), p(x|z) = N(Wz + b, s2 I)  =>  p(x) = N(b, W W^T + s2 I). With orthogonal columns
of W the true posterior is diagonal: N(S W^T (x - b) / s2, S), S = diag(1 / (1 + |w_j|^2 / s2)),
so the model's own (linear, diagonal) encoder can represent it exactly.
"""

import math
from functools import partial

import pytest
import torch
from torch.distributions import MultivariateNormal

from bench.evaluation.estimators.gaps import auto_examples, decompose
from bench.evaluation.estimators.iw import iw_terms, log_weights, prefix_sizes
from bench.evaluation.estimators.optimal_q import Search
from bench.evaluation.estimators.stats import mean_se, paired_difference
from models import Gaussian, variant
from models.nets import MLPNet

D, Z, S2, N = 12, 3, 0.3, 400
LINEAR = partial(MLPNet, n_hidden=0)  # a linear encoder and decoder


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, Z, generator=g, dtype=torch.float64))
    w = q * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    model = variant("vae")(image_shape=(D,), z_dim=Z, likelihood=Gaussian(S2), net=LINEAR).double()
    post_var = 1 / (1 + (w * w).sum(0) / S2)
    with torch.no_grad():
        model.decoder[0].weight.copy_(w)
        model.decoder[0].bias.copy_(b)
        enc = model.encoder[0]
        enc.weight.zero_()
        enc.weight[:Z] = post_var[:, None] * w.T / S2
        enc.bias[:Z] = -enc.weight[:Z] @ b
        enc.bias[Z:] = post_var.log()
    z = torch.randn(N, Z, generator=g, dtype=torch.float64)
    x = z @ w.T + b + math.sqrt(S2) * torch.randn(N, D, generator=g, dtype=torch.float64)
    log_px = MultivariateNormal(b, w @ w.T + S2 * torch.eye(D, dtype=torch.float64)).log_prob(x)
    return model, x, log_px, w, b


def perturbed(model):
    """A worse proposal: the encoder's mean and variance off the true posterior."""
    worse = variant("vae")(image_shape=(D,), z_dim=Z, likelihood=Gaussian(S2), net=LINEAR).double()
    worse.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        enc = worse.encoder[0]
        enc.weight[:Z] += 0.15 * torch.randn(Z, D, generator=g, dtype=torch.float64)
        enc.bias[Z:] += 0.7
    return worse


def analytic_neg_elbo(model, x, w, b):
    mu, logvar = model.encode(x)
    var = logvar.exp()
    fit = (x - mu @ w.T - b).pow(2).sum(-1) + (var * (w * w).sum(0)).sum(-1)
    recon = fit / (2 * S2) + 0.5 * D * math.log(2 * math.pi * S2)
    kl = 0.5 * (mu.pow(2) + var - logvar - 1).sum(-1)
    return recon + kl


def test_true_posterior_gives_exactly_ln_px(setup):
    model, x, log_px, _, _ = setup
    torch.manual_seed(0)
    with torch.no_grad():
        weights, _ = log_weights(model, x, None, model.encode(x), k=7)
    torch.testing.assert_close(weights, log_px.expand(7, N), rtol=0, atol=1e-9)
    torch.testing.assert_close(iw_terms(model, x, None, k=1)["log_px"], log_px, rtol=0, atol=1e-9)


def test_elbo_le_iw_le_ln_px_and_iw_tightens_with_k(setup):
    model, x, log_px, w, b = setup
    worse = perturbed(model)
    torch.manual_seed(0)
    with torch.no_grad():
        elbo = -analytic_neg_elbo(worse, x, w, b).mean()
    bounds = {k: iw_terms(worse, x, None, k)["log_px"].mean() for k in (1, 10, 100, 5000)}
    truth = log_px.mean()
    assert truth - elbo > 0.5  # the perturbation makes a visible gap to close
    assert elbo <= bounds[10] <= bounds[100] <= bounds[5000] <= truth + 1e-3
    assert abs(bounds[1] - elbo) < 0.15  # IW with k=1 is an ELBO estimate
    assert truth - bounds[5000] < 0.05


def test_recon_plus_kl_is_the_closed_form_elbo(setup):
    model, x, _, w, b = setup
    worse = perturbed(model)
    torch.manual_seed(0)
    terms = iw_terms(worse, x, None, k=2000)
    with torch.no_grad():
        expected = analytic_neg_elbo(worse, x, w, b)
    assert abs(float((terms["recon"] + terms["kl"]).mean() - expected.mean())) < 0.02


@pytest.mark.parametrize("k,rows", [(300, 64), (300, 100_000), (5, 7)])
def test_chunked_logsumexp_is_exact(setup, k, rows):
    """Samples split into chunks (a ragged last one too) and recombined: still exactly ln p(x)."""
    model, x, log_px, _, _ = setup
    torch.testing.assert_close(
        iw_terms(model, x[:50], None, k, rows_per_chunk=rows)["log_px"],
        log_px[:50],
        rtol=0,
        atol=1e-9,
    )


def test_optimal_variance_is_the_closed_form_mean_squared_error(setup):
    """E_q |x - Wz - b|^2 / D, closed form for the linear-Gaussian model, from the recon term."""
    model, x, _, w, b = setup
    worse = perturbed(model)
    torch.manual_seed(0)
    recon = float(iw_terms(worse, x, None, k=2000)["recon"].mean())
    with torch.no_grad():
        mu, logvar = worse.encode(x)
        fit = (x - mu @ w.T - b).pow(2).sum(-1) + (logvar.exp() * (w * w).sum(0)).sum(-1)
    expected = float(fit.mean()) / D
    assert worse.likelihood.optimal_variance(recon, D) == pytest.approx(expected, rel=0.01)
    assert expected != pytest.approx(S2, rel=0.1)  # a real optimum, not the decoder's own sigma^2


def gaps_of(model, x):
    torch.manual_seed(0)
    terms = iw_terms(model, x, None, k=1000)
    return decompose(model, x, None, terms, k=1000, rows_per_chunk=100_000, search=Search())


def test_with_the_true_posterior_both_gaps_vanish(setup):
    model, x, log_px, _, _ = setup
    gaps = gaps_of(model, x[:100]).metrics
    assert abs(gaps["amortization_gap"]) < 0.02 and abs(gaps["approximation_gap"]) < 0.02
    assert gaps["gap_subset_nll"] == pytest.approx(float(-log_px[:100].mean()), abs=1e-6)


def test_q_star_recovers_the_true_posterior_from_a_perturbed_encoder(setup):
    """The true posterior is in the Gaussian family: all of the gap is amortization."""
    model, x, log_px, w, b = setup
    worse = perturbed(model)
    gaps = gaps_of(worse, x[:100])
    with torch.no_grad():
        neg_elbo_phi = analytic_neg_elbo(worse, x[:100], w, b).mean()
    assert gaps.metrics["amortization_gap"] > 0.5
    assert gaps.metrics["approximation_gap"] < 0.05
    assert gaps.proposal == "optimal"  # the tighter IW bound is the one under q*
    total = gaps.metrics["amortization_gap"] + gaps.metrics["approximation_gap"]
    subset_gap = gaps.metrics["gap_subset_neg_elbo"] - gaps.metrics["gap_subset_nll"]
    assert total == pytest.approx(subset_gap, abs=1e-9)  # exactly additive
    assert float(neg_elbo_phi) - float(-log_px[:100].mean()) == pytest.approx(total, abs=0.05)


def test_nll_at_k_is_nested_and_tightens_in_expectation(setup):
    model, x, log_px, _, _ = setup
    worse = perturbed(model)
    torch.manual_seed(0)
    terms = iw_terms(worse, x, None, k=1000, rows_per_chunk=300)  # prefixes span chunks
    assert prefix_sizes(1000) == [1, 10, 100, 1000] and prefix_sizes(250) == [1, 10, 100, 250]
    assert torch.equal(terms["log_px_at_k"][-1], terms["log_px"])
    means = terms["log_px_at_k"].mean(1)
    assert bool((means.diff() > 0).all()) and float(means[-1]) < float(log_px.mean()) + 0.01
    one_sample = (terms["log_px_at_k"][0] - (-terms["recon"] - terms["kl"])).mean()
    assert abs(float(one_sample)) < 0.2  # k = 1 is a one-sample ELBO estimate


def test_paired_difference_recovers_a_known_shift():
    g = torch.Generator().manual_seed(0)
    best = 80 + 20 * torch.rand(1000, generator=g, dtype=torch.float64)  # hard and easy examples
    other = best + 0.3 + 0.05 * torch.randn(1000, generator=g, dtype=torch.float64)
    delta, se = paired_difference(other, best)
    assert abs(delta - 0.3) < 3 * se and se < 0.01
    assert mean_se(other)[1] > 10 * se  # unpaired errors would hide the shift


@pytest.mark.parametrize("n_test,k", [(2000, 1000), (10000, 1000), (360, 1000), (100, 5000)])
def test_auto_gap_examples_never_cost_more_decoder_passes_than_the_iw_bound(n_test, k):
    search = Search()
    n = auto_examples(n_test, k, search)
    cycle = search.cycle_steps * search.samples * 3 + search.check_samples
    cost = lambda examples: examples * (search.max_cycles * cycle + k)  # noqa: E731
    assert 1 <= n <= min(n_test, 1000) and cost(n) <= n_test * k
    assert n == min(n_test, 1000) or cost(n + 1) > n_test * k  # the most that fit


def test_a_chunk_the_device_cannot_hold_is_one_line_naming_the_setting(setup, monkeypatch):
    from bench.errors import BenchError
    from bench.evaluation.estimators import iw

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.1 TiB")

    monkeypatch.setattr(iw, "log_weights", out_of_memory)
    model, x, _, _, _ = setup
    with pytest.raises(BenchError, match=r"eval.rows_per_chunk=4096 rows .* do not fit"):
        iw_terms(model, x, None, k=100, rows_per_chunk=4096)
