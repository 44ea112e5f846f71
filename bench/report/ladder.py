"""The report's bound ladder: H(data) <= nll <= -ELBO(q*) <= -ELBO(q_phi), the rungs' differences,
and each row against the best by the paired difference on the same test examples."""

import pandas as pd

from bench.report.paired import INDISTINGUISHABLE_SE
from bench.report.runs import StudyRuns
from bench.report.table import label, num

RUNGS = ("data_entropy", "nll", "neg_elbo_optimal", "neg_elbo")
PARTS = {
    "excess": "excess",
    "approximation_gap": "approximation",
    "amortization_gap": "amortization",
}
HEADER = ["run", "H(data)", "nll", "−ELBO(q*)†", "−ELBO", "excess", "approx. gap", "amort. gap"]


def ladder_table(rows: pd.DataFrame, study: StudyRuns, paired: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join([*HEADER, "Δnll vs best"]) + " |", "|" + "---|" * (len(HEADER) + 1)]
    for i, row in rows.dropna(subset=["nll"]).iterrows():
        row = row.copy()
        row["neg_elbo_optimal"] = row["neg_elbo"] - row["amortization_gap"]  # † the whole split
        cells = [label(row, study)] + [_value(row, m) for m in (*RUNGS, *PARTS)]
        if not row["nll"] <= row["neg_elbo_optimal"] <= row["neg_elbo"]:
            cells[1 + RUNGS.index("neg_elbo_optimal")] = "n/a‡"  # the subset is not typical
        lines.append("| " + " | ".join([*cells, _delta(paired.loc[i])]) + " |")
    return lines


def _value(row: pd.Series, metric: str) -> str:
    if pd.isna(row[metric]):
        return "n/a"
    se = row.get(f"{metric}_se")
    return f"{row[metric]:.2f}" + (f" ± {se:#.2g}" if pd.notna(se) else "")


def _delta(comparison: pd.Series) -> str:
    if pd.isna(comparison["delta"]):
        return "n/a"
    if comparison["delta"] == 0 and comparison["delta_se"] == 0:
        return "best"
    mark = " ≈" if comparison["indistinguishable"] else ""
    return f"{comparison['delta']:+.2f} ± {comparison['delta_se']:.2f}{mark}"


def ladder_text(rows: pd.DataFrame, study: StudyRuns, best: int, paired: pd.DataFrame) -> str:
    row = rows.loc[best]
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
    return text + " " + _indistinguishable(rows, study, best, paired)


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
