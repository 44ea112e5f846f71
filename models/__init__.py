"""Model variants, registered by name. Importing this package registers them all."""

from models import ae, cvae, l2reg, vae  # noqa: F401  (registration)
from models.base import LatentModel, LossParts, kl_normal
from models.likelihood import Bernoulli, Gaussian, build_likelihood
from models.registry import register, variant, variant_names

__all__ = [
    "Bernoulli",
    "Gaussian",
    "LatentModel",
    "LossParts",
    "build_likelihood",
    "kl_normal",
    "register",
    "variant",
    "variant_names",
]
