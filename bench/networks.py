"""The config's `net` group as the network factory a variant is built with (models.nets): a
built-in network by name, or the user's own class via Hydra's instantiate (`net=custom
net._target_=package.module.Class`)."""

import functools
import importlib
import inspect
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bench.errors import BenchError, first_line
from models.base import NetFactory
from models.nets import NETS

CUSTOM = "custom"
CONTRACT = ("image_shape", "z_dim", "n_classes", "encoder_outputs", "outputs_per_pixel")
NET_NAMES = (*NETS, CUSTOM)


def net_factory(cfg: DictConfig) -> NetFactory:
    """A built-in network takes `model.activation` (and the MLP `model.h_dim`, `model.n_hidden`,
    where the studies and recipes set them) besides its `net.*` keys; a custom one its keys."""
    options: dict[str, Any] = OmegaConf.to_container(cfg.net, resolve=True)
    name = options.pop("name")
    if name != CUSTOM:
        model = cfg.model
        shared = {"h_dim": model.h_dim, "n_hidden": model.n_hidden} if name == "mlp" else {}
        return functools.partial(NETS[name], activation=model.activation, **shared, **options)
    check_target(options.get("_target_"))
    try:
        return instantiate(options, _partial_=True, _convert_="all")
    except InstantiationException as e:
        raise BenchError(f"net._target_={options['_target_']}: {first_line(e)}") from None


def check_keys(name: str, builder: object, keys: set[str]) -> None:
    """The net's keys are keyword arguments of what builds it (unless it takes **kwargs)."""
    parameters = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(keys - set(parameters))
    if unknown:
        own = sorted(set(parameters) - set(CONTRACT) - {"activation", "h_dim", "n_hidden"})
        keys_are = f"its keys are {', '.join(own)}" if own else "it has none"
        mlp = " (the MLP's sizes are model.h_dim, model.n_hidden)" if name == "mlp" else ""
        raise BenchError(f"net={name} has no key {unknown[0]!r}: {keys_are}{mlp}")


def check_target(target: object) -> object:
    """`net._target_` names something importable and callable; returns it."""
    if not isinstance(target, str) or "." not in target:
        raise BenchError(
            "net=custom needs net._target_=package.module.Class (its contract: models/nets)"
        )
    module, _, name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except Exception as e:  # ImportError, AttributeError, or what the user's module raises
        raise BenchError(f"net._target_={target} cannot be imported: {first_line(e)}") from None
    if not callable(found):
        raise BenchError(f"net._target_={target} is not a class or function")
    return found
