"""The MLP toolkit's hidden layers: every activation builds, passes gradients, and trains."""

import pytest
import torch

from models.nets import ACTIVATION_NAMES, Gated, mlp
from tests.test_training import fit


def test_gated_layer_is_value_times_sigmoid_gate_and_passes_gradients():
    layer = Gated(5, 3)
    h = torch.randn(4, 5, requires_grad=True)
    out = layer(h)
    assert out.shape == (4, 3)
    value, gate = layer.linear(h).chunk(2, -1)
    torch.testing.assert_close(out, value * torch.sigmoid(gate))
    out.sum().backward()
    assert h.grad.abs().sum() > 0 and layer.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_every_activation_builds_an_mlp_of_the_right_shape(activation):
    net = mlp(6, 8, 2, 3, activation)
    assert net(torch.randn(7, 6)).shape == (7, 3)
    assert sum(isinstance(m, Gated) for m in net) == (2 if activation == "gated" else 0)


def test_a_gated_vae_trains():
    _, _, history = fit("model.activation=gated", "trainer.epochs=4")
    assert history[-1]["train/neg_elbo"] < 0.9 * history[0]["train/neg_elbo"]
