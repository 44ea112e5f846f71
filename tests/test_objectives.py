"""Variants whose training objectives reduce to the VAE's at a setting, checked for the same
noise and weights; and the IWAE's objective is the tighter bound."""

from functools import partial

import torch

from models import Bernoulli, variant
from models.nets import MLPNet


def build(name: str, **options):
    torch.manual_seed(0)
    return variant(name)(
        image_shape=(1, 8, 8),
        z_dim=4,
        likelihood=Bernoulli(),
        net=partial(MLPNet, h_dim=32),
        **options,
    )


def objective(model, x: torch.Tensor, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.loss_parts(x).objective


X = torch.bernoulli(torch.full((16, 64), 0.3), generator=torch.Generator().manual_seed(2))


def test_iwae_with_one_sample_is_the_vae_objective_for_the_same_noise():
    vae, iwae = build("vae"), build("iwae", k_train=1)
    assert torch.equal(objective(iwae, X), objective(vae, X))
    parts = build("iwae", k_train=1).loss_parts(X)
    assert torch.equal(parts.objective, parts.neg_elbo)


def test_iwae_objective_is_below_the_elbo_on_average_and_tightens_with_k():
    """E[-IW_k] decreases in k; averaged over 40 draws of 16 examples."""
    means = {}
    for k in (1, 5, 50):
        model = build("iwae", k_train=k)
        with torch.no_grad():
            means[k] = torch.stack([objective(model, X, s).mean() for s in range(40)]).mean()
    assert means[50] < means[5] < means[1]


def test_beta_vae_with_beta_one_is_the_vae_and_weights_the_kl():
    vae = build("vae")
    assert torch.equal(objective(build("beta-vae", beta=1.0), X), objective(vae, X))
    parts = build("beta-vae", beta=3.0)
    torch.manual_seed(1)
    p = parts.loss_parts(X)
    torch.testing.assert_close(p.objective, p.recon + 3.0 * p.kl)
