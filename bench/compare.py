"""python -m bench.compare a=RUN_ID|FOLDER b=RUN_ID|FOLDER [examples=N] [seed=0]
    [eval.KEY=VALUE ...] [tracking_uri=URI] [out=FILE.json]

Two finished runs, each from its tracking store (a run id) or from a folder it was copied to (as
benchmarks/reproduce/ holds them), evaluated on the same test examples with the same evaluation
settings (a's, with eval.* applied) and the same noise (seed), and every per-example value of
the ladder paired: nll, -ELBO, recon, KL, the excess over H(data) where it is known, the
approximation and amortization gaps on the gap subset, AIS and exact -ln p where evaluated. A
difference is real where it exceeds 2 paired SEs. Runs of other test examples (other data,
binarization, split seed) or whose nats are of other things (a likelihood of binary draws
against one of grey levels) are refused with one error line. examples=N: the first N test
examples only. Nothing is written to either run; out= writes the table as JSON.
"""

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from omegaconf import DictConfig

from bench.cli import key_value_main, key_values
from bench.data.dataset import Dataset
from bench.errors import BenchError
from bench.evaluation.estimators.stats import mean_se, paired_difference
from bench.evaluation.evaluator import EvalSettings, evaluate
from bench.evaluation.per_example import gap_parts
from bench.job import load_data, resolved
from bench.report.paired import INDISTINGUISHABLE_SE
from bench.score import rescoring_config
from bench.stored_run import folder_run, stored_config, stored_model, weighted
from bench.tracking import mlflow_runs
from bench.training.loop import pick_device
from models.base import LatentModel

ROWS = {  # per-example value -> its label
    "nll": "nll (IW bound)",
    "neg_elbo": "−ELBO",
    "recon": "recon",
    "kl": "KL",
    "excess": "excess over H(data)",
    "approximation_gap": "approximation gap",
    "amortization_gap": "amortization gap",
    "nll_ais": "−ln p (AIS)",
    "nll_exact": "−ln p (exact)",
}


@dataclass
class Side:
    """One of the two runs: what it is called, its config, data and model."""

    name: str
    cfg: DictConfig
    data: Dataset
    model: LatentModel


@dataclass
class Row:
    name: str
    examples: int
    a: tuple[float, float]
    b: tuple[float, float]
    delta: tuple[float, float]

    @property
    def verdict(self) -> str:
        mean, se = self.delta
        if not abs(mean) > INDISTINGUISHABLE_SE * se:  # NaN SE (one example): not shown real
            return f"within {INDISTINGUISHABLE_SE:g} SE"
        return "a lower" if mean < 0 else "b lower"


def compare(a: Side, b: Side, settings: EvalSettings, seed: int) -> list[Row]:
    """Every per-example value both evaluations have, paired over the examples both have it on."""
    values = [_per_example(side, settings, seed) for side in (a, b)]
    rows = []
    for name in ROWS:
        if name not in values[0] or name not in values[1]:
            continue
        va, vb = values[0][name], values[1][name]
        both = ~(va.isnan() | vb.isnan())
        if both.sum() < 1:
            continue
        va, vb = va[both], vb[both]
        rows.append(Row(name, int(both.sum()), mean_se(va), mean_se(vb), paired_difference(va, vb)))
    return rows


