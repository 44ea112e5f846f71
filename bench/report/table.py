"""The report's run table: one row per finished run, replicated seeds aggregated, formatting."""

import numpy as np
import pandas as pd

from bench.report.runs import StudyRuns
from models import LIKELIHOODS

SETUP = {
    "variant": "params.model.name",
    "z_dim": "params.model.z_dim",
    "h_dim": "params.model.h_dim",
    "likelihood": "params.model.likelihood",
    "output_variance": "params.model.output_variance",
    "epochs": "params.trainer.epochs",
    "k": "params.eval.k",
    "n_hidden": "params.model.n_hidden",
    "activation": "params.model.activation",
}
METRICS = {
    "recon": "metrics.test/recon",
    "loss": "metrics.test/loss",  # a loss that is not a likelihood (bce_grey): recon + KL
    "kl": "metrics.test/kl",
    "neg_elbo": "metrics.test/neg_elbo",
    "nll": "metrics.test/nll",
    "bound_gap": "metrics.test/bound_gap",
    "bits_per_dim": "metrics.test/bits_per_dim",
    "active_units": "metrics.test/active_units",
    "optimal_variance": "metrics.test/optimal_variance",
    "true_variance": "params.dataset.density.noise_variance",  # data=linear's s^2
    "data_entropy": "metrics.test/data_entropy",
    "excess": "metrics.test/excess",
    "approximation_gap": "metrics.test/approximation_gap",
    "amortization_gap": "metrics.test/amortization_gap",
    "gap_examples": "metrics.test/gap_examples",
    "nll_certified": "metrics.test/nll_certified",  # the tightest rung (bench.evaluation.certified)
    "iw_slack": "metrics.test/iw_slack",
    "iw_slack_exact": "metrics.test/iw_slack_exact",
    "excess_certified": "metrics.test/excess_certified",
    "approximation_gap_certified": "metrics.test/approximation_gap_certified",
    "gap_iw_slack": "metrics.test/gap_iw_slack",
    "bdmc_gap": "metrics.test/bdmc_gap",
    "ais_examples": "metrics.test/ais_examples",
    "exact_examples": "metrics.test/exact_examples",
    "train_seconds": "metrics.train_seconds",
    "iw_seconds": "metrics.test/iw_seconds",
    "samples_per_s": "metrics.train_samples_per_s",
}
HEADERS = {
    "recon": "recon",
    "loss": "loss (no bound)",
    "kl": "KL",
    "neg_elbo": "−ELBO",
    "nll": "nll",
    "bound_gap": "gap",
    "bits_per_dim": "bits/dim",
    "active_units": "AU",
    "optimal_variance": "σ²*",
    "train_seconds": "train s",
    "samples_per_s": "samples/s",
}
ALIASES = {
    "model": "variant",
    "model.z_dim": "z_dim",
    "model.h_dim": "h_dim",
    "model.output_variance": "output_variance",
    "net": "net",
    "model.likelihood": "likelihood",
    "trainer.seed": "seed",
}
SE = (
    "nll", "neg_elbo", "data_entropy", "excess", "approximation_gap", "amortization_gap",
    "nll_certified", "iw_slack", "iw_slack_exact", "excess_certified",
    "approximation_gap_certified", "gap_iw_slack", "bdmc_gap",
)  # fmt: skip
DECIMALS = {"active_units": 1, "optimal_variance": 4, "train_seconds": 1, "samples_per_s": 0}
RUNS_TABLE = (  # the ladder's own columns are in the ladder table
    "recon", "kl", "loss", "neg_elbo", "nll", "bound_gap", "bits_per_dim", "active_units",
    "optimal_variance", "train_seconds", "samples_per_s",
)  # fmt: skip
OPTIONAL = {"optimal_variance", "loss"}  # shown only when some run has it


def shown_metrics(rows: pd.DataFrame) -> list[str]:
    return [m for m in RUNS_TABLE if m not in OPTIONAL or rows[m].notna().any()]


