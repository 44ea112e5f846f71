"""What the convolutional networks share: the flat pixels as an image, padded to a size the
stride-2 stages halve exactly, a linear map between the smallest feature map and the latent, and
the decoder's output cropped back to the image and flattened in the likelihood's layout.

Any H×W: the image is zero-padded, evenly on both sides, to multiples of 2^depth (28×28 stays
28×28 at depth 2, 30×30 becomes 32×32), and the decoder's output is cropped by the same margins.
A label (cvae) enters the encoder as one constant input channel per class and the decoder
concatenated to z."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.mlp import activation_layer


class Frame:
    """An image's padding to multiples of 2^depth, and the feature map's size after `depth`
    halvings."""

    def __init__(self, image_shape: Sequence[int], depth: int):
        if len(image_shape) != 3:
            raise ValueError(f"a convolutional net needs images (C, H, W), got {image_shape}")
        self.channels, self.height, self.width = (int(s) for s in image_shape)
        step = 2**depth
        pad_h = -self.height % step
        pad_w = -self.width % step
        self.top, self.left = pad_h // 2, pad_w // 2
        self.pad = (self.left, pad_w - self.left, self.top, pad_h - self.top)
        self.inner = ((self.height + pad_h) // step, (self.width + pad_w) // step)

    def image(self, x: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        """Flat (N, C·H·W) pixels as padded (N, C[+classes], H', W') images."""
        n = x.shape[0]
        image = x.reshape(n, self.channels, self.height, self.width)
        if label is not None:
            planes = label[:, :, None, None].expand(n, label.shape[1], self.height, self.width)
            image = torch.cat([image, planes.to(image.dtype)], 1)
        return F.pad(image, self.pad)

    def flat(self, out: torch.Tensor, outputs_per_pixel: int) -> torch.Tensor:
        """Padded (N, P·C, H', W') outputs cropped and flattened parameter-major: the first C·H·W
        values are every pixel's first parameter (C-major, as the data), then the second."""
        crop = out[..., self.top : self.top + self.height, self.left : self.left + self.width]
        return crop.reshape(out.shape[0], outputs_per_pixel, -1).flatten(1)


class ImageEncoder(nn.Module):
    def __init__(self, frame: Frame, stages: nn.Sequential, channels: int, out_dim: int):
        super().__init__()
        self.frame = frame
        self.stages = stages
        self.head = nn.Linear(channels * math.prod(frame.inner), out_dim)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.stages(self.frame.image(x, label)).flatten(1))


class ImageDecoder(nn.Module):
    """z(+label) -> a `widths[-1]`-channel feature map -> `stages` (up to full size, at
    `widths[0]` channels) -> a 3×3 convolution to the likelihood's parameters per pixel."""

    def __init__(
        self,
        frame: Frame,
        in_dim: int,
        widths: Sequence[int],
        stages: nn.Sequential,
        outputs_per_pixel: int,
        activation: nn.Module,
    ):
        super().__init__()
        self.frame, self.width, self.outputs_per_pixel = frame, widths[-1], outputs_per_pixel
        features = widths[-1] * math.prod(frame.inner)
        self.input = nn.Sequential(nn.Linear(in_dim, features), activation)
        self.stages = stages
        self.output = nn.Conv2d(widths[0], outputs_per_pixel * frame.channels, 3, padding=1)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        t = z if label is None else torch.cat([z, label.to(z.dtype)], -1)
        h = self.input(t).reshape(z.shape[0], self.width, *self.frame.inner)
        return self.frame.flat(self.output(self.stages(h)), self.outputs_per_pixel)


class ImageNet(nn.Module):
    """An encoder of one `down` stage per width (each halving the image) and a decoder of the
    mirrored `up` stages; a network is what its stages are."""

    def __init__(
        self,
        image_shape: Sequence[int],
        z_dim: int,
        n_classes: int,
        encoder_outputs: int,
        outputs_per_pixel: int,
        channels: Sequence[int] = (32, 64),
        activation: str = "relu",
    ):
        super().__init__()
        widths = [int(c) for c in channels]
        if not widths or min(widths) < 1:
            raise ValueError(f"net.channels needs at least one width >= 1, got {list(channels)}")
        frame = Frame(image_shape, len(widths))
        ins = [frame.channels + n_classes, *widths[:-1]]
        down = [m for a, b in zip(ins, widths, strict=True) for m in self.down(a, b, activation)]
        self.encoder = ImageEncoder(frame, nn.Sequential(*down), widths[-1], encoder_outputs)
        backwards = widths[::-1]  # the decoder ends at full size with widths[0] channels
        pairs = zip(backwards, [*backwards[1:], widths[0]], strict=True)
        up = [m for a, b in pairs for m in self.up(a, b, activation)]
        self.decoder = ImageDecoder(
            frame,
            z_dim + n_classes,
            widths,
            nn.Sequential(*up),
            outputs_per_pixel,
            activation_layer(activation),
        )

    def down(self, c_in: int, c_out: int, activation: str) -> list[nn.Module]:
        raise NotImplementedError

    def up(self, c_in: int, c_out: int, activation: str) -> list[nn.Module]:
        raise NotImplementedError
