"""CelebA: torchvision's ROOT/celeba, the aligned 178×218 JPEGs in img_align_celeba/ and the
official partition in list_eval_partition.txt (0 train, 1 validation, 2 test: 162,770, 19,867
and 19,962 images). Each image is centre-cropped to data.crop (148) and resized to data.size
(64) by Pillow's bilinear filter, antialiased, as the anchors' CenterCrop(148) + Resize(64) do:
3 × 64 × 64 = 12,288 bytes an image, 2.49 GB for all 202,599. No labels (the attributes are
not classes). Decoded once into data.cache (bench.data.decoded_cache).
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.data.dataset import RawImages
from bench.data.decoded_cache import cached
from bench.data.image_folder import decode_all
from bench.data.named.fetch import NamedSet
from bench.data.sha import file_sha256
from bench.errors import BenchError

IMAGES, PARTITION = "img_align_celeba", "list_eval_partition.txt"


def partition(path: Path) -> dict[int, list[str]]:
    """The image files of each partition (0, 1, 2), in the file's order."""
    parts: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise BenchError(f"celeba: {path} line {n} is not `IMAGE PARTITION`: {line!r}")
        parts[int(fields[1])].append(fields[0])
    if not all(parts.values()):
        raise BenchError(f"celeba: {path} must list images of partitions 0, 1 and 2")
    return parts


def centre_crop_resize(crop: int, size: int):
    def to_array(image: Image.Image) -> np.ndarray:
        w, h = image.size
        if min(w, h) < crop:
            raise BenchError(f"celeba: an image is {w}×{h}, smaller than data.crop={crop}")
        left, top = int(round((w - crop) / 2)), int(round((h - crop) / 2))
        box = image.convert("RGB").crop((left, top, left + crop, top + crop))
        return np.asarray(box.resize((size, size), Image.BILINEAR)).transpose(2, 0, 1)

    return to_array


def read(folder: Path, cfg: Any) -> RawImages:
    parts = partition(folder / PARTITION)
    names = [name for p in (0, 1, 2) for name in parts[p]]
    files = [folder / IMAGES / name for name in names]
    if missing := next((f for f in files if not f.is_file()), None):
        raise BenchError(f"celeba: {missing} is listed in {PARTITION} but not there")
    crop, size = int(cfg.crop), int(cfg.size)

    def build():
        images, sha = decode_all(files, folder, centre_crop_resize(crop, size), "celeba")
        return {"images": np.stack(images)}, sha

    params = {"set": "celeba", "crop": crop, "size": size}
    arrays, sha = cached(cfg.get("cache"), [folder / PARTITION, *files], params, build)
    images = torch.from_numpy(arrays["images"])
    n_train, n_val = len(parts[0]), len(parts[1])
    train, val, test = (
        images[:n_train],
        images[n_train : n_train + n_val],
        images[n_train + n_val :],
    )
    digests = {PARTITION: file_sha256(folder / PARTITION), IMAGES: sha}
    uri = folder.resolve().as_uri()
    return RawImages(train, None, test, None, 256, digests, uri, val_images=val)


def download(folder: Path) -> None:
    import torchvision.datasets

    torchvision.datasets.CelebA(folder.parent, split="all", download=True)


CELEBA = NamedSet("celeba", "celeba", (f"{IMAGES}/", PARTITION), read, download, labelled=False)
