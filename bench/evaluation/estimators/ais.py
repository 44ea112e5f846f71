"""Annealed importance sampling (Neal 2001) of ln p(x), as Wu, Burda, Salakhutdinov & Grosse 2017
evaluate decoder-based models: from a start density f0 (the prior, or the encoder's q) to
p(z) p(x|z) through gamma_b = f0 * l^b, b on a sigmoid schedule, each step an HMC transition
whose step size is adapted per chain toward `target_acceptance`. Every chain of every example is
one row of one batched tensor program; log-weights are summed in float64.

ln of a chain's weight is a stochastic lower bound on ln p(x) (unbiased in p, not in ln p), so
-ln p_hat errs high, like the IW bound, and by less the longer the schedule. Run in reverse from
an exact posterior sample (`reverse`), the same chain gives a stochastic upper bound on ln p(x):
the two sandwich it (bidirectional Monte Carlo, Grosse et al. 2015).
"""

import math
from dataclasses import dataclass

import torch

from bench.runtime.progress import progress
from bench.signals import raise_if_interrupted
from models.base import LatentModel

STARTS = ("prior", "encoder")


@dataclass(frozen=True)
class AISSettings:
    steps: int = 500  # intermediate distributions (HMC transitions)
    chains: int = 4  # per example
    leapfrog: int = 10  # leapfrog steps per HMC transition
    start: str = "encoder"  # encoder | prior: the encoder's at short schedules, the prior's at long
    step_size: float = 0.05  # every chain's first leapfrog step size
    target_acceptance: float = 0.65

    def passes_per_chain(self) -> int:
        """Decoder passes, a backward one counted as two forward ones: one gradient per leapfrog
        step, the energies coming with them."""
        return 3 * self.leapfrog * self.steps


@dataclass
class AISResult:
    log_px: torch.Tensor  # (B,) float64: ln mean_c w_c (forward) or -ln mean_c 1/w_c (reverse)
    chain_se: torch.Tensor  # (B,) float64: its standard error over the chains (delta method)
    acceptance: float  # mean HMC acceptance over every transition and chain


