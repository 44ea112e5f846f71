"""Each row against the best by the paired difference on the same test examples."""

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.evaluation.estimators.stats import paired_difference
from bench.evaluation.per_example import PER_EXAMPLE
from bench.report.runs import download_artifacts
from bench.report.table import kind

INDISTINGUISHABLE_SE = 2.0  # |Δ| within this many standard errors of the best: indistinguishable


@cache
def per_example_table(run_id: str) -> pd.DataFrame | None:
    """The run's per-example test values, or None (runs from before they were saved); read once
    per process (a finished run's never change), so do not modify it."""
    with tempfile.TemporaryDirectory() as tmp:
        found = download_artifacts(run_id, {PER_EXAMPLE: PER_EXAMPLE}, Path(tmp))
        return pd.read_csv(found[0], index_col="example") if found else None


def per_example(run_id: str, metric: str = "nll") -> pd.Series | None:
    table = per_example_table(run_id)
    return table[metric] if table is not None and metric in table else None


def paired_vs_best(
    rows: pd.DataFrame, table: pd.DataFrame, best: int, metric: str = "nll"
) -> pd.DataFrame:
    """`delta`, `delta_se` and `indistinguishable` per row (NaN where not comparable): a row's
    per-example values (averaged over its seeds) minus the best row's, mean ± SE over examples.
    Only between rows whose runs all share one test set, under likelihoods of one kind."""
    out = pd.DataFrame(index=rows.index, columns=["delta", "delta_se"], dtype=float)
    out["indistinguishable"] = False
    if table["test_set"].nunique() != 1 or rows[metric].isna().all():
        return out
    values = {i: _row_values(run_ids, metric) for i, run_ids in rows["run_ids"].items()}
    reference = values[best]
    if reference is None:
        return out
    names = rows["likelihood"] if "likelihood" in rows else pd.Series("", index=rows.index)
    kinds = {i: kind(name) for i, name in names.items()}
    for i, v in values.items():
        if v is None or len(v) != len(reference) or kinds[i] != kinds[best]:
            continue
        out.loc[i, "delta"], out.loc[i, "delta_se"] = paired_difference(
            torch.from_numpy(v), torch.from_numpy(reference)
        )
    out["indistinguishable"] = out["delta"].abs() <= INDISTINGUISHABLE_SE * out["delta_se"]
    out.loc[best, "indistinguishable"] = True
    return out


def _row_values(run_ids: list[str], metric: str) -> np.ndarray | None:
    series = [per_example(run_id, metric) for run_id in run_ids]
    if any(s is None for s in series):
        return None
    return np.mean([s.to_numpy() for s in series], axis=0)
