"""python -m bench.score: a finished run re-evaluated from its store, logged under k-tagged keys,
its own metrics untouched."""

import pytest
import torch
from mlflow.tracking import MlflowClient

from bench.run import main as run_main
from bench.score import main as score_main
from bench.tracking.logged_model import load_model


@pytest.fixture
def finished_run(tracking_uri) -> str:
    assert run_main(["trainer.epochs=2", "eval.k=5", f"tracking_uri={tracking_uri}"]) == 0
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return run.info.run_id


def history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, str]]]:
    """Every metric's (step, repr(value)): NaN SEs compare equal."""
    keys = client.get_run(run_id).data.metrics
    return {
        k: [(m.step, repr(m.value)) for m in client.get_metric_history(run_id, k)] for k in keys
    }


def test_rescoring_logs_k_tagged_metrics_and_leaves_the_runs_own(finished_run, tracking_uri):
    client = MlflowClient(tracking_uri)
    before = history(client, finished_run)
    args = [f"run={finished_run}", f"tracking_uri={tracking_uri}"]
    assert score_main([*args, "eval.k=50"]) == 0
    assert score_main([*args, "eval.k=5"]) == 0
    after = history(client, finished_run)
    assert {k: v for k, v in after.items() if k in before} == before
    new = set(after) - set(before)
    for prefix in ("test_k50", "test_k5"):
        assert {f"{prefix}/{m}" for m in ("nll", "nll_se", "neg_elbo", "kl", "recon")} <= new
        assert f"{prefix}/amortization_gap" in new and f"{prefix}/nll_at_k" in new
    metrics = client.get_run(finished_run).data.metrics
    assert metrics["test_k5/nll"] == metrics["test/nll"]  # same split, seed and settings
    assert metrics["test_k50/nll"] < metrics["test_k5/nll"]  # the tighter bound
    tags = client.get_run(finished_run).data.tags
    assert tags["test_k50.settings"] == "eval.k=50"


def test_bad_runs_and_settings_are_one_line(finished_run, tracking_uri, capsys):
    client = MlflowClient(tracking_uri)
    experiment = client.get_run(finished_run).info.experiment_id
    empty = client.create_run(experiment).info.run_id
    uri = f"tracking_uri={tracking_uri}"
    cases = [
        (["run=nosuch", uri], "no run 'nosuch' in the tracking store"),
        ([f"run={empty}", uri], f"run {empty} has no config.yaml artifact"),
        ([f"run={finished_run}", uri, "model.z_dim=3"], "changes only eval.* settings"),
        ([f"run={finished_run}", uri, "eval.k=0"], "eval.k must be an integer >= 1"),
        ([uri], "which run?"),
    ]
    for args, message in cases:
        assert score_main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


class Bait:
    """Unpickled, it writes a file: what a hostile writer of the tracking store could plant."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_rescoring_never_unpickles_the_logged_model(finished_run, tracking_uri, tmp_path):
    (pickled,) = tmp_path.glob("mlartifacts/models/*/artifacts/data/model.pth")
    marker = tmp_path / "code-from-the-store-ran"
    torch.save(Bait(str(marker)), pickled)  # the logged MLflow model, replaced by a bait
    args = [f"run={finished_run}", f"tracking_uri={tracking_uri}"]
    assert score_main([*args, "eval.k=5"]) == 0
    assert not marker.exists()
    metrics = MlflowClient(tracking_uri).get_run(finished_run).data.metrics
    assert metrics["test_k5/nll"] == metrics["test/nll"]  # the weights are the run's own
    with pytest.raises(AttributeError):  # the bait is live: MLflow's own loader runs it
        load_model(MlflowClient(tracking_uri), finished_run)
    assert marker.exists()


def test_a_run_with_only_a_pickled_model_is_refused_in_one_line(
    finished_run, tracking_uri, tmp_path, capsys
):
    (weights,) = tmp_path.glob(f"mlartifacts/{finished_run}/artifacts/model.safetensors")
    weights.unlink()
    assert score_main([f"run={finished_run}", f"tracking_uri={tracking_uri}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "only in its pickled MLflow model" in err
