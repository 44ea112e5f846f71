"""Omniglot as Burda et al. (2016) split it, the split the published Omniglot likelihoods use
(IWAE, VampPrior, Exemplar VAE): their `chardata.mat`, a MATLAB file holding `data` (784 ×
24,345 floats in [0, 1], each column a 28×28 image in column-major order), `testdata` (784 ×
8,070) and `target`/`testtarget` (50 × N one-hot alphabets). It is not in torchvision; it is
fetched from Burda's repository into ROOT/omniglot-burda/. The floats are kept as 8-bit levels,
round(255 v) (at most 1/510 from the file's value), the grey levels binarize=dynamic draws from.
"""

import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.dataset import RawImages
from bench.data.named.fetch import NamedSet
from bench.data.sha import file_sha256
from bench.errors import BenchError

FILE = "chardata.mat"
URL = "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat"
SIDE = 28


def _loadmat(path: Path) -> dict[str, np.ndarray]:
    try:
        import scipy.io
    except ImportError:
        raise BenchError(
            "omniglot-burda: reading chardata.mat needs SciPy: pip install 'vae-bench[named-sets]'"
        ) from None
    names = ["data", "target", "testdata", "testtarget"]
    try:
        return scipy.io.loadmat(path, variable_names=names)
    except Exception as e:  # scipy's parser raises what a damaged file makes it hit
        if isinstance(e, MemoryError):
            raise
        raise BenchError(f"omniglot-burda: {path} is not a readable .mat file: {e}") from None


def split(mat: dict[str, np.ndarray], images: str, target: str, path: Path):
    """(levels (N, 1, 28, 28) uint8, alphabets (N,) int64) of one split."""
    if images not in mat or target not in mat:
        raise BenchError(f"omniglot-burda: {path} has no `{images}` and `{target}`")
    x, t = mat[images], mat[target]
    if x.ndim != 2 or x.shape[0] != SIDE * SIDE or not np.isfinite(x).all():
        raise BenchError(f"omniglot-burda: {path}: `{images}` is {x.shape}, not finite 784 × N")
    if x.min() < 0 or x.max() > 1:
        raise BenchError(f"omniglot-burda: {path}: `{images}` has values outside [0, 1]")
    if t.ndim != 2 or t.shape[1] != x.shape[1]:
        raise BenchError(f"omniglot-burda: {path}: `{target}` is {t.shape}, not C × {x.shape[1]}")
    columns = x.T.reshape(-1, SIDE, SIDE).transpose(0, 2, 1)  # each column is column-major
    levels = np.rint(columns * 255).astype(np.uint8)[:, None]
    return torch.from_numpy(np.ascontiguousarray(levels)), torch.from_numpy(t.argmax(0))


def read(folder: Path, cfg: Any) -> RawImages:
    path = folder / FILE
    mat = _loadmat(path)
    x, y = split(mat, "data", "target", path)
    tx, ty = split(mat, "testdata", "testtarget", path)
    return RawImages(x, y, tx, ty, 256, {FILE: file_sha256(path)}, folder.resolve().as_uri())


def download(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{FILE}.part"
    with urllib.request.urlopen(URL, timeout=60) as response, open(part, "wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)
    part.replace(folder / FILE)


OMNIGLOT_BURDA = NamedSet(
    "omniglot-burda", "omniglot-burda", (FILE,), read, download, hint=f" (from {URL})"
)
