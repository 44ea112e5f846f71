"""python -m bench.score run=RUN_ID [eval.k=5000] [eval.KEY=VALUE ...] [tracking_uri=URI]

Re-scores a finished run: its weights and config are read back from the tracking store, its test
split evaluated again with the given evaluation settings (every metric of a normal run, the same
test split and seed), and the numbers logged into that run under `test_k<K>/` (`test_k<K>_bf16/`
in bf16), with the nll at each k and the settings as tags. The run's training and test metrics are
left as they were. A study trained with a small k has its best run re-scored at a large k so.
"""

import sys

import mlflow
import torch
from omegaconf import DictConfig, OmegaConf

from bench.cli import key_value_main, key_values
from bench.config import validate
from bench.errors import BenchError
from bench.evaluation.evaluator import EvalSettings, evaluate
from bench.job import load_data, resolved
from bench.stored_run import stored_config, stored_model
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


def score(
    client: mlflow.MlflowClient, run_id: str, overrides: list[str]
) -> tuple[str, dict[str, float]]:
    """Evaluates the run with `overrides` (eval.* only); returns the key prefix and metrics."""
    uri = client.tracking_uri
    cfg = rescoring_config(stored_config(run_id, uri), overrides)
    device = pick_device(cfg.trainer.device)
    data = load_data(cfg, device)
    cfg = resolved(cfg, device, data)
    model = stored_model(run_id, cfg, data, uri)
    torch.manual_seed(cfg.trainer.seed)
    evaluation = evaluate(model, data, EvalSettings.from_config(cfg.eval))
    prefix = f"test_k{cfg.eval.k}" + ("_bf16" if cfg.eval.precision == "bf16" else "")
    metrics = {f"{prefix}/{name}": value for name, value in evaluation.metrics.items()}
    mlflow_runs.log_metrics(client, run_id, metrics, step=0)
    for k, nll in evaluation.nll_at_k.items():
        mlflow_runs.log_metrics(client, run_id, {f"{prefix}/nll_at_k": nll}, step=k)
    tags = {f"{prefix}.{key}": value for key, value in evaluation.tags.items()}
    tags[f"{prefix}.settings"] = " ".join(overrides) or "the run's own"
    mlflow_runs.set_tags(client, run_id, tags)
    return prefix, evaluation.metrics


def rescoring_config(stored: DictConfig, overrides: list[str]) -> DictConfig:
    others = [o for o in overrides if not o.startswith("eval.")]
    if others:
        raise BenchError(f"bench.score changes only eval.* settings, got {' '.join(others)}")
    cfg = stored.copy()
    for key in AUTO_EVAL_KEYS:
        OmegaConf.update(cfg, f"eval.{key}", "auto")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    validate(cfg)
    return cfg


def main(argv: list[str] | None = None) -> int:
    return key_value_main(__doc__, argv, _main)


def _main(args: list[str]) -> None:
    options, overrides = key_values(args, ("run", "tracking_uri"))
    if "run" not in options:
        raise BenchError("which run? python -m bench.score run=RUN_ID [eval.k=5000 ...]")
    client = mlflow_runs.connect(options.get("tracking_uri"))
    prefix, metrics = score(client, options["run"], overrides)
    shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("nll", "neg_elbo") if k in metrics)
    print(f"run {options['run']}: {prefix}/ logged ({shown})")


if __name__ == "__main__":
    sys.exit(main())
