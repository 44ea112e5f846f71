"""What each variant moved against the VAE: for each rung of the ladder (excess, approximation
gap, amortization gap) the paired difference on the same test examples, and what it cost in
training seconds per epoch and in the IW evaluation's seconds."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from bench.evaluation.estimators.stats import paired_difference
from bench.evaluation.per_example import gap_parts
from bench.report.paired import INDISTINGUISHABLE_SE, per_example_table
from bench.report.runs import StudyRuns
from bench.report.table import label

BASELINE = "vae"
COLUMNS = ("nll", "neg_elbo", "neg_elbo_optimal", "gap_subset_nll")  # the gaps' may be absent
RUNG_NAMES = {
    "excess": "the excess",
    "approximation_gap": "the approximation gap",
    "amortization_gap": "the amortization gap",
}


def per_example_parts(run_ids: list[str]) -> pd.DataFrame | None:
    """Each test example's excess (up to H(x), the same for every run: its nll), approximation
    and amortization gap (NaN off the gap subset), averaged over the row's seeds."""
    tables = [per_example_table(run_id) for run_id in run_ids]
    if any(t is None or "nll" not in t for t in tables):
        return None
    mean = sum(t.reindex(columns=list(COLUMNS)) for t in tables) / len(tables)
    return pd.DataFrame({"excess": mean["nll"], **gap_parts(mean)})


def moved(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per rung, (mean, SE) of ours minus theirs over the examples both have it for."""
    out = {}
    for part in RUNG_NAMES:
        both = ours[part].notna() & theirs[part].notna()
        if both.sum() > 1:
            a, b = (torch.tensor(f.loc[both, part].to_numpy(np.float64)) for f in (ours, theirs))
            out[part] = paired_difference(a, b)
    return out


@dataclass
class Move:
    """A variant against the vae: per rung (mean, SE) of the paired difference, and its row's
    and the vae's for the costs."""

    name: str
    deltas: dict[str, tuple[float, float]]
    row: pd.Series
    base: pd.Series

    @property
    def entropy_known(self) -> bool:
        """Whether the excess is nll − H(data); else its Δ is the nll's (H(data) the same)."""
        return not pd.isna(self.row.get("data_entropy"))


def rung_moves(rows: pd.DataFrame, study: StudyRuns) -> list[Move]:
    """One per variant, where the study swept `model` and ran the VAE once (one row)."""
    if "variant" not in rows or "model" not in study.swept():
        return []
    base = rows.index[rows["variant"] == BASELINE]
    if len(base) != 1 or len(rows) < 2:
        return []
    reference = per_example_parts(rows.loc[base[0], "run_ids"])
    if reference is None:
        return []
    moves = []
    for _, row in rows.drop(index=base[0]).iterrows():
        ours = per_example_parts(row["run_ids"])
        if ours is not None and len(ours) == len(reference) and row["nll"] == row["nll"]:
            deltas = moved(ours, reference)
            moves.append(Move(label(row, study), deltas, row, rows.loc[base[0]]))
    return moves


def sentence(move: Move) -> str:
    name, deltas, row, base = move.name, move.deltas, move.row, move.base
    names = dict(RUNG_NAMES)
    if not move.entropy_known:  # its Δ is the nll's: H(data) is the same, unknown
        names["excess"] = "the excess (its nll: H(data) unknown)"
    parts = ", ".join(f"{names[p]} {m:+.3f} ± {se:.3f}" for p, (m, se) in deltas.items())
    real = {p: v for p, v in deltas.items() if abs(v[0]) > INDISTINGUISHABLE_SE * v[1]}
    if real:
        part = max(real, key=lambda p: abs(real[p][0]))
        m, se = real[part]
        verdict = f"it moved {names[part]} most, by {m:+.3f} ± {se:.3f} nats"
    else:
        verdict = f"it moved no rung beyond {INDISTINGUISHABLE_SE:g} SE"
    paired = f"**{name}** − vae, paired on the same test examples: {parts} nats"
    return f"{paired}; {verdict}. {cost(row, base)}"


def cost(row: pd.Series, base: pd.Series) -> str:
    """Training seconds per epoch and the IW evaluation's seconds, as ratios to the VAE's."""
    ratios = []
    train = base.get("samples_per_s", np.nan) / row.get("samples_per_s", np.nan)  # one train set
    if train == train:
        ratios.append(f"training {train:.1f}× the vae's seconds per epoch")
    evaluation = row.get("iw_seconds", np.nan) / base.get("iw_seconds", np.nan)
    if evaluation == evaluation:
        ratios.append(f"the IW bound's evaluation {evaluation:.1f}× its seconds")
    return ("Cost: " + ", ".join(ratios) + ".") if ratios else ""
