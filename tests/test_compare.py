"""python -m bench.compare: two finished runs (from a store or a folder) paired on the same test
examples with the same noise."""

import json
import math
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file, save_file

from bench.compare import Side, check_comparable
from bench.compare import main as compare_main
from bench.data.load import load
from bench.errors import BenchError
from bench.job import CONFIG, build_model
from bench.run import main as run_main
from bench.tracking.weights import WEIGHTS
from tests.conftest import config


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str]:
    """One store with one finished vae run, trained once for the module: (its URI, run id)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'mlflow.db'}"
    assert run_main(["trainer.epochs=2", "eval.k=5", f"tracking_uri={uri}"]) == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return uri, run.info.run_id


def copied(run_id: str, tracking_uri: str, folder: Path) -> Path:
    """The run's config and weights in a folder, as bench.reproduce keeps them."""
    for name in (CONFIG, WEIGHTS):
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=name, dst_path=str(folder), tracking_uri=tracking_uri
        )
    return folder


def compared(tmp_path, capsys, *args: str) -> dict:
    out = tmp_path / "compared.json"
    assert compare_main([*args, "eval.gap_examples=20", f"out={out}"]) == 0, capsys.readouterr()
    return json.loads(out.read_text())


def test_a_run_against_itself_and_its_folder_copy_differs_by_nothing(store, tmp_path, capsys):
    tracking_uri, vae = store
    folder = copied(vae, tracking_uri, tmp_path / "copied")
    uri = f"tracking_uri={tracking_uri}"
    for other in (vae, str(folder)):
        rows = compared(tmp_path, capsys, f"a={vae}", f"b={other}", uri)["rows"]
        assert {"nll", "neg_elbo", "recon", "kl", "amortization_gap"} <= set(rows)
        for row in rows.values():
            assert row["delta"][0] == 0.0 and row["a"] == row["b"]
            assert row["verdict"] == "within 2 SE"


def test_two_models_are_paired_on_the_same_examples(store, tmp_path, capsys):
    tracking_uri, vae = store
    other = copied(vae, tracking_uri, tmp_path / "moved")
    weights = load_file(other / WEIGHTS)
    (bias,) = [name for name in weights if name.startswith("decoder") and name.endswith("bias")][
        -1:
    ]
    weights[bias] = weights[bias] + 0.3 * torch.randn_like(weights[bias])  # another model
    save_file(weights, other / WEIGHTS)
    args = [f"a={other}", f"b={vae}", f"tracking_uri={tracking_uri}", "eval.k=20"]
    found = compared(tmp_path, capsys, *args)
    assert found["k"] == 20 and found["test_examples"] == 360
    nll = found["rows"]["nll"]
    (mean_a, se_a), (mean_b, se_b), (delta, delta_se) = nll["a"], nll["b"], nll["delta"]
    assert nll["examples"] == 360 and delta != 0
    assert delta == pytest.approx(mean_a - mean_b, abs=1e-9)
    # the examples' difficulty, shared by both models, cancels in the paired difference
    assert delta_se < 0.5 * math.hypot(se_a, se_b)
    printed = capsys.readouterr().out
    assert f"a: folder {other} (vae)" in printed and "| nll (IW bound) | 360 |" in printed
    subset = compared(tmp_path, capsys, *args, "examples=40")
    assert subset["test_examples"] == 40
    assert all(row["examples"] <= 40 for row in subset["rows"].values())


def test_runs_that_do_not_compare_are_one_error_line(store, tmp_path, capsys):
    tracking_uri, vae = store
    uri = f"tracking_uri={tracking_uri}"
    other_data = copied(vae, tracking_uri, tmp_path / "static")
    config_file = other_data / CONFIG
    text = config_file.read_text()
    assert text.count("binarize: dynamic") == 1
    config_file.write_text(text.replace("binarize: dynamic", "binarize: static"))
    cases = [
        ([f"a={vae}", f"b={other_data}"], "same test examples: binarize dynamic vs static"),
        ([f"a={vae}", "b=nosuch"], "no run 'nosuch' in the tracking store"),
        ([f"a={vae}", f"b={tmp_path}/gone"], "no such folder"),
        ([f"a={vae}"], "which runs?"),
        ([f"a={vae}", f"b={vae}", "examples=0"], "examples must be an integer >= 1"),
        ([f"a={vae}", f"b={vae}", "model.z_dim=3"], "changes only eval.* settings"),
    ]
    for args, message in cases:
        assert compare_main([*args, uri]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_a_model_that_bounds_no_likelihood_or_nats_of_other_data_are_refused():
    def side(name: str, *overrides: str) -> Side:
        cfg = config(*overrides)
        data = load(cfg.data)
        return Side(name, cfg, data, build_model(cfg, data, 0))

    with pytest.raises(BenchError, match=r"b \(ae\) bounds no likelihood"):
        check_comparable(side("a"), side("b", "model=ae"))
    density = side("a", "data.binarize=none", "model.likelihood=gaussian")
    levels = side("b", "data.binarize=none", "model.likelihood=discretized_logistic")
    with pytest.raises(BenchError, match="nats are of dequantized data, b's of levels"):
        check_comparable(density, levels)
