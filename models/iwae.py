import math

import torch

from models.base import LOG_2PI, LatentModel, LossParts, kl_normal, log_normal_std
from models.registry import register


@register("iwae")
class IWAE(LatentModel):
    """Burda et al. 2016: trained on the importance-weighted bound with `k_train` samples.

    The objective is -ELBO (analytic KL, reconstruction averaged over the k samples) minus the
    IW bound's tightening, logmeanexp(ln w) - mean(ln w). Its expectation is exactly -IW_k, as
    Burda's all-sampled form; with k_train = 1 the tightening is 0 and it is the VAE's objective
    for the same noise."""

    def __init__(self, *args, k_train: int = 5, **kwargs):
        super().__init__(*args, **kwargs)
        if k_train < 1:
            raise ValueError(f"model.k_train must be >= 1, got {k_train}")
        self.k_train = int(k_train)

    def loss_parts(self, x: torch.Tensor, y: torch.Tensor | None = None) -> LossParts:
        mu, logvar = self.encode(x, y)
        eps = torch.randn(self.k_train, *mu.shape, dtype=mu.dtype, device=mu.device)
        z = mu + eps * (0.5 * logvar).exp()
        log_px_z = -self.likelihood.neg_log_prob(self.decode(z, y), x)
        log_w = log_px_z + log_normal_std(z) + 0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
        tightening = torch.logsumexp(log_w, 0) - math.log(self.k_train) - log_w.mean(0)
        recon, kl = -log_px_z.mean(0), kl_normal(mu, logvar)
        return LossParts(recon, kl, recon + kl - tightening, self.likelihood.normalized)
