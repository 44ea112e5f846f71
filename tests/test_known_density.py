"""Data of known density: the mixture against enumeration, the linear model against torch's
MultivariateNormal, and the datasets built from them."""

import itertools
import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from bench.data.load import load
from bench.data.synthetic.linear import fit_linear
from bench.data.synthetic.mixture import BernoulliMixture, fit_mixture
from bench.errors import BenchError
from tests.conftest import config

D = 10


@pytest.fixture(scope="module")
def small_mixture() -> BernoulliMixture:
    """EM on draws from a known 3-component mixture over 10 pixels."""
    g = torch.Generator().manual_seed(0)
    truth = BernoulliMixture(
        torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64).log(),
        torch.rand(3, D, generator=g, dtype=torch.float64) * 0.9 + 0.05,
    )
    x, _ = truth.sample(3000, g)
    return fit_mixture(x, components=3, iterations=200, seed=0)


def all_states(d: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0, 1], repeat=d)), dtype=torch.float64)


def test_mixture_sums_to_one_and_matches_brute_force(small_mixture):
    states = all_states(D)
    log_p = small_mixture.log_prob(states)
    assert abs(float(log_p.exp().sum()) - 1) < 1e-9
    weights, probs = small_mixture.log_weights.exp(), small_mixture.probs
    for state in states[
        torch.randperm(len(states), generator=torch.Generator().manual_seed(1))[:20]
    ]:
        p = sum(
            float(weights[c])
            * math.prod(
                float(probs[c, d]) if state[d] else 1 - float(probs[c, d]) for d in range(D)
            )
            for c in range(len(weights))
        )
        assert float(small_mixture.log_prob(state[None])) == pytest.approx(math.log(p), abs=1e-12)


def test_mixture_entropy_estimate_is_within_3_se_of_enumeration(small_mixture):
    log_p = small_mixture.log_prob(all_states(D))
    exact = float(-(log_p.exp() * log_p).sum())
    x, labels = small_mixture.sample(4000, torch.Generator().manual_seed(2))
    assert x.dtype == torch.uint8 and set(labels.unique().tolist()) <= {0, 1, 2}
    values = -small_mixture.log_prob(x)
    se = float(values.std()) / math.sqrt(len(values))
    assert abs(float(values.mean()) - exact) < 3 * se


def test_linear_log_prob_and_entropy_are_the_multivariate_normal_s():
    g = torch.Generator().manual_seed(0)
    source = torch.randn(500, 12, generator=g, dtype=torch.float64) @ torch.randn(
        12, 12, generator=g, dtype=torch.float64
    )
    model = fit_linear(source, rank=3)
    reference = MultivariateNormal(model.mean, model.covariance)
    x, _ = model.sample(4000, torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.log_prob(x), reference.log_prob(x.double()), rtol=0, atol=1e-9)
    assert model.entropy() == pytest.approx(float(reference.entropy()), abs=1e-9)
    values = -model.log_prob(x)
    se = float(values.std()) / math.sqrt(len(values))
    assert abs(float(values.mean()) - model.entropy()) < 3 * se
    eigenvalues = torch.linalg.eigvalsh(torch.cov(source.T, correction=0)).flip(0)
    assert float(model.noise_variance) == pytest.approx(float(eigenvalues[3:].mean()), rel=1e-9)


@pytest.mark.parametrize("name", ["mixture", "linear"])
def test_known_density_datasets_are_fixed_cached_and_labelled(tmp_path, name):
    cache = tmp_path / "cache"
    overrides = [f"data={name}", f"data.cache={cache}", "data.n_train=500", "data.n_test=300"]
    overrides += ["model.likelihood=gaussian"] if name == "linear" else []
    data = load(config(*overrides).data)
    (cached,) = cache.iterdir()
    again = load(config(*overrides).data)  # from the cache
    assert torch.equal(again.test_x, data.test_x) and again.sha256 == data.sha256
    assert f"{name}.npz" in data.sha256 and "digits.csv.gz" in data.sha256
    assert (len(data.train), len(data.val), len(data.test)) == (500, 1000, 300)
    every = torch.arange(len(data.train))
    assert not torch.equal(data.train_batch(every, torch.Generator()), data.test_x)
    h = data.neg_log_p_data("test")
    assert h.dtype == torch.float64 and h.shape == (300,) and torch.isfinite(h).all()
    if name == "mixture":
        assert data.n_classes == 10 and set(data.test_x.unique().tolist()) == {0.0, 1.0}
        drawn = data.train_batch(every, torch.Generator())
        assert torch.equal(drawn, data.train.levels.float())  # identity
    else:
        assert data.is_continuous and not data.is_binary
    cached.write_bytes(b"not a fit")
    with pytest.raises(BenchError, match="unreadable"):
        load(config(*overrides).data)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["data=mixture", "data.source=nosuch"], "unknown data.source 'nosuch': choose one of"),
        (["data=mixture", "data.binarize=none", "model.likelihood=gaussian"], "does not apply"),
        (["data=mixture", "data.components=0"], "data.components must be in"),
        (
            ["data=linear", "data.rank=64", "model.likelihood=gaussian"],
            "data.rank must be in 1..63",
        ),
        (["data=linear", "data.binarize=static"], "it needs model.likelihood=gaussian"),
        (
            ["data=linear", "model.likelihood=gaussian", "data.binarize=static"],
            "binarize must be none",
        ),
    ],
)
def test_bad_known_density_settings_are_one_line(tmp_path, overrides, message):
    with pytest.raises(BenchError, match=message):
        load(config(*overrides, f"data.cache={tmp_path}").data)
