"""Each example's best diagonal Gaussian q*(z|x): its own (mu, log sigma^2) optimized against the
ELBO with the model frozen, all examples at once (Cremer, Li & Duvenaud 2018)."""

from dataclasses import dataclass

import torch

from bench.evaluation.estimators.iw import Gaussian
from bench.signals import raise_if_interrupted
from models.base import LatentModel, kl_normal


@dataclass(frozen=True)
class Search:
    """How q* is searched: Adam from the encoder's q with `samples` reparameterized draws a step,
    in cycles of `cycle_steps` steps, each a cosine decay from a learning rate half the last
    cycle's (the first: `lr`). After each cycle the mean -ELBO is measured under fixed noise
    (`check_samples` draws, the same every time); the search stops when a cycle gained less than
    `tol` nats per example, or after `max_cycles`."""

    samples: int = 8
    lr: float = 0.02
    cycle_steps: int = 100
    tol: float = 0.005
    max_cycles: int = 6
    check_samples: int = 32


@dataclass
class OptimalQ:
    q: Gaussian
    steps: int
    last_gain: float  # nats per example gained by the last cycle


def optimal_q(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor | None, search: Search = Search()
) -> OptimalQ:
    was_training = model.training
    model.eval().requires_grad_(False)
    try:
        with torch.enable_grad():
            return _cycles(model, x, y, search)
    finally:
        model.requires_grad_(True).train(was_training)


def _cycles(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor | None, search: Search
) -> OptimalQ:
    with torch.no_grad():
        mu, logvar = (t.detach().clone().requires_grad_() for t in model.encode(x, y))
    check_noise = torch.randn(search.check_samples, *mu.shape, dtype=mu.dtype, device=mu.device)
    measured = _fixed_noise_neg_elbo(model, x, y, (mu, logvar), check_noise)
    for cycle in range(1, search.max_cycles + 1):
        optimizer = torch.optim.Adam([mu, logvar], lr=search.lr / 2 ** (cycle - 1))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, search.cycle_steps)
        for _ in range(search.cycle_steps):
            raise_if_interrupted()
            eps = torch.randn(search.samples, *mu.shape, dtype=mu.dtype, device=mu.device)
            loss = neg_elbo(model, x, y, (mu, logvar), eps)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            schedule.step()
        now = _fixed_noise_neg_elbo(model, x, y, (mu, logvar), check_noise)
        gain, measured = measured - now, now
        if gain < search.tol:
            break
    return OptimalQ((mu.detach(), logvar.detach()), cycle * search.cycle_steps, gain)


@torch.no_grad()
def _fixed_noise_neg_elbo(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor | None, q: Gaussian, eps: torch.Tensor
) -> float:
    return float(neg_elbo(model, x, y, q, eps).double().mean())


def neg_elbo(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor | None, q: Gaussian, eps: torch.Tensor
) -> torch.Tensor:
    """Per-example -ELBO: reconstruction averaged over the draws z = mu + eps * sigma (eps:
    (samples, N, z)), analytic KL."""
    mu, logvar = q
    z = mu + eps * (0.5 * logvar).exp()
    recon = model.neg_log_prob_samples(z, y, x).mean(0)
    return recon + kl_normal(mu, logvar)
