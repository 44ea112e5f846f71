"""A study's search space: nested YAML under `study.space`, flattened to Hydra override keys.

A list is a set of choices (`model.z_dim: [2, 5, 10]`, or a config group: `model: [vae, ae]`);
a mapping with `low`/`high` is a range (`{low: 64, high: 1024, log: true, type: int}`).
`study.seeds` adds `trainer.seed` as one more choice, so replicated seeds are separate trials.
"""

import math
from collections.abc import Mapping
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from bench.errors import BenchError

Space = dict[str, list[Any] | dict[str, Any]]


def search_space(study: DictConfig) -> Space:
    space = _flatten(OmegaConf.to_container(study.space, resolve=True) or {})
    if "trainer.seed" in space:
        raise BenchError("set seeds with study.seeds, not study.space.trainer.seed")
    space["trainer.seed"] = list(study.seeds)
    if study.sampler == "grid":
        ranges = [key for key, spec in space.items() if not isinstance(spec, list)]
        if ranges:
            raise BenchError(f"study.sampler=grid needs lists of choices; {ranges[0]} is a range")
    return space


def grid_size(space: Space) -> int:
    return math.prod(len(choices) for choices in space.values())


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    params = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            params[key] = trial.suggest_categorical(key, spec)
        elif spec.get("type", "float") == "int":
            params[key] = trial.suggest_int(
                key, int(spec["low"]), int(spec["high"]), log=spec.get("log", False)
            )
        else:
            params[key] = trial.suggest_float(
                key, float(spec["low"]), float(spec["high"]), log=spec.get("log", False)
            )
    return params


def as_overrides(params: Mapping[str, Any]) -> list[str]:
    return [f"{key}={value}" for key, value in params.items()]


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler calls study.stop() after the last point, which raises under ask/tell
    (optuna issues #4121, #5141); the study loop counts its own target instead."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def override_key(override: str) -> str:
    """The config key a Hydra override sets: `+study.space.x=[1]` -> `study.space.x`."""
    return override.split("=", 1)[0].lstrip("+~")


def build_sampler(study: DictConfig, space: Space) -> optuna.samplers.BaseSampler:
    seed = int(study.sampler_seed)
    if study.sampler == "grid":
        return AskTellGridSampler(dict(space), seed=seed)
    if study.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise BenchError(f"study.sampler must be grid, tpe or random, got {study.sampler!r}")


def build_pruner(study: DictConfig) -> optuna.pruners.BasePruner:
    """`auto`: none for a grid (a measurement: every point runs to the end), median otherwise."""
    pruner = study.pruner
    if pruner == "auto":
        pruner = "none" if study.sampler == "grid" else "median"
    if pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(study.pruner_startup_trials),
            n_warmup_steps=int(study.pruner_warmup_epochs),
        )
    if pruner in ("none", None):
        return optuna.pruners.NopPruner()
    raise BenchError(f"study.pruner must be auto, median or none, got {study.pruner!r}")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Space:
    flat: Space = {}
    for key, spec in tree.items():
        name = f"{prefix}{key}"
        if isinstance(spec, list):
            if not spec:
                raise BenchError(f"study.space.{name} has no choices")
            flat[name] = spec
        elif isinstance(spec, Mapping) and "low" in spec:
            if not spec["low"] < spec["high"]:
                raise BenchError(
                    f"study.space.{name} needs low < high, got {spec['low']}..{spec['high']}"
                )
            flat[name] = dict(spec)
        elif isinstance(spec, Mapping):
            flat |= _flatten(spec, f"{name}.")
        else:
            raise BenchError(f"study.space.{name} must be a list of choices or a low/high range")
    return flat
