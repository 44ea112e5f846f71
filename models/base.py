"""What every variant shares: an MLP encoder/decoder pair, a likelihood and its loss parts.

A variant is a subclass that sets `stochastic`/`conditional` and says what its
regularizer is; the one training loop only ever calls `loss_parts`.
"""

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.kernels import at_least_fp32
from models.likelihood import Likelihood
from models.nets import mlp

LOG_2PI = math.log(2 * math.pi)


@dataclass
class LossParts:
    """Per-example tensors; `kl` is None where the encoder is deterministic."""

    recon: torch.Tensor
    kl: torch.Tensor | None
    objective: torch.Tensor

    @property
    def neg_elbo(self) -> torch.Tensor | None:
        return None if self.kl is None else self.recon + self.kl


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(0, I)) summed over latent dims."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(-1)


def log_normal_std(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


class LatentModel(nn.Module):
    stochastic: ClassVar[bool] = True
    conditional: ClassVar[bool] = False

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        h_dim: int,
        n_hidden: int,
        likelihood: Likelihood,
        n_classes: int = 0,
        activation: str = "relu",
    ):
        super().__init__()
        if self.conditional and n_classes < 2:
            raise ValueError(f"{type(self).__name__} needs a labelled dataset")
        self.x_dim, self.z_dim = x_dim, z_dim
        self.n_classes = n_classes if self.conditional else 0
        self.likelihood = likelihood
        heads = 2 if self.stochastic else 1
        self.encoder = mlp(x_dim + self.n_classes, h_dim, n_hidden, heads * z_dim, activation)
        outputs = likelihood.outputs_per_pixel * x_dim
        self.decoder = mlp(z_dim + self.n_classes, h_dim, n_hidden, outputs, activation)

    def _condition(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if not self.conditional:
            return t
        one_hot = F.one_hot(y, self.n_classes).to(t.dtype)
        return torch.cat([t, one_hot.expand(*t.shape[:-1], self.n_classes)], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The latent code: q's mean (a deterministic encoder's output), what the logged MLflow
        model serves for (B, x_dim) inputs; a conditional model takes its label as one more, last,
        column."""
        y = None
        if self.conditional:
            x, y = x[..., :-1], x[..., -1].long()
        return self.encode(x, y)[0]

    def encode(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) of q(z|x[,y]); logvar is None for a deterministic encoder. In fp32 even
        when the matmuls run in bf16 (bench.runtime.precision)."""
        h = at_least_fp32(self.encoder(self._condition(x, y)))
        if not self.stochastic:
            return h, None
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return at_least_fp32(self.decoder(self._condition(z, y)))

    def neg_log_prob_samples(
        self, z: torch.Tensor, y: torch.Tensor | None, x: torch.Tensor
    ) -> torch.Tensor:
        """-ln p(x|z) for many samples z (k, B, z) of the B images x: the decoder's output layer
        fused into the likelihood (bench.evaluation.estimators: the IW bound's decoder passes).
        Under bf16 autocast the logits are rounded to bf16, so the likelihood is taken from them
        unfused: its two terms must see the same logits for their rounding errors to cancel."""
        if torch.is_autocast_enabled(z.device.type):
            return self.likelihood.neg_log_prob64(self.decoder(self._condition(z, y)), x)
        *body, out = self.decoder
        h = self._condition(z, y)
        for layer in body:
            h = layer(h)
        return self.likelihood.neg_log_prob_linear(h, out.weight, out.bias, x)

    def regularizer(
        self, mu: torch.Tensor, logvar: torch.Tensor | None, kl: torch.Tensor | None
    ) -> torch.Tensor:
        """The term added to the reconstruction in the training objective."""
        raise NotImplementedError

    def loss_parts(self, x: torch.Tensor, y: torch.Tensor | None = None) -> LossParts:
        mu, logvar = self.encode(x, y)
        if logvar is None:
            z, kl = mu, None
        else:
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            kl = kl_normal(mu, logvar)
        recon = self.likelihood.neg_log_prob(self.decode(z, y), x)
        return LossParts(recon, kl, recon + self.regularizer(mu, logvar, kl))
