"""The estimators against a linear-Gaussian VAE, whose ln p(x) and ELBO are closed-form.

p(z) = N(0, I), p(x|z) = N(Wz + b, s2 I)  =>  p(x) = N(b, W W^T + s2 I). With orthogonal columns
of W the true posterior is diagonal: N(S W^T (x - b) / s2, S), S = diag(1 / (1 + |w_j|^2 / s2)),
so the model's own (linear, diagonal) encoder can represent it exactly.
"""

import io
import math
import sys
from functools import partial

import pytest
import torch
from torch.distributions import MultivariateNormal

from bench.evaluation.estimators.ais import STARTS, AISSettings, ais
from bench.evaluation.estimators.gaps import auto_examples, decompose
from bench.evaluation.estimators.iw import iw_terms, log_weights, prefix_sizes
from bench.evaluation.estimators.optimal_q import Search, optimal_q
from bench.evaluation.estimators.quadrature import QuadratureSettings, exact_log_px
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
        weights, _ = log_weights(model, x, None, model.posterior(model.encode(x)), k=7)
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
    # the tighter of two IW bounds: the encoder's is exact here, q*'s (a step or two off it on a
    # few examples) is a noisy estimate that the choice of the larger may pick by ~1e-5
    assert gaps["gap_subset_nll"] == pytest.approx(float(-log_px[:100].mean()), abs=1e-4)


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


# The certified rung: AIS, its BDMC sandwich and quadrature, against the same closed form.


def test_ais_from_the_prior_finds_ln_px_and_a_longer_schedule_is_not_looser(setup):
    model, x, log_px, _, _ = setup
    x, log_px = x[:100], log_px[:100]
    torch.manual_seed(0)
    long = ais(model, x, None, AISSettings(steps=1000, chains=8, start="prior"))
    short = ais(model, x, None, AISSettings(steps=20, chains=8, start="prior"))
    error, se = paired_difference(log_px, long.log_px)
    assert abs(error) < 0.05 and abs(error) < 4 * se + 0.01
    assert 0.3 < long.acceptance < 0.95  # the step sizes were adapted toward 0.65
    looser, looser_se = paired_difference(long.log_px, short.log_px)
    assert looser > 0.05 and looser > 3 * looser_se  # 20 distributions: visibly looser


def test_ais_from_the_encoder_is_exact_when_q_is_the_posterior(setup):
    """f0 = q = p(z|x): every weight is p(x) whatever the transitions do."""
    model, x, log_px, _, _ = setup
    torch.manual_seed(0)
    found = ais(model, x[:50], None, AISSettings(steps=10, chains=4, start="encoder"))
    torch.testing.assert_close(found.log_px, log_px[:50], rtol=0, atol=1e-8)


def test_bdmc_sandwiches_the_exact_ln_px(setup):
    """Forward AIS from the prior errs low, reverse AIS from the z that drew each x errs high."""
    model, x, log_px, w, b = setup
    g = torch.Generator().manual_seed(3)
    z = torch.randn(200, Z, generator=g, dtype=torch.float64)
    x = z @ w.T + b + math.sqrt(S2) * torch.randn(200, D, generator=g, dtype=torch.float64)
    truth = MultivariateNormal(b, w @ w.T + S2 * torch.eye(D, dtype=torch.float64)).log_prob(x)
    torch.manual_seed(0)
    settings = AISSettings(steps=30, chains=4, start="prior")
    lower = ais(model, x, None, settings)
    upper = ais(model, x, None, settings, reverse_from=z)
    below, below_se = paired_difference(truth, lower.log_px)
    above, above_se = paired_difference(upper.log_px, truth)
    assert below > -3 * below_se and above > -3 * above_se
    assert below + above > 0.05  # 30 distributions: a gap BDMC can see


def linear_gaussian_2d():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, 2, generator=g, dtype=torch.float64))
    w = q * torch.tensor([2.0, 0.3], dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    model = variant("vae")(image_shape=(D,), z_dim=2, likelihood=Gaussian(S2), net=LINEAR)
    model = model.double()
    with torch.no_grad():
        model.decoder[0].weight.copy_(w)
        model.decoder[0].bias.copy_(b)
    z = torch.randn(100, 2, generator=g, dtype=torch.float64)
    x = z @ w.T + b + math.sqrt(S2) * torch.randn(100, D, generator=g, dtype=torch.float64)
    return model, x, MultivariateNormal(b, w @ w.T + S2 * torch.eye(D, dtype=torch.float64))


def test_quadrature_is_the_closed_form_for_z_dim_2():
    model, x, truth = linear_gaussian_2d()
    found = exact_log_px(model, x, None)
    assert found.converged and found.refinement < 0.01
    torch.testing.assert_close(found.log_px, truth.log_prob(x), rtol=0, atol=1e-3)


def test_quadrature_says_when_its_grid_did_not_converge():
    model, x, _ = linear_gaussian_2d()
    coarse = QuadratureSettings(coarse_points=8, first_points=2, max_points=4, tol=1e-9)
    assert not exact_log_px(model, x[:5], None, coarse).converged


@pytest.fixture(scope="module")
def trained_2d():
    """A Bernoulli VAE with z_dim 2 and tanh layers trained briefly on binarized digits: a
    posterior no Gaussian fits exactly."""
    from sklearn.datasets import load_digits

    from models import Bernoulli

    x = torch.tensor(load_digits().data > 7, dtype=torch.float32)
    torch.manual_seed(0)
    net = partial(MLPNet, h_dim=64, activation="tanh")
    model = variant("vae")(image_shape=(64,), z_dim=2, likelihood=Bernoulli(), net=net)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(600):
        batch = x[torch.randint(0, len(x) - 100, (128,))]
        optimizer.zero_grad()
        model.loss_parts(batch).objective.mean().backward()
        optimizer.step()
    return model.eval(), x[-100:]


@pytest.mark.parametrize("start", STARTS)
def test_on_a_nonlinear_model_quadrature_le_ais_le_iw(trained_2d, start):
    """-ln p: exact <= AIS <= IW (each within its SE), and the ELBO above all."""
    model, x = trained_2d
    torch.manual_seed(0)
    exact = -exact_log_px(model, x, None).log_px
    found = -ais(model, x, None, AISSettings(steps=300, chains=8, start=start)).log_px
    terms = iw_terms(model, x, None, k=100)
    iw, neg_elbo = -terms["log_px"], terms["recon"] + terms["kl"]
    for tighter, looser in ((exact, found), (found, iw), (iw, neg_elbo)):
        gap, se = paired_difference(looser, tighter)
        assert gap > -3 * se
    assert paired_difference(iw, exact)[0] > 0.01  # the IW bound at k = 100 has slack to see


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_long_estimates_show_a_bar_on_a_terminal_only(setup, monkeypatch, terminal):
    model, x = setup[0], setup[1][:40]
    monkeypatch.setattr("bench.runtime.progress.SHOW_AFTER_S", 0.0)
    monkeypatch.setattr("sys.stderr", Terminal() if terminal else io.StringIO())
    iw_terms(model, x, None, k=50, rows_per_chunk=100)
    ais(model, x[:2], None, AISSettings(steps=3, chains=2, leapfrog=1))
    optimal_q(model, x[:2], None, Search(cycle_steps=2, max_cycles=1))
    shown = sys.stderr.getvalue()
    for bar in ("IW bound (k=50)", "AIS", "q* search"):
        assert (bar in shown) == terminal, shown
