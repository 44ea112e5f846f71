"""IDX files (LeCun's MNIST format, also Fashion-MNIST's and KMNIST's), read and checked.

An unsigned-byte IDX file is a magic number 0x000008NN (NN: the number of dimensions), NN
big-endian 32-bit sizes, then the product of the sizes in bytes. A file that is not exactly that
is refused with one line that names it and says what is wrong.
"""

import math
import struct
from pathlib import Path

import numpy as np

from bench.errors import BenchError

UNSIGNED_BYTE = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array in `path`, which must have `ndim` dimensions."""
    data = path.read_bytes()
    magic = 0x0800 + ndim
    if len(data) < 4:
        raise _bad(path, f"{len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise _bad(
            path,
            f"bad magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})",
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _bad(path, f"{len(data)} bytes, too short for its {header}-byte header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(shape)
    if len(data) != expected:
        dims = "×".join(map(str, shape))
        raise _bad(path, f"{len(data)} bytes, but its header ({dims} bytes) needs {expected}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_split(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) pixel levels and their N labels, checked to match."""
    x, y = read_idx(images, 3), read_idx(labels, 1)
    if len(x) != len(y):
        raise _bad(labels, f"{len(y)} labels for the {len(x)} images of {images.name}")
    return x, y


def _bad(path: Path, reason: str) -> BenchError:
    return BenchError(f"cannot read IDX file {path}: {reason}")
