import math

import pytest
import torch
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Normal, kl_divergence

from models import LIKELIHOODS, Bernoulli, Gaussian, build_likelihood, kl_normal
from models.likelihood import ContinuousBernoulli, DiscretizedLogistic

torch.manual_seed(0)


def test_kl_matches_torch_distributions():
    mu, logvar = (
        torch.randn(64, 20, dtype=torch.float64) * 2,
        torch.randn(64, 20, dtype=torch.float64),
    )
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_normal(mu, logvar), expected, rtol=1e-12, atol=1e-12)


def test_kl_is_zero_at_the_prior():
    assert kl_normal(torch.zeros(3, 5), torch.zeros(3, 5)).abs().max() == 0


def test_bernoulli_is_the_summed_log_prob():
    logits = torch.randn(32, 784, dtype=torch.float64) * 4
    x = torch.bernoulli(torch.full((32, 784), 0.3, dtype=torch.float64))
    expected = -TorchBernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(Bernoulli().neg_log_prob(logits, x), expected)


@pytest.mark.parametrize("variance", [1e-3, 0.05, 1.0, 4.0])
def test_gaussian_keeps_every_constant(variance):
    mean, x = torch.rand(16, 784, dtype=torch.float64), torch.rand(16, 784, dtype=torch.float64)
    expected = -Normal(mean, math.sqrt(variance)).log_prob(x).sum(-1)
    torch.testing.assert_close(Gaussian(variance).neg_log_prob(mean, x), expected)


def test_gaussian_broadcasts_over_importance_samples():
    mean, x = torch.rand(7, 4, 10), torch.rand(4, 10)
    out = Gaussian(0.1).neg_log_prob(mean, x)
    assert out.shape == (7, 4)
    torch.testing.assert_close(out[3], Gaussian(0.1).neg_log_prob(mean[3], x))


@pytest.mark.parametrize("variance", [0.0, -1.0])
def test_gaussian_rejects_non_positive_variance(variance):
    with pytest.raises(ValueError, match="output_variance"):
        Gaussian(variance)


def test_unknown_likelihood():
    with pytest.raises(ValueError, match="unknown model.likelihood"):
        build_likelihood("poisson", 1.0)


