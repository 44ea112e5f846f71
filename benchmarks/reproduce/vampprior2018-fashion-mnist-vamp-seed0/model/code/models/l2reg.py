from models.base import LatentModel
from models.registry import register


@register("l2reg")
class L2Reg(LatentModel):
    """The VAE's stochastic encoder with a fixed L2 penalty instead of the KL.

    The defaults (1/2, 1/4) are the KL's second-order expansion around sigma = 1.
    """

    def __init__(self, *args, l2_mu: float = 0.5, l2_logvar: float = 0.25, **kwargs):
        super().__init__(*args, **kwargs)
        self.l2_mu, self.l2_logvar = l2_mu, l2_logvar

    def regularizer(self, q, kl):
        return self.l2_mu * q.mu.pow(2).sum(-1) + self.l2_logvar * q.logvar.pow(2).sum(-1)
