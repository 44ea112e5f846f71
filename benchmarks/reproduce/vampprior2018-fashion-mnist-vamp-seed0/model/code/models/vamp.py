import math

import torch
from torch import nn

from models.posterior import LOG_2PI
from models.registry import register
from models.vae import VAE


@register("vamp")
class VampPrior(VAE):
    """Tomczak & Welling 2018: the prior is the mixture of the encoder's own posteriors at K
    learned pseudo-inputs u_k, p(z) = (1/K) sum_k q(z|u_k). The KL has no closed form: the ELBO
    takes ln q(z|x) - ln p(z) at its draws (training: one; the evaluation: the IW bound's k).

    The pseudo-inputs start at N(`pseudo_mean`, `pseudo_std`) per pixel; `pseudo_clamp` keeps
    them in the data's [0, 1] (the paper's hard tanh; off for data on the real line)."""

    def __init__(
        self,
        *args,
        components: int = 500,
        pseudo_mean: float = 0.05,
        pseudo_std: float = 0.01,
        pseudo_clamp: bool = True,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if components < 1:
            raise ValueError(f"model.components must be >= 1, got {components}")
        if not pseudo_std >= 0:
            raise ValueError(f"model.pseudo_std must be >= 0, got {pseudo_std}")
        self.pseudo_inputs = nn.Parameter(
            torch.randn(components, self.x_dim) * pseudo_std + pseudo_mean
        )
        self.pseudo_clamp = bool(pseudo_clamp)
        self._cached: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    def __getstate__(self) -> dict:
        """Pickled (the logged MLflow model) without the cached components."""
        return {**self.__dict__, "_cached": None}

    def train(self, mode: bool = True) -> "VampPrior":
        """Every switch of mode (training <-> an evaluation) drops the cached components: weights
        change in training, and a fused optimizer's steps leave no trace in `_version`."""
        self._cached = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._cached = None
        return super().load_state_dict(*args, **kwargs)

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z|u_k), (K, z) each; in an evaluation (no gradient wanted) encoded
        once, until the mode switches, the weights are loaded or changed in place."""
        u = self.pseudo_inputs
        if torch.is_grad_enabled() and u.requires_grad:
            return self._encode_pseudo_inputs()
        key = (u.device, u.dtype, *(p._version for p in self.parameters()))
        if self._cached is None or self._cached[0] != key:
            with torch.no_grad():
                self._cached = (key, self._encode_pseudo_inputs())
        return self._cached[1]

    def _encode_pseudo_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.pseudo_inputs
        return self.encode(nn.functional.hardtanh(u, 0.0, 1.0) if self.pseudo_clamp else u)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """ln (1/K) sum_k N(z; mu_k, sigma_k^2): each Gaussian's quadratic form expanded into
        two matmuls, in float64 (in float32 its large terms cancel to ~0.01 nats)."""
        mu, logvar = (t.double() for t in self.components())
        precision = (-logvar).exp()
        zz = z.double()
        quadratic = (
            zz.pow(2) @ precision.T - 2 * zz @ (mu * precision).T + (mu.pow(2) * precision).sum(-1)
        )
        log_normal = -0.5 * (quadratic + logvar.sum(-1) + self.z_dim * LOG_2PI)
        log_p = torch.logsumexp(log_normal, -1) - math.log(len(mu))
        return log_p.to(z.dtype)

    def sample_prior(self, n: int, like: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.components()
        pick = torch.randint(len(mu), (n,), device=mu.device)
        z = mu[pick] + torch.randn_like(mu[pick]) * (0.5 * logvar[pick]).exp()
        return z.to(like.dtype)
