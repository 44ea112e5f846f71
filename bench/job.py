"""One run: data, model, training, test evaluation, all of it logged to one MLflow run."""

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from bench import images, tracking
from bench.data import Dataset, load
from bench.evaluate import evaluate, rows_per_chunk
from bench.train import EpochCallback, compile_mode, pick_device, steps, train
from models import build_likelihood, variant
from models.base import LatentModel

EVAL_PREFIX = {"val": "val_eval", "test": "test"}  # keys of the final k-sample evaluation


def build_model(cfg: DictConfig, data: Dataset, seed: int) -> LatentModel:
    """The variant `cfg.name`, its weights initialized from `seed`."""
    torch.manual_seed(seed)
    options = OmegaConf.to_container(cfg, resolve=True)
    name = options.pop("name")
    likelihood = build_likelihood(options.pop("likelihood"), options.pop("output_variance"))
    return variant(name)(
        x_dim=data.x_dim, n_classes=data.n_classes, likelihood=likelihood, **options
    )


def run_job(
    cfg: DictConfig,
    client: MlflowClient,
    run_id: str,
    progress: bool | None = None,
    on_epoch: EpochCallback | None = None,
    validate: bool = False,
) -> dict[str, float]:
    """Train and evaluate as `cfg` says, logging into `run_id`.

    Returns `test/*` metrics, and with `validate` the same evaluation of the validation split
    as `val_eval/*` (`val/*` are the per-epoch one-sample estimates: one key, one estimator).
    """
    device = pick_device(cfg.trainer.device)
    data = load(cfg.data, device)
    cfg = resolved(cfg, device, len(data.train))
    model = build_model(cfg.model, data, cfg.trainer.seed).to(device)
    _log_setup(client, run_id, cfg, data, device)

    def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
        tracking.log_metrics(client, run_id, metrics, step=epoch)
        if on_epoch is not None:
            on_epoch(epoch, metrics)

    started = time.perf_counter()
    train(model, data, cfg.trainer, on_epoch=log_epoch, progress=progress)
    seconds = time.perf_counter() - started
    results = {
        "train_seconds": seconds,
        "train_samples_per_s": cfg.trainer.epochs * len(data.train) / seconds,
    }
    for split in ("val", "test") if validate else ("test",):
        torch.manual_seed(cfg.trainer.seed)
        metrics = evaluate(
            model, data, cfg.eval.k, cfg.eval.rows_per_chunk, cfg.eval.active_units_threshold, split
        )
        results |= {f"{EVAL_PREFIX[split]}/{name}": value for name, value in metrics.items()}
    tracking.log_metrics(client, run_id, results, step=cfg.trainer.epochs)
    _log_artifacts(client, run_id, cfg, model, data)
    return results


def resolved(cfg: DictConfig, device: torch.device, n_train: int) -> DictConfig:
    """A copy with the `auto` settings that depend on the device made explicit (and logged)."""
    cfg = copy.deepcopy(cfg)
    cfg.trainer.compile = compile_mode(cfg.trainer.compile, device, steps(cfg.trainer, n_train))
    cfg.eval.rows_per_chunk = rows_per_chunk(cfg.eval.rows_per_chunk, device)
    return cfg


def _log_setup(
    client: MlflowClient, run_id: str, cfg: DictConfig, data: Dataset, device: torch.device
) -> None:
    provenance = data.provenance()
    params = tracking.flatten(OmegaConf.to_container(cfg, resolve=True))
    params |= {f"dataset.{k}": str(v) for k, v in provenance.items() if k != "sha256"}
    tracking.log_params(client, run_id, params)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    tags: dict[str, Any] = {"device": device_name, "dataset.sha256": provenance["sha256"]}
    tags |= {f"dataset.sha256.{name}": digest for name, digest in data.sha256.items()}
    tracking.set_tags(client, run_id, tags)


def _log_artifacts(
    client: MlflowClient, run_id: str, cfg: DictConfig, model: LatentModel, data: Dataset
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        torch.save(model.state_dict(), out / "model.pt")
        model.eval()
        images.sample_grid(model, data, out / "samples.png")
        images.reconstruction_grid(model, data, out / "reconstructions.png")
        if model.conditional:
            images.class_grid(model, data, out / "class_samples.png")
        client.log_artifacts(run_id, tmp)