def test_fused_output_layer_matches_the_per_pixel_bernoulli_likelihood():
    """The IW bound's fused path (Σ x·l through the matmul, once per image) against the per-pixel
    log-likelihood in float64: closer than ATen's float32 BCE, and per example of an IW-1000
    bound within 1e-4 nats of it for the same samples."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    h = torch.relu(torch.randn(1000, 8, 400, generator=g))  # k samples of 8 images' hidden layer
    weight, bias = torch.randn(784, 400, generator=g) * 0.05, torch.randn(784, generator=g)
    x = (torch.rand(8, 784, generator=g) < 0.3).float()
    fused = Bernoulli().neg_log_prob_linear(h, weight, bias, x)
    exact = Bernoulli().neg_log_prob(
        F.linear(h.double(), weight.double(), bias.double()), x.double()
    )
    logits = F.linear(h, weight, bias)
    aten = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    aten = aten.sum(-1).double()
    assert fused.dtype == torch.float64
    assert (fused - exact).abs().max() < min(1e-4, (aten - exact).abs().max())
    iw = lambda v: torch.logsumexp(-v, 0)  # noqa: E731  (per image, over the same samples)
    assert (iw(fused) - iw(aten)).abs().max() < 1e-4
    unfused = Bernoulli().neg_log_prob(logits, x).double()  # the training loss's path
    assert (unfused - exact).abs().max() < 1e-4


def test_gaussian_output_layer_is_the_plain_likelihood():
    g = torch.Generator().manual_seed(0)
    h, weight, bias = torch.randn(5, 3, 16, generator=g), torch.randn(10, 16), torch.randn(10)
    x = torch.rand(3, 10, generator=g)
    expected = Gaussian(0.05).neg_log_prob(torch.nn.functional.linear(h, weight, bias), x)
    torch.testing.assert_close(
        Gaussian(0.05).neg_log_prob_linear(h, weight, bias, x), expected.double()
    )


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discretized_logistic_is_a_probability_over_every_level(levels):
    """Enumerated: the L levels' probabilities of each pixel sum to 1, for means inside and far
    outside [0, 1] and scales from a hundredth of a bin to ten times the range."""
    g = torch.Generator().manual_seed(0)
    mean = torch.cat([torch.rand(40, generator=g), torch.tensor([-30.0, 40.0, 0.0, 1.0])])
    log_scale = torch.linspace(math.log(0.01 / levels), math.log(10.0), len(mean))
    x = torch.arange(levels, dtype=torch.float64) / (levels - 1)  # every level
    out = torch.stack([mean, log_scale], -1).double()[:, None, :].expand(-1, levels, -1)
    per_pixel = -DiscretizedLogistic(levels).neg_log_prob64(
        out, x[None, :, None].expand(len(mean), -1, -1)
    )
    assert torch.isfinite(per_pixel).all()
    torch.testing.assert_close(per_pixel.exp().sum(1), torch.ones(len(mean), dtype=torch.float64))


def test_discretized_logistic_is_the_logistic_mass_on_each_bin():
    """Against the logistic CDF differences themselves, where they are well conditioned; and
    the outputs are (D means, D log-scales)."""
    logistic = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    mean, log_scale, x = [0.3, 0.9], [math.log(0.05), math.log(0.2)], [100 / 255, 1.0]
    out = torch.tensor([*mean, *log_scale], dtype=torch.float64)
    half = 0.5 / 255
    s = [math.exp(v) for v in log_scale]
    inner = logistic((x[0] + half - mean[0]) / s[0]) - logistic((x[0] - half - mean[0]) / s[0])
    top = 1 - logistic((x[1] - half - mean[1]) / s[1])
    expected = -math.log(inner) - math.log(top)
    got = DiscretizedLogistic(256).neg_log_prob64(out, torch.tensor(x, dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("eta", [-40.0, -3.0, -1e-3, -1e-7, 0.0, 1e-7, 1e-3, 0.5, 8.0, 60.0])
def test_continuous_bernoulli_density_integrates_to_one(eta):
    """Its density on [0, 1], integrated by Simpson's rule on 20,001 points, is 1: near λ = ½,
    where C(λ)'s closed form is 0/0, and where λ is within e^-60 of 0 or 1."""
    x = torch.linspace(0, 1, 20001, dtype=torch.float64)
    logits = torch.full_like(x, eta)
    density = torch.exp(-ContinuousBernoulli().neg_log_prob64(logits[:, None], x[:, None]))
    weights = torch.ones_like(x)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    integral = (weights * density).sum() / (3 * (len(x) - 1))
    assert integral.item() == pytest.approx(1.0, abs=1e-6)


def test_continuous_bernoulli_agrees_with_torch_distributions():
    from torch.distributions import ContinuousBernoulli as TorchCB

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 30, generator=g, dtype=torch.float64) * 4
    x = torch.rand(64, 30, generator=g, dtype=torch.float64)
    ours = ContinuousBernoulli().neg_log_prob64(logits, x)
    theirs = -TorchCB(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ContinuousBernoulli().mean(logits), TorchCB(logits=logits).mean)
    near_half = torch.tensor([[1e-6, -1e-4, 5e-3]], dtype=torch.float64)  # λ = ½ ± 2.5e-7..1e-3
    expected = torch.log(near_half.abs() / torch.tanh(near_half.abs() / 2)).sum()  # float64 holds
    got = ContinuousBernoulli().neg_log_prob64(near_half, torch.zeros_like(near_half))
    bce = torch.nn.functional.softplus(near_half).sum()
    assert (bce - got).item() == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize("name", LIKELIHOODS)
