from models.base import LatentModel
from models.registry import register


@register("ae")
class AE(LatentModel):
    """Deterministic encoder, reconstruction only: no ELBO, no likelihood bound."""

    stochastic = False