def _per_example(side: Side, settings: EvalSettings, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    values = dict(evaluate(side.model, side.data, settings).per_example)
    if "neg_log_p_data" in values:
        values["excess"] = values["nll"] - values["neg_log_p_data"]
    if "neg_elbo_optimal" in values:
        values |= gap_parts(values)
    return {name: v.cpu() for name, v in values.items()}


@dataclass
class Reading:
    """How both runs are read: their store, the eval.* overrides, the first n test examples
    (None: all) and the device (a's)."""

    client: mlflow.MlflowClient
    overrides: list[str]
    n: int | None
    device: torch.device | None = None

    def side(self, name: str, where: str) -> Side:
        """The run `where` names: a folder if there is one at that path, else a run id."""
        if "/" in where and not Path(where).is_dir():
            raise BenchError(f"{name}={where}: no such folder")
        if Path(where).is_dir():
            stored, weights = folder_run(Path(where))
            cfg, data = self._config_and_data(stored)
            return Side(f"{name}: folder {where}", cfg, data, weighted(cfg, data, weights))
        cfg, data = self._config_and_data(stored_config(where, self.client.tracking_uri))
        model = stored_model(where, cfg, data, self.client.tracking_uri)
        return Side(f"{name}: run {where}", cfg, data, model)

    def _config_and_data(self, stored: DictConfig) -> tuple[DictConfig, Dataset]:
        cfg = rescoring_config(stored, self.overrides)
        self.device = self.device or pick_device(cfg.trainer.device)
        data = load_data(cfg, self.device)
        return cfg, data if self.n is None else data.first_test_examples(self.n)


def check_comparable(a: Side, b: Side) -> None:
    """Same test examples (data files, binarization, split seed and size) and nats of the same
    thing; both models bound a likelihood."""
    ours, theirs = a.data.provenance(), b.data.provenance()
    differ = [
        key
        for key in ("dataset", "sha256", "binarize", "seed", "n_test")
        if ours.get(key) != theirs.get(key)
    ]
    if differ:
        shown = ", ".join(f"{key} {ours.get(key)} vs {theirs.get(key)}" for key in differ)
        raise BenchError(f"a and b were not scored on the same test examples: {shown}")
    for s in (a, b):
        if not s.model.bounds_likelihood:
            raise BenchError(f"{s.name} ({s.cfg.model.name}) bounds no likelihood: no nll to pair")
    takes = (a.model.likelihood.takes, b.model.likelihood.takes)
    if takes[0] != takes[1]:
        raise BenchError(
            f"a's nats are of {takes[0]} data, b's of {takes[1]} data: they do not compare"
        )


def markdown(a: Side, b: Side, rows: list[Row], settings: EvalSettings, seed: int) -> str:
    n = len(a.data.test)
    lines = [
        f"{a.name} ({a.cfg.model.name})",
        f"{b.name} ({b.cfg.model.name})",
        f"{a.data.name}, {n} test examples, k = {settings.k}, the same noise (seed {seed}); "
        f"nats per example, mean ± SE; a − b paired on the same examples.",
        "",
        "| | examples | a | b | a − b | |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [_pm(row.a), _pm(row.b), _pm(row.delta, signed=True)]
        lines.append(f"| {ROWS[row.name]} | {row.examples} | {' | '.join(cells)} | {row.verdict} |")
    return "\n".join(lines)


def _pm(value: tuple[float, float], signed: bool = False) -> str:
    mean, se = value
    shown = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return shown if math.isnan(se) else f"{shown} ± {se:.3f}"


def as_json(a: Side, b: Side, rows: list[Row], settings: EvalSettings, seed: int) -> dict:
    return {
        "a": a.name,
        "b": b.name,
        "data": a.data.name,
        "test_examples": len(a.data.test),
        "k": settings.k,
        "seed": seed,
        "rows": {
            r.name: {
                "examples": r.examples,
                "a": r.a,
                "b": r.b,
                "delta": r.delta,
                "verdict": r.verdict,
            }
            for r in rows
        },
    }


def main(argv: list[str] | None = None) -> int:
    return key_value_main(__doc__, argv, _main)


def _main(args: list[str]) -> None:
    options, overrides = key_values(args, ("a", "b", "examples", "seed", "tracking_uri", "out"))
    if "a" not in options or "b" not in options:
        raise BenchError("which runs? python -m bench.compare a=RUN_ID|FOLDER b=RUN_ID|FOLDER")
    n = _count(options.get("examples"), "examples", 1)
    seed = _count(options.get("seed", "0"), "seed", 0)
    reading = Reading(mlflow_runs.connect(options.get("tracking_uri")), overrides, n)
    a, b = reading.side("a", options["a"]), reading.side("b", options["b"])
    check_comparable(a, b)
    a.cfg = resolved(a.cfg, a.data.test_x.device, a.data)
    settings = EvalSettings.from_config(a.cfg.eval)
    rows = compare(a, b, settings, seed)
    print(markdown(a, b, rows, settings, seed))
    if "out" in options:
        text = json.dumps(as_json(a, b, rows, settings, seed), indent=2)
        Path(options["out"]).write_text(text + "\n")


def _count(value: str | None, key: str, least: int) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) < least:
        raise BenchError(f"{key} must be an integer >= {least}, got {value!r}")
    return int(value)


if __name__ == "__main__":
    sys.exit(main())
