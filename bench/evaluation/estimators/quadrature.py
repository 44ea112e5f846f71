"""ln p(x) = ln ∫ p(x|z) p(z) dz by quadrature, for a latent of at most 2 dims: the ground truth the
sampling estimators are judged by on such runs.

A coarse grid on [-radius, radius]^d finds where each example's integrand has its mass (the cells
within `window` nats of its largest, and one cell more on each side); a fine midpoint grid of n
points a side over that box integrates it, n doubled until the doubling moves the mean over the
examples by less than `tol` nats (or n reaches `max_points`: then `converged` is False). The
midpoint rule on a smooth integrand that has decayed at the box's edge converges far faster than
the grid shrinks, so the last doubling's change bounds the error left."""

import math
from dataclasses import dataclass

import torch

from bench.signals import raise_if_interrupted
from models.base import LatentModel

MAX_Z_DIM = 2
EXAMPLES_AT_ONCE = 64  # each with its own box; the refinement is checked per such batch


@dataclass(frozen=True)
class QuadratureSettings:
    radius: float = 8.0  # the prior's mass beyond it is < e^-32 per dim
    coarse_points: int = 64  # per dim: 0.25 apart
    window: float = 30.0  # nats below the largest cell that still count as mass
    first_points: int = 32  # the fine grid's first n per dim
    max_points: int = 1024
    tol: float = 0.01

    def passes_per_example(self, z_dim: int) -> int:
        """Decoder passes of the coarse grid and the fine ones up to n = 4 * first_points."""
        fine = sum((self.first_points * 2**i) ** z_dim for i in range(3))
        return self.coarse_points**z_dim + fine


@dataclass
class Quadrature:
    log_px: torch.Tensor  # (B,) float64
    points: int  # the last fine grid's n per dim
    refinement: float  # |change of the mean| at the last doubling, nats
    converged: bool


@torch.no_grad()
def exact_log_px(
    model: LatentModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    settings: QuadratureSettings = QuadratureSettings(),
    rows_per_chunk: int = 2048,
) -> Quadrature:
    if model.latent_dim > MAX_Z_DIM:
        raise ValueError(
            f"quadrature needs a latent of <= {MAX_Z_DIM} dims, got {model.latent_dim}"
        )
    model.eval()
    parts = [
        _one_batch(
            model,
            x[i : i + EXAMPLES_AT_ONCE],
            None if y is None else y[i : i + EXAMPLES_AT_ONCE],
            settings,
            rows_per_chunk,
        )
        for i in range(0, len(x), EXAMPLES_AT_ONCE)
    ]
    return Quadrature(
        torch.cat([p.log_px for p in parts]),
        max(p.points for p in parts),
        max(p.refinement for p in parts),
        all(p.converged for p in parts),
    )


def _one_batch(model, x, y, settings: QuadratureSettings, rows_per_chunk: int) -> Quadrature:
    lo, hi = _mass_box(model, x, y, settings, rows_per_chunk)
    n = settings.first_points
    last = _midpoint(model, x, y, lo, hi, n, rows_per_chunk)
    change = math.inf
    while change >= settings.tol and 2 * n <= settings.max_points:
        n *= 2
        now = _midpoint(model, x, y, lo, hi, n, rows_per_chunk)
        change, last = abs(float(now.mean() - last.mean())), now
    return Quadrature(last, n, change, change < settings.tol)


def _mass_box(model, x, y, settings: QuadratureSettings, rows_per_chunk: int):
    """Per example, the lower and upper corners (B, d) of the cells holding its mass."""
    g, r = settings.coarse_points, settings.radius
    grid = _grid(torch.linspace(-r, r, g, dtype=x.dtype, device=x.device), model.latent_dim)
    zero, one = torch.zeros_like(x[:, :1]), torch.ones_like(x[:, :1])
    values = torch.cat(list(_log_integrand(model, x, y, zero, one, grid, rows_per_chunk)))
    inside = (values > values.max(0).values - settings.window).unsqueeze(-1)  # (P, B, 1)
    points = grid.unsqueeze(1)
    spacing = 2 * r / (g - 1)
    lo = torch.where(inside, points, math.inf).amin(0) - spacing
    hi = torch.where(inside, points, -math.inf).amax(0) + spacing
    return lo, hi


def _midpoint(model, x, y, lo, hi, n: int, rows_per_chunk: int) -> torch.Tensor:
    """ln of the midpoint rule with n cells a side over each example's box [lo, hi]."""
    centres = (torch.arange(n, dtype=x.dtype, device=x.device) + 0.5) / n
    width = hi - lo  # (B, d)
    total = torch.full((len(x),), -math.inf, dtype=torch.float64, device=x.device)
    for values in _log_integrand(
        model, x, y, lo, width, _grid(centres, model.latent_dim), rows_per_chunk
    ):
        total = torch.logaddexp(total, torch.logsumexp(values, 0))
    return total + (width / n).log().sum(-1).double()


def _grid(axis: torch.Tensor, d: int) -> torch.Tensor:
    """Every point of the d-dim grid with `axis` on each dim, (len(axis)^d, d)."""
    return torch.cartesian_prod(axis, axis) if d == 2 else axis.unsqueeze(-1)


def _log_integrand(model, x, y, lo, width, unit: torch.Tensor, rows_per_chunk: int):
    """ln p(x|z) + ln N(z; 0, I), float64, at z = lo + unit * width for every point of `unit`
    (P, d) and example of x: chunks of (points, B)."""
    per_chunk = max(1, rows_per_chunk // len(x))
    for start in range(0, len(unit), per_chunk):
        raise_if_interrupted()
        z = lo + unit[start : start + per_chunk].unsqueeze(1) * width
        yield -model.neg_log_prob_samples(z, y, x).double() + model.log_prior(z).double()
