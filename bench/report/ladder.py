"""The report's bound ladder: H(data) <= -ln p (certified) <= nll <= -ELBO(q*) <= -ELBO(q_phi),
the rungs' differences, and each row against the best by the paired difference on the same test
examples. Where a run has a certified rung (quadrature or AIS: bench.evaluation.certified) the
excess and the approximation gap are those measured against it; the IW bound's slack is moved
from the one to the other."""

import pandas as pd

from bench.report.paired import INDISTINGUISHABLE_SE
from bench.report.runs import StudyRuns
from bench.report.table import label, num

RUNGS = ("data_entropy", "nll_certified", "nll", "neg_elbo_optimal", "neg_elbo")
PARTS = {
    "excess": "excess",
    "approximation_gap": "approximation",
    "amortization_gap": "amortization",
}
CERTIFIED = {"excess": "excess_certified", "approximation_gap": "approximation_gap_certified"}
HEADER = [
    "run", "H(data)", "−ln p (rung)", "nll", "−ELBO(q*)†", "−ELBO", "IW slack", "excess",
    "approx. gap", "amort. gap",
]  # fmt: skip


def certified(row: pd.Series) -> pd.Series:
    """The row with its excess and approximation gap taken against its certified rung, where it
    has one."""
    row = row.copy()
    for part, better in CERTIFIED.items():
        if pd.notna(row.get(better)):
            row[part], row[f"{part}_se"] = row[better], row.get(f"{better}_se")
    return row


def ladder_table(rows: pd.DataFrame, study: StudyRuns, paired: pd.DataFrame) -> list[str]:
    header = [*HEADER, "Δnll vs best"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in rows.dropna(subset=["nll"]).iterrows():
        row = certified(row)
        row["neg_elbo_optimal"] = row["neg_elbo"] - row["amortization_gap"]  # † the whole split
        row["slack"], row["slack_se"] = slack(row)
        cells = [label(row, study)] + [_value(row, m) for m in (*RUNGS, "slack", *PARTS)]
        cells[1 + RUNGS.index("nll_certified")] = _rung(row)
        if not row["nll"] <= row["neg_elbo_optimal"] <= row["neg_elbo"]:
            cells[1 + RUNGS.index("neg_elbo_optimal")] = "n/a‡"  # the subset is not typical
        lines.append("| " + " | ".join([*cells, _delta(paired.loc[i])]) + " |")
    return lines


def _rung(row: pd.Series) -> str:
    if pd.isna(row.get("nll_certified")):
        return "n/a"
    return f"{_value(row, 'nll_certified')} ({row.get('nll_rung')})"


def slack(row: pd.Series) -> tuple[float, float]:
    """The IW bound's slack against the run's rung: quadrature's, else AIS's (NaN: none)."""
    for name in ("iw_slack_exact", "iw_slack"):
        if pd.notna(row.get(name)):
            return row[name], row.get(f"{name}_se")
    return float("nan"), float("nan")


def _value(row: pd.Series, metric: str) -> str:
    value, se = row.get(metric), row.get(f"{metric}_se")
    if pd.isna(value):
        return "n/a"
    return f"{value:.2f}" + (f" ± {se:#.2g}" if pd.notna(se) else "")


def _delta(comparison: pd.Series) -> str:
    if pd.isna(comparison["delta"]):
        return "n/a"
    if comparison["delta"] == 0 and comparison["delta_se"] == 0:
        return "best"
    mark = " ≈" if comparison["indistinguishable"] else ""
    return f"{comparison['delta']:+.2f} ± {comparison['delta_se']:.2f}{mark}"


def ladder_text(rows: pd.DataFrame, study: StudyRuns, best: int, paired: pd.DataFrame) -> str:
    row = certified(rows.loc[best])
    known = pd.notna(row["data_entropy"])
    parts = {name: row[metric] for metric, name in PARTS.items() if pd.notna(row[metric])}
    if not parts:
        return ""
    total = sum(parts.values())
    to = "the data's entropy, the loss's true bound" if known else "its own nll"
    shares = ", ".join(f"{name} {v:.2f} ({100 * v / total:.0f} %)" for name, v in parts.items())
    dominant = max(parts, key=parts.get)
    text = (
        f"{label(row, study)} sits {total:.2f} nats above {to}: {shares}. "
        f"The {dominant} {'is' if dominant == 'excess' else 'gap is'} the largest part."
    )
    if "excess" in parts and dominant == "excess":
        text += " The model, not the inference, is what keeps it from the bound."
    return text + _rung_text(row) + " " + _indistinguishable(rows, study, best, paired)


def _rung_text(row: pd.Series) -> str:
    """Which rung certified the split's -ln p and what the IW bound's slack did."""
    value, se = slack(row)
    if pd.isna(value):
        return ""
    by = {"exact": "quadrature", "ais": "AIS"}
    n = row.get("exact_examples") if row.get("nll_rung") == "exact" else row.get("ais_examples")
    pm = "" if pd.isna(se) else f" ± {se:.2g}"  # seeds averaged: no one SE
    if row.get("nll_rung") == "iw":
        return (
            f" On the first {int(n)} test examples AIS is {-value:.2f}{pm} nats looser "
            "than the IW bound, which stays the tightest rung (a longer eval.ais.steps would "
            "tighten AIS)."
        )
    return (
        f" Its −ln p is certified by {by[row['nll_rung']]} on the first {int(n)} test "
        f"examples: the IW bound is {value:.2f}{pm} nats above it there, nats the excess "
        "loses and the approximation gap gains."
    )


def _indistinguishable(
    rows: pd.DataFrame, study: StudyRuns, best: int, paired: pd.DataFrame
) -> str:
    if paired["delta"].isna().all():
        return "Paired comparisons need the runs' per-example test values on one test set."
    close = [
        label(rows.loc[i], study)
        for i in paired.index
        if i != best and paired.loc[i, "indistinguishable"]
    ]
    tied = ", ".join(close) if close else "none"
    return (
        f"Within {num(INDISTINGUISHABLE_SE, 1)} SE of the best nll by the paired difference on "
        f"the same test examples (indistinguishable from it): {tied}."
    )
