"""python -m bench.reproduce [--tracking-uri URI] [--out benchmarks/REPRODUCE.md]

Ours against published, recipe by recipe (bench/conf/recipe): every finished run made with
`recipe=NAME` in the tracking store (its setup, epochs run, best epoch, wall time, nll ± SE at
the largest k it was scored with, the published number for the same data and variant, and the
difference), and for a recipe with no run here the command that makes one. Each run's config and
weights are copied beside the file (`reproduce/<recipe>-<data>-<variant>-seed<N>/`) so anyone can
re-score them with python -m bench.score.
"""

import argparse
import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from bench.cli import run_parsed
from bench.config import group_options
from bench.errors import BenchError
from bench.report.references import references, stochastic_layers
from bench.report.runs import download_artifacts
from bench.score import SCORES
from bench.stored_run import CONFIG
from bench.tracking import mlflow_runs
from bench.tracking.logged_model import download_model, has_logged_model
from bench.tracking.weights import LEGACY_WEIGHTS, WEIGHTS

RECORD = "run.json"  # a kept run's row: the table is built from the kept folders
ROW_ORDER = ("data", "variant", "k_train", "seed")
CERTIFIED_METRICS = (
    "nll",
    "nll_ais",
    "iw_slack",
    "iw_slack_se",
    "ais_examples",
    "bdmc_gap",
    "bdmc_examples",
)
RECORD_KEYS = (
    *ROW_ORDER,
    "recipe",
    "epochs_run",
    "epochs",
    "best_epoch",
    "train_seconds",
    "k",
    "nll",
    "nll_se",
)


def recipe_runs(recipe: str, finished: bool = True) -> pd.DataFrame:
    status = "= 'FINISHED'" if finished else "!= 'FINISHED'"
    return mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"params.recipe_name = '{recipe}' and attributes.status {status}",
        order_by=["attributes.start_time ASC"],
    )


def unfinished_lines(recipe: str) -> list[str]:
    """The recipe's runs still training or stopped before the end, with how far they got."""
    runs = recipe_runs(recipe, finished=False)
    if runs.empty:
        return []
    client = mlflow.MlflowClient(mlflow.get_tracking_uri())
    resume = "`python -m bench.resume run=RUN_ID` goes on from a stopped one's last checkpoint"
    lines = [f"Not finished ({resume}):", ""]
    for _, run in runs.iterrows():
        lines.append(
            f"- {run['params.data.name']} {run['params.model.name']} seed "
            f"{run['params.trainer.seed']}, run `{run['run_id']}` ({run['status']}): "
            + _progress(client, run)
        )
    return lines + [""]


def _progress(client: mlflow.MlflowClient, run: pd.Series) -> str:
    history = client.get_metric_history(run["run_id"], "val/neg_elbo")
    if not history:
        return "no epoch logged"
    best = min(history, key=lambda m: m.value)
    last = max(m.step for m in history)  # a resumed run logs some epochs twice
    return (
        f"epoch {last} of at most {run['params.trainer.epochs']}, best validation −ELBO "
        f"{best.value:.2f} at epoch {best.step}"
    )


def scored_nll(run: pd.Series) -> tuple[int, float, float]:
    """(k, nll, SE) at the largest k the run was scored with (bench.score's test_k<K>/)."""
    found = (re.fullmatch(r"metrics\.(test_k(\d+))/nll", c) for c in run.index)
    scored = {int(m[2]): m[1] for m in found if m}
    scored = {k: p for k, p in scored.items() if pd.notna(run[f"metrics.{p}/nll"])}
    own = int(run["params.eval.k"])
    k = max([own, *scored])
    prefix = "test" if k == own and k not in scored else scored[k]
    return k, run[f"metrics.{prefix}/nll"], run[f"metrics.{prefix}/nll_se"]


def published(recipe: str, data: str, name: str, k_train: int) -> dict | None:
    layers = stochastic_layers(name)
    for ref in references():
        same = ref.get("recipe") == recipe and ref["dataset"] == data and ref["variant"] == name
        if same and ref["stochastic_layers"] == layers and ref["k_train"] == k_train:
            return ref
    return None


