import torch

from models.posterior import DiagonalGaussian
from models.registry import register
from models.vae import VAE


@register("savae")
class SAVAE(VAE):
    """Semi-amortized VAE (Kim et al. 2018): the encoder's (mu, logvar) are a start, refined
    per example by `svi_steps` steps of gradient descent on that example's -ELBO (`svi_samples`
    draws a step, the step's gradient clipped to norm `svi_clip` per example, size `svi_lr`), in
    training and in every evaluation. Training backpropagates through the steps (to the encoder
    too, as the paper's), so it costs about 1 + 3 x svi_steps x svi_samples decoder passes an
    example; svi_steps 0 or svi_lr 0 is the VAE."""

    def __init__(
        self,
        *args,
        svi_steps: int = 10,
        svi_lr: float = 0.03,
        svi_clip: float = 5.0,
        svi_samples: int = 4,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if svi_steps < 0 or not svi_lr >= 0 or not svi_clip > 0 or svi_samples < 1:
            raise ValueError(
                "model.svi_steps and model.svi_lr must be >= 0, model.svi_clip > 0 and "
                f"model.svi_samples >= 1, got {svi_steps}, {svi_lr}, {svi_clip}, {svi_samples}"
            )
        self.svi_steps, self.svi_lr, self.svi_clip = int(svi_steps), float(svi_lr), svi_clip
        self.svi_samples = int(svi_samples)

    def variational_params(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        params = self.encode(x, y)
        if self.svi_steps == 0 or self.svi_lr == 0:
            return params
        through = torch.is_grad_enabled() and self.training  # training: a graph through them
        if not through:
            params = tuple(t.detach().requires_grad_() for t in params)
        with torch.enable_grad():
            for _ in range(self.svi_steps):
                params = self._svi_step(params, x, y, through)
        return params if through else tuple(t.detach() for t in params)

    def _svi_step(self, params, x, y, through: bool) -> tuple[torch.Tensor, ...]:
        q = DiagonalGaussian(*params)
        z, _ = q.rsample(self.svi_samples)
        recon = self.likelihood.neg_log_prob(self.decode(z, y), x).mean(0)
        neg_elbo = recon + q.kl_standard()
        grads = torch.autograd.grad(neg_elbo.sum(), params, create_graph=through)
        norm = torch.cat(grads, -1).norm(dim=-1, keepdim=True)
        scale = self.svi_lr * (self.svi_clip / norm.clamp_min(self.svi_clip))
        return tuple(p - scale * g for p, g in zip(params, grads, strict=True))
