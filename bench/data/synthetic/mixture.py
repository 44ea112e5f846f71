"""A mixture of product-Bernoulli components over binary vectors, fitted by EM."""

import math
from dataclasses import dataclass

import torch

SMOOTHING = 1.0  # Beta(2, 2) prior on each pixel probability: no component is ever certain


@dataclass
class BernoulliMixture:
    log_weights: torch.Tensor  # (K,) float64
    probs: torch.Tensor  # (K, D) float64, strictly inside (0, 1)

    name = "mixture"
    labelled = True  # an image's label is the component that drew it

    @property
    def n_classes(self) -> int:
        return len(self.log_weights)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """ln p(component) + ln p(x | component), (N, K) in float64."""
        x = x.double()
        return self.log_weights + x @ self.probs.log().T + (1 - x) @ torch.log1p(-self.probs).T

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.log_joint(x), -1)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images in {0, 1}, the component that drew each one)."""
        labels = torch.multinomial(self.log_weights.exp(), n, True, generator=generator)
        u = torch.rand(n, self.probs.shape[1], generator=generator, dtype=torch.float64)
        return (u < self.probs[labels]).to(torch.uint8), labels

    def summary(self) -> dict[str, float]:
        return {"components": self.n_classes}

    def state(self) -> dict[str, torch.Tensor]:
        return {"log_weights": self.log_weights, "probs": self.probs}


def fit_mixture(
    x: torch.Tensor, components: int, iterations: int, seed: int, tol: float = 1e-8
) -> BernoulliMixture:
    """EM from `components` distinct data points as centres, MAP under the Beta prior; stops when
    the mean log-likelihood improves by less than `tol` nats."""
    x = x.double()
    n = len(x)
    if not 1 <= components <= n:
        raise ValueError(f"data.components must be in 1..{n}, got {components}")
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(n, generator=g)[:components]]
    mixture = BernoulliMixture(
        torch.full((components,), -math.log(components)), 0.25 + 0.5 * centres
    )
    previous = -math.inf
    for _ in range(iterations):
        log_joint = mixture.log_joint(x)
        log_px = torch.logsumexp(log_joint, -1, keepdim=True)
        resp = (log_joint - log_px).exp()
        counts = resp.sum(0)
        probs = (resp.T @ x + SMOOTHING) / (counts[:, None] + 2 * SMOOTHING)
        log_weights = ((counts + 1) / (n + components)).log()
        mixture = BernoulliMixture(log_weights, probs)
        mean = float(log_px.mean())
        if mean - previous < tol:
            break
        previous = mean
    return mixture
