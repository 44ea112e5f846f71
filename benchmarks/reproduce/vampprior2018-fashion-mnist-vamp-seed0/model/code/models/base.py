"""What every variant shares: an encoder/decoder pair (models.nets), a likelihood and its loss
parts.

A variant is a subclass that sets `stochastic`/`conditional` and says what differs: its
regularizer (beta-vae, l2reg), its prior (`log_prior`, `sample_prior`: vamp, hvae), its posterior
(`variational_params`, `posterior`: iaf, hvae, savae). The latent vector z is the whole of it
(hvae: z1 and z2 side by side); `decoder_input` is the part p(x|z) reads. The one training loop
only ever calls `loss_parts`; every estimator reads the same few methods.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.kernels import at_least_fp32
from models.likelihood import Likelihood
from models.nets import MLP, MLPNet
from models.posterior import DiagonalGaussian, Posterior, log_normal_std

NetFactory = Callable[..., nn.Module]  # models.nets: the contract


@dataclass
class LossParts:
    """Per-example tensors; `kl` is None where the encoder is deterministic. `bound`: whether
    recon is a normalized likelihood's -ln p(x|z), so that recon + kl is a -ELBO."""

    recon: torch.Tensor
    kl: torch.Tensor | None
    objective: torch.Tensor
    bound: bool = True

    @property
    def neg_elbo(self) -> torch.Tensor | None:
        return None if self.kl is None or not self.bound else self.recon + self.kl


class LatentModel(nn.Module):
    stochastic: ClassVar[bool] = True
    conditional: ClassVar[bool] = False
    stochastic_layers: ClassVar[int] = 1  # what a published number's setup is matched on

    def __init__(
        self,
        image_shape: Sequence[int],
        z_dim: int,
        likelihood: Likelihood,
        net: NetFactory = MLPNet,
        n_classes: int = 0,
        extra_encoder_outputs: int = 0,
    ):
        super().__init__()
        if self.conditional and n_classes < 2:
            raise ValueError(f"{type(self).__name__} needs a labelled dataset")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.x_dim, self.z_dim = math.prod(self.image_shape), z_dim
        self.n_classes = n_classes if self.conditional else 0
        self.likelihood = likelihood
        nets = net(
            image_shape=self.image_shape,
            z_dim=z_dim,
            n_classes=self.n_classes,
            encoder_outputs=(2 if self.stochastic else 1) * z_dim + extra_encoder_outputs,
            outputs_per_pixel=likelihood.outputs_per_pixel,
        )
        self.encoder, self.decoder = nets.encoder, nets.decoder
        self.net_module = type(nets).__module__  # where its source is (the logged model's code)

    @classmethod
    def latent_size(cls, z_dim: int, **options) -> int:
        """The length of z for these `model.*` options (the config's, before a model exists)."""
        return z_dim

    @property
    def latent_dim(self) -> int:
        return self.z_dim

    @property
    def bounds_likelihood(self) -> bool:
        """Whether its numbers bound -ln p(x): a stochastic encoder and a normalized likelihood."""
        return self.stochastic and self.likelihood.normalized

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
        h = self.encoder_head(x, y)
        if not self.stochastic:
            return h, None
        return h[..., : self.z_dim], h[..., self.z_dim : 2 * self.z_dim]

    def encoder_head(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return at_least_fp32(self._run(self.encoder, x, y))

    def variational_params(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """The per-example tensors q(z|x) is built from: the encoder's (mu, logvar)."""
        return self.encode(x, y)

    def posterior(
        self, params: tuple[torch.Tensor, ...], y: torch.Tensor | None = None
    ) -> Posterior:
        return DiagonalGaussian(*params)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        return log_normal_std(z)

    def sample_prior(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, dtype=like.dtype, device=like.device)

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def analytic_kl(self, q: Posterior) -> torch.Tensor | None:
        """KL(q || p(z)) in closed form where there is one: a diagonal Gaussian against N(0, I)."""
        if isinstance(q, DiagonalGaussian) and type(self).log_prior is LatentModel.log_prior:
            return q.kl_standard()
        return None

    def kl(self, q: Posterior, z: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """KL(q || p(z)): closed form, else its Monte Carlo estimate from the draws z (k, B, .)
        with their ln q: the mean of ln q - ln p(z)."""
        exact = self.analytic_kl(q)
        return exact if exact is not None else (log_q - self.log_prior(z)).mean(0)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return at_least_fp32(self._run(self.decoder, self.decoder_input(z), y))

    def neg_log_prob_samples(
        self, z: torch.Tensor, y: torch.Tensor | None, x: torch.Tensor
    ) -> torch.Tensor:
        """-ln p(x|z) for many samples z (k, B, z) of the B images x: an MLP decoder's output
        layer fused into the likelihood (bench.evaluation.estimators: the IW bound's decoder
        passes); other networks' outputs are taken as they are. Under bf16 autocast the logits
        are rounded to bf16, so the likelihood is taken from them unfused: its two terms must see
        the same logits for their rounding errors to cancel."""
        if torch.is_autocast_enabled(z.device.type) or not isinstance(self.decoder, MLP):
            return self.likelihood.neg_log_prob64(self.decode(z, y), x)
        z = self.decoder_input(z)
        out = self.decoder[-1]
        h = self.decoder.features(z, self._label(z, y))
        return self.likelihood.neg_log_prob_linear(h, out.weight, out.bias, x)

    def _label(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor | None:
        """y's one-hot code for each row of t (None for an unconditional variant)."""
        if not self.conditional:
            return None
        one_hot = F.one_hot(y, self.n_classes).to(t.dtype)
        return one_hot.expand(*t.shape[:-1], self.n_classes)

    def _run(self, net: nn.Module, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """`net` on the rows of t (..., dim), which it takes as (N, dim) (models.nets)."""
        label = self._label(t, y)
        if isinstance(net, MLP):  # takes any leading dims as they are
            return net(t, label)
        rows = t.reshape(-1, t.shape[-1])
        out = net(rows, None if label is None else label.reshape(-1, self.n_classes))
        return out.reshape(*t.shape[:-1], out.shape[-1])

    def regularizer(self, q: Posterior, kl: torch.Tensor) -> torch.Tensor:
        """The term added to the reconstruction in the training objective: the KL (the VAE)."""
        return kl

    def loss_parts(self, x: torch.Tensor, y: torch.Tensor | None = None) -> LossParts:
        """One reparameterized draw of z ~ q(z|x) per example."""
        if not self.stochastic:
            recon = self.likelihood.neg_log_prob(self.decode(self.encode(x, y)[0], y), x)
            return LossParts(recon, None, recon, self.likelihood.normalized)
        q = self.posterior(self.variational_params(x, y), y)
        z, log_q = q.rsample(1)
        recon = self.likelihood.neg_log_prob(self.decode(z[0], y), x)
        kl = self.kl(q, z, log_q)
        objective = recon + self.regularizer(q, kl)
        return LossParts(recon, kl, objective, self.likelihood.normalized)
