"""Where a dataset's images come from: the digits bundled with vae-bench, the named sets in
torchvision's layout (bench.data.named), and the user's own files (bench.data.files)."""

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.dataset import RawImages
from bench.data.files import read_files
from bench.data.named.fetch import fetch
from bench.data.named.sets import NAMED
from bench.data.sha import file_sha256
from bench.errors import BenchError

SYNTHETIC = ("mixture", "linear")


def source_images(cfg: Any) -> tuple[torch.Tensor, int, dict[str, str]]:
    """The training images of a named dataset as flat levels (N, D), their number of levels and
    sha256s (what a density of bench.data.synthetic is fitted to)."""
    raw = read(cfg)
    return raw.images.flatten(1), raw.n_levels, raw.sha256


def read(cfg: Any) -> RawImages:
    if cfg.get("format") == "files":
        return read_files(cfg)
    if cfg.name == "digits":
        return _digits(cfg)
    if cfg.name in NAMED:
        named = NAMED[cfg.name]
        return named.read(fetch(named, cfg), cfg)
    names = ", ".join(["digits", *NAMED, *SYNTHETIC, "files"])
    raise BenchError(f"unknown dataset {cfg.name!r}: choose one of {names}")


def fetch_files(cfg: Any) -> None:
    """A named set's files found or downloaded (one line when neither works), before any run."""
    if cfg.get("format") != "files" and cfg.name in NAMED:
        fetch(NAMED[cfg.name], cfg)


def _digits(cfg: Any) -> RawImages:
    """All 1,797 images: their test split is held out as the user's files' are (data.test_size,
    with the data seed + 1)."""
    source = digits_file()
    table = np.loadtxt(source, delimiter=",", dtype=np.int64)  # as sklearn's load_digits reads it
    images = torch.from_numpy(table[:, :-1].astype(np.uint8)).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(table[:, -1])
    sha = {source.name: file_sha256(source)}
    return RawImages(images, labels, None, None, 17, sha, source.resolve().as_uri())


def digits_file() -> Path:
    """The 8x8 digits bundled with vae-bench: scikit-learn's copy, byte for byte
    (bench/data/files/README.md)."""
    return Path(__file__).resolve().parent / "files" / "digits.csv.gz"
