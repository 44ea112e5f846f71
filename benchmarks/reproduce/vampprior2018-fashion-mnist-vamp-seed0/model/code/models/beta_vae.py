from models.base import LatentModel
from models.registry import register


@register("beta-vae")
class BetaVAE(LatentModel):
    """Higgins et al. 2017: reconstruction + beta * KL. Trained on that objective, evaluated on
    the true bound (beta = 1), so a run shows what its trained objective costs in likelihood."""

    def __init__(self, *args, beta: float = 4.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not beta > 0:
            raise ValueError(f"model.beta must be > 0, got {beta}")
        self.beta = float(beta)

    def regularizer(self, q, kl):
        return self.beta * kl
