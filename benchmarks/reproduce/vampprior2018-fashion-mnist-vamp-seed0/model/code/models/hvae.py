import torch

from models.kernels import at_least_fp32
from models.nets import MLP
from models.posterior import DiagonalGaussian, Posterior, log_normal_std
from models.registry import register
from models.vae import VAE


class TwoLayerPosterior(Posterior):
    """q(z1|x) q(z2|z1); z = (z1, z2) side by side, the noise likewise."""

    def __init__(self, params: tuple[torch.Tensor, ...], q_z2: MLP):
        self.params, self.q_z2 = params, q_z2
        self.q_z1 = DiagonalGaussian(*params)
        self.z1_dim = params[0].shape[-1]
        self.noise_shape = (params[0].shape[0], self.z1_dim + q_z2[-1].out_features // 2)

    def transform(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, log_q1 = self.q_z1.transform(eps[..., : self.z1_dim])
        z2, log_q2 = gaussian(self.q_z2(z1)).transform(eps[..., self.z1_dim :])
        return torch.cat([z1, z2], -1), log_q1 + log_q2


def gaussian(out: torch.Tensor) -> DiagonalGaussian:
    """The diagonal Gaussian whose (mu, logvar) an MLP output side by side."""
    return DiagonalGaussian(*at_least_fp32(out).chunk(2, dim=-1))


@register("hvae")
class HVAE(VAE):
    """Two stochastic layers (Burda et al. 2016): p(z2) = N(0, I), p(z1|z2) and q(z2|z1)
    diagonal Gaussians from MLPs (`n_hidden2` layers of `h2_dim`, `activation2`), p(x|z1) and
    q(z1|x) the network's decoder and encoder with z_dim = z1's size. z = (z1, z2): every
    estimator sees one latent of z_dim + z2_dim. The KL is Monte Carlo.

    The q* of the gap decomposition frees q(z1|x)'s (mu, logvar) per example, q(z2|z1) fixed.
    Burda's two-layer model: recipe=burda2016 model=hvae model.z_dim=100 model.z2_dim=50."""

    stochastic_layers = 2

    def __init__(
        self,
        *args,
        z2_dim: int = 10,
        h2_dim: int = 100,
        n_hidden2: int = 2,
        activation2: str = "tanh",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if z2_dim < 1 or h2_dim < 1 or n_hidden2 < 0:
            raise ValueError(
                "model.z2_dim and model.h2_dim must be >= 1 and model.n_hidden2 >= 0, got "
                f"{z2_dim}, {h2_dim}, {n_hidden2}"
            )
        self.z2_dim = z2_dim
        self.q_z2 = MLP(self.z_dim, h2_dim, n_hidden2, 2 * z2_dim, activation2)
        self.p_z1 = MLP(z2_dim, h2_dim, n_hidden2, 2 * self.z_dim, activation2)

    @classmethod
    def latent_size(cls, z_dim: int, z2_dim: int = 10, **options) -> int:
        return z_dim + z2_dim

    @property
    def latent_dim(self) -> int:
        return self.z_dim + self.z2_dim

    def posterior(
        self, params: tuple[torch.Tensor, ...], y: torch.Tensor | None = None
    ) -> Posterior:
        return TwoLayerPosterior(params, self.q_z2)

    def decoder_input(self, z: torch.Tensor) -> torch.Tensor:
        return z[..., : self.z_dim]

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        z1, z2 = z[..., : self.z_dim], z[..., self.z_dim :]
        return log_normal_std(z2) + gaussian(self.p_z1(z2)).log_prob(z1)

    def sample_prior(self, n: int, like: torch.Tensor) -> torch.Tensor:
        z2 = torch.randn(n, self.z2_dim, dtype=like.dtype, device=like.device)
        z1 = gaussian(self.p_z1(z2)).sample().to(like.dtype)
        return torch.cat([z1, z2], -1)
