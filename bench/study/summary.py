"""The console table of a study's best trials."""

import optuna
from optuna.trial import TrialState

COLUMNS = ("test/nll", "test/neg_elbo", "test/bound_gap", "test/active_units")
COUNTS = {"test/active_units"}  # whole numbers, shown without decimals


def best_trials_table(study: optuna.Study, rows: int = 10) -> str:
    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    header = ["trial", "params", "objective", "value", *COLUMNS]
    lines = [header]
    for t in complete[:rows]:
        params = " ".join(f"{k}={v}" for k, v in t.params.items())
        values = [_fmt(t.user_attrs.get(c), c in COUNTS) for c in COLUMNS]
        lines.append(
            [str(t.number), params, t.user_attrs.get("objective", ""), _fmt(t.value), *values]
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    table = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines]
    others = [t for t in trials if t.state in (TrialState.PRUNED, TrialState.FAIL)]
    notes = [f"trial {t.number}: {t.state.name} ({_reason(t)})" for t in others]
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    return "\n".join([f"study {study.study_name}: {summary}", *table, *notes])


def _reason(trial: optuna.trial.FrozenTrial) -> str:
    return (
        trial.user_attrs.get("fail_reason") or trial.user_attrs.get("pruned") or "no reason stored"
    )


def _fmt(value: float | None, count: bool = False) -> str:
    if value is None:
        return "n/a"
    return str(round(value)) if count else f"{value:.3f}"
