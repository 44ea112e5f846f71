"""The MLP on flattened pixels: every variant's network unless `net=` says otherwise."""

import math
from collections.abc import Sequence

import torch
from torch import nn


class Gated(nn.Module):
    """The gated dense layer of Tomczak & Welling 2018: (W₁h + b₁) ⊙ σ(W₂h + b₂), both halves
    from one matmul."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, 2 * out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        value, gate = self.linear(h).chunk(2, dim=-1)
        return value * torch.sigmoid(gate)


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}
ACTIVATION_NAMES = (*ACTIVATIONS, "gated")


def activation_layer(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def hidden_layer(in_dim: int, out_dim: int, activation: str) -> list[nn.Module]:
    if activation == "gated":
        return [Gated(in_dim, out_dim)]
    if activation not in ACTIVATIONS:
        choices = ", ".join(ACTIVATION_NAMES)
        raise ValueError(f"unknown model.activation {activation!r}: choose one of {choices}")
    return [nn.Linear(in_dim, out_dim), ACTIVATIONS[activation]()]


class MLP(nn.Sequential):
    """`n_hidden` hidden layers of width `h_dim`, then a linear output (`n_hidden=0`: linear);
    a label, when given, is concatenated to the input."""

    def __init__(
        self, in_dim: int, h_dim: int, n_hidden: int, out_dim: int, activation: str = "relu"
    ):
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(n_hidden):
            layers += hidden_layer(width, h_dim, activation)
            width = h_dim
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)

    def features(self, t: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """What the output layer (`self[-1]`) takes."""
        h = t if label is None else torch.cat([t, label], -1)
        for layer in list(self)[:-1]:
            h = layer(h)
        return h

    def forward(self, t: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self[-1](self.features(t, label))


class MLPNet(nn.Module):
    """Encoder x(+label) -> h_dim ... -> encoder_outputs; decoder z(+label) -> h_dim ... ->
    outputs_per_pixel × pixels."""

    def __init__(
        self,
        image_shape: Sequence[int],
        z_dim: int,
        n_classes: int,
        encoder_outputs: int,
        outputs_per_pixel: int,
        h_dim: int = 400,
        n_hidden: int = 1,
        activation: str = "relu",
    ):
        super().__init__()
        x_dim = math.prod(image_shape)
        self.encoder = MLP(x_dim + n_classes, h_dim, n_hidden, encoder_outputs, activation)
        self.decoder = MLP(
            z_dim + n_classes, h_dim, n_hidden, outputs_per_pixel * x_dim, activation
        )
