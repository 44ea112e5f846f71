"""Each example's best member q*(z|x) of the model's posterior family: its own parameters (what
the encoder outputs: a diagonal Gaussian's (mu, log sigma^2), the iaf's also its flow's context)
optimized against the ELBO with the model frozen, all examples at once (Cremer, Li & Duvenaud
2018)."""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.evaluation.estimators.iw import Params
from bench.runtime.progress import progress
from bench.signals import raise_if_interrupted
from models.base import LatentModel


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
    q: Params
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
    """Each example keeps the parameters of its best check (the start's included): Adam's noisy
    steps from a start already near the optimum (a savae's refined q) must not make q* worse."""
    with torch.no_grad():
        start = model.variational_params(x, y)
    params = tuple(t.detach().clone().requires_grad_() for t in start)
    shape = model.posterior(params, y).noise_shape
    check_noise = _noise(shape, params, search.check_samples)
    best = _fixed_noise_neg_elbo(model, x, y, params, check_noise)
    kept = tuple(t.detach().clone() for t in params)
    with progress(search.max_cycles * search.cycle_steps, "q* search", "step") as bar:
        for cycle in range(1, search.max_cycles + 1):
            _adam_cycle(model, x, y, params, shape, search, cycle, bar.update)
            now = _fixed_noise_neg_elbo(model, x, y, params, check_noise)
            better = now < best
            improved = torch.where(better, now, best)  # a NaN check keeps the example's best
            gain, best = float((best - improved).mean()), improved
            kept = tuple(
                torch.where(better[:, None], t.detach(), k)
                for t, k in zip(params, kept, strict=True)
            )
            if gain < search.tol:
                break
    return OptimalQ(kept, cycle * search.cycle_steps, gain)


def _adam_cycle(
    model: LatentModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    params: Params,
    shape: tuple[int, ...],
    search: Search,
    cycle: int,
    on_step: Callable[[], object],
) -> None:
    """One cosine-decayed cycle of Adam on the parameters, at the cycle's halved rate."""
    optimizer = torch.optim.Adam(params, lr=search.lr / 2 ** (cycle - 1))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, search.cycle_steps)
    for _ in range(search.cycle_steps):
        raise_if_interrupted()
        loss = neg_elbo(model, x, y, params, _noise(shape, params, search.samples))
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        schedule.step()
        on_step()


def _noise(shape: tuple[int, ...], like: Params, n: int) -> torch.Tensor:
    """n draws of the posterior's N(0, I) noise (`shape` per draw), as the parameters are."""
    return torch.randn(n, *shape, dtype=like[0].dtype, device=like[0].device)


@torch.no_grad()
def _fixed_noise_neg_elbo(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor | None, params: Params, eps: torch.Tensor
) -> torch.Tensor:
    """Each example's -ELBO under the same noise every time, float64."""
    return neg_elbo(model, x, y, params, eps).double()


def neg_elbo(
    model: LatentModel, x: torch.Tensor, y: torch.Tensor | None, params: Params, eps: torch.Tensor
) -> torch.Tensor:
    """Per-example -ELBO of the posterior built from `params`: reconstruction averaged over the
    draws from the noise eps (samples, N, latent), the KL closed-form where it has one."""
    q = model.posterior(params, y)
    z, log_q = q.transform(eps)
    return model.neg_log_prob_samples(z, y, x).mean(0) + model.kl(q, z, log_q)
