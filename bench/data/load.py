"""The one entry to the data: a `data` config node to a Dataset on the device."""

from typing import Any

import torch

from bench.data.dataset import BINARIZE, Dataset, RawImages, Split
from bench.data.sources import SYNTHETIC, read
from bench.data.synthetic.load import load as load_synthetic
from bench.errors import BenchError


def load(cfg: Any, device: torch.device | str = "cpu", dequantize: bool = True) -> Dataset:
    """Build the dataset `cfg` (a `data` config node) names, its images on `device`; grey
    levels dequantized, or (`dequantize=False`, for a discrete likelihood) as they are."""
    if cfg.binarize not in BINARIZE:
        raise BenchError(
            f"data.binarize must be one of {', '.join(BINARIZE)}, got {cfg.binarize!r}"
        )
    if cfg.name in SYNTHETIC:
        return load_synthetic(cfg, device)
    raw = read(cfg)
    labelled = raw.labels is not None
    rest, test = _test_split(raw, cfg)
    train, val = _val_split(raw, rest, cfg)
    to = lambda s: Split(s.levels.to(device), s.labels.to(device))  # noqa: E731
    labels = torch.cat([train.labels, val.labels, test.labels])
    return Dataset(
        name=cfg.name,
        train=to(train),
        val=to(val),
        test=to(test),
        image_shape=tuple(raw.images.shape[1:]),
        n_levels=raw.n_levels,
        n_classes=int(labels.max()) + 1 if labelled else 1,
        binarize=cfg.binarize,
        seed=int(cfg.seed),
        dequantize=dequantize,
        sha256=raw.sha256,
        source=raw.source,
        labelled=labelled,
    )


def _test_split(raw: RawImages, cfg: Any) -> tuple[Split, Split]:
    """All but the test split, and the test split: the source's own, else held out with the
    data seed (+1, a stream apart from the validation split's)."""
    everything = _split(raw.images, raw.labels)
    if raw.test_images is not None:
        return everything, _split(raw.test_images, raw.test_labels)
    n_test = count(cfg.get("test_size", 0.1), len(everything), "data.test_size")
    rest, test = hold_out(everything, n_test, int(cfg.seed) + 1)
    return rest, test


def _val_split(raw: RawImages, rest: Split, cfg: Any) -> tuple[Split, Split]:
    """The training and validation splits: the source's own when data.val_size is null, else
    held out of the rest (with the source's validation images, if any) with the data seed."""
    own = None if raw.val_images is None else _split(raw.val_images, raw.val_labels)
    if cfg.get("val_size") is None:
        if own is None:
            raise BenchError(f"data.val_size is null and {cfg.name} has no validation split")
        return rest, own
    if own is not None:
        rest = Split(torch.cat([rest.levels, own.levels]), torch.cat([rest.labels, own.labels]))
    return hold_out(rest, count(cfg.val_size, len(rest), "data.val_size"), int(cfg.seed))


def _split(images: torch.Tensor, labels: torch.Tensor | None) -> Split:
    flat = images.reshape(len(images), -1)
    return Split(flat, labels if labels is not None else torch.zeros(len(images), dtype=torch.long))


def count(value: Any, n: int, key: str) -> int:
    """A split's size: a count, or a fraction in (0, 1) of the n images it is taken from."""
    size = round(float(value) * n) if isinstance(value, float) and 0 < value < 1 else value
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size < n:
        raise BenchError(
            f"{key} must be a count in 1..{n - 1} or a fraction in (0, 1) of the {n} images, "
            f"got {value!r}"
        )
    return size


def hold_out(split: Split, n: int, seed: int) -> tuple[Split, Split]:
    """(the rest, the n held out), drawn with `seed`."""
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    held, rest = perm[:n], perm[n:]
    return Split(split.levels[rest], split.labels[rest]), Split(
        split.levels[held], split.labels[held]
    )