def run_table(study: StudyRuns, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per run (default: the finished ones): its setup (numbers parsed), swept keys,
    test metrics."""
    runs = study.finished if runs is None else runs
    table = pd.DataFrame({"trial": pd.to_numeric(runs["tags.trial"]), "run_id": runs["run_id"]})
    for name, column in SETUP.items():
        table[name] = runs.get(column)
    table["seed"] = runs["params.trainer.seed"]
    table["precision"] = precision(runs)
    table["net"] = network(runs)
    table["test_set"] = test_set_key(runs)
    table["nll_rung"] = runs.get("tags.test.nll_rung", pd.Series(index=runs.index)).astype(object)
    for key in study.swept():
        if key not in ALIASES:
            table[key] = runs.get(f"params.{key}")
    for name, column in METRICS.items():
        table[name] = pd.to_numeric(runs.get(column), errors="coerce")
    for name in SE:
        table[f"{name}_se"] = pd.to_numeric(runs.get(f"{METRICS[name]}_se"), errors="coerce")
    text = ["variant", "likelihood", "run_id", "precision", "test_set", "net", "nll_rung"]
    for name in table.columns.drop(text):
        table[name] = _numeric_if_possible(table[name])
    table.loc[table["likelihood"] != "gaussian", "output_variance"] = np.nan
    table.loc[table["net"] != "mlp", ["h_dim", "n_hidden"]] = np.nan  # the MLP's sizes
    table["rank"] = table[rank_column(table)]
    return table.sort_values(["rank", "recon", "trial"], na_position="last").reset_index(drop=True)


def precision(runs: pd.DataFrame) -> pd.Series:
    """`fp32`, or which of training and evaluation ran in bf16 (runs from before the setting:
    fp32)."""
    columns = {"train": "params.trainer.precision", "eval": "params.eval.precision"}
    bf16 = pd.DataFrame(
        {
            part: runs.get(column, pd.Series(index=runs.index)) == "bf16"
            for part, column in columns.items()
        }
    )
    names = bf16.apply(lambda row: "+".join(part for part in columns if row[part]), axis=1)
    return names.map(lambda n: f"bf16 {n}" if n else "fp32").astype(object)


def network(runs: pd.DataFrame) -> pd.Series:
    """`mlp` (runs from before the setting too), `conv [32, 64]`, or a custom net's class."""
    name = runs.get("params.net.name", pd.Series("mlp", index=runs.index)).fillna("mlp")
    channels = runs.get("params.net.channels", pd.Series(index=runs.index))
    target = runs.get("params.net._target_", pd.Series(index=runs.index))
    shown = name.where(channels.isna(), name + " " + channels.astype(str))
    return shown.where(target.isna(), target.astype(str)).astype(object)


def test_set_key(runs: pd.DataFrame) -> pd.Series:
    """Equal for runs scored on the same test examples: same data files (and fitted density),
    binarization, split seed and size."""
    parts = [
        "tags.dataset.sha256",
        "params.data.binarize",
        "params.data.seed",
        "params.dataset.n_test",
    ]
    values = runs.reindex(columns=parts).to_numpy()
    return pd.Series(["|".join(map(str, v)) for v in values], index=runs.index, dtype=object)


def aggregate(table: pd.DataFrame, study: StudyRuns) -> pd.DataFrame:
    """Runs that differ only in trainer.seed become one row: mean, std and n of each metric."""
    keys = [*SETUP, "precision", "net", *(k for k in study.swept() if k not in ALIASES)]
    grouped = table.groupby(keys, dropna=False, sort=False)
    out = grouped[list(METRICS)].mean()
    for name in METRICS:
        out[f"{name}_std"] = grouped[name].std()
    for name in SE:
        out[f"{name}_se"] = grouped[f"{name}_se"].first().where(grouped.size() == 1)
    out["n"] = grouped.size()
    out["nll_rung"] = grouped["nll_rung"].first()
    out["run_ids"] = grouped["run_id"].apply(list)
    out["trials"] = grouped["trial"].apply(lambda t: ", ".join(str(int(v)) for v in sorted(t)))
    out["best_run_id"] = grouped.apply(
        lambda g: g.sort_values(["nll", "recon"]).iloc[0]["run_id"], include_groups=False
    )
    out = out.reset_index()
    out["rank"] = out[rank_column(out)]
    return out.sort_values(["rank", "recon"], na_position="last").reset_index(drop=True)


def x_axis(table: pd.DataFrame, study: StudyRuns) -> str | None:
    """The first swept numeric key (as the table names it) that takes two values or more, or
    None."""
    for key in study.swept():
        name = ALIASES.get(key, key)
        numeric = pd.api.types.is_numeric_dtype(table[name])
        if name not in ("seed", "variant") and numeric and table[name].nunique() > 1:
            return name
    return None


def best_index(rows: pd.DataFrame) -> int:
    column = "rank" if rows["rank"].notna().any() else "recon"
    return int(rows[column].idxmin())


def kind(likelihood: str) -> str | None:
    """What a likelihood's nats are of (models.likelihood `takes`); None for a loss."""
    found = LIKELIHOODS.get(likelihood)
    return found.takes if found is not None and found.normalized else None


def rank_column(table: pd.DataFrame) -> str:
    """`nll`; `bits_per_dim` where the likelihoods' nats are of different things (a density of
    dequantized grey levels, a probability of each level: they differ by D ln L), which puts
    them all on the levels' code length."""
    kinds = {kind(n) for n in table["likelihood"].dropna()} - {None}
    mixed = len(kinds) > 1 and table["bits_per_dim"].notna().any()
    return "bits_per_dim" if mixed else "nll"


def label(row: pd.Series, study: StudyRuns) -> str:
    names = [ALIASES.get(k, k) for k in study.swept()]
    settings = ", ".join(f"{n}={num(row[n], 4)}" for n in names if n not in ("seed", "variant"))
    if row.get("precision", "fp32") != "fp32":
        settings = ", ".join(filter(None, [settings, str(row["precision"])]))
    return f"{row['variant']} ({settings})" if settings else str(row["variant"])


def metric_header(metric: str, rows: pd.DataFrame) -> str:
    if metric != "nll":
        return HEADERS[metric]
    ks = rows["k"].dropna().unique()
    return f"nll (k={as_int(ks[0])})" if len(ks) == 1 else "nll"


def cell(row: pd.Series, metric: str) -> str:
    decimals = DECIMALS.get(metric, 2)
    mean, std = row[metric], row[f"{metric}_std"]
    if pd.isna(mean):
        return "n/a"
    return num(mean, decimals) if pd.isna(std) else f"{num(mean, decimals)} ± {num(std, decimals)}"


def num(value: object, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) or (
        isinstance(value, float) and value.is_integer() and decimals != 2
    ):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.{decimals}f}" if decimals != 4 else f"{value:.4g}"
    return str(value)


def as_int(value: object) -> str:
    return "n/a" if pd.isna(value) else str(int(float(value)))


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column
