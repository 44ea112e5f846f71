"""Decoder likelihoods p(x|z): each returns -ln p(x|z) summed over pixels, constants kept."""

import math

import torch
import torch.nn.functional as F


def softplus_sum(logits: torch.Tensor) -> torch.Tensor:
    """Σ_d ln(1 + e^{l_d}) over the last dim in float64, as max(l, 0) + ln(1 + e^{-|l|}). ATen's
    softplus (and BCE with logits) goes through log1p, which is not vectorized on the CPU
    (6.6 ms against 0.9 ms for log on 1.6 M floats, AMD EPYC Zen 4); ln(1 + u) for u in (0, 1]
    is exact to 1.2e-7 absolute. The float64 accumulation costs ~8 % and makes the sum 25x more
    accurate than a float32 one (9e-6 against 2e-4 nats on 784 pixels)."""
    terms = logits.clamp_min(0) + torch.log(1 + torch.exp(-logits.abs()))
    return terms.sum(-1, dtype=torch.float64)


class Bernoulli:
    """Decoder outputs logits; only a likelihood on binary data."""

    name = "bernoulli"
    needs_binary_data = True

    def neg_log_prob(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Σ_d softplus(l_d) − x_d l_d: binary cross-entropy with logits, summed over pixels."""
        fit = (x * logits).sum(-1, dtype=torch.float64)
        return (softplus_sum(logits) - fit).to(logits.dtype)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def neg_log_prob_linear(
        self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """neg_log_prob(h Wᵀ + b, x) for samples h (..., B, H) of the B images x, fused:
        Σ_d softplus(l_d) − x_d l_d, with Σ_d x_d l_d = (Wᵀx)·h + b·x taken once per image
        through the matmul instead of per sample and pixel. Float64, like the IW bound's sums."""
        fit = (h * (x @ weight)).sum(-1, dtype=torch.float64) + (x @ bias).double()
        return softplus_sum(F.linear(h, weight, bias)) - fit


class Gaussian:
    """Decoder outputs the mean; fixed variance sigma^2 shared by all pixels."""

    name = "gaussian"
    needs_binary_data = False

    def __init__(self, variance: float):
        if not variance > 0:
            raise ValueError(f"model.output_variance must be > 0, got {variance}")
        self.variance = float(variance)
        self._log_norm = 0.5 * math.log(2 * math.pi * self.variance)

    def neg_log_prob(self, mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        sq = (x - mean).pow(2).sum(-1)
        return sq / (2 * self.variance) + mean.shape[-1] * self._log_norm

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def neg_log_prob_linear(
        self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        return self.neg_log_prob(F.linear(h, weight, bias), x).double()

    def optimal_variance(self, neg_log_prob: float, d: int) -> float:
        """The sigma^2 that would maximize a mean -ln p(x|z) of `neg_log_prob` over `d` pixels:
        the per-pixel mean squared error, recovered exactly since every constant is kept."""
        return 2 * self.variance * (neg_log_prob - d * self._log_norm) / d


Likelihood = Bernoulli | Gaussian


def build_likelihood(name: str, output_variance: float) -> Likelihood:
    if name == "bernoulli":
        return Bernoulli()
    if name == "gaussian":
        return Gaussian(output_variance)
    raise ValueError(f"unknown model.likelihood {name!r}: choose bernoulli or gaussian")