def sigmoid_schedule(steps: int, sharpness: float = 4.0) -> torch.Tensor:
    """b_0 = 0 < ... < b_T = 1, dense at both ends (Grosse, Maddison & Salakhutdinov 2013)."""
    s = torch.sigmoid(sharpness * torch.linspace(-1, 1, steps + 1, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


class _Target:
    """ln gamma_b(z) = ln f0(z) + b ln l(z) for z (C, B, Z); prior start: f0 = p(z), l the
    likelihood; encoder start: f0 = q(z|x) (where q is not a diagonal Gaussian, the diagonal
    Gaussian of its moments: AIS is exact from any normalized start), l = p(z) p(x|z) / f0(z)."""

    def __init__(self, model: LatentModel, x: torch.Tensor, y, start: str):
        self.model, self.x, self.y = model, x, y
        self.q = None
        if start == "encoder":
            self.q = model.posterior(model.variational_params(x, y), y).gaussian()

    def sample_start(self, chains: int) -> torch.Tensor:
        if self.q is None:
            z = self.model.sample_prior(chains * len(self.x), self.x)
            return z.reshape(chains, len(self.x), -1)
        return self.q.rsample(chains)[0]

    def parts(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ln f0(z), ln l(z)), each (C, B), float64."""
        log_px_z = -self.model.neg_log_prob_samples(z, self.y, self.x).double()
        log_prior = self.model.log_prior(z).double()
        if self.q is None:
            return log_prior, log_px_z
        log_q = self.q.log_prob(z).double()
        return log_q, log_prior + log_px_z - log_q

    def with_grad(self, z: torch.Tensor, b: torch.Tensor):
        """(ln f0, ln l, d ln gamma_b / dz) at z."""
        with torch.enable_grad():
            z = z.detach().requires_grad_()
            log_f0, log_l = self.parts(z)
            (grad,) = torch.autograd.grad((log_f0 + b * log_l).sum(), z)
        return log_f0.detach(), log_l.detach(), grad


def ais(
    model: LatentModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    settings: AISSettings,
    reverse_from: torch.Tensor | None = None,
) -> AISResult:
    """ln p(x) of the B examples x (conditional on the labels y for a cvae) by forward AIS, or,
    given `reverse_from` (B, Z) exact posterior samples (the z that generated each x), by
    reverse AIS from them to the start density."""
    was_training = model.training
    model.eval().requires_grad_(False)
    try:
        return _anneal(model, x, y, settings, reverse_from)
    finally:
        model.requires_grad_(True).train(was_training)


def _anneal(model, x, y, settings: AISSettings, reverse_from) -> AISResult:
    target = _Target(model, x, y, settings.start)
    betas = sigmoid_schedule(settings.steps).to(x.device)
    if reverse_from is None:
        z = target.sample_start(settings.chains).detach()
    else:
        betas = betas.flip(0)
        z = reverse_from.expand(settings.chains, *reverse_from.shape).clone()
    chain = _Chain(target, z, betas[0], settings)
    log_w = torch.zeros(z.shape[:2], dtype=torch.float64, device=x.device)
    with progress(len(betas) - 1, "AIS" if reverse_from is None else "reverse AIS", "step") as bar:
        for i in range(1, len(betas)):
            raise_if_interrupted()
            log_w += (betas[i] - betas[i - 1]) * chain.log_l
            if i < len(betas) - 1:
                chain.transition(betas[i])
            bar.update()
    sign = 1.0 if reverse_from is None else -1.0
    log_mean, chain_se = _log_mean_exp(log_w)
    return AISResult(sign * log_mean, chain_se, chain.acceptance())


class _Chain:
    """HMC on gamma_b, identity mass; step sizes (C, B) adapted after every transition: x1.02
    when the chain's running acceptance exceeds the target, else x0.98 (Wu et al. 2017's rule)."""

    def __init__(self, target: _Target, z: torch.Tensor, b: torch.Tensor, settings: AISSettings):
        self.target, self.settings, self.z = target, settings, z
        self.log_f0, self.log_l, self.grad = target.with_grad(z, b)
        shape = z.shape[:2]
        self.step = torch.full(shape, settings.step_size, dtype=z.dtype, device=z.device)
        self.running = torch.full(shape, settings.target_acceptance, device=z.device)
        self.accepted = torch.zeros((), device=z.device)  # on the device: no sync a step
        self.transitions = 0

    def transition(self, b: torch.Tensor) -> None:
        eps = self.step.unsqueeze(-1)
        momentum = torch.randn_like(self.z)
        energy = self._energy(self.log_f0, self.log_l, b, momentum)
        z, p, grad = self.z, momentum + 0.5 * eps * self.grad, self.grad
        for j in range(self.settings.leapfrog):
            z = z + eps * p
            log_f0, log_l, grad = self.target.with_grad(z, b)
            p = p + (eps if j < self.settings.leapfrog - 1 else 0.5 * eps) * grad
        proposed = self._energy(log_f0, log_l, b, p)
        accept = torch.rand_like(energy).log() < (energy - proposed).nan_to_num(nan=-math.inf)
        self._keep(accept, z, log_f0, log_l, grad)
        self._adapt(accept)

    @staticmethod
    def _energy(log_f0, log_l, b, momentum) -> torch.Tensor:
        return -(log_f0 + b * log_l) + 0.5 * momentum.double().pow(2).sum(-1)

    def _keep(self, accept, z, log_f0, log_l, grad) -> None:
        self.z = torch.where(accept.unsqueeze(-1), z, self.z)
        self.grad = torch.where(accept.unsqueeze(-1), grad, self.grad)
        self.log_f0 = torch.where(accept, log_f0, self.log_f0)
        self.log_l = torch.where(accept, log_l, self.log_l)

    def _adapt(self, accept: torch.Tensor) -> None:
        s = self.settings
        self.running = 0.9 * self.running + 0.1 * accept.float()
        factor = torch.where(self.running > s.target_acceptance, 1.02, 0.98)
        self.step = (self.step * factor).clamp(1e-4, 0.5)
        self.accepted += accept.float().mean()
        self.transitions += 1

    def acceptance(self) -> float:
        return float(self.accepted) / self.transitions if self.transitions else math.nan


def _log_mean_exp(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ln mean_c exp(log_w) over chains (dim 0), and its SE by the delta method:
    sd(w) / (sqrt(C) mean(w)), from weights scaled by their largest."""
    chains = log_w.shape[0]
    log_mean = torch.logsumexp(log_w, 0) - math.log(chains)
    w = (log_w - log_w.max(0).values).exp()
    se = (
        w.std(0, unbiased=True) / (math.sqrt(chains) * w.mean(0)) if chains > 1 else w[0] * math.nan
    )
    return log_mean, se
