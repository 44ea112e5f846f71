import torch
from torch import nn

from models.flows import IAFPosterior, IAFStep
from models.posterior import Posterior
from models.registry import register
from models.vae import VAE


@register("iaf")
class IAF(VAE):
    """Kingma et al. 2016: q(z|x) an inverse autoregressive flow of `flow_length` steps (MADE
    of one hidden layer of `flow_width` units) on the encoder's diagonal Gaussian, conditioned
    on `context_dim` more encoder outputs. Its ln q is exact, so the ELBO and the IW bound use
    it; the KL is Monte Carlo. flow_length 0 is the VAE (the same weights, closed-form KL).

    The q* of the gap decomposition frees the encoder's outputs (mu, logvar, h) per example with
    the flow's weights fixed: the best posterior this flow can give the example."""

    def __init__(
        self, *args, flow_length: int = 2, flow_width: int = 320, context_dim: int = 20, **kwargs
    ):
        if flow_length < 0 or flow_width < 1 or context_dim < 1:
            raise ValueError(
                "model.flow_length must be >= 0 and model.flow_width, model.context_dim >= 1, "
                f"got {flow_length}, {flow_width}, {context_dim}"
            )
        context = context_dim if flow_length > 0 else 0
        super().__init__(*args, extra_encoder_outputs=context, **kwargs)
        self.flow = nn.ModuleList(
            IAFStep(self.z_dim, context, flow_width) for _ in range(flow_length)
        )

    def variational_params(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        if not self.flow:
            return self.encode(x, y)
        h = self.encoder_head(x, y)
        z = self.z_dim
        return h[..., :z], h[..., z : 2 * z], h[..., 2 * z :]

    def posterior(
        self, params: tuple[torch.Tensor, ...], y: torch.Tensor | None = None
    ) -> Posterior:
        if not self.flow:
            return super().posterior(params, y)
        return IAFPosterior(params, self.flow)
