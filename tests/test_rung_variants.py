"""The variants that each change one rung (vamp, iaf, hvae, savae) against closed forms:
linear-Gaussian models whose ln p(x) is a Gaussian (or a mixture of two), and the limits in
which each is the VAE."""

import math
from functools import partial

import pytest
import torch
from torch.distributions import MultivariateNormal

from bench.evaluation.estimators.iw import iw_terms
from bench.evaluation.estimators.optimal_q import Search, neg_elbo, optimal_q
from bench.evaluation.estimators.quadrature import QuadratureSettings, exact_log_px
from bench.evaluation.estimators.stats import paired_difference
from models import Gaussian, variant
from models.nets import MLPNet
from models.posterior import DiagonalGaussian, log_normal_std

D, S2, N = 6, 0.2, 300
LINEAR = partial(MLPNet, n_hidden=0)
FINE = QuadratureSettings(coarse_points=64, first_points=64, max_points=256, tol=1e-4)


def linear(name: str, z_dim: int = 2, **options):
    """`name` with a linear encoder and decoder, a Gaussian p(x|z) of variance S2, float64, its
    weights drawn from a fixed seed."""
    torch.manual_seed(0)
    build = variant(name)
    return build(image_shape=(D,), z_dim=z_dim, likelihood=Gaussian(S2), net=LINEAR, **options)


@torch.no_grad()
def _x(model, z: torch.Tensor) -> torch.Tensor:
    return model.decode(z) + math.sqrt(S2) * torch.randn(len(z), D, dtype=torch.float64)


def decoder_affine(model) -> tuple[torch.Tensor, torch.Tensor]:
    layer = model.decoder[0]
    return layer.weight.detach(), layer.bias.detach()


def assert_iw_bound_reaches(model, x: torch.Tensor, exact: torch.Tensor, k: int = 4000) -> None:
    """With q* (each example's best member of the variant's posterior family) as the proposal,
    the IW bound at k is below ln p(x) on average (within 3 paired SE) and within 0.02 nats of
    it; the ELBO of q* is below ln p(x) (within 3 paired SE)."""
    found = optimal_q(model, x, None, Search(samples=16, lr=0.05))
    terms = iw_terms(model, x, None, k, proposal=found.q)
    slack, se = paired_difference(exact, terms["log_px"])
    assert -3 * se <= slack < 0.02
    elbo_gap, elbo_se = paired_difference(exact, -(terms["recon"] + terms["kl"]))
    assert elbo_gap > -3 * elbo_se


@pytest.fixture(scope="module")
@torch.no_grad()
def vamp():
    """Two pseudo-inputs on the real line: p(z) a mixture of two Gaussians, so p(x) is one too."""
    model = linear("vamp", components=2, pseudo_clamp=False).double().eval()
    with torch.no_grad():
        model.pseudo_inputs.copy_(torch.randn(2, D, dtype=torch.float64) * 2)
    x = _x(model, model.sample_prior(N, torch.zeros((), dtype=torch.float64)))
    w, b = decoder_affine(model)
    mu, logvar = model.components()
    parts = [
        MultivariateNormal(
            w @ m + b, w @ torch.diag(v.exp()) @ w.T + S2 * torch.eye(D).double()
        ).log_prob(x)
        for m, v in zip(mu, logvar, strict=True)
    ]
    return model, x, torch.logsumexp(torch.stack(parts), 0) - math.log(2)


@torch.no_grad()
def test_the_vampprior_is_the_mixture_of_the_encoders_posteriors_at_its_pseudo_inputs(vamp):
    model, _, _ = vamp
    z = torch.randn(50, 2, dtype=torch.float64) * 3
    mu, logvar = model.encode(model.pseudo_inputs)
    each = torch.stack(
        [DiagonalGaussian(m, v).log_prob(z) for m, v in zip(mu, logvar, strict=True)]
    )
    torch.testing.assert_close(model.log_prior(z), torch.logsumexp(each, 0) - math.log(2))


@torch.no_grad()
def test_a_vampprior_with_one_pseudo_input_at_n01_is_the_vae():
    """q(z|u) = N(0, I) at the one pseudo-input: the prior is the VAE's; the IW bound on the
    same weights and noise is the VAE's to rounding, its Monte Carlo KL unbiased for the VAE's."""
    vamp = linear("vamp", components=1, pseudo_clamp=False).double()
    vae = linear("vae").double()
    vae.load_state_dict({k: v for k, v in vamp.state_dict().items() if k != "pseudo_inputs"})
    with torch.no_grad():
        vamp.pseudo_inputs.zero_()
        for model in (vamp, vae):
            model.encoder[0].bias[:2].zero_()  # mu(0) = 0
            model.encoder[0].bias[2:].zero_()  # logvar(0) = 0
    z = torch.randn(20, 2, dtype=torch.float64)
    torch.testing.assert_close(vamp.log_prior(z), log_normal_std(z))
    x = torch.randn(40, D, dtype=torch.float64)
    torch.manual_seed(3)
    ours = iw_terms(vamp, x, None, 500)
    torch.manual_seed(3)
    theirs = iw_terms(vae, x, None, 500)
    torch.testing.assert_close(ours["log_px"], theirs["log_px"])
    assert abs(float((ours["kl"] - theirs["kl"]).mean())) < 0.05


