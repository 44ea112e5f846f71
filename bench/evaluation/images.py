"""Image grids for the run's artifacts: samples, reconstructions, class-conditional samples."""

import math
from pathlib import Path

import torch
from PIL import Image

from bench.data.dataset import Dataset
from models.base import LatentModel

MIN_GRID_PIXELS = 256  # small images (8x8 digits) are enlarged until a grid row is this wide
PADDING, PAD_VALUE = 1, 0.5


MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # channels -> the PNG's mode


def _save(flat: torch.Tensor, data: Dataset, path: Path, nrow: int) -> Path:
    images = flat.clamp(0, 1).reshape(-1, *data.image_shape).float().cpu()
    scale = math.ceil(MIN_GRID_PIXELS / (nrow * data.image_shape[-1]))
    images = images.repeat_interleave(scale, -2).repeat_interleave(scale, -1)  # nearest
    pixels = (grid(images, nrow) * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    channels = pixels.shape[0]
    array = pixels[0] if channels == 1 else pixels.permute(1, 2, 0)
    Image.fromarray(array.contiguous().numpy(), mode=MODES[channels]).save(path)
    return path


def grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """(N, C, H, W) images as one (C, rows*(H+p)+p, nrow*(W+p)+p) image, row by row,
    p = PADDING."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    shape = (c, rows * (h + PADDING) + PADDING, nrow * (w + PADDING) + PADDING)
    out = torch.full(shape, PAD_VALUE)
    for i, image in enumerate(images):
        top, left = PADDING + (i // nrow) * (h + PADDING), PADDING + (i % nrow) * (w + PADDING)
        out[:, top : top + h, left : left + w] = image
    return out


@torch.no_grad()
def sample_grid(model: LatentModel, data: Dataset, path: Path, n: int = 64) -> Path:
    like = next(model.parameters())
    z = model.sample_prior(n, like)
    y = torch.arange(n, device=like.device) % data.n_classes if model.conditional else None
    return _save(model.likelihood.mean(model.decode(z, y)), data, path, nrow=8)


@torch.no_grad()
def reconstruction_grid(model: LatentModel, data: Dataset, path: Path, n: int = 32) -> Path:
    """Odd rows: test inputs; even rows: the decoder mean at the posterior mean."""
    n = min(n, len(data.test_x))
    per_row = min(8, n)
    n -= n % per_row
    x, y = data.test_x[:n], data.test.labels[:n]
    recon = model.likelihood.mean(model.decode(model.encode(x, y)[0], y))
    rows = [a.reshape(-1, per_row, x.shape[-1]) for a in (x, recon)]
    return _save(torch.stack(rows, 1).reshape(-1, x.shape[-1]), data, path, nrow=per_row)


@torch.no_grad()
def class_grid(model: LatentModel, data: Dataset, path: Path, per_class: int = 8) -> Path:
    """Row c: samples of p(x|z, y=c), the same z in every row."""
    like = next(model.parameters())
    z = model.sample_prior(per_class, like).repeat(data.n_classes, 1)
    y = torch.arange(data.n_classes, device=like.device).repeat_interleave(per_class)
    return _save(model.likelihood.mean(model.decode(z, y)), data, path, nrow=per_class)
