"""The networks: the MLP's hidden layers (every activation builds, passes gradients, trains);
the image networks' shapes for any H×W, their row independence and output layout."""

import math

import pytest
import torch

from models.nets import ACTIVATION_NAMES, MLP, NETS, Gated
from models.nets.image import Frame
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
    net = MLP(6, 8, 2, 3, activation)
    assert net(torch.randn(7, 6)).shape == (7, 3)
    assert sum(isinstance(m, Gated) for m in net) == (2 if activation == "gated" else 0)


def test_a_gated_vae_trains():
    _, _, history = fit("model.activation=gated", "trainer.epochs=4")
    assert history[-1]["train/neg_elbo"] < 0.9 * history[0]["train/neg_elbo"]


IMAGE_NETS = sorted(set(NETS) - {"mlp"})
SHAPES = [(1, 8, 8), (1, 28, 28), (1, 30, 30), (3, 32, 32), (3, 64, 64)]


def image_net(name: str, shape, n_classes: int = 0, outputs_per_pixel: int = 2):
    torch.manual_seed(0)
    return NETS[name](
        image_shape=shape,
        z_dim=3,
        n_classes=n_classes,
        encoder_outputs=6,
        outputs_per_pixel=outputs_per_pixel,
        channels=[4, 8],
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", IMAGE_NETS)
def test_image_nets_encode_and_decode_every_shape_row_by_row(name, shape):
    """(N, C·H·W) in, (N, encoder_outputs) and (N, 2·C·H·W) out, any H×W; a change to one
    example changes only its own row (nothing mixes the examples of a batch)."""
    for n_classes in (0, 3):
        net = image_net(name, [*shape], n_classes)
        d = math.prod(shape)
        x, z = torch.rand(5, d), torch.randn(5, 3)
        label = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1])] if n_classes else None
        h, out = net.encoder(x, label), net.decoder(z, label)
        assert h.shape == (5, 6) and out.shape == (5, 2 * d)
        x2, z2 = x.clone(), z.clone()
        x2[0], z2[0] = 1 - x2[0], -z2[0]
        h2, out2 = net.encoder(x2, label), net.decoder(z2, label)
        assert not torch.allclose(h2[0], h[0]) and not torch.allclose(out2[0], out[0])
        torch.testing.assert_close(h2[1:], h[1:])
        torch.testing.assert_close(out2[1:], out[1:])
        if n_classes:  # the label reaches both
            other = torch.eye(3)[torch.tensor([1, 1, 2, 0, 1])]
            assert not torch.allclose(net.encoder(x, other)[0], h[0])
            assert not torch.allclose(net.decoder(z, other)[0], out[0])


def test_the_decoders_outputs_are_cropped_and_flattened_parameter_major():
    """Frame.flat: output (p, c, h, w) of a padded map lands at p·C·H·W + the pixel's index in
    the data's C-major order."""
    frame = Frame((2, 5, 3), depth=2)  # padded to 8×4: rows 1..5, column 0..2 kept
    assert frame.pad == (0, 1, 1, 2) and frame.inner == (2, 1)
    p, c, h, w = torch.meshgrid(*(torch.arange(n) for n in (2, 2, 8, 4)), indexing="ij")
    code = (1000 * p + 100 * c + 10 * (h - frame.top) + (w - frame.left)).float()
    flat = frame.flat(code.reshape(1, 4, 8, 4), outputs_per_pixel=2)[0]
    assert flat.tolist() == [
        1000 * p + 100 * c + 10 * h + w
        for p in range(2)
        for c in range(2)
        for h in range(5)
        for w in range(3)
    ]
