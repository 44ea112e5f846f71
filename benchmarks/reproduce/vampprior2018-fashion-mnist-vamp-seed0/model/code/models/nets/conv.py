"""`net=conv`: stride-2 convolutions down, transposed convolutions up (DCGAN-style, 4×4 kernels,
no normalization: examples stay independent, as the IW bound needs)."""

from torch import nn

from models.nets.image import ImageNet
from models.nets.mlp import activation_layer


class ConvNet(ImageNet):
    """`channels[i]`: the width after the i-th halving of the image (the decoder mirrors it)."""

    def down(self, c_in: int, c_out: int, activation: str) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), activation_layer(activation)]

    def up(self, c_in: int, c_out: int, activation: str) -> list[nn.Module]:
        deconv = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
        return [deconv, activation_layer(activation)]
