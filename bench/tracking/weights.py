"""The trained weights as a run's `model.safetensors` artifact: tensors only, so reading them
back (bench.score, bench.perf.gaps, a reproduction) runs no code from the tracking store, unlike
unpickling the logged MLflow model. The variant is rebuilt from the run's config, then loaded."""

import tempfile
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_model, save_model

from bench import signals

WEIGHTS = "model.safetensors"
LEGACY_WEIGHTS = "model.pt"  # a state dict, in runs made before the MLflow model


def log_weights(client: MlflowClient, run_id: str, model: torch.nn.Module) -> None:
    with tempfile.TemporaryDirectory() as tmp, signals.deferred():
        path = Path(tmp) / WEIGHTS
        save_model(model, str(path))
        client.log_artifact(run_id, str(path))


def load_weights(model: torch.nn.Module, path: str, device: torch.device | str) -> None:
    """`path`'s weights into `model`: a safetensors file, or a legacy state dict (unpickled with
    torch's weights-only loader, which builds tensors and containers and nothing else)."""
    if path.endswith(".safetensors"):
        load_model(model, path, device=str(device))
    else:
        model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
