"""`data=mixture` and `data=linear`: a density fitted to `data.source` (cached), then fresh
train/val/test draws from it with fixed seeds. Each image's label is the component that drew it."""

import hashlib
import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.config import group_options
from bench.data.dataset import Dataset, Split
from bench.data.sources import source_images
from bench.data.synthetic.families import FAMILIES, Density
from bench.data.synthetic.linear import fit_linear
from bench.data.synthetic.mixture import fit_mixture
from bench.errors import BenchError

FIT_VERSION = 1  # bump when a fit changes: cached fits of older versions are not reused
STREAMS = {"train": 11, "val": 12, "test": 13}


def load(cfg: Any, device: torch.device | str) -> Dataset:
    _check_binarize(cfg)
    density, sha, side, source = fitted_density(cfg)
    splits = {}
    for split, stream in STREAMS.items():
        n = int(cfg[f"n_{split}"])
        if n < 1:
            raise BenchError(f"data.n_{split} must be >= 1, got {n}")
        g = torch.Generator().manual_seed(int(cfg.seed) * 1000 + stream)
        x, labels = density.sample(n, g)
        splits[split] = Split(x.to(device), labels.to(device))
    return Dataset(
        name=cfg.name,
        image_shape=(1, side, side),
        n_levels=2 if cfg.name == "mixture" else 0,
        n_classes=density.n_classes,
        binarize=cfg.binarize,
        seed=int(cfg.seed),
        sha256=sha,
        density=density,
        source=source.as_uri(),
        **splits,
    )


def _check_binarize(cfg: Any) -> None:
    if cfg.name == "mixture" and cfg.binarize == "none":
        raise BenchError("data=mixture draws binary images: data.binarize=none does not apply")
    if cfg.name == "linear" and cfg.binarize != "none":
        raise BenchError("data=linear draws continuous data: data.binarize must be none")


def fitted_density(cfg: Any) -> tuple[Density, dict[str, str], int, Path]:
    """The density fitted to the source, from the cache when this fit was made before; with the
    sha256 of the source files and of the fitted parameters, the images' side and the file the
    fit is kept in."""
    source_cfg = _source_config(cfg)
    levels, n_levels, source_sha = source_images(source_cfg)
    settings = _fit_settings(cfg) | {"source_sha256": source_sha}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(os.path.expanduser(str(cfg.cache))) / f"{cfg.name}-{cfg.source}-{key}.npz"
    if path.is_file():
        density = _read(cfg.name, path)
    else:
        density = _fit(cfg, levels, n_levels)
        save(density, path)
    sha = source_sha | {f"{cfg.name}.npz": parameters_sha256(density)}
    return density, sha, int(round(levels.shape[1] ** 0.5)), path.resolve()


def _fit(cfg: Any, levels: torch.Tensor, n_levels: int) -> Density:
    g = torch.Generator().manual_seed(int(cfg.seed))
    u = torch.rand(levels.shape, generator=g, dtype=torch.float64)
    try:
        if cfg.name == "mixture":
            binary = (u < levels.double() / (n_levels - 1)).double()
            return fit_mixture(binary, int(cfg.components), int(cfg.em_iterations), int(cfg.seed))
        return fit_linear((levels.double() + u) / n_levels, int(cfg.rank))
    except ValueError as e:
        raise BenchError(str(e)) from None


def _fit_settings(cfg: Any) -> dict[str, Any]:
    keys = ("components", "em_iterations") if cfg.name == "mixture" else ("rank",)
    return {"family": cfg.name, "version": FIT_VERSION, "seed": int(cfg.seed)} | {
        key: cfg[key] for key in keys
    }


def _source_config(cfg: Any):
    """The source's own `data` config (`bench/conf/data/<source>.yaml`), with `source_root`."""
    sources = [name for name in group_options("data") if name not in FAMILIES]
    if cfg.source not in sources:
        raise BenchError(f"unknown data.source {cfg.source!r}: choose one of {', '.join(sources)}")
    source = OmegaConf.load(str(files("bench.conf") / "data" / f"{cfg.source}.yaml"))
    if cfg.get("source_root"):
        source.root = cfg.source_root
    return source


def parameters_sha256(density: Density) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(density.state().items()):
        digest.update(name.encode())
        digest.update(value.double().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save(density: Density, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part.npz")
    np.savez(tmp, **{k: v.numpy() for k, v in density.state().items()})
    tmp.replace(path)
    return path


def _read(family: str, path: Path) -> Density:
    try:
        with np.load(path) as arrays:
            return FAMILIES[family](**{k: torch.from_numpy(arrays[k]) for k in arrays.files})
    except Exception as e:
        raise BenchError(f"cached fit {path} is unreadable ({e}): delete it to refit") from None
