"""Many image files decoded in parallel (Pillow releases the GIL while it decodes), each made
an array by `to_array`, stacked into one uint8 array, with the sha256 over the files' names and
contents (as bench.data.image_folder digests a folder)."""

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from bench.data.image_folder import decode_image
from bench.errors import BenchError


def decode_all(
    files: list[Path], root: Path, to_array: Callable[[Image.Image], np.ndarray], what: str
) -> tuple[np.ndarray, str]:
    def one(path: Path) -> tuple[np.ndarray, bytes]:
        try:
            content = path.read_bytes()
        except OSError as e:
            raise BenchError(f"unreadable image {path}: {e.strerror}") from None
        return to_array(decode_image(path, content)), hashlib.sha256(content).digest()

    digest = hashlib.sha256()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        decoded = pool.map(one, files)
        bar = tqdm(
            decoded,
            total=len(files),
            desc=f"decoding {what}",
            unit="image",
            leave=False,
            disable=None,
        )
        arrays = []
        for path, (array, sha) in zip(files, bar, strict=True):
            digest.update(f"{path.relative_to(root)}\0".encode() + sha)
            arrays.append(array)
    return np.stack(arrays), digest.hexdigest()
