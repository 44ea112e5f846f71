"""Networks: what encodes and decodes, chosen apart from the variant (which says what the loss
is). Every network, built-in or the user's own (`net=custom net._target_=package.module.Class`),
keeps one contract:

    Class(image_shape, z_dim, n_classes, encoder_outputs, outputs_per_pixel, **net_keys)

is an object (an nn.Module) with two nn.Module attributes, `encoder` and `decoder`:

- `encoder(x, label)` -> (N, encoder_outputs). `x` is (N, C·H·W): the image flattened C-major,
  values in [0, 1] (`x.reshape(N, *image_shape)` gives it back); `label` is the (N, n_classes)
  one-hot class, or None when the variant is unconditional (n_classes = 0). A stochastic
  variant reads μ from the first z_dim outputs and ln σ² from the next z_dim
  (encoder_outputs = 2·z_dim); a deterministic one (ae) reads the code (encoder_outputs = z_dim).
- `decoder(z, label)` -> (N, outputs_per_pixel·C·H·W), `z` (N, z_dim): the likelihood's
  parameters, parameter-major: the first C·H·W outputs are every pixel's first parameter in the
  data's order, then the second. bernoulli and continuous_bernoulli: logits; gaussian: the mean;
  discretized_logistic: the means (on the [0, 1] scale), then the log-scales.

N counts examples × importance samples: no layer may mix the rows of a batch (no batch
normalization), since the IW bound and every per-example estimate need them independent. The
`net.*` keys of the config, less `name` and `_target_`, are passed as keyword arguments.
"""

from models.nets.conv import ConvNet
from models.nets.mlp import ACTIVATION_NAMES, ACTIVATIONS, MLP, Gated, MLPNet
from models.nets.resnet import ResNet

NETS = {"mlp": MLPNet, "conv": ConvNet, "resnet": ResNet}

__all__ = ["ACTIVATIONS", "ACTIVATION_NAMES", "MLP", "NETS", "ConvNet", "Gated", "MLPNet", "ResNet"]
