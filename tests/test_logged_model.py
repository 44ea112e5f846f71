"""Every variant's trained model is an MLflow model: it loads with mlflow.pytorch, reproduces
the run's test -ELBO, and serves its latent code through pyfunc."""

import mlflow
import mlflow.pyfunc
import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from bench.data.load import load
from bench.run import main
from models import variant_names
from tests.conftest import config


@pytest.mark.parametrize("name", variant_names())
def test_the_logged_model_loads_and_reproduces_the_runs_test_elbo(name, tracking_uri):
    args = [f"model={name}", "trainer.epochs=3", "eval.k=5", "eval.gap_examples=0"]
    assert main([*args, f"tracking_uri={tracking_uri}"]) == 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("vae-bench").experiment_id])
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    assert type(model).__module__ == f"models.{name.replace('-', '_')}"

    data = load(config(*args).data)
    torch.manual_seed(123)  # not the evaluation's noise: agreement within Monte-Carlo error
    with torch.no_grad():
        parts = model.loss_parts(data.test_x, data.test.labels)
    key = "neg_elbo" if model.stochastic else "recon"
    ours = getattr(parts, key).mean().item()
    logged, se = run.data.metrics[f"test/{key}"], run.data.metrics[f"test/{key}_se"]
    assert abs(ours - logged) < 4 * se + 1e-4 * abs(logged)

    (output,) = client.get_run(run.info.run_id).outputs.model_outputs
    assert output.step == run.data.metrics["epochs_run"]  # linked to the test metrics' step
    logged_model = client.get_logged_model(output.model_id)
    assert f"test/{key}" in {m.key for m in logged_model.metrics}

    served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    example = data.test_x[:5]
    if model.conditional:
        example = torch.cat([example, data.test.labels[:5, None].float()], 1)
    with torch.no_grad():
        code = model.encode(data.test_x[:5], data.test.labels[:5])[0].numpy()
    np.testing.assert_allclose(served.predict(example.numpy()), code, rtol=1e-6)
