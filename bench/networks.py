"""The config's `net` group as the network factory a variant is built with (models.nets): a
built-in network by name, or the user's own class via Hydra's instantiate (`net=custom
net._target_=package.module.Class`)."""

import functools
import importlib
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bench.errors import BenchError
from models.base import NetFactory
from models.nets import NETS

CUSTOM = "custom"
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
        raise BenchError(f"net._target_={options['_target_']}: {_first_line(e)}") from None


def check_target(target: object) -> None:
    """`net._target_` names something importable and callable."""
    if not isinstance(target, str) or "." not in target:
        raise BenchError(
            "net=custom needs net._target_=package.module.Class (its contract: models/nets)"
        )
    module, _, name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except Exception as e:  # ImportError, AttributeError, or what the user's module raises
        raise BenchError(f"net._target_={target} cannot be imported: {_first_line(e)}") from None
    if not callable(found):
        raise BenchError(f"net._target_={target} is not a class or function")


def _first_line(error: Exception) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]
