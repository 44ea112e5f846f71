"""Decoder likelihoods p(x|z): each returns -ln p(x|z) summed over pixels, constants kept."""

import math

import torch
import torch.nn.functional as F


class Bernoulli:
    """Decoder outputs logits; only a likelihood on binary data."""

    name = "bernoulli"
    needs_binary_data = True

    def neg_log_prob(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


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