def test_every_likelihoods_output_layer_path_is_its_plain_likelihood(name):
    """What the IW bound calls (the decoder's last layer handed over) equals the likelihood of
    that layer's output, in float64."""
    likelihood = build_likelihood(name, 0.1, 256)
    g = torch.Generator().manual_seed(2)
    d = 6
    h = torch.randn(4, 3, 16, generator=g)
    weight = torch.randn(likelihood.outputs_per_pixel * d, 16, generator=g) * 0.3
    bias = torch.randn(likelihood.outputs_per_pixel * d, generator=g)
    x = torch.randint(0, 256, (3, d), generator=g).float() / 255
    if likelihood.takes == "binary":
        x = (x > 0.5).float()
    expected = likelihood.neg_log_prob64(torch.nn.functional.linear(h, weight, bias), x)
    got = likelihood.neg_log_prob_linear(h, weight, bias, x)
    assert got.shape == (4, 3) and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected.double(), rtol=1e-6, atol=1e-6)


def test_bce_on_grey_levels_is_not_normalized():
    """The seed's loss: over the 256 levels its probabilities do not sum to 1, and over [0, 1]
    its 'density' integrates to 1/C(λ) < 1 (the continuous Bernoulli's normalizer)."""
    bce = build_likelihood("bce_grey", 1.0)
    assert not bce.normalized and LIKELIHOODS["bce_grey"].takes == "levels"
    assert all(LIKELIHOODS[n].normalized for n in LIKELIHOODS if n != "bce_grey")
    logits = torch.tensor([-3.0, -0.5, 0.7, 2.0], dtype=torch.float64)
    levels = torch.arange(256, dtype=torch.float64) / 255
    mass = torch.stack(
        [torch.exp(-bce.neg_log_prob64(logits[i : i + 1], levels[:, None])) for i in range(4)]
    )
    assert (mass.sum(1) - 1).abs().min() > 0.1
    x = torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None]
    for logit in logits:
        integral = torch.trapezoid(torch.exp(-bce.neg_log_prob64(logit.view(1), x)), x[:, 0])
        normalizer = ContinuousBernoulli().neg_log_prob64(
            logit.view(1), x[:1]
        ) - bce.neg_log_prob64(logit.view(1), x[:1])
        assert (
            integral.item() == pytest.approx(math.exp(normalizer.item()), rel=1e-6) and integral < 1
        )


@pytest.mark.parametrize("name", [n for n, c in LIKELIHOODS.items() if c.normalized])
def test_every_likelihoods_draws_have_its_mean_and_lie_where_it_has_mass(name):
    """BDMC simulates data with `sample`: its draws must come from the likelihood itself."""
    likelihood = build_likelihood(name, 0.1, 4)
    per_pixel = torch.tensor([-1.5, 0.0, 2.0])  # logits, means or (for two outputs) means
    if likelihood.outputs_per_pixel == 2:  # at inner levels, log-scales small: rounding is even
        out = torch.cat([torch.tensor([1 / 3, 2 / 3, 1 / 3]), torch.tensor([-3.0, -2.5, -3.5])])
    else:
        out = per_pixel
    torch.manual_seed(0)
    draws = likelihood.sample(out.expand(40_000, -1))
    expected = likelihood.mean(out)
    se = draws.std(0) / math.sqrt(len(draws))
    assert ((draws.mean(0) - expected).abs() <= 4 * se + 1e-6).all()
    assert torch.isfinite(likelihood.neg_log_prob64(out.expand(len(draws), -1), draws)).all()
    if likelihood.takes != "dequantized":  # a probability of each value: draws on its support
        levels = 1 if likelihood.takes == "binary" else 3
        assert torch.equal(draws * levels, (draws * levels).round())


def test_discretized_logistic_draws_each_level_with_its_probability():
    likelihood = DiscretizedLogistic(4)
    out = torch.tensor([0.4, math.log(0.3)])  # wide: every level drawn
    levels = torch.arange(4.0).unsqueeze(-1) / 3
    probability = (-likelihood.neg_log_prob64(out.expand(4, -1), levels)).exp()
    torch.manual_seed(0)
    draws = likelihood.sample(out.expand(100_000, -1)).squeeze(-1)
    frequency = torch.stack([(draws == level).double().mean() for level in levels.squeeze(-1)])
    se = (probability * (1 - probability) / len(draws)).sqrt()
    assert ((frequency - probability).abs() <= 4 * se).all() and probability.min() > 0.05
