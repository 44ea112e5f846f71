"""The image grids against torchvision's make_grid, and their size for small images."""

import torch
from torchvision.utils import make_grid

from bench.images import MIN_GRID_PIXELS, PAD_VALUE, PADDING, grid, sample_grid
from models import Bernoulli, variant
from tests.conftest import config


def test_grid_is_torchvisions_make_grid():
    images = torch.rand(61, 12, 10, generator=torch.Generator().manual_seed(0))  # ragged last row
    expected = make_grid(images[:, None], nrow=8, padding=PADDING, pad_value=PAD_VALUE)[0]
    torch.testing.assert_close(grid(images, 8), expected, rtol=0, atol=0)


def test_small_images_are_enlarged_nearest_neighbour(tmp_path):
    from PIL import Image

    from bench.data import load

    data = load(config().data)  # 8x8 digits
    model = variant("vae")(x_dim=64, z_dim=2, h_dim=8, n_hidden=1, likelihood=Bernoulli())
    image = Image.open(sample_grid(model, data, tmp_path / "samples.png"))
    assert min(image.size) >= MIN_GRID_PIXELS and image.mode == "L"
