"""The image grids against torchvision's make_grid, and their size for small images."""

from functools import partial

import pytest
import torch
from torchvision.utils import make_grid

from bench.evaluation.images import MIN_GRID_PIXELS, PAD_VALUE, PADDING, grid, sample_grid
from models import Bernoulli, variant
from models.nets import MLPNet
from tests.conftest import config


@pytest.mark.parametrize("channels", [1, 3])
def test_grid_is_torchvisions_make_grid(channels):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(61, channels, 12, 10, generator=generator)  # ragged last row
    expected = make_grid(images, nrow=8, padding=PADDING, pad_value=PAD_VALUE)
    if channels == 1:
        expected = expected[:1]  # make_grid repeats a grey image into 3 channels
    torch.testing.assert_close(grid(images, 8), expected, rtol=0, atol=0)


def test_small_images_are_enlarged_nearest_neighbour(tmp_path):
    from PIL import Image

    from bench.data.load import load

    data = load(config().data)  # 8x8 digits
    model = variant("vae")(
        image_shape=(1, 8, 8), z_dim=2, likelihood=Bernoulli(), net=partial(MLPNet, h_dim=8)
    )
    image = Image.open(sample_grid(model, data, tmp_path / "samples.png"))
    assert min(image.size) >= MIN_GRID_PIXELS and image.mode == "L"
