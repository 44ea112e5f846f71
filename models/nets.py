"""The MLP toolkit every variant's encoder and decoder is built from."""

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


def hidden_layer(in_dim: int, out_dim: int, activation: str) -> list[nn.Module]:
    if activation == "gated":
        return [Gated(in_dim, out_dim)]
    if activation not in ACTIVATIONS:
        choices = ", ".join(ACTIVATION_NAMES)
        raise ValueError(f"unknown model.activation {activation!r}: choose one of {choices}")
    return [nn.Linear(in_dim, out_dim), ACTIVATIONS[activation]()]


def mlp(
    in_dim: int, h_dim: int, n_hidden: int, out_dim: int, activation: str = "relu"
) -> nn.Sequential:
    """`n_hidden` hidden layers of width `h_dim`, then a linear output; `n_hidden=0` is linear."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_hidden):
        layers += hidden_layer(width, h_dim, activation)
        width = h_dim
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
