"""The trained model as an MLflow model: `mlflow.pytorch.load_model("runs:/<run id>/model")` gives
back the variant's module (loss parts, encoder, decoder), its code (`models/`, and a user's
network's top-level package) packed beside it, with a signature and an input example of what it
serves (`LatentModel.forward`: the latent code).
"""

import copy
import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from mlflow.models.signature import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Schema, TensorSpec

import models
from bench.data.dataset import Dataset
from models.base import LatentModel

MODEL = "model"  # the logged model's name: runs:/<run id>/model
EXAMPLE_ROWS = 5


def log_model(
    client: MlflowClient, run_id: str, model: LatentModel, data: Dataset, step: int
) -> str:
    """Logs `model` (a CPU copy) as the run's MLflow model, linked to the run's metrics at
    `step`; returns the model's URI."""
    model = copy.deepcopy(model).cpu().eval()
    example = serving_input(model, data)
    with torch.no_grad():
        signature = tensor_signature(example.numpy(), model(example).numpy())
    with fluent_store(client, run_id), _quiet("mlflow.pytorch"):  # its warning on pickle
        info = mlflow.pytorch.log_model(
            model,
            name=MODEL,
            run_id=run_id,
            step=step,
            signature=signature,
            input_example=example.numpy(),
            code_paths=code_paths(model),
            pip_requirements=[f"torch=={version('torch')}", mlflow_requirement()],
            serialization_format="pickle",  # the module itself; pt2 would keep forward only
        )
    return info.model_uri


def code_paths(model: LatentModel) -> list[str]:
    """`models/`, and the top-level package (or module) of a network defined elsewhere
    (net=custom): what unpickling the model imports."""
    paths = [str(Path(models.__file__).parent)]
    top = model.net_module.partition(".")[0]
    if top != models.__name__:
        module = importlib.import_module(top)
        paths.append(
            str(next(iter(module.__path__)) if hasattr(module, "__path__") else module.__file__)
        )
    return paths


def mlflow_requirement() -> str:
    """The MLflow distribution this process runs: the full package, or mlflow-skinny on a
    worker installed from the wheelhouse."""
    for name in ("mlflow", "mlflow-skinny"):
        try:
            return f"{name}=={version(name)}"
        except PackageNotFoundError:
            continue
    return f"mlflow=={mlflow.__version__}"


def tensor_signature(inputs: np.ndarray, outputs: np.ndarray) -> ModelSignature:
    """What mlflow.models.infer_signature gives for 2-D arrays, built without it: its schema
    inference imports SciPy, which a worker installed from the wheelhouse does not have."""
    spec = lambda a: Schema([TensorSpec(a.dtype, (-1, a.shape[1]))])  # noqa: E731
    return ModelSignature(inputs=spec(inputs), outputs=spec(outputs))


def load_model(
    client: MlflowClient, run_id: str, device: torch.device | str = "cpu"
) -> LatentModel:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with fluent_store(client, run_id):
        return mlflow.pytorch.load_model(f"runs:/{run_id}/{MODEL}", map_location=device).eval()


def has_logged_model(client: MlflowClient, run_id: str) -> bool:
    outputs = client.get_run(run_id).outputs
    return bool(outputs and outputs.model_outputs)


def serving_input(model: LatentModel, data: Dataset) -> torch.Tensor:
    """The first test images (and, for a conditional model, their labels as a last column)."""
    x = data.test_x[:EXAMPLE_ROWS].float().cpu()
    if model.conditional:
        x = torch.cat([x, data.test.labels[:EXAMPLE_ROWS].float().cpu()[:, None]], 1)
    return x


@contextmanager
def fluent_store(client: MlflowClient, run_id: str) -> Iterator[None]:
    """mlflow.pytorch goes through MLflow's process-wide tracking URI and experiment: pointed at
    the run's for the call, restored after."""
    uri, experiment = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_EXPERIMENT_ID")
    mlflow.set_tracking_uri(client.tracking_uri)
    os.environ["MLFLOW_EXPERIMENT_ID"] = client.get_run(run_id).info.experiment_id
    try:
        yield
    finally:
        mlflow.set_tracking_uri(uri)
        if experiment is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = experiment


def download_model(client: MlflowClient, run_id: str, folder: Path) -> Path:
    """The run's MLflow model copied to `folder/model` (loadable with
    `mlflow.pytorch.load_model(str(folder / "model"))`)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    target = folder / MODEL
    with tempfile.TemporaryDirectory() as tmp, fluent_store(client, run_id):
        local = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{MODEL}", dst_path=tmp)
        shutil.copytree(local, target, dirs_exist_ok=True)
    return target


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
