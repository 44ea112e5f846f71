"""`net=resnet`: each stage a stride-2 convolution and `blocks` residual blocks (pre-activation,
two 3×3 convolutions), mirrored in the decoder; no normalization, as for `conv`."""

from collections.abc import Sequence

import torch
from torch import nn

from models.nets.image import ImageNet
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


class ResNet(ImageNet):
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
        if blocks < 0:
            raise ValueError(f"net.blocks must be >= 0, got {blocks}")
        self.blocks = blocks
        super().__init__(
            image_shape, z_dim, n_classes, encoder_outputs, outputs_per_pixel, channels, activation
        )

    def down(self, c_in: int, c_out: int, activation: str) -> list[nn.Module]:
        residual = [ResidualBlock(c_out, activation) for _ in range(self.blocks)]
        return [
            nn.Conv2d(c_in, c_out, 4, stride=2, padding=1),
            *residual,
            activation_layer(activation),
        ]

    def up(self, c_in: int, c_out: int, activation: str) -> list[nn.Module]:
        residual = [ResidualBlock(c_in, activation) for _ in range(self.blocks)]
        deconv = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
        return [*residual, deconv, activation_layer(activation)]
