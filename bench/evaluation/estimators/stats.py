"""Means with standard errors over test examples, and paired differences between runs."""

import math

import torch


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    """The mean of per-example values and its standard error (NaN for a single example)."""
    values = values.double()
    n = len(values)
    se = float(values.std(unbiased=True)) / math.sqrt(n) if n > 1 else math.nan
    return float(values.mean()), se


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """mean(a - b) ± SE over the same examples: far tighter than two independent SEs when the
    examples' difficulty, shared by both, dominates the spread."""
    if a.shape != b.shape:
        raise ValueError(
            f"paired values need the same examples: {tuple(a.shape)} vs {tuple(b.shape)}"
        )
    return mean_se(a.double() - b.double())
