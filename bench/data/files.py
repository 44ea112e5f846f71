"""The user's own images: `data=files data.path=PATH`.

PATH is an `.npz` (images under x_train, x or images; labels, optional, under y_train, y or
labels; a test split, optional, under x_test and y_test), an `.npy` of images, or a folder of
images (bench.data.image_folder) whose `train/` and `test/` subfolders, when both are there, are
the splits. `data.test_path` names a separate test file or folder. Without a test split one is
held out (data.test_size); the validation split always is (data.val_size). Layouts and values:
bench.data.arrays. The dataset's name is the path's (data.name), its digest the files'.
"""

import zipfile
from collections.abc import Mapping
from os.path import expanduser
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.arrays import image_levels, labels_of
from bench.data.dataset import RawImages
from bench.data.image_folder import read_folder
from bench.data.sha import file_sha256
from bench.errors import BenchError

IMAGE_KEYS = ("x_train", "x", "images")
LABEL_KEYS = ("y_train", "y", "labels")
TEST_KEYS = ("x_test", "y_test")


def read_files(cfg: Any) -> RawImages:
    path = _existing(cfg.path, "data.path")
    images, labels, test_images, test_labels, sha = _read(path, cfg.get("cache"))
    if cfg.get("test_path"):
        if test_images is not None:
            raise BenchError(f"{path} has a test split already: leave data.test_path unset")
        test_path = _existing(cfg.test_path, "data.test_path")
        test_images, test_labels, _, _, test_sha = _read(test_path, cfg.get("cache"))
        sha |= {f"test {k}": v for k, v in test_sha.items()}
    train, n_levels = image_levels(images, cfg.layout, str(path))
    train_labels = None if labels is None else labels_of(labels, len(train), str(path))
    test = test_y = None
    if test_images is not None:
        test, test_levels = image_levels(test_images, cfg.layout, f"{path} (test)", n_levels)
        test_y = _test_labels(test_labels, train_labels, len(test), path)
        _check_matching(train, n_levels, test, test_levels, path)
    return RawImages(train, train_labels, test, test_y, n_levels, sha, path.resolve().as_uri())


def dataset_name(path: str) -> str:
    """A dataset's name from its path: the file's stem or the folder's name."""
    resolved = Path(expanduser(str(path))).resolve()
    return resolved.stem if resolved.suffix.lower() in (".npz", ".npy") else resolved.name


def _existing(value: Any, key: str) -> Path:
    if value in (None, "", "???"):
        raise BenchError(f"{key} is not set: data=files needs {key}=PATH (.npz, .npy or a folder)")
    path = Path(expanduser(str(value)))
    if not path.exists():
        raise BenchError(f"{key}: no such file or folder: {path}")
    return path


def _read(path: Path, cache: str | None):
    """(images, labels, test images, test labels, sha256s) as arrays, as the path holds them."""
    if path.is_dir():
        splits = [path / "train", path / "test"]
        if all(s.is_dir() for s in splits):
            (x, y, train_sha), (tx, ty, test_sha) = (read_folder(s, cache) for s in splits)
            return x, y, tx, ty, {"train folder": train_sha, "test folder": test_sha}
        x, y, sha = read_folder(path, cache)
        return x, y, None, None, {f"{path.name} folder": sha}
    sha = {path.name: file_sha256(path)}
    if path.suffix.lower() == ".npy":
        return _load(path), None, None, None, sha
    if path.suffix.lower() == ".npz":
        with _load(path) as arrays:  # only the arrays used are decompressed
            x, y, tx, ty = _npz_arrays(path, arrays)
        return x, y, tx, ty, sha
    raise BenchError(f"{path}: not an .npz, an .npy or a folder of images")


def _load(path: Path):
    """np.load of an .npy (the array) or an .npz (its lazy mapping of arrays), never pickles."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise BenchError(f"{path}: unreadable as {path.suffix}: {e}") from None


def _npz_arrays(path: Path, arrays: Mapping[str, np.ndarray]):
    def first(keys: tuple[str, ...]) -> np.ndarray | None:
        return next((arrays[k] for k in keys if k in arrays), None)

    images = first(IMAGE_KEYS)
    if images is None and len(arrays) == 1:
        images = next(iter(arrays.values()))
    if images is None:
        raise BenchError(
            f"{path}: no images under {', '.join(IMAGE_KEYS)} (it holds {', '.join(arrays)})"
        )
    return images, first(LABEL_KEYS), arrays.get(TEST_KEYS[0]), arrays.get(TEST_KEYS[1])


def _test_labels(test_labels, train_labels, n_test: int, path: Path) -> torch.Tensor | None:
    if (test_labels is None) != (train_labels is None):
        which = "the training images" if train_labels is not None else "the test images"
        raise BenchError(f"{path}: only {which} have labels: give both splits labels, or neither")
    return None if test_labels is None else labels_of(test_labels, n_test, f"{path} (test)")


def _check_matching(train, n_levels: int, test, test_levels: int, path: Path) -> None:
    if train.shape[1:] != test.shape[1:]:
        raise BenchError(
            f"{path}: training images are {'×'.join(map(str, train.shape[1:]))}, test images "
            f"{'×'.join(map(str, test.shape[1:]))} (C×H×W)"
        )
    if (n_levels == 0) != (test_levels == 0):
        raise BenchError(f"{path}: one split is 8-bit levels, the other floats: use one kind")
