"""A linear-Gaussian model (probabilistic PCA): x = b + W z + s e, z ~ N(0, I_r), e ~ N(0, I_D),
so p(x) = N(b, W W^T + s^2 I), fitted in closed form (Tipping & Bishop 1999)."""

import math
from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass
class LinearGaussian:
    mean: torch.Tensor  # (D,) float64
    weight: torch.Tensor  # (D, r) float64
    noise_variance: torch.Tensor  # () float64: s^2

    name = "linear"
    n_classes = 1
    labelled = False  # one class: nothing for a conditional model to condition on

    @cached_property
    def covariance(self) -> torch.Tensor:
        d = len(self.mean)
        return self.weight @ self.weight.T + self.noise_variance * torch.eye(d, dtype=torch.float64)

    @cached_property
    def _cholesky(self) -> torch.Tensor:
        return torch.linalg.cholesky(self.covariance)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        diff = (x.double() - self.mean).T
        white = torch.linalg.solve_triangular(self._cholesky, diff, upper=False)
        log_det = 2 * self._cholesky.diagonal().log().sum()
        return -0.5 * (white.pow(2).sum(0) + log_det + len(self.mean) * math.log(2 * math.pi))

    def entropy(self) -> float:
        """½ ln det(2πe Σ): the exact -E ln p(x)."""
        d = len(self.mean)
        log_det = 2 * self._cholesky.diagonal().log().sum()
        return float(0.5 * (d * math.log(2 * math.pi * math.e) + log_det))

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 draws, zero labels: the model has no classes)."""
        d, r = self.weight.shape
        z = torch.randn(n, r, generator=generator, dtype=torch.float64)
        e = torch.randn(n, d, generator=generator, dtype=torch.float64)
        x = self.mean + z @ self.weight.T + self.noise_variance.sqrt() * e
        return x.float(), torch.zeros(n, dtype=torch.long)

    def state(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "weight": self.weight, "noise_variance": self.noise_variance}

    def summary(self) -> dict[str, float]:
        return {
            "rank": self.weight.shape[1],
            "noise_variance": float(self.noise_variance),
            "entropy": self.entropy(),
        }


def fit_linear(x: torch.Tensor, rank: int) -> LinearGaussian:
    """The maximum-likelihood fit: s^2 is the mean of the discarded eigenvalues of the sample
    covariance, W = U_r (Λ_r - s^2 I)^½."""
    x = x.double()
    d = x.shape[1]
    if not 1 <= rank < d:
        raise ValueError(f"data.rank must be in 1..{d - 1}, got {rank}")
    mean = x.mean(0)
    centred = x - mean
    values, vectors = torch.linalg.eigh(centred.T @ centred / len(x))
    values, vectors = values.flip(0), vectors.flip(1)
    s2 = values[rank:].mean()
    weight = vectors[:, :rank] * (values[:rank] - s2).clamp_min(0).sqrt()
    return LinearGaussian(mean, weight, s2)