def run_record(recipe: str, run: pd.Series) -> dict[str, Any]:
    """A finished run's row, kept beside its weights as RECORD."""
    k, nll, se = scored_nll(run)
    return {
        "recipe": recipe,
        "run_id": run["run_id"],
        "data": run["params.data.name"],
        "variant": run["params.model.name"],
        "k_train": int(run.get("params.model.k_train") or 1),
        "seed": int(run["params.trainer.seed"]),
        "epochs_run": int(run["metrics.epochs_run"]),
        "epochs": int(run["params.trainer.epochs"]),
        "best_epoch": int(run["metrics.best_epoch"]),
        "train_seconds": float(run["metrics.train_seconds"]),
        "k": k,
        "nll": float(nll),
        "nll_se": float(se),
        "certified": own_certified(run),
    }


def reference(record: dict[str, Any]) -> dict | None:
    return published(record["recipe"], record["data"], record["variant"], record["k_train"])


def record_row(record: dict[str, Any]) -> str:
    ref = reference(record)
    theirs, delta = "none recorded", ""
    if ref is not None:
        theirs = f"{ref['nll']:.2f}" + (f" ± {ref['std']:.2f}" if "std" in ref else "")
        delta = f"{record['nll'] - ref['nll']:+.2f}"
    variant = record["variant"]
    shown = f"{variant} (k_train {record['k_train']})" if variant == "iwae" else variant
    cells = [record["data"], shown, record["seed"], f"{record['epochs_run']} of {record['epochs']}"]
    cells += [record["best_epoch"], f"{record['train_seconds'] / 3600:.2f}", record["k"]]
    cells += [f"{record['nll']:.2f} ± {record['nll_se']:.2f}", theirs, delta]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def kept_records(recipe: str, weights: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The recipe's kept runs (their folders and records), by data, variant and seed."""
    records = ((path.parent, _read_record(path)) for path in weights.glob(f"*/{RECORD}"))
    kept = [(folder, record) for folder, record in records if record["recipe"] == recipe]
    return sorted(kept, key=lambda kept_run: [kept_run[1][key] for key in ROW_ORDER])


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"{path} is not a run record: {e}") from None
    missing = [key for key in RECORD_KEYS if key not in record] if isinstance(record, dict) else []
    if not isinstance(record, dict) or missing:
        raise BenchError(f"{path} is not a run record: it lacks {', '.join(missing) or 'keys'}")
    return record


HEADER = (
    "| data | variant | seed | epochs run | best epoch | train hours | k | nll ± SE (ours) "
    "| published | ours − published |"
)


def recipe_section(recipe: str, weights: Path) -> list[str]:
    """The recipe's table: every run kept in `weights` (this store's finished runs copied there
    first; runs kept from other stores and machines stay), then this store's unfinished ones."""
    text = (files("bench.conf") / "recipe" / f"{recipe}.yaml").read_text()
    comment = [line.lstrip("# ") for line in text.splitlines()[1:] if line.startswith("#")]
    for _, run in recipe_runs(recipe).iterrows():
        _keep(recipe, run, weights)
    kept, unfinished = kept_records(recipe, weights), unfinished_lines(recipe)
    lines = [f"## `{recipe}`", "", " ".join(comment), ""]
    if not kept:
        return lines + (unfinished or _not_run(recipe, text))
    lines += [HEADER, "|---" * 10 + "|", *(record_row(record) for _, record in kept)]
    lines += certified_lines([(folder, record, reference(record)) for folder, record in kept])
    command = (
        f"Command: `python -m bench.run recipe={recipe} [data=...] trainer.seed=N`; configs and "
        f"weights in `{weights.name}/`: `model.safetensors` (tensors only) for the variant "
        "`bench.job.build_model` builds from `config.yaml` (runs made before: `model.pt`), and "
        "the MLflow model, `mlflow.pytorch.load_model(FOLDER/model)` (a pickle: load it only "
        "from a source you trust). Each folder's `run.json` is its row."
    )
    return [*lines, "", command, "", *unfinished]


def _not_run(recipe: str, text: str) -> list[str]:
    data = re.search(r"override /data: (\S+)", text)
    needs = f" (it needs {data[1]}'s training split)" if data else ""
    return [
        f"Not run here{needs}. Command: `python -m bench.run recipe={recipe} "
        "trainer.seed=0`, then `python -m bench.reproduce` to fill this section.",
        "",
    ]


