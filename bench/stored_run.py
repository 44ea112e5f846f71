"""A finished run read back from its tracking store: its resolved config and trained weights."""

import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from bench.config import load_config
from bench.data.dataset import Dataset
from bench.errors import BenchError, first_line
from bench.job import CHECKPOINT, CONFIG, build_model, load_data
from bench.tracking.weights import LEGACY_WEIGHTS, WEIGHTS, load_weights
from models.base import LatentModel

T = TypeVar("T")


def stored_config(run_id: str, tracking_uri: str | None = None) -> DictConfig:
    """The run's logged config on top of today's defaults for its model, network and data (keys
    added since it ran take their defaults), less its study's settings. A user's network is
    imported from this environment (net._target_), never from the store."""
    return on_defaults(read_artifact(run_id, CONFIG, tracking_uri, OmegaConf.load))


def on_defaults(stored: DictConfig) -> DictConfig:
    """A run's config on top of today's defaults for its model, network and data."""
    stored.pop("study", None)  # a study trial's: what the study was, not how the run ran
    data = stored.data.get("format") or stored.data.name
    net = stored.get("net") or {"name": "mlp"}  # runs made before net=: the MLP
    target = [f"net._target_={net['_target_']}"] if net.get("_target_") else []
    base = load_config(
        [f"model={stored.model.name}", f"net={net['name']}", *target, f"data={data}"]
    )
    OmegaConf.set_struct(base, False)  # keys since renamed or dropped are carried, unused
    return OmegaConf.merge(base, stored)


def stored_model(
    run_id: str, cfg: DictConfig, data: Dataset, tracking_uri: str | None = None
) -> LatentModel:
    """The variant built from `cfg`, with the run's weights: its `model.safetensors` (or, for
    runs made before the MLflow model, its `model.pt` state dict). Never the pickled MLflow
    model: unpickling runs whatever code the tracking store holds."""
    stored = {a.path for a in MlflowClient(tracking_uri).list_artifacts(run_id)}
    found = [name for name in (WEIGHTS, LEGACY_WEIGHTS) if name in stored]
    if not found:
        raise BenchError(
            f"run {run_id} has no {WEIGHTS}: its weights are only in its pickled MLflow model, "
            "and loading that runs code from the tracking store. If you trust the store: "
            f"mlflow.pytorch.load_model('runs:/{run_id}/model')"
        )
    return read_artifact(run_id, found[0], tracking_uri, lambda path: weighted(cfg, data, path))


def weighted(cfg: DictConfig, data: Dataset, path: str | Path) -> LatentModel:
    """The variant built from `cfg` on the data's device, in eval mode, with the weights at
    `path` (safetensors, or a legacy state dict read as tensors only)."""
    device = data.test_x.device
    model = build_model(cfg, data, int(cfg.trainer.seed)).to(device)
    load_weights(model, str(path), device)
    return model.eval()


def folder_run(folder: Path) -> tuple[DictConfig, Path]:
    """(config, weights file) of a run copied to a folder (bench.reproduce's `reproduce/`): its
    config.yaml and model.safetensors (or a legacy model.pt, read as tensors only)."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise BenchError(f"{folder} has no {CONFIG}: not a run's folder")
    found = [folder / name for name in (WEIGHTS, LEGACY_WEIGHTS) if (folder / name).is_file()]
    if not found:
        raise BenchError(f"{folder} has no {WEIGHTS} (or {LEGACY_WEIGHTS})")
    try:
        cfg = on_defaults(OmegaConf.load(folder / CONFIG))
    except Exception as e:  # a YAML error, or a file that is not a mapping
        raise BenchError(f"{folder / CONFIG} is not a run's config: {first_line(e)}") from None
    return cfg, found[0]


def reload(run_id: str) -> tuple[LatentModel, Dataset, DictConfig]:
    """(model with the run's weights, its dataset, its config)."""
    cfg = stored_config(run_id)
    data = load_data(cfg)
    return stored_model(run_id, cfg, data), data, cfg


def read_artifact(run_id: str, name: str, tracking_uri: str | None, read: Callable[[str], T]) -> T:
    """`read` of the run's artifact `name` (tracking_uri None: the current store), downloaded
    into a temporary folder that is gone afterwards."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="vae-bench-run-") as folder:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=name, dst_path=folder, tracking_uri=tracking_uri
            )
        except MlflowException as e:
            raise BenchError(_why(run_id, name, e)) from None
        except OSError as e:
            raise BenchError(f"run {run_id} has no {name} artifact: {e}") from None
        return read(path)


def read_checkpoint(run_id: str, tracking_uri: str | None) -> dict[str, Any]:
    """The run's last training checkpoint (bench.job.CHECKPOINT), read as tensors only."""
    return read_artifact(run_id, CHECKPOINT, tracking_uri, partial(torch.load, weights_only=True))


def _why(run_id: str, name: str, error: MlflowException) -> str:
    message = str(error).splitlines()[0]
    if (
        "RESOURCE_DOES_NOT_EXIST" in str(error.error_code)
        and "run" in message.lower()
        and run_id in message
    ):
        return f"no run {run_id!r} in the tracking store"
    return f"run {run_id} has no {name} artifact ({message})"