def test_the_vampprior_ladder_against_its_mixture_marginal(vamp):
    model, x, exact = vamp
    found = exact_log_px(model, x[:40], None, FINE)
    torch.testing.assert_close(found.log_px, exact[:40], atol=1e-3, rtol=0)
    assert_iw_bound_reaches(model, x, exact)


def test_an_iaf_of_length_0_is_the_vae():
    iaf, vae = linear("iaf", flow_length=0).double(), linear("vae").double()
    assert iaf.state_dict().keys() == vae.state_dict().keys()
    iaf.load_state_dict(vae.state_dict())
    x = torch.randn(30, D, dtype=torch.float64)
    for model in (iaf, vae):
        torch.manual_seed(4)
        parts = model.loss_parts(x)
        torch.manual_seed(4)
        terms = iw_terms(model, x, None, 50)
        if model is iaf:
            first = (parts.objective, terms["log_px"], terms["kl"])
    torch.testing.assert_close(first, (parts.objective, terms["log_px"], terms["kl"]))


def scrambled_iaf(z_dim: int = 3):
    """An IAF whose steps are far from the identity."""
    model = linear("iaf", z_dim=z_dim, flow_length=3, flow_width=16, context_dim=4).double()
    with torch.no_grad():
        for step in model.flow:
            for layer in (step.hidden, step.shift, step.gate):
                layer.weight.normal_(0, 1.0)
            step.gate.bias.normal_(0, 1.0)
    return model.eval()


@torch.no_grad()
def test_the_iaf_log_density_is_the_change_of_variables():
    """ln q(z) = ln N(eps) - ln |det dz/deps|, the Jacobian by autograd; and the Jacobian of
    each step alone is triangular (the MADE's masks)."""
    model = scrambled_iaf()
    x = torch.randn(5, D, dtype=torch.float64)
    q = model.posterior(model.variational_params(x))
    eps = torch.randn(1, 5, 3, dtype=torch.float64)
    _, log_q = q.transform(eps)
    for i in range(5):

        def z_of(e, i=i):
            one = eps.clone()
            one[0, i] = e
            return q.transform(one)[0][0, i]

        with torch.enable_grad():
            jac = torch.autograd.functional.jacobian(z_of, eps[0, i])
        log_n01 = -0.5 * (eps[0, i].pow(2) + math.log(2 * math.pi)).sum()
        expected = log_n01 - torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(log_q[0, i], expected)
    step, h = model.flow[0], q.params[2][:1]
    with torch.enable_grad():
        jac = torch.autograd.functional.jacobian(lambda z: step(z, h)[0][0], eps[0, :1])[:, 0]
    torch.testing.assert_close(jac, jac.tril())


def test_the_iaf_ladder_against_the_linear_gaussian_marginal():
    model = linear("iaf", flow_length=2, flow_width=16, context_dim=4).double().eval()
    w, b = decoder_affine(model)
    x = _x(model, torch.randn(N, 2, dtype=torch.float64))
    exact = MultivariateNormal(b, w @ w.T + S2 * torch.eye(D, dtype=torch.float64)).log_prob(x)
    assert_iw_bound_reaches(model, x, exact)


@pytest.fixture(scope="module")
def hvae():
    """z2 ~ N(0, 1), z1 | z2 ~ N(a z2 + c, v), x | z1 linear-Gaussian: p(x) is Gaussian with
    covariance (a^2 + v) w w^T + S2 I about w c + b. q(z2|z1) is the true p(z2|z1, x) = p(z2|z1),
    N(a (z1 - c) / t, v / t) with t = a^2 + v: q* of q(z1|x) makes the IW bound tight."""
    model = linear("hvae", z_dim=1, z2_dim=1, n_hidden2=0).double().eval()
    a, c, log_v = 1.5, 0.7, math.log(0.4)
    t = a * a + math.exp(log_v)
    with torch.no_grad():
        model.p_z1[0].weight.copy_(torch.tensor([[a], [0.0]]))
        model.p_z1[0].bias.copy_(torch.tensor([c, log_v]))
        model.q_z2[0].weight.copy_(torch.tensor([[a / t], [0.0]]))
        model.q_z2[0].bias.copy_(torch.tensor([-a * c / t, log_v - math.log(t)]))
    w, b = decoder_affine(model)
    cov = (a * a + math.exp(log_v)) * w @ w.T + S2 * torch.eye(D, dtype=torch.float64)
    torch.manual_seed(5)
    with torch.no_grad():
        x = _x(model, model.sample_prior(N, torch.zeros((), dtype=torch.float64)))
    return model, x, MultivariateNormal(w[:, 0] * c + b, cov).log_prob(x), (a, c, log_v)


