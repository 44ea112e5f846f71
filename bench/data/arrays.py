"""Arrays of images as the harness keeps them: (N, C, H, W) levels, checked.

Layouts: N×H×W (grey), N×H×W×C or N×C×H×W with C in 1, 3, 4; `auto` takes channels-first when
the second axis is 1, 3 or 4 and the last is not, channels-last when the last is and the second is
not, and asks for data.layout otherwise. Values: integers 0..255 are 8-bit levels (256), or
binary (2) when they are only 0 and 1, or only 0 and 255; booleans are binary; floats must lie in
[0, 1] and are continuous data (store 8-bit images as uint8 to keep them discrete).
"""

import numpy as np
import torch

from bench.errors import BenchError

LAYOUTS = ("auto", "NHW", "NHWC", "NCHW")
CHANNELS = (1, 3, 4)


def image_levels(
    array: np.ndarray, layout: str, what: str, like: int | None = None
) -> tuple[torch.Tensor, int]:
    """`array` as (N, C, H, W) uint8 levels (float32 when continuous) and its number of levels
    (0: continuous); `what` names it in errors. `like`: the number of levels of the split this
    one goes with (a test split is read in its training split's terms)."""
    if layout not in LAYOUTS:
        raise BenchError(f"data.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if array.ndim not in (3, 4):
        raise BenchError(
            f"{what}: images must be N×H×W, N×H×W×C or N×C×H×W, got rank {array.ndim} "
            f"(shape {_shape(array)})"
        )
    if len(array) == 0:
        raise BenchError(f"{what}: no images (shape {_shape(array)})")
    array = _channels_first(array, layout, what)
    values, n_levels = _levels(array, what, like)
    return torch.from_numpy(np.ascontiguousarray(values)), n_levels


def _channels_first(array: np.ndarray, layout: str, what: str) -> np.ndarray:
    if array.ndim == 3:
        if layout not in ("auto", "NHW"):
            raise BenchError(f"{what}: data.layout={layout} needs rank 4, got {_shape(array)}")
        return array[:, None]
    if layout == "NHW":
        raise BenchError(f"{what}: data.layout=NHW needs rank 3, got {_shape(array)}")
    if layout == "auto":
        first, last = array.shape[1] in CHANNELS, array.shape[3] in CHANNELS
        if first == last:
            raise BenchError(
                f"{what}: cannot tell the channel axis of shape {_shape(array)}: "
                "set data.layout=NHWC or data.layout=NCHW"
            )
        layout = "NCHW" if first else "NHWC"
    if layout == "NHWC":
        array = array.transpose(0, 3, 1, 2)
    if array.shape[1] not in CHANNELS:
        raise BenchError(
            f"{what}: {array.shape[1]} channels in {_shape(array)} ({layout}): 1, 3 or 4 expected"
        )
    return array


def _levels(array: np.ndarray, what: str, like: int | None) -> tuple[np.ndarray, int]:
    if array.dtype == np.bool_:
        return array.astype(np.uint8), 2
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise BenchError(f"{what}: integer values must lie in 0..255, found {low}..{high}")
        levels = array.astype(np.uint8, copy=False)
        present = set(np.flatnonzero(np.bincount(levels.reshape(-1), minlength=256)).tolist())
        binary = present <= {0, 1} or present <= {0, 255}
        if like == 2 and not binary:
            raise BenchError(f"{what}: grey levels where the training images are binary")
        if binary and like != 256:
            return (levels // 255 if 255 in present else levels), 2
        return levels, 256
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            bad = int((~finite).sum())
            raise BenchError(f"{what}: {bad} values are NaN or infinite")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise BenchError(f"{what}: float values must lie in [0, 1], found {low:g}..{high:g}")
        return array.astype(np.float32), 0
    raise BenchError(f"{what}: dtype {array.dtype} is not images: uint8 levels or floats in [0, 1]")


def labels_of(array: np.ndarray, n_images: int, what: str) -> torch.Tensor:
    """Integer class labels, one per image."""
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise BenchError(
            f"{what}: labels must be a 1-D integer array, got {array.dtype} {_shape(array)}"
        )
    if len(array) != n_images:
        raise BenchError(f"{what}: {len(array)} labels for {n_images} images")
    if len(array) and int(array.min()) < 0:
        raise BenchError(f"{what}: labels must be >= 0, found {int(array.min())}")
    return torch.from_numpy(array.astype(np.int64))


def _shape(array: np.ndarray) -> str:
    return "×".join(str(n) for n in array.shape)
