"""MNIST, Fashion-MNIST and KMNIST: torchvision's ROOT/<Class>/raw/*-ubyte IDX files."""

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.dataset import RawImages
from bench.data.idx import read_split
from bench.data.named.fetch import NamedSet
from bench.data.sha import file_sha256
from bench.errors import BenchError

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}


def read_idx_set(name: str, folder: Path) -> RawImages:
    try:
        train_x, train_y = read_split(folder / IDX_FILES[0], folder / IDX_FILES[1])
        test_x, test_y = read_split(folder / IDX_FILES[2], folder / IDX_FILES[3])
    except BenchError as e:
        raise BenchError(f"{name}: {e}") from None
    grey = lambda a: torch.from_numpy(a.copy()).unsqueeze(1)  # noqa: E731  (IDX is read-only)
    labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    sha = {f: file_sha256(folder / f) for f in IDX_FILES}
    uri = folder.resolve().as_uri()
    return RawImages(grey(train_x), labels(train_y), grey(test_x), labels(test_y), 256, sha, uri)


def _idx_set(name: str) -> NamedSet:
    cls = TORCHVISION_CLASSES[name]

    def download(folder: Path) -> None:  # folder is ROOT/<Class>/raw
        import torchvision.datasets

        getattr(torchvision.datasets, cls)(folder.parents[1], train=True, download=True)

    def read(folder: Path, cfg: Any) -> RawImages:
        return read_idx_set(name, folder)

    return NamedSet(name, f"{cls}/raw", IDX_FILES, read, download, hint=" (gzipped or not)")


IDX_SETS = {name: _idx_set(name) for name in TORCHVISION_CLASSES}