def certified_lines(kept: list[tuple[Path, dict[str, Any], dict | None]]) -> list[str]:
    """For each kept run (its folder, record, published reference) with AIS, from its own
    evaluation (its record's `certified`) or from `python -m bench.score folder=...` (its
    scores.json): how far AIS finds the IW bound above -ln p on the same examples, and ours -
    published on the certified rung. The published numbers are IW bounds themselves."""
    lines = []
    for folder, record, ref in kept:
        for where, k, score in _ais_scores(folder, record):
            m = score["metrics"]
            ours = m["nll"] - max(m["iw_slack"], 0.0)
            gap = f"{ours - ref['nll']:+.2f}" if ref is not None else "n/a"
            their_k = ref.get("k", "?") if ref is not None else "?"
            bdmc = (
                f" (BDMC gap on {int(m['bdmc_examples'])} simulated: {m['bdmc_gap']:.2f})"
                if "bdmc_gap" in m
                else ""
            )
            lines.append(
                f"- `{folder.name}` ({where}: {score['settings']}): AIS on the first "
                f"{int(m['ais_examples'])} test examples is {m['iw_slack']:.2f} ± "
                f"{m['iw_slack_se']:.2f} nats below the IW bound at k = {k}"
                f"{bdmc}: certified −ln p {ours:.2f}, {gap} against the published number. That "
                f"is an IW bound (k = {their_k}) too, with a slack of its own nobody measured: "
                "like for like is the table's IW against IW."
            )
    intro = (
        "Certified rung (the run's own evaluation, or `python -m bench.score folder=FOLDER "
        "eval.ais.…` in `scores.json`):"
    )
    return ["", intro, "", *lines] if lines else []


def _ais_scores(folder: Path, record: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """(where, k, score) of each of the run's evaluations with AIS."""
    own = record.get("certified")
    found = [("its own evaluation", int(own["k"]), own)] if own else []
    scores = json.loads(p.read_text()) if (p := folder / SCORES).is_file() else {}
    for prefix, entries in scores.items():
        k = int(re.search(r"_k(\d+)", prefix)[1])
        found += [(f"`{prefix}`", k, e) for e in entries if "nll_ais" in e["metrics"]]
    return found


def own_certified(run: pd.Series) -> dict[str, Any] | None:
    """The run's own AIS evaluation of its test split (k, settings, metrics), if it ran one."""
    if pd.isna(run.get("metrics.test/nll_ais")):
        return None
    metrics = {
        key: float(run[f"metrics.test/{key}"])
        for key in CERTIFIED_METRICS
        if pd.notna(run.get(f"metrics.test/{key}"))
    }
    settings = [
        f"eval.ais.{key}={run[f'params.eval.ais.{key}']}"
        for key in ("examples", "steps", "chains", "start", "bdmc_examples")
        if pd.notna(run.get(f"params.eval.ais.{key}"))
    ]
    return {"k": int(run["params.eval.k"]), "settings": " ".join(settings), "metrics": metrics}


def _keep(recipe: str, run: pd.Series, weights: Path) -> None:
    """The run's config, model and row (RECORD) copied to
    `weights/<recipe>-<data>-<variant>-seed<N>/`."""
    name = f"{recipe}-{run['params.data.name']}-{run['params.model.name']}"
    folder = weights / f"{name}-seed{run['params.trainer.seed']}"
    folder.mkdir(parents=True, exist_ok=True)
    names = {name: name for name in (CONFIG, WEIGHTS, LEGACY_WEIGHTS)}
    download_artifacts(run["run_id"], names, folder)
    client = mlflow.MlflowClient(mlflow.get_tracking_uri())
    if has_logged_model(client, run["run_id"]):
        download_model(client, run["run_id"], folder)
    (folder / RECORD).write_text(json.dumps(run_record(recipe, run), indent=1) + "\n")


INTRO = (
    "Ours against published, recipe by recipe (`bench/conf/recipe/`): every finished run made "
    "with `recipe=NAME` in the tracking store, at the largest k it was scored with "
    "(`python -m bench.score`), beside the published number for the same data and variant "
    "(`bench/references.yaml`). Written by `python -m bench.reproduce`."
)


def write(args: argparse.Namespace) -> None:
    uri = mlflow_runs.tracking_uri(args.tracking_uri)
    mlflow_runs.check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    out = Path(args.out)
    lines = ["# Published numbers reproduced", "", INTRO, ""]
    for recipe in group_options("recipe"):
        lines += recipe_section(recipe, out.parent / "reproduce")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"written: {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reproduce", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db"
    )
    parser.add_argument("--out", default="benchmarks/REPRODUCE.md")
    return run_parsed(parser, argv, write)


if __name__ == "__main__":
    import sys

    sys.exit(main())
