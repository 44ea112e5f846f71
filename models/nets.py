"""The MLP toolkit every variant's encoder and decoder is built from."""

from torch import nn


def mlp(in_dim: int, h_dim: int, n_hidden: int, out_dim: int) -> nn.Sequential:
    """`n_hidden` ReLU layers of width `h_dim`, then a linear output; `n_hidden=0` is linear."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_hidden):
        layers += [nn.Linear(width, h_dim), nn.ReLU()]
        width = h_dim
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
