from models.base import LatentModel
from models.registry import register


@register("vae")
class VAE(LatentModel):
    """Kingma & Welling: reconstruction + analytic KL to N(0, I)."""
