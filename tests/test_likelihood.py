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
