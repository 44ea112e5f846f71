"""A folder of images (any format Pillow reads) as arrays.

Class subfolders give labels (their names, sorted, are classes 0, 1, ...); images directly in the
folder have none (a folder holds one or the other). Images are taken in the order of their file
names, then of their class folders, so files named by index keep their order. Files Pillow does
not know by extension (a README, .DS_Store) are skipped; one it knows but cannot read is an error.
Grey (L), binary (1) and colour (RGB) images are kept as they are; palette and alpha images become
RGB or L; when grey and colour are mixed, all become RGB. All must have one size.
"""

import hashlib
import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from bench.data.decoded_cache import cached
from bench.errors import BenchError

T = TypeVar("T")
TO_MODE = {"1": "L", "L": "L", "LA": "L", "P": "RGB", "RGB": "RGB", "RGBA": "RGB", "CMYK": "RGB"}


def image_files(folder: Path) -> tuple[list[Path], list[int] | None]:
    """The image files under `folder` in reading order, and their class indices (None when the
    images lie directly in the folder)."""
    known = set(Image.registered_extensions())
    images = lambda d: [p for p in d.iterdir() if p.is_file() and p.suffix.lower() in known]  # noqa: E731
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    direct = images(folder)
    if classes and direct:
        raise BenchError(
            f"{folder}: holds both images ({direct[0].name}) and class folders "
            f"({classes[0].name}): put every image in a class folder, or none"
        )
    if not classes:
        return sorted(direct, key=lambda p: p.name), None
    pairs = [(p, label) for label, d in enumerate(classes) for p in images(d)]
    pairs.sort(key=lambda pair: (pair[0].name, pair[1]))
    return [p for p, _ in pairs], [label for _, label in pairs]


def read_folder(
    folder: Path, cache_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(N, H, W) or (N, H, W, 3) uint8 images, labels or None, and the sha256 over the files'
    names and contents; decoded once into `cache_dir` (bench.data.decoded_cache) when given."""
    files, labels = image_files(folder)
    if not files:
        raise BenchError(
            f"{folder}: no images (any format Pillow reads, in it or in class folders)"
        )

    def build() -> tuple[dict[str, np.ndarray], str]:
        decoded, digest = decode_all(files, folder, lambda image: image, folder.name)
        return {"images": _stack(files, decoded)}, digest

    arrays, digest = cached(cache_dir, files, {"reader": "image_folder"}, build)
    return arrays["images"], None if labels is None else np.array(labels), digest


def decode_all(
    files: list[Path], root: Path, convert: Callable[[Image.Image], T], what: str
) -> tuple[list[T], str]:
    """Each file decoded and passed through `convert`, in order, in parallel (Pillow releases
    the GIL while it decodes), and the sha256 over the files' names (relative to `root`) and
    contents."""

    def one(path: Path) -> tuple[T, bytes]:
        try:
            content = path.read_bytes()
        except OSError as e:
            raise BenchError(f"unreadable image {path}: {e.strerror}") from None
        return convert(decode_image(path, content)), hashlib.sha256(content).digest()

    digest, converted = hashlib.sha256(), []
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        done = tqdm(
            pool.map(one, files),
            total=len(files),
            desc=f"decoding {what}",
            unit="image",
            leave=False,
            disable=None,
        )
        for path, (result, sha) in zip(files, done, strict=True):
            digest.update(f"{path.relative_to(root)}\0".encode() + sha)
            converted.append(result)
    return converted, digest.hexdigest()


def decode_image(path: Path, content: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(content))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BenchError(f"unreadable image {path}: {e}") from None
    if image.mode not in TO_MODE:
        raise BenchError(
            f"{path}: image mode {image.mode} (16-bit or float pixels): convert it to 8-bit"
        )
    return image.convert(TO_MODE[image.mode]) if image.mode != TO_MODE[image.mode] else image


def _stack(files: list[Path], images: list[Image.Image]) -> np.ndarray:
    first = images[0]
    for path, image in zip(files, images, strict=True):
        if image.size != first.size:
            raise BenchError(
                f"images of different sizes: {files[0]} is {_size(first)}, {path} is {_size(image)}"
            )
    mode = "RGB" if any(image.mode == "RGB" for image in images) else "L"
    shape = (len(images), first.height, first.width) + ((3,) if mode == "RGB" else ())
    out = np.empty(shape, dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(image.convert(mode) if image.mode != mode else image)
    return out


def _size(image: Image.Image) -> str:
    return f"{image.width}×{image.height}"
