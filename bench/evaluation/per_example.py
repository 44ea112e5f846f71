"""The test split's per-example values, saved with every run: what paired comparisons use."""

from collections.abc import Mapping
from typing import Any

import pandas as pd

from bench.data.dataset import Dataset
from bench.evaluation.result import Evaluation

PER_EXAMPLE = "test_per_example.csv"  # the run artifact


def per_example_table(evaluation: Evaluation, data: Dataset) -> pd.DataFrame:
    """One row per test example, in test-split order: its label and every per-example value."""
    columns = {"label": data.test.labels.cpu().numpy()}
    columns |= {name: v.cpu().numpy() for name, v in evaluation.per_example.items()}
    return pd.DataFrame(columns)


def gap_parts(values: Mapping[str, Any]) -> dict[str, Any]:
    """Each example's approximation and amortization gap (NaN off the gap subset) from its
    per-example columns (tensors or a table's): what a paired comparison of gaps pairs."""
    return {
        "approximation_gap": values["neg_elbo_optimal"] - values["gap_subset_nll"],
        "amortization_gap": values["neg_elbo"] - values["neg_elbo_optimal"],
    }
