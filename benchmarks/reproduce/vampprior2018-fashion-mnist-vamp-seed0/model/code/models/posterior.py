"""Approximate posteriors q(z|x) over a model's whole latent vector: each turns standard normal
noise into samples with their exact ln q (`transform`), so the ELBO, the IW bound and the q*
search need nothing else from a variant."""

import math

import torch

LOG_2PI = math.log(2 * math.pi)
MOMENT_SAMPLES = 256  # draws whose moments give a non-Gaussian posterior's Gaussian stand-in


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(0, I)) summed over latent dims."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(-1)


def log_normal_std(z: torch.Tensor) -> torch.Tensor:
    """ln N(z; 0, I) summed over latent dims."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


class Posterior:
    """`params`: the per-example tensors it is built from (what the q* search frees);
    `noise_shape`: (B, latent) of the noise `transform` takes."""

    params: tuple[torch.Tensor, ...]
    noise_shape: tuple[int, int]

    def transform(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (k, B, latent) and ln q(z|x) (k, B) from eps ~ N(0, I) (k, B, latent)."""
        raise NotImplementedError

    def rsample(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        like = self.params[0]
        eps = torch.randn(k, *self.noise_shape, dtype=like.dtype, device=like.device)
        return self.transform(eps)

    @torch.no_grad()
    def gaussian(self) -> "DiagonalGaussian":
        """A diagonal Gaussian near q (its moments, from MOMENT_SAMPLES draws): a start density
        that can be evaluated anywhere (AIS), where q itself cannot."""
        z, _ = self.rsample(MOMENT_SAMPLES)
        return DiagonalGaussian(z.mean(0), z.var(0).clamp_min(1e-8).log())


class DiagonalGaussian(Posterior):
    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor):
        self.mu, self.logvar = mu, logvar
        self.params = (mu, logvar)
        self.noise_shape = tuple(mu.shape)

    def transform(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.mu + eps * (0.5 * self.logvar).exp()
        return z, -0.5 * (eps.pow(2) + LOG_2PI + self.logvar).sum(-1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((z - self.mu).pow(2) / self.logvar.exp() + LOG_2PI + self.logvar).sum(-1)

    def sample(self) -> torch.Tensor:
        return self.mu + torch.randn_like(self.mu) * (0.5 * self.logvar).exp()

    def gaussian(self) -> "DiagonalGaussian":
        return self

    def kl_standard(self) -> torch.Tensor:
        return kl_normal(self.mu, self.logvar)
