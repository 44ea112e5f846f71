import math

import torch

from models.base import LatentModel, LossParts
from models.registry import register


@register("iwae")
class IWAE(LatentModel):
    """Burda et al. 2016: trained on the importance-weighted bound with `k_train` samples.

    The objective is -ELBO (reconstruction averaged over the k samples, the KL analytic) minus
    the IW bound's tightening, logmeanexp(ln w) - mean(ln w). Its expectation is exactly -IW_k,
    as Burda's all-sampled form; with k_train = 1 the tightening is 0 and it is the VAE's
    objective for the same noise."""

    def __init__(self, *args, k_train: int = 5, **kwargs):
        super().__init__(*args, **kwargs)
        if k_train < 1:
            raise ValueError(f"model.k_train must be >= 1, got {k_train}")
        self.k_train = int(k_train)

    def loss_parts(self, x: torch.Tensor, y: torch.Tensor | None = None) -> LossParts:
        q = self.posterior(self.variational_params(x, y), y)
        z, log_q = q.rsample(self.k_train)
        log_px_z = -self.likelihood.neg_log_prob(self.decode(z, y), x)
        log_w = log_px_z + self.log_prior(z) - log_q
        tightening = torch.logsumexp(log_w, 0) - math.log(self.k_train) - log_w.mean(0)
        recon, kl = -log_px_z.mean(0), self.kl(q, z, log_q)
        return LossParts(recon, kl, recon + kl - tightening, self.likelihood.normalized)
