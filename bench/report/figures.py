"""The report's seaborn figures; every one is FIGSIZE at DPI, so its pixel size is known."""

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

FIGSIZE, DPI = (6.4, 4.0), 100
PIXELS = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def _axes() -> tuple[plt.Figure, plt.Axes]:
    sns.set_theme(style="whitegrid")
    return plt.subplots(figsize=FIGSIZE, layout="constrained")


def _x_scale(ax: plt.Axes, values: pd.Series) -> None:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and numeric.min() > 0 and numeric.max() / numeric.min() >= 10:
        ax.set_xscale("log")


def bound(table: pd.DataFrame, x: str, path: Path) -> Path:
    """nll (solid) and -ELBO (dashed) against the swept parameter, a colour per variant."""
    ids = list(dict.fromkeys([x, "variant"]))
    long = table.melt(id_vars=ids, value_vars=["nll", "neg_elbo"], var_name="bound")
    long = long.dropna(subset=["value"]).replace({"bound": {"neg_elbo": "-ELBO"}})
    fig, ax = _axes()
    sns.lineplot(
        long, x=x, y="value", hue="variant", style="bound", markers=True, errorbar=None, ax=ax
    )
    _x_scale(ax, long[x])
    _legend_beside(ax)  # inside, it hides points
    ax.set(ylabel="nats per example (test)", title="importance-weighted nll and -ELBO")
    return _save(fig, path)


def gap(table: pd.DataFrame, x: str, path: Path) -> Path:
    fig, ax = _axes()
    data = table.dropna(subset=["bound_gap"])
    sns.lineplot(data, x=x, y="bound_gap", hue="variant", marker="o", errorbar=None, ax=ax)
    _x_scale(ax, table[x])
    _legend_beside(ax)
    ax.set(ylabel="-ELBO - nll (nats)", title="gap between the ELBO and the IW bound")
    return _save(fig, path)


def _legend_beside(ax) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)


def rate_distortion(table: pd.DataFrame, x: str, path: Path) -> Path:
    """Each run at (KL, recon), labelled with its swept value; dotted lines of equal -ELBO
    (rate + distortion), the lowest one through the tightest run."""
    data = table.dropna(subset=["kl"])
    fig, ax = _axes()
    sns.scatterplot(data, x="kl", y="recon", hue="variant", s=50, ax=ax)
    if x != "variant":
        for (kl, recon), label in _shared_labels(data, x):
            ax.annotate(label, (kl, recon), xytext=(4, 4), fontsize=8, textcoords="offset points")
    if len(data):
        lowest, top = float((data["kl"] + data["recon"]).min()), float(data["kl"].max())
        for level in (lowest, lowest + 5, lowest + 10):
            ax.plot([0, top], [level, level - top], color="grey", linestyle=":", linewidth=1)
        low, high = float(data["recon"].min()), float(data["recon"].max())
        ax.set_ylim(max(0.0, low - 0.1 * (high - low) - 1), high + 0.1 * (high - low) + 1)
    title = "rate-distortion plane (dotted: equal −ELBO" + (
        f"; labels: {x})" if x != "variant" else ")"
    )
    ax.set(xlabel="rate: KL (nats)", ylabel="distortion: recon (nats)", title=title)
    return _save(fig, path)


def _shared_labels(data: pd.DataFrame, x: str) -> list[tuple[tuple[float, float], str]]:
    """One label per place: runs within 2 % of the axes' ranges of one another (β = 4 and 10,
    both at zero rate) share one, "4, 10", instead of printing over each other."""
    span = [max(float(data[c].max() - data[c].min()), 1e-9) for c in ("kl", "recon")]
    places: list[tuple[tuple[float, float], list[str]]] = []
    for _, row in data.sort_values(x).iterrows():
        point = (float(row["kl"]), float(row["recon"]))
        near = [p for p in places if _close(p[0], point, span)]
        if near:
            near[0][1].append(f"{row[x]:g}")
        else:
            places.append((point, [f"{row[x]:g}"]))
    return [(point, ", ".join(labels)) for point, labels in places]


def _close(a: tuple[float, float], b: tuple[float, float], span: list[float]) -> bool:
    return all(abs(u - v) < 0.02 * s for u, v, s in zip(a, b, span, strict=True))


def active_units(table: pd.DataFrame, path: Path) -> Path:
    fig, ax = _axes()
    sns.scatterplot(table, x="z_dim", y="active_units", hue="variant", s=50, ax=ax)
    top = float(pd.to_numeric(table["z_dim"]).max())
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="all active")
    ax.set(xlabel="z_dim", ylabel="active units (Var E_q[z] > 0.01)", title="active units")
    return _save(fig, path)


def optimal_variance(table: pd.DataFrame, path: Path) -> Path:
    """Each run's own optimum sigma^2 (per-pixel squared error under q) against its decoder's;
    the best run ringed."""
    data = table.dropna(subset=["optimal_variance"])
    both = data[["output_variance", "optimal_variance"]]
    fig, ax = _axes()
    sns.scatterplot(data, x="output_variance", y="optimal_variance", hue="variant", s=50, ax=ax)
    ends = [both.min().min(), both.max().max()]
    ax.plot(ends, ends, color="grey", linestyle=":", label="σ²* = σ²")
    best = data.loc[data["nll"].idxmin()]
    ax.scatter(
        [best["output_variance"]],
        [best["optimal_variance"]],
        s=160,
        facecolors="none",
        edgecolors="black",
        label="best nll",
    )
    true = data["true_variance"].dropna()
    if len(true):
        ax.axvline(true.iloc[0], color="black", linestyle="--", label="the data's s²")
    ax.set(xscale="log", yscale="log", xlabel="decoder σ² (swept)", ylabel="σ²*: per-pixel MSE")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        axis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
        axis.set_minor_formatter(ticker.NullFormatter())
    ax.set_title("each run's own optimal output variance")
    ax.legend()
    return _save(fig, path)


