"""An evaluation's numbers: metrics (each mean with its `_se`), the per-example vectors paired
comparisons use, the nll at each k and tags."""

from dataclasses import dataclass, field

import torch

from bench.evaluation.estimators.stats import mean_se, paired_difference


@dataclass
class Evaluation:
    metrics: dict[str, float]
    per_example: dict[str, torch.Tensor] = field(default_factory=dict)  # float64, one per example
    nll_at_k: dict[int, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, values: torch.Tensor, metric: str | None = None) -> None:
        """A per-example vector, its mean as `metric` (default: its name) and the mean's SE."""
        self.per_example[name] = values.double()
        metric = metric or name
        self.metrics[metric], self.metrics[f"{metric}_se"] = mean_se(values)

    def add_paired(self, name: str, a: str, b: str, subset: slice = slice(None)) -> None:
        """mean(a - b) ± paired SE over the examples of `subset`."""
        self.metrics[name], self.metrics[f"{name}_se"] = paired_difference(
            self.per_example[a][subset], self.per_example[b][subset]
        )

    def add_subset(self, name: str, values: torch.Tensor, n_examples: int) -> None:
        """Values of the first len(values) of n_examples: its mean and SE over them."""
        self.per_example[name] = padded(values, n_examples)
        self.metrics[name], self.metrics[f"{name}_se"] = mean_se(values)


def padded(values: torch.Tensor, n_examples: int) -> torch.Tensor:
    """A vector of the first len(values) examples, NaN after them."""
    out = torch.full((n_examples,), float("nan"), dtype=torch.float64, device=values.device)
    out[: len(values)] = values.double()
    return out
