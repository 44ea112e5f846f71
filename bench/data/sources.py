"""Where the images of the named datasets come from: the digits bundled with vae-bench, and the
IDX files of MNIST, Fashion-MNIST and KMNIST (torchvision's layout, read-only system folders,
torchvision's download), and the user's own files (bench.data.files)."""

import gzip
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.dataset import RawImages
from bench.data.files import read_files
from bench.data.idx import read_split
from bench.errors import BenchError

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
SYNTHETIC = ("mixture", "linear")


def _source(cfg: Any) -> Path:
    """The bundled file (digits) or the raw folder the IDX files were read from."""
    return digits_file() if cfg.name == "digits" else _raw_folder(cfg)


def _raw_folder(cfg: Any) -> Path:
    """torchvision's layout: ROOT/<Class>/raw."""
    return Path(os.path.expanduser(str(cfg.root))) / TORCHVISION_CLASSES[cfg.name] / "raw"


def source_images(cfg: Any) -> tuple[torch.Tensor, int, dict[str, str]]:
    """The training images of a named dataset as flat levels (N, D), their number of levels and
    sha256s (what a density of bench.data.synthetic is fitted to)."""
    raw = read(cfg)
    return raw.images.flatten(1), raw.n_levels, raw.sha256


def read(cfg: Any) -> RawImages:
    if cfg.get("format") == "files":
        return read_files(cfg)
    if cfg.name == "digits":
        images, labels, test_images, test_labels = _digits(cfg)
        n_levels, sha = 17, {digits_file().name: _sha256(digits_file())}
    elif cfg.name in TORCHVISION_CLASSES:
        images, labels, test_images, test_labels, sha = _torchvision(cfg)
        n_levels = 256
    else:
        names = ", ".join(["digits", *TORCHVISION_CLASSES, *SYNTHETIC, "files"])
        raise BenchError(f"unknown dataset {cfg.name!r}: choose one of {names}")
    side = int(round(images.shape[1] ** 0.5)) if images.dim() == 2 else images.shape[-1]
    grey = lambda a: a.reshape(len(a), 1, side, side)  # noqa: E731
    uri = _source(cfg).resolve().as_uri()
    return RawImages(grey(images), labels, grey(test_images), test_labels, n_levels, sha, uri)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digits(cfg: Any):
    source = digits_file()
    table = np.loadtxt(source, delimiter=",", dtype=np.int64)  # as sklearn's load_digits reads it
    images = torch.from_numpy(table[:, :-1].astype(np.uint8))
    labels = torch.from_numpy(table[:, -1])
    n_test = int(cfg.test_size)
    if not 0 < n_test < len(labels):
        raise BenchError(f"data.test_size must be in 1..{len(labels) - 1}, got {n_test}")
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(int(cfg.seed) + 1))
    test, rest = perm[:n_test], perm[n_test:]
    return images[rest], labels[rest], images[test], labels[test]


def digits_file() -> Path:
    """The 8x8 digits bundled with vae-bench: scikit-learn's copy, byte for byte
    (bench/data/files/README.md)."""
    return Path(__file__).resolve().parent / "files" / "digits.csv.gz"


def _torchvision(cfg: Any):
    raw = _raw_folder(cfg)
    _stage_gzipped(raw, [raw, *[Path(p) for p in cfg.get("system_dirs", [])]])
    if not all((raw / f).is_file() for f in IDX_FILES):
        if not cfg.download:
            raise BenchError(_missing(cfg.name, raw, "data.download=false"))
        try:
            _download(cfg.name, raw.parents[1])  # ROOT of ROOT/<Class>/raw
        except Exception as e:  # torchvision raises RuntimeError/URLError/OSError offline
            lines = str(e).strip().splitlines() or [type(e).__name__]
            raise BenchError(_missing(cfg.name, raw, f"download failed: {lines[-1]}")) from None
    try:
        train_x, train_y = read_split(raw / IDX_FILES[0], raw / IDX_FILES[1])
        test_x, test_y = read_split(raw / IDX_FILES[2], raw / IDX_FILES[3])
    except BenchError as e:
        raise BenchError(f"{cfg.name}: {e}") from None
    sha = {f: _sha256(raw / f) for f in IDX_FILES}
    levels = lambda a: torch.from_numpy(a.copy())  # noqa: E731  (IDX arrays are read-only)
    labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return levels(train_x), labels(train_y), levels(test_x), labels(test_y), sha


def _download(name: str, root: Path) -> None:
    """torchvision's download into ROOT/<Class>/raw (torchvision is imported only for this)."""
    import torchvision.datasets

    getattr(torchvision.datasets, TORCHVISION_CLASSES[name])(root, train=True, download=True)


def _stage_gzipped(raw: Path, sources: list[Path]) -> None:
    """Unzip `NAME.gz` from the first source having it into `raw/NAME`; sources stay untouched."""
    for name in IDX_FILES:
        if (raw / name).is_file():
            continue
        gz = next((d / f"{name}.gz" for d in sources if (d / f"{name}.gz").is_file()), None)
        if gz is None:
            continue
        raw.mkdir(parents=True, exist_ok=True)
        tmp = raw / f".{name}.part"
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.rename(raw / name)


def _missing(name: str, raw: Path, why: str) -> str:
    return (
        f"{name} not found in {raw} ({why}); put {', '.join(IDX_FILES)} there "
        f"(gzipped or not), or set data.root=DIR"
    )