def learning_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Validation -ELBO per epoch, a line per run coloured by `label`; pruned runs dashed, up
    to the epoch they were stopped at."""
    fig, ax = _axes()
    curves = curves.assign(
        label=curves["label"].map(lambda text: textwrap.fill(text, 28, break_long_words=False))
    )
    pruned = (curves["status"] == "pruned").any()
    sns.lineplot(
        curves,
        x="epoch",
        y="value",
        hue="label",
        style="status" if pruned else None,
        style_order=["finished", "pruned"] if pruned else None,
        units="run",
        estimator=None,
        ax=ax,
    )
    _legend_beside(ax)
    ax.set(ylabel="validation -ELBO (nats)", title="learning curves")
    return _save(fig, path)


LADDER_PARTS = {  # segment: colour
    "excess": "#4c72b0",
    "IW bound's slack": "#c44e52",  # the part of the approximation gap the IW bound hid
    "approximation_gap": "#dd8452",
    "amortization_gap": "#55a868",
}


def ladder(rows: pd.DataFrame, labels: list[str], path: Path) -> Path:
    """Where each row's nats go above the bound: one stacked bar per row, from the data's
    entropy (when known) or from its own -ln p (certified, else the nll) up to its -ELBO. A
    certified rung's excess is measured against it, and the approximation gap the IW bound hid
    is a segment of its own."""
    rows = rows.assign(
        excess=rows["excess_certified"].fillna(rows["excess"]),
        **{"IW bound's slack": rows["gap_iw_slack"]},
    )
    parts = [p for p in LADDER_PARTS if rows[p].notna().any()]
    labels = [
        textwrap.fill(text, 32, break_long_words=False) for text in labels
    ]  # long settings: lines, not a thin plot
    height = 0.25 * sum(text.count("\n") + 2 for text in labels) + 1.2
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], max(FIGSIZE[1], height)))
    left = pd.Series(0.0, index=rows.index)
    for part in parts:
        width = rows[part].fillna(0)
        ax.barh(labels, width, left=left, color=LADDER_PARTS[part], label=part.replace("_", " "))
        left += width
    ax.invert_yaxis()
    base = "the data's entropy" if "excess" in parts else "the nll"
    if "excess" not in parts and "IW bound's slack" in parts:
        base = "the certified −ln p"
    ax.set(xlabel=f"nats per example above {base}", title="where the nats go: the bound ladder")
    columns = len(parts) if len(parts) <= 3 else 2  # four names do not fit on one line
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=columns, frameon=False)
    fig.set_layout_engine("constrained")
    return _save(fig, path)


def rung_moves(moves: list, path: Path) -> Path:
    """Each variant minus the vae per rung of the ladder (bench.report.rungs.Move), with bars of
    ±2 paired SE: a bar clear of 0 is a rung that moved; left of 0, closer to the bound."""
    excess = "excess" if moves[0].entropy_known else "excess (Δ nll: H(data) unknown)"
    parts = {
        "excess": excess,
        "approximation_gap": "approximation gap",
        "amortization_gap": "amortization gap",
    }
    names = [textwrap.fill(m.name, 24, break_long_words=False) for m in moves]
    height = 0.3 * len(moves) * len(parts) + 1.5
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], max(FIGSIZE[1], height)))
    step = 0.8 / len(parts)
    for j, (part, shown) in enumerate(parts.items()):
        at = [i - 0.4 + step * (j + 0.5) for i in range(len(moves))]
        mean = [m.deltas.get(part, (float("nan"), 0))[0] for m in moves]
        se = [2 * m.deltas.get(part, (0, float("nan")))[1] for m in moves]
        ax.barh(at, mean, height=step, xerr=se, color=LADDER_PARTS[part], label=shown)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(moves)), names)
    ax.invert_yaxis()
    ax.set(
        xlabel="nats per example, variant − vae (paired; bars: ±2 SE)",
        title="which rung each variant moved",
    )
    columns = 3 if moves[0].entropy_known else 2  # the long label needs the room
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=columns, frameon=False)
    fig.set_layout_engine("constrained")
    return _save(fig, path)


def nll_at_k(curves: pd.DataFrame, entropy: float | None, path: Path) -> Path:
    """The IW bound against its number of samples k (nested prefixes of one set of samples), a
    line per run; the data's entropy as a line when known."""
    fig, ax = _axes()
    curves = curves.assign(
        label=curves["label"].map(lambda text: textwrap.fill(text, 28, break_long_words=False))
    )
    # seeds of one setting: a 95 % bootstrap band, its resampling seeded (the same file each time)
    sns.lineplot(curves, x="k", y="nll", hue="label", marker="o", seed=0, ax=ax)
    if entropy is not None:
        ax.axhline(entropy, color="black", linestyle="--", label="data entropy (the bound)")
    ax.set_xscale("log")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set(xlabel="k (importance samples)", ylabel="nll (nats, test)", title="IW bound against k")
    return _save(fig, path)
