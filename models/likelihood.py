"""Decoder likelihoods p(x|z): each returns -ln p(x|z) summed over pixels, constants kept."""

import math

import torch
import torch.nn.functional as F

from models.kernels import bernoulli_nll, dot, fp32_or_wider, softplus_sum, squared_error


class Bernoulli:
    """Decoder outputs logits; only a likelihood on binary data."""

    name = "bernoulli"
    needs_binary_data = True

    def neg_log_prob(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Σ_d softplus(l_d) − x_d l_d: binary cross-entropy with logits, summed over pixels."""
        return self.neg_log_prob64(logits, x).to(fp32_or_wider(logits.dtype))

    def neg_log_prob64(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return bernoulli_nll(logits, x)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def neg_log_prob_linear(
        self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """neg_log_prob(h Wᵀ + b, x) for samples h (..., B, H) of the B images x, fused:
        Σ_d softplus(l_d) − x_d l_d, with Σ_d x_d l_d = (Wᵀx)·h + b·x taken once per image
        through the matmul instead of per sample and pixel. Float64, like the IW bound's sums."""
        fit = dot(h, x @ weight) + (x @ bias).double()
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
        return self.neg_log_prob64(mean, x).to(fp32_or_wider(mean.dtype))

    def neg_log_prob64(self, mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return squared_error(mean, x) / (2 * self.variance) + mean.shape[-1] * self._log_norm

    def mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def neg_log_prob_linear(
        self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        return self.neg_log_prob64(F.linear(h, weight, bias), x)

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
