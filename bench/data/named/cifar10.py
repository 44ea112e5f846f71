"""CIFAR-10: torchvision's ROOT/cifar-10-batches-py, five training batches and a test batch of
10,000 32×32 colour images each, as the pickled dicts the dataset ships (Python 2 pickles of
{data: uint8 (10000, 3072), the red, green and blue planes row by row; labels: 10000 ints}).

They are read with an unpickler that builds nothing but numpy arrays, lists and strings, so a
file that is not what it claims to be cannot run code (torchvision's own reader would).
"""

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.dataset import RawImages
from bench.data.named.fetch import NamedSet
from bench.data.sha import file_sha256
from bench.errors import BenchError

TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = "test_batch"
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, not a numpy array")
        return super().find_class(module.replace("numpy.core.", "numpy._core."), name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of one batch file."""
    try:
        with open(path, "rb") as f:
            entry = _ArraysOnly(f, encoding="latin1").load()
        data, labels = np.asarray(entry["data"]), np.asarray(entry["labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise BenchError(f"cifar10: {path} is not a CIFAR-10 batch: {e}") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise BenchError(f"cifar10: {path}: data is {data.dtype} {data.shape}, not uint8 N×3072")
    if labels.shape != (len(data),):
        raise BenchError(f"cifar10: {path}: {len(labels)} labels for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), labels


def read(folder: Path, cfg: Any) -> RawImages:
    train = [read_batch(folder / name) for name in TRAIN]
    test_x, test_y = read_batch(folder / TEST)
    images = torch.from_numpy(np.concatenate([x for x, _ in train]))
    labels = torch.from_numpy(np.concatenate([y for _, y in train]))
    sha = {name: file_sha256(folder / name) for name in (*TRAIN, TEST)}
    test = torch.from_numpy(test_x), torch.from_numpy(test_y)
    return RawImages(images, labels, *test, 256, sha, folder.resolve().as_uri())


def download(folder: Path) -> None:
    import torchvision.datasets

    torchvision.datasets.CIFAR10(folder.parent, train=True, download=True)


CIFAR10 = NamedSet("cifar10", "cifar-10-batches-py", (*TRAIN, TEST), read, download)
