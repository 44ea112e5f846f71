"""Inverse autoregressive flow (Kingma et al. 2016): the posterior q(z|x) a diagonal Gaussian
pushed through steps z <- s * z + (1 - s) * m, (m, logit s) from a MADE on z and the encoder's
context h, each output i of which sees only z_<i. The Jacobian is triangular: ln q falls by
sum ln s per step, exactly."""

import torch
from torch import nn

from models.posterior import DiagonalGaussian, Posterior


def _degrees(z_dim: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MADE's masks (Germain et al. 2015): input j has degree j (1..Z), hidden unit k degree
    1 + k mod (Z - 1); a hidden unit sees inputs of degree <= its own, output i hidden units of
    degree < i, so output i depends on z_<i only."""
    inputs = torch.arange(1, z_dim + 1)
    hidden = torch.arange(width) % max(1, z_dim - 1) + 1
    to_hidden = (inputs[None, :] <= hidden[:, None]).float()
    to_output = (hidden[None, :] < inputs[:, None]).float()
    return to_hidden, to_output


class MaskedLinear(nn.Linear):
    def __init__(self, in_dim: int, out_dim: int, mask: torch.Tensor):
        super().__init__(in_dim, out_dim)
        self.register_buffer("mask", mask)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(t, self.weight * self.mask, self.bias)


class IAFStep(nn.Module):
    GATE_BIAS = 2.0  # s = sigmoid(~2) ~ 0.88 at the start: each step near the identity

    def __init__(self, z_dim: int, context_dim: int, width: int):
        super().__init__()
        to_hidden, to_output = _degrees(z_dim, width)
        self.hidden = MaskedLinear(z_dim, width, to_hidden)
        self.context = nn.Linear(context_dim, width, bias=False)
        self.shift = MaskedLinear(width, z_dim, to_output)
        self.gate = MaskedLinear(width, z_dim, to_output)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, self.GATE_BIAS)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The new z and ln |det dz_new/dz| per row."""
        a = nn.functional.elu(self.hidden(z) + self.context(h))
        gate = self.gate(a)
        s = torch.sigmoid(gate)
        return s * z + (1 - s) * self.shift(a), nn.functional.logsigmoid(gate).sum(-1)


class IAFPosterior(Posterior):
    """Its params: the base Gaussian's (mu, logvar) and the context h; every other step reverses
    z's order, so each coordinate is conditioned on every other one over two steps."""

    def __init__(self, params: tuple[torch.Tensor, ...], steps: nn.ModuleList):
        self.params, self.steps = params, steps
        self.base = DiagonalGaussian(params[0], params[1])
        self.noise_shape = self.base.noise_shape

    def transform(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """In at least fp32 under any autocast: ln q is a sum of every step's log-determinant."""
        z, log_q = self.base.transform(eps)
        h = self.params[2].expand(*z.shape[:-1], self.params[2].shape[-1])
        with torch.autocast(z.device.type, enabled=False):
            for step in self.steps:
                z, log_det = step(z, h)
                log_q = log_q - log_det
                z = z.flip(-1)
        if len(self.steps) % 2:
            z = z.flip(-1)  # z in the base's order after an odd number of steps
        return z, log_q
