import math

import pytest
import torch
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Normal, kl_divergence

from models import Bernoulli, Gaussian, build_likelihood, kl_normal

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