@torch.no_grad()
def test_the_hvae_prior_samples_have_the_two_layer_moments(hvae):
    model, _, _, (a, c, log_v) = hvae
    torch.manual_seed(6)
    z = model.sample_prior(200_000, torch.zeros((), dtype=torch.float64))
    z1, z2 = z[:, 0], z[:, 1]
    assert abs(float(z1.mean()) - c) < 0.01 and abs(float(z2.var()) - 1) < 0.01
    assert abs(float(z1.var()) - (a * a + math.exp(log_v))) < 0.02
    assert abs(float((z1 * z2).mean()) - a) < 0.02


def test_the_hvae_ladder_against_its_gaussian_marginal(hvae):
    model, x, exact, _ = hvae
    found = exact_log_px(model, x[:40], None, FINE)
    torch.testing.assert_close(found.log_px, exact[:40], atol=1e-3, rtol=0)
    assert_iw_bound_reaches(model, x, exact)


def test_svi_steps_of_size_0_are_the_vae_and_real_steps_approach_the_true_posterior():
    """The linear-Gaussian posterior is N(S w^T (x - b) / S2, S), S = (I + w^T w / S2)^-1."""
    savae = linear("savae", svi_steps=1, svi_lr=0.0).double().eval()
    x = torch.randn(200, D, dtype=torch.float64)
    torch.testing.assert_close(savae.variational_params(x), savae.encode(x))
    savae.svi_steps, savae.svi_lr = 20, 0.05
    w, b = decoder_affine(savae)
    cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + w.T @ w / S2)
    true_mu = (x - b) @ w @ cov / S2
    with torch.no_grad():
        refined, encoded = savae.variational_params(x), savae.encode(x)
    assert (refined[0] - true_mu).norm() < 0.5 * (encoded[0] - true_mu).norm()
    eps = torch.randn(64, 200, 2, dtype=torch.float64)
    with torch.no_grad():
        before, after = (neg_elbo(savae, x, None, q, eps) for q in (encoded, refined))
    better, se = paired_difference(before, after)
    assert better > 3 * se


def test_savae_training_backpropagates_through_its_steps_to_the_encoder():
    """The encoder's gradient differs from the one it gets with no steps (the VAE's loss at the
    same noise is not what is differentiated)."""
    x = torch.randn(16, D, dtype=torch.float64)
    grads = []
    for steps in (0, 3):
        model = linear("savae", svi_steps=steps, svi_lr=0.1).double().train()
        torch.manual_seed(7)
        model.loss_parts(x).objective.sum().backward()
        grads.append(model.encoder[0].weight.grad.clone())
    assert grads[1].abs().sum() > 0 and not torch.allclose(grads[0], grads[1])


def test_the_vampprior_caches_its_components_only_while_no_weight_changes():
    """Evaluation encodes the pseudo-inputs once; a weight changed in place, or by a training
    step of a fused Adam (which leaves `_version` alone) then a switch to eval, is seen at once;
    a pickled model (the logged MLflow model) carries no cache."""
    import pickle

    model = linear("vamp", components=3, pseudo_clamp=False).double().eval()
    z = torch.randn(8, 2, dtype=torch.float64)
    with torch.no_grad():
        before = model.log_prior(z)
        assert model._cached is not None
        model.encoder[0].bias.add_(0.5)
        after = model.log_prior(z)
    assert not torch.allclose(before, after)
    mu, logvar = model.encode(model.pseudo_inputs)
    each = torch.stack(
        [DiagonalGaussian(m, v).log_prob(z) for m, v in zip(mu, logvar, strict=True)]
    )
    torch.testing.assert_close(after, torch.logsumexp(each, 0).detach() - math.log(3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)  # no _version bump
    model.train()
    model.loss_parts(torch.randn(4, D, dtype=torch.float64)).objective.sum().backward()
    optimizer.step()
    with torch.no_grad():
        model.eval()
        mu, logvar = model.encode(model.pseudo_inputs)
        each = torch.stack(
            [DiagonalGaussian(m, v).log_prob(z) for m, v in zip(mu, logvar, strict=True)]
        )
        after = torch.logsumexp(each, 0) - math.log(3)
        torch.testing.assert_close(model.log_prior(z), after)
    copy = pickle.loads(pickle.dumps(model))
    assert copy._cached is None
    with torch.no_grad():
        torch.testing.assert_close(copy.log_prior(z), after)
