"""Decoder likelihoods p(x|z): each returns -ln p(x|z) summed over pixels, constants kept.

Each says what its decoder outputs per pixel (`outputs_per_pixel`) and what data it is a
likelihood of (`takes`): "binary" draws, "dequantized" grey levels x = (k + u)/L (a density on
[0, 1]^D, which bounds the levels' discrete likelihood) or the grey "levels" x = k/(L - 1)
themselves (an exact probability of each level).
"""

import math

import torch
import torch.nn.functional as F

from models.kernels import (
    bernoulli_nll,
    discretized_logistic_nll,
    dot,
    fp32_or_wider,
    log_normalizer_sum,
    softplus_sum,
    squared_error,
)


class PerPixel:
    """What every likelihood shares: -ln p in the decoder's precision (fp32 at least) from the
    float64 sum, and the IW bound's output-layer path taken unfused unless a likelihood fuses it.
    `normalized`: a probability (or density) of the data it takes, so recon + KL is a -ELBO."""

    normalized = True

    def neg_log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.neg_log_prob64(out, x).to(fp32_or_wider(out.dtype))

    def neg_log_prob64(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def neg_log_prob_linear(
        self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """neg_log_prob64 of the output layer h Wᵀ + b, for samples h (..., B, H) of B images."""
        return self.neg_log_prob64(F.linear(h, weight, bias), x)


class Bernoulli(PerPixel):
    """Decoder outputs logits; only a likelihood on binary data."""

    name = "bernoulli"
    takes = "binary"
    outputs_per_pixel = 1

    def neg_log_prob64(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Σ_d softplus(l_d) − x_d l_d: binary cross-entropy with logits, summed over pixels."""
        return bernoulli_nll(logits, x)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(logits))

    def neg_log_prob_linear(
        self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """neg_log_prob(h Wᵀ + b, x) for samples h (..., B, H) of the B images x, fused:
        Σ_d softplus(l_d) − x_d l_d, with Σ_d x_d l_d = (Wᵀx)·h + b·x taken once per image
        through the matmul instead of per sample and pixel. Float64, like the IW bound's sums."""
        fit = dot(h, x @ weight) + (x @ bias).double()
        return softplus_sum(F.linear(h, weight, bias)) - fit


class Gaussian(PerPixel):
    """Decoder outputs the mean; fixed variance sigma^2 shared by all pixels."""

    name = "gaussian"
    takes = "dequantized"
    outputs_per_pixel = 1

    def __init__(self, variance: float):
        if not variance > 0:
            raise ValueError(f"model.output_variance must be > 0, got {variance}")
        self.variance = float(variance)
        self._log_norm = 0.5 * math.log(2 * math.pi * self.variance)

    def neg_log_prob64(self, mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return squared_error(mean, x) / (2 * self.variance) + mean.shape[-1] * self._log_norm

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def sample(self, mean: torch.Tensor) -> torch.Tensor:
        return mean + math.sqrt(self.variance) * torch.randn_like(mean)

    def optimal_variance(self, neg_log_prob: float, d: int) -> float:
        """The sigma^2 that would maximize a mean -ln p(x|z) of `neg_log_prob` over `d` pixels:
        the per-pixel mean squared error, recovered exactly since every constant is kept."""
        return 2 * self.variance * (neg_log_prob - d * self._log_norm) / d


class DiscretizedLogistic(PerPixel):
    """Decoder outputs a mean μ and a log-scale ln s per pixel (first the D means, then the D
    log-scales). The exact probability of each of L levels x_k = k/(L-1): the logistic's mass on
    the level's bin [x_k - h, x_k + h], h = 1/(2(L-1)), the end bins open to ±∞ (Kingma et al.
    2016; Salimans et al. 2017), so the L probabilities sum to 1 and -ln p is a code length."""

    name = "discretized_logistic"
    takes = "levels"
    outputs_per_pixel = 2

    def __init__(self, n_levels: int):
        if n_levels < 2:
            raise ValueError(f"a discretized likelihood needs >= 2 levels, got {n_levels}")
        self.half_bin = 0.5 / (n_levels - 1)

    def neg_log_prob64(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return discretized_logistic_nll(out, x, self.half_bin)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out.chunk(2, dim=-1)[0].clamp(0, 1)

    def sample(self, out: torch.Tensor) -> torch.Tensor:
        """A logistic draw, rounded to its level (the end bins take the tails)."""
        mu, log_s = out.chunk(2, dim=-1)
        u = torch.rand_like(mu).clamp(1e-7, 1 - 1e-7)
        draw = mu + log_s.exp() * (u.log() - (-u).log1p())
        steps = 0.5 / self.half_bin  # L - 1
        return ((draw * steps).round() / steps).clamp(0, 1)


class ContinuousBernoulli(PerPixel):
    """Decoder outputs logits η; the continuous Bernoulli density on [0, 1] (Loaiza-Ganem &
    Cunningham 2019): C(λ) λ^x (1-λ)^(1-x), λ = σ(η), the normalizer that BCE on grey levels
    lacks. ln C = ln(η / tanh(η/2)), ln 2 at λ = ½, taken from its series near η = 0."""

    name = "continuous_bernoulli"
    takes = "dequantized"
    outputs_per_pixel = 1

    def neg_log_prob64(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return bernoulli_nll(logits, x) - log_normalizer_sum(logits)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """E[x] = λ/(2λ-1) + 1/(2 artanh(1-2λ)) = 1/(1 - e^-η) - 1/η; ½ at η = 0."""
        eta = logits.double()
        small = eta.abs() < 1e-3
        safe = torch.where(small, torch.ones_like(eta), eta)
        exact = -1 / torch.expm1(-safe) - 1 / safe
        return torch.where(small, 0.5 + eta / 12, exact).to(logits.dtype)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.distributions.ContinuousBernoulli(logits=logits).sample()


class GreyBCE(Bernoulli):
    """The seed's loss (pytorch/examples' vae): binary cross-entropy of the logits against grey
    levels x = k/(L-1), Σ_d softplus(l_d) − x_d l_d. Not a likelihood of grey levels: over x in
    [0, 1] λ^x (1-λ)^(1-x) integrates to 1/C(λ) < 1 (C: the continuous Bernoulli's normalizer)
    and over the levels it does not sum to 1 either, so it bounds no -ln p(x): no nll, -ELBO or
    bits/dim, only the loss itself (recon + KL)."""

    name = "bce_grey"
    takes = "levels"
    normalized = False


Likelihood = Bernoulli | Gaussian | DiscretizedLogistic | ContinuousBernoulli | GreyBCE
LIKELIHOODS = {
    c.name: c for c in (Bernoulli, Gaussian, DiscretizedLogistic, ContinuousBernoulli, GreyBCE)
}


def build_likelihood(name: str, output_variance: float, n_levels: int = 256) -> Likelihood:
    """`n_levels`: the data's grey levels (a discretized likelihood's bins)."""
    if name == "bernoulli":
        return Bernoulli()
    if name == "gaussian":
        return Gaussian(output_variance)
    if name == "discretized_logistic":
        return DiscretizedLogistic(n_levels)
    if name == "continuous_bernoulli":
        return ContinuousBernoulli()
    if name == "bce_grey":
        return GreyBCE()
    raise ValueError(f"unknown model.likelihood {name!r}: choose one of {', '.join(LIKELIHOODS)}")
