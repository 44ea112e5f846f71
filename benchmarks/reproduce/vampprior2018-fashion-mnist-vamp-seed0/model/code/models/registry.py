from collections.abc import Callable

from models.base import LatentModel

_VARIANTS: dict[str, type[LatentModel]] = {}


def register(name: str) -> Callable[[type[LatentModel]], type[LatentModel]]:
    def add(cls: type[LatentModel]) -> type[LatentModel]:
        _VARIANTS[name] = cls
        return cls

    return add


def variant_names() -> list[str]:
    return sorted(_VARIANTS)


def variant(name: str) -> type[LatentModel]:
    if name not in _VARIANTS:
        raise KeyError(f"unknown model {name!r}: choose one of {', '.join(variant_names())}")
    return _VARIANTS[name]
