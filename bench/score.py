"""python -m bench.score run=RUN_ID [eval.k=5000] [eval.KEY=VALUE ...] [tracking_uri=URI]
python -m bench.score folder=PATH [eval.KEY=VALUE ...]

Re-scores a finished run: its weights and config are read back from the tracking store, its test
split evaluated again with the given evaluation settings (every metric of a normal run, the same
test split and seed), and the numbers logged into that run under `test_k<K>/` (`test_k<K>_bf16/`
in bf16), with the nll at each k and the settings as tags. The run's training and test metrics are
left as they were. A study trained with a small k has its best run re-scored at a large k so, and
`eval.ais.examples=50 eval.ais.steps=8000` adds annealed importance sampling with its own budget.

folder=PATH scores a run copied to a folder (config.yaml and model.safetensors or model.pt, as
bench.reproduce leaves them in benchmarks/reproduce/) and writes the numbers to PATH/scores.json:
under the same prefix, one entry per settings.
"""

import json
import sys
from pathlib import Path

import mlflow
import torch
from omegaconf import DictConfig, OmegaConf

from bench.cli import key_value_main, key_values
from bench.config import validate
from bench.errors import BenchError
from bench.evaluation.evaluator import EvalSettings, evaluate
from bench.evaluation.result import Evaluation
from bench.job import load_data, resolved
from bench.stored_run import folder_run, stored_config, stored_model, weighted
from bench.tracking import mlflow_runs
from bench.training.loop import pick_device

# resolved again for the new settings
AUTO_EVAL_KEYS = (
    "rows_per_chunk",
    "gap_examples",
    "compile",
    "ais.examples",
    "ais.bdmc_examples",
    "exact_examples",
)
SCORES = "scores.json"  # a folder's scores, by prefix


def score(
    client: mlflow.MlflowClient, run_id: str, overrides: list[str]
) -> tuple[str, dict[str, float]]:
    """Evaluates the run with `overrides` (eval.* only); returns the key prefix and metrics."""
    uri = client.tracking_uri
    cfg, data = _setup(stored_config(run_id, uri), overrides)
    evaluation = _evaluate(stored_model(run_id, cfg, data, uri), data, cfg)
    prefix = _prefix(cfg)
    metrics = {f"{prefix}/{name}": value for name, value in evaluation.metrics.items()}
    mlflow_runs.log_metrics(client, run_id, metrics, step=0)
    for k, nll in evaluation.nll_at_k.items():
        mlflow_runs.log_metrics(client, run_id, {f"{prefix}/nll_at_k": nll}, step=k)
    tags = {f"{prefix}.{key}": value for key, value in evaluation.tags.items()}
    tags[f"{prefix}.settings"] = _settings(overrides)
    mlflow_runs.set_tags(client, run_id, tags)
    return prefix, evaluation.metrics


def score_folder(folder: Path, overrides: list[str]) -> tuple[str, dict[str, float]]:
    """Evaluates the run copied to `folder`; its numbers go to folder/scores.json."""
    stored, weights = folder_run(folder)
    cfg, data = _setup(stored, overrides)
    evaluation = _evaluate(weighted(cfg, data, weights), data, cfg)
    prefix = _prefix(cfg)
    path = folder / SCORES
    scores = json.loads(path.read_text()) if path.is_file() else {}
    entry = {
        "settings": _settings(overrides),
        "metrics": evaluation.metrics,
        "nll_at_k": {str(k): v for k, v in evaluation.nll_at_k.items()},
        "tags": evaluation.tags,
    }
    others = [e for e in scores.get(prefix, []) if e["settings"] != entry["settings"]]
    scores[prefix] = [*others, entry]  # one entry per settings: a rerun replaces its own
    path.write_text(json.dumps(scores, indent=2) + "\n")
    return prefix, evaluation.metrics


def _setup(stored: DictConfig, overrides: list[str]):
    cfg = rescoring_config(stored, overrides)
    device = pick_device(cfg.trainer.device)
    data = load_data(cfg, device)
    return resolved(cfg, device, data), data


def _evaluate(model, data, cfg: DictConfig) -> Evaluation:
    torch.manual_seed(cfg.trainer.seed)
    return evaluate(model, data, EvalSettings.from_config(cfg.eval))


def _prefix(cfg: DictConfig) -> str:
    return f"test_k{cfg.eval.k}" + ("_bf16" if cfg.eval.precision == "bf16" else "")


def _settings(overrides: list[str]) -> str:
    return " ".join(overrides) or "the run's own"


def rescoring_config(stored: DictConfig, overrides: list[str]) -> DictConfig:
    others = [o for o in overrides if not o.startswith("eval.")]
    if others:
        raise BenchError(
            f"a finished run evaluated again changes only eval.* settings, got {' '.join(others)}"
        )
    cfg = stored.copy()
    for key in AUTO_EVAL_KEYS:
        OmegaConf.update(cfg, f"eval.{key}", "auto")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    validate(cfg)
    return cfg


def main(argv: list[str] | None = None) -> int:
    return key_value_main(__doc__, argv, _main)


def _main(args: list[str]) -> None:
    options, overrides = key_values(args, ("run", "folder", "tracking_uri"))
    if ("run" in options) == ("folder" in options):
        raise BenchError(
            "which run? python -m bench.score run=RUN_ID | folder=PATH [eval.k=5000 ...]"
        )
    if "folder" in options:
        prefix, metrics = score_folder(Path(options["folder"]), overrides)
        where = f"{options['folder']}: {prefix}/ written to {Path(options['folder']) / SCORES}"
    else:
        client = mlflow_runs.connect(options.get("tracking_uri"))
        prefix, metrics = score(client, options["run"], overrides)
        where = f"run {options['run']}: {prefix}/ logged"
    shown = ", ".join(
        f"{k} {metrics[k]:.3f}" for k in ("nll", "nll_ais", "iw_slack", "neg_elbo") if k in metrics
    )
    print(f"{where} ({shown})")


if __name__ == "__main__":
    sys.exit(main())
