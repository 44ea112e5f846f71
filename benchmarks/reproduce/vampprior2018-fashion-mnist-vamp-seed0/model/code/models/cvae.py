from models.registry import register
from models.vae import VAE


@register("cvae")
class CVAE(VAE):
    """q(z|x,y) and p(x|z,y) with the one-hot label concatenated; prior N(0, I)."""

    conditional = True
