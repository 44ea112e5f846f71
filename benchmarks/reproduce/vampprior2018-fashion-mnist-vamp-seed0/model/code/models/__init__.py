"""Model variants, registered by name. Importing this package imports every module in it, which
registers each variant: a new variant is one new file here (and its config)."""

import importlib
import pkgutil

from models.base import LatentModel, LossParts
from models.likelihood import LIKELIHOODS, Bernoulli, Gaussian, build_likelihood
from models.posterior import kl_normal
from models.registry import register, variant, variant_names

TOOLKIT = {
    "base",
    "flows",
    "kernels",
    "likelihood",
    "nets",
    "posterior",
    "registry",
}  # shared parts, not variants

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in TOOLKIT:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "LIKELIHOODS",
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
