"""`net=resnet`: each stage a stride-2 convolution and `blocks` residual blocks (pre-activation,
two 3×3 convolutions), mirrored in the decoder; no normalization, as for `conv`."""

from collections.abc import Sequence

import torch
from torch import nn

from models.nets.conv import check_widths, mirrored
from models.nets.image import Frame, ImageDecoder, ImageEncoder
from models.nets.mlp import activation_layer


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, activation: str):
        super().__init__()
        self.body = nn.Sequential(
            activation_layer(activation),
            nn.Conv2d(channels, channels, 3, padding=1),
            activation_layer(activation),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


def down(c_in: int, c_out: int, blocks: int, activation: str) -> list[nn.Module]:
    residual = [ResidualBlock(c_out, activation) for _ in range(blocks)]
    return [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), *residual]


def up(c_in: int, c_out: int, blocks: int, activation: str) -> list[nn.Module]:
    residual = [ResidualBlock(c_in, activation) for _ in range(blocks)]
    return [*residual, nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]


class ResNet(nn.Module):
    """`channels[i]`: the width after the i-th halving; `blocks` residual blocks per stage."""

    def __init__(
        self,
        image_shape: Sequence[int],
        z_dim: int,
        n_classes: int,
        encoder_outputs: int,
        outputs_per_pixel: int,
        channels: Sequence[int] = (32, 64),
        blocks: int = 1,
        activation: str = "relu",
    ):
        super().__init__()
        widths = check_widths(channels)
        if blocks < 0:
            raise ValueError(f"net.blocks must be >= 0, got {blocks}")
        frame = Frame(image_shape, len(widths))
        ins = [frame.channels + n_classes, *widths[:-1]]
        encoder = [
            m for a, b in zip(ins, widths, strict=True) for m in down(a, b, blocks, activation)
        ]
        encoder.append(activation_layer(activation))
        self.encoder = ImageEncoder(frame, nn.Sequential(*encoder), widths[-1], encoder_outputs)
        decoder = [m for a, b in mirrored(widths) for m in up(a, b, blocks, activation)]
        decoder.append(activation_layer(activation))
        self.decoder = ImageDecoder(
            frame,
            z_dim + n_classes,
            widths,
            nn.Sequential(*decoder),
            outputs_per_pixel,
            activation_layer(activation),
        )
