"""Omniglot at 28×28: torchvision's ROOT/omniglot-py, images_background/ (30 alphabets) and
images_evaluation/ (20 alphabets), ALPHABET/CHARACTER/NNNN_DD.png, 105×105 one-bit drawings of
1,623 characters, each by 20 drawers (DD). Burda et al. (2016) and the VampPrior code use
28×28 images, 24,345 for training and 8,070 for test (`chardata.mat`); 24,345 is exactly
15/20 of torchvision's 32,460, so here each character's drawings by drawers 1-15 train and
16-20 test (24,345 and 8,115 images; chardata.mat's own assignment of drawers is not published;
chardata.mat itself is `data=omniglot-burda`).
Strokes are made 1 (they are black, 0, in the PNGs), and each image is resized to data.size by
Pillow's box filter (the mean of the pixels each output pixel covers), so strokes become grey
levels that binarize=dynamic draws from. Labels: the alphabet (50 classes, sorted by name).
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from bench.data.dataset import RawImages
from bench.data.decoded_cache import cached
from bench.data.image_folder import decode_all
from bench.data.named.fetch import NamedSet
from bench.errors import BenchError

PARTS = ("images_background", "images_evaluation")
TRAIN_DRAWERS = 15


def drawings(folder: Path) -> tuple[list[Path], list[int]]:
    """Every drawing's file, in alphabet, character and file-name order, and its alphabet."""
    alphabets = sorted((a for part in PARTS for a in _dirs(folder / part)), key=lambda a: a.name)
    files, labels = [], []
    for label, alphabet in enumerate(alphabets):
        for character in _dirs(alphabet):
            pngs = sorted(character.glob("*.png"))
            files += pngs
            labels += [label] * len(pngs)
    if not files:
        raise BenchError(f"omniglot: no drawings in {folder}/{{{','.join(PARTS)}}}")
    return files, labels


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def drawer(path: Path) -> int:
    try:
        return int(path.stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        raise BenchError(f"omniglot: {path} is not named CHARACTER_DRAWER.png") from None


def strokes_resized(size: int):
    def to_array(image: Image.Image) -> np.ndarray:
        inverted = ImageOps.invert(image.convert("L"))
        return np.asarray(inverted.resize((size, size), Image.BOX))[None]

    return to_array


def read(folder: Path, cfg: Any) -> RawImages:
    files, labels = drawings(folder)
    size = int(cfg.size)

    def build():
        images, sha = decode_all(files, folder, strokes_resized(size), "omniglot")
        return {"images": np.stack(images)}, sha

    params = {"set": "omniglot", "size": size}
    arrays, sha = cached(cfg.get("cache"), files, params, build)
    images, y = torch.from_numpy(arrays["images"]), torch.tensor(labels)
    train = torch.tensor([drawer(f) <= TRAIN_DRAWERS for f in files])
    uri = folder.resolve().as_uri()
    split = images[train], y[train], images[~train], y[~train]
    return RawImages(*split, 256, {"drawings": sha}, uri)


def download(folder: Path) -> None:
    import torchvision.datasets

    for background in (True, False):
        torchvision.datasets.Omniglot(folder.parent, background=background, download=True)


OMNIGLOT = NamedSet("omniglot", "omniglot-py", tuple(f"{p}/" for p in PARTS), read, download)
