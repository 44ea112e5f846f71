"""SVHN (cropped digits): torchvision's train_32x32.mat and test_32x32.mat, MATLAB files holding
X, uint8 (32, 32, 3, N), and y, (N, 1) labels 1..10 where 10 is the digit 0 (made 0 here, as
torchvision does). The 531,131 `extra` images are not used. vae-bench keeps them in ROOT/svhn
(torchvision puts them in whatever root it is given).
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.dataset import RawImages
from bench.data.named.fetch import NamedSet
from bench.data.sha import file_sha256
from bench.errors import BenchError

SPLITS = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def read_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64 in 0..9) of one split."""
    try:
        import scipy.io
    except ImportError:
        raise BenchError(
            "svhn: reading its .mat files needs SciPy: pip install 'vae-bench[named-sets]'"
        ) from None

    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
        x, y = mat["X"], mat["y"].astype(np.int64).reshape(-1)
    except Exception as e:  # scipy's parser raises what a damaged file makes it hit
        if isinstance(e, MemoryError):
            raise
        raise BenchError(f"svhn: {path} is not an SVHN .mat file: {e}") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise BenchError(f"svhn: {path}: X is {x.dtype} {x.shape}, not uint8 H×W×3×N")
    if len(y) != x.shape[3] or not ((1 <= y) & (y <= 10)).all():
        raise BenchError(f"svhn: {path}: y must be {x.shape[3]} labels in 1..10")
    y[y == 10] = 0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))), torch.from_numpy(y)


def read(folder: Path, cfg: Any) -> RawImages:
    (x, y), (tx, ty) = (read_mat(folder / SPLITS[s]) for s in ("train", "test"))
    sha = {name: file_sha256(folder / name) for name in SPLITS.values()}
    return RawImages(x, y, tx, ty, 256, sha, folder.resolve().as_uri())


def download(folder: Path) -> None:
    import torchvision.datasets

    for split in SPLITS:
        torchvision.datasets.SVHN(folder, split=split, download=True)


SVHN = NamedSet("svhn", "svhn", tuple(SPLITS.values()), read, download)
