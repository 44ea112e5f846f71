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

import mlflow
import pandas as pd

from bench.cli import run_parsed
from bench.config import group_options
from bench.report.references import references, stochastic_layers
from bench.report.runs import download_artifacts
from bench.score import SCORES
from bench.stored_run import CONFIG
from bench.tracking import mlflow_runs
from bench.tracking.logged_model import download_model, has_logged_model
from bench.tracking.weights import LEGACY_WEIGHTS, WEIGHTS


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


def _reference(recipe: str, run: pd.Series) -> dict | None:
    k_train = int(run.get("params.model.k_train") or 1)
    return published(recipe, run["params.data.name"], run["params.model.name"], k_train)


def run_row(recipe: str, run: pd.Series) -> str:
    data, variant = run["params.data.name"], run["params.model.name"]
    k_train = int(run.get("params.model.k_train") or 1)
    k, nll, se = scored_nll(run)
    ref = _reference(recipe, run)
    theirs, delta = "none recorded", ""
    if ref is not None:
        theirs = f"{ref['nll']:.2f}" + (f" ± {ref['std']:.2f}" if "std" in ref else "")
        delta = f"{nll - ref['nll']:+.2f}"
    shown = f"{variant} (k_train {k_train})" if variant == "iwae" else variant
    epochs = f"{int(run['metrics.epochs_run'])} of {run['params.trainer.epochs']}"
    hours = float(run["metrics.train_seconds"]) / 3600
    cells = [data, shown, run["params.trainer.seed"], epochs, int(run["metrics.best_epoch"])]
    cells += [f"{hours:.2f}", k, f"{nll:.2f} ± {se:.2f}", theirs, delta]
    return "| " + " | ".join(str(c) for c in cells) + " |"


HEADER = (
    "| data | variant | seed | epochs run | best epoch | train hours | k | nll ± SE (ours) "
    "| published | ours − published |"
)


def recipe_section(recipe: str, weights: Path) -> list[str]:
    text = (files("bench.conf") / "recipe" / f"{recipe}.yaml").read_text()
    comment = [line.lstrip("# ") for line in text.splitlines()[1:] if line.startswith("#")]
    runs, unfinished = recipe_runs(recipe), unfinished_lines(recipe)
    lines = [f"## `{recipe}`", "", " ".join(comment), ""]
    if runs.empty:
        return lines + (unfinished or _not_run(recipe, text))
    lines += [HEADER, "|---" * 10 + "|"]
    kept = []
    for _, run in runs.iterrows():
        lines.append(run_row(recipe, run))
        kept.append((_keep(recipe, run, weights), _reference(recipe, run)))
    lines += certified_lines(kept)
    command = (
        f"Command: `python -m bench.run recipe={recipe} [data=...] trainer.seed=N`; configs and "
        f"weights in `{weights.name}/`: `model.safetensors` (tensors only) for the variant "
        "`bench.job.build_model` builds from `config.yaml` (runs made before: `model.pt`), and "
        "the MLflow model, `mlflow.pytorch.load_model(FOLDER/model)` (a pickle: load it only "
        "from a source you trust)."
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


def certified_lines(kept: list[tuple[Path, dict | None]]) -> list[str]:
    """For each copied run (its folder, its published reference) that `python -m bench.score
    folder=...` gave AIS (its scores.json): how far AIS finds the IW bound above -ln p on the
    same examples, and ours - published on the certified rung. The published numbers are IW
    bounds themselves."""
    lines = []
    for folder, ref in kept:
        scores = json.loads(p.read_text()) if (p := folder / SCORES).is_file() else {}
        for prefix, score in ((p, e) for p, entries in scores.items() for e in entries):
            m = score["metrics"]
            if "nll_ais" not in m:
                continue
            ours = m["nll"] - max(m["iw_slack"], 0.0)
            gap = f"{ours - ref['nll']:+.2f}" if ref is not None else "n/a"
            k = ref.get("k", "?") if ref is not None else "?"
            bdmc = (
                f" (BDMC gap on {int(m['bdmc_examples'])} simulated: {m['bdmc_gap']:.2f})"
                if "bdmc_gap" in m
                else ""
            )
            lines.append(
                f"- `{folder.name}` (`{prefix}`: {score['settings']}): AIS on the first "
                f"{int(m['ais_examples'])} test examples is {m['iw_slack']:.2f} ± "
                f"{m['iw_slack_se']:.2f} nats below the IW bound at k = {prefix.split('_k')[1]}"
                f"{bdmc}: certified −ln p {ours:.2f}, {gap} against the published number. That "
                f"is an IW bound (k = {k}) too, with a slack of its own nobody measured: like for "
                "like is the table's IW against IW."
            )
    intro = "Certified rung (`python -m bench.score folder=FOLDER eval.ais.…`, in `scores.json`):"
    return ["", intro, "", *lines] if lines else []


def _keep(recipe: str, run: pd.Series, weights: Path) -> Path:
    """The run's config and model copied to `weights/<recipe>-<data>-<variant>-seed<N>/`."""
    name = f"{recipe}-{run['params.data.name']}-{run['params.model.name']}"
    folder = weights / f"{name}-seed{run['params.trainer.seed']}"
    folder.mkdir(parents=True, exist_ok=True)
    names = {name: name for name in (CONFIG, WEIGHTS, LEGACY_WEIGHTS)}
    download_artifacts(run["run_id"], names, folder)
    client = mlflow.MlflowClient(mlflow.get_tracking_uri())
    if has_logged_model(client, run["run_id"]):
        download_model(client, run["run_id"], folder)
    return folder


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
