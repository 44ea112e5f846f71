"""A finished run read back from its tracking store: its resolved config and trained weights."""

import os
import tempfile
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import mlflow
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from bench.config import load_config
from bench.data import Dataset, load
from bench.errors import BenchError
from bench.job import CONFIG, build_model
from bench.logged_model import has_logged_model, load_model
from models.base import LatentModel

WEIGHTS = "model.pt"  # the weights of runs made before the MLflow model
T = TypeVar("T")


def stored_config(run_id: str, tracking_uri: str | None = None) -> DictConfig:
    """The run's logged config on top of today's defaults for its model and data (keys added
    since it ran take their defaults)."""
    stored = read_artifact(run_id, CONFIG, tracking_uri, OmegaConf.load)
    base = load_config([f"model={stored.model.name}", f"data={stored.data.name}"])
    return OmegaConf.merge(base, stored)


def stored_model(
    run_id: str, cfg: DictConfig, data: Dataset, tracking_uri: str | None = None
) -> LatentModel:
    """The run's logged MLflow model; for runs made before models were logged so, the variant
    built from `cfg` with the run's `model.pt` weights."""
    device = data.test_x.device
    client = MlflowClient(tracking_uri)
    if has_logged_model(client, run_id):
        return load_model(client, run_id, device)
    model = build_model(cfg.model, data, int(cfg.trainer.seed))
    state = read_artifact(run_id, WEIGHTS, tracking_uri, partial(torch.load, map_location=device))
    model.load_state_dict(state)
    return model.to(device).eval()


def reload(run_id: str) -> tuple[LatentModel, Dataset, DictConfig]:
    """(model with the run's weights, its dataset, its config)."""
    cfg = stored_config(run_id)
    data = load(cfg.data)
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


def _why(run_id: str, name: str, error: MlflowException) -> str:
    message = str(error).splitlines()[0]
    if (
        "RESOURCE_DOES_NOT_EXIST" in str(error.error_code)
        and "run" in message.lower()
        and run_id in message
    ):
        return f"no run {run_id!r} in the tracking store"
    return f"run {run_id} has no {name} artifact ({message})"
