"""`net=conv`: stride-2 convolutions down, transposed convolutions up (DCGAN-style, 4×4 kernels,
no normalization: examples stay independent, as the IW bound needs)."""

from collections.abc import Sequence

from torch import nn

from models.nets.image import Frame, ImageDecoder, ImageEncoder
from models.nets.mlp import activation_layer


def down(c_in: int, c_out: int, activation: str) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), activation_layer(activation)]


def up(c_in: int, c_out: int, activation: str) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), activation_layer(activation)]


class ConvNet(nn.Module):
    """`channels[i]`: the width after the i-th halving of the image (the decoder mirrors it)."""

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
        widths = check_widths(channels)
        frame = Frame(image_shape, len(widths))
        ins = [frame.channels + n_classes, *widths[:-1]]
        encoder = [
            layer for a, b in zip(ins, widths, strict=True) for layer in down(a, b, activation)
        ]
        self.encoder = ImageEncoder(frame, nn.Sequential(*encoder), widths[-1], encoder_outputs)
        decoder = [layer for a, b in mirrored(widths) for layer in up(a, b, activation)]
        self.decoder = ImageDecoder(
            frame,
            z_dim + n_classes,
            widths,
            nn.Sequential(*decoder),
            outputs_per_pixel,
            activation_layer(activation),
        )


def mirrored(widths: list[int]) -> list[tuple[int, int]]:
    """The decoder's (in, out) widths per doubling: the encoder's in reverse, ending at full size
    with `widths[0]` channels."""
    ins = widths[::-1]
    return list(zip(ins, [*ins[1:], widths[0]], strict=True))


def check_widths(channels: Sequence[int]) -> list[int]:
    widths = [int(c) for c in channels]
    if not widths or min(widths) < 1:
        raise ValueError(f"net.channels needs at least one width >= 1, got {list(channels)}")
    return widths
