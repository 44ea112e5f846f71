import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bench.run import main
from models import variant_names
from tests.workers import Worker

EPOCH_METRICS = [
    f"{split}/{part}"
    for split in ("train", "val")
    for part in ("recon", "kl", "neg_elbo", "objective")
]
TEST_METRICS = [
    "test/recon",
    "test/kl",
    "test/neg_elbo",
    "test/nll",
    "test/bound_gap",
    "test/bits_per_dim",
    "test/active_units",
]


def all_runs(uri: str):
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, (client.search_runs(experiments) if experiments else [])


def test_cli_run_is_tracked_in_full(tmp_path, tracking_uri):
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "model=cvae",
            "trainer.epochs=2",
            "eval.k=20",
            f"tracking_uri={tracking_uri}",
            "experiment=cli-test",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert out.returncode == 0, out.stderr
    assert list(work.iterdir()) == []  # no Hydra output folders, no stray store
    client, runs = all_runs(tracking_uri)
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert set(TEST_METRICS + ["test/nll_conditional"]) <= set(run.data.metrics)
    for name in EPOCH_METRICS:
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2]
    params = run.data.params
    assert params["model.name"] == "cvae" and params["trainer.epochs"] == "2"
    assert params["dataset.n_train"] == "1257" and params["eval.k"] == "20"
    tags = run.data.tags
    assert len(tags["dataset.sha256"]) == 64 and tags["device"] == "cpu"
    assert tags["version.torch"].startswith("2.14.1")
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]  # MLflow's standard
    assert tags["mlflow.source.name"].endswith("run.py")
    if (Path(__file__).parents[1] / ".git").exists():
        assert len(tags["mlflow.source.git.commit"]) == 40
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    links = [line for line in out.stdout.splitlines() if "#/experiments/" in line]
    assert f"mlflow ui --backend-store-uri {tracking_uri}" in out.stdout
    assert links == [
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"
        "?workflowType=machine_learning",
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
        "?workflowType=machine_learning",
    ]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {
        "config.yaml",
        "samples.png",
        "reconstructions.png",
        "class_samples.png",
        "test_per_example.csv",
        "model.safetensors",
    }


def test_a_run_on_data_of_known_density_logs_the_ladder(tmp_path, tracking_uri):
    args = ["data=mixture", f"data.cache={tmp_path / 'cache'}", "data.n_train=600"]
    args += ["data.n_test=240", "trainer.epochs=2", "eval.k=20", "eval.gap_examples=30"]
    args += [f"tracking_uri={tracking_uri}"]
    assert main(args) == 0
    client, (run,) = all_runs(tracking_uri)
    m = {k.removeprefix("test/"): v for k, v in run.data.metrics.items() if k.startswith("test/")}
    for name in ("nll", "neg_elbo", "data_entropy", "excess", "elbo_excess", "neg_elbo_optimal"):
        assert m[f"{name}_se"] > 0
    assert m["excess"] == pytest.approx(m["nll"] - m["data_entropy"], abs=1e-9)
    assert m["amortization_gap"] > 0 and m["gap_examples"] == 30
    assert m["amortization_gap"] + m["approximation_gap"] == pytest.approx(
        m["gap_subset_neg_elbo"] - m["gap_subset_nll"], abs=1e-9
    )
    history = client.get_metric_history(run.info.run_id, "test/nll_at_k")
    assert [h.step for h in history] == [1, 10, 20] and history[-1].value == m["nll"]
    assert run.data.tags["test.approximation_gap_nll_from"] in ("encoder", "optimal")
    folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "artifacts")))
    table = pd.read_csv(folder / "test_per_example.csv", index_col="example")
    assert len(table) == 240 and table["nll"].mean() == pytest.approx(m["nll"])
    assert table["neg_log_p_data"].mean() == pytest.approx(m["data_entropy"])
    assert table["neg_elbo_optimal"].notna().sum() == 30
    assert (folder / "data_mixture.npz").is_file()


def test_ae_records_what_does_not_apply_as_absent(tracking_uri, capsys):
    assert main(["model=ae", "trainer.epochs=1", f"tracking_uri={tracking_uri}"]) == 0
    _, (run,) = all_runs(tracking_uri)
    assert {"test/recon", "test/active_units"} <= set(run.data.metrics)
    for absent in (
        "test/kl",
        "test/neg_elbo",
        "test/nll",
        "test/bound_gap",
        "test/bits_per_dim",
        "test/amortization_gap",
        "test/nll_at_k",
        "train/kl",
        "val/neg_elbo",
    ):
        assert absent not in run.data.metrics


def test_tracking_uri_from_the_environment(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["trainer.epochs=1", "eval.k=5"]) == 0
    _, runs = all_runs(uri)
    assert len(runs) == 1


BAD_INPUT = [
    (["model=nosuch"], f"unknown model 'nosuch': choose one of {', '.join(variant_names())}"),
    (
        ["data=nosuch"],
        "unknown dataset 'nosuch': choose one of celeba, cifar10, digits, fashion-mnist,",
    ),
    (
        ["study=nosuch"],
        "unknown study 'nosuch': choose one of beta, hdim, likelihoods, rungs, smoke,",
    ),
    (["model.z_dim=0"], "model.z_dim must be an integer >= 1"),
    (["model.likelihood=gaussian", "model.output_variance=0"], "model.output_variance must be"),
    (["model.output_variance=-1"], "model.output_variance must be"),
    (["trainer.epochs=0"], "trainer.epochs must be an integer >= 1"),
    (["trainer.epochs=abc"], "trainer.epochs must be an integer"),
    (["data.binarize=none"], "needs binary data"),
    (["model=beta-vae", "model.beta=0"], "model.beta must be a number > 0"),
    (["model=iwae", "model.k_train=0"], "model.k_train must be an integer >= 1"),
    (["model=vamp", "model.components=0"], "model.components must be an integer >= 1"),
    (["model=iaf", "model.flow_length=-1"], "model.flow_length must be an integer >= 0"),
    (["model=hvae", "model.activation2=sine"], "model.activation2 must be one of"),
    (["model=savae", "model.svi_lr=-1"], "model.svi_lr must be a number >= 0"),
    (["trainer.precision=fp16"], "trainer.precision must be one of fp32, bf16, got 'fp16'"),
    (["eval.compile=maybe"], "eval.compile must be one of auto, true, false"),
    (["eval.ais.start=posterior"], "eval.ais.start must be one of prior, encoder"),
    (["eval.ais.steps=0"], "eval.ais.steps must be an integer >= 1, got 0"),
    (["eval.ais.examples=-1"], "eval.ais.examples must be an integer >= 0"),
    (["eval.ais.target_acceptance=1.5"], "eval.ais.target_acceptance must be in (0, 1)"),
    (["eval.exact_examples=many"], "eval.exact_examples must be an integer >= 0"),
    (["tracking_uri=http://127.0.0.1:9"], "tracking server http://127.0.0.1:9 is unreachable"),
    (["study=zdim", "study.n_trials=0"], "study.n_trials must be an integer >= 1, got 0"),
    (["study=smoke", "study.seeds=[]"], "study.seeds needs at least one seed"),
    (["net=nosuch"], "unknown network 'nosuch': choose one of conv, custom, mlp, resnet"),
    (["net=custom"], "net=custom needs net._target_=package.module.Class"),
    (["net=custom", "net._target_=nosuch.Net"], "net._target_=nosuch.Net cannot be imported"),
    (["net=conv", "net.channels=[8,0]"], "net.channels[] must be an integer >= 1, got 0"),
    (["net=conv", "+net.width=3"], "net=conv has no key 'width': its keys are channels"),
    (["net=mlp", "+net.width=3"], "net=mlp has no key 'width': it has none (the MLP's sizes"),
    (["net=conv", "model.activation=gated"], "net=conv's activation (model.activation) must be"),
    (["study=hdim", "net=resnet"], "sweeps model.h_dim, a size of the MLP: it applies to net=mlp"),
    (["study=zdim", "study.sampler=nosuch"], "study.sampler must be one of grid, tpe, random"),
    (
        ["model=cvae", "data=linear", "model.likelihood=gaussian"],
        "model=cvae conditions on labels and data=linear has none: choose one of cifar10, digits,",
    ),
]


@pytest.mark.parametrize("args,message", BAD_INPUT)
def test_bad_input_is_one_line_and_leaves_no_run(args, message, tracking_uri, capsys):
    uri_args = (
        [] if any(a.startswith("tracking_uri") for a in args) else [f"tracking_uri={tracking_uri}"]
    )
    assert main(args + uri_args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert all_runs(tracking_uri)[1] == []


def test_divergence_fails_the_run_with_its_reason(tracking_uri, capsys):
    assert main(["trainer.lr=1e6", "trainer.epochs=3", f"tracking_uri={tracking_uri}"]) == 2
    err = capsys.readouterr().err
    assert "diverged in epoch 1" in err and "Traceback" not in err
    _, (run,) = all_runs(tracking_uri)
    assert run.info.status == "FAILED"
    assert "non-finite loss" in run.data.tags["failure_reason"]


def test_help_prints_the_defaults(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "python -m bench.run" in out and "z_dim: 20" in out and "k: 1000" in out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_ends_the_run_killed_and_keeps_finished_epochs(tmp_path, tracking_uri, sig):
    proc = Worker(["trainer.epochs=100000", f"tracking_uri={tracking_uri}"], tmp_path)
    client = MlflowClient(tracking_uri)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until at least two epochs are logged
        time.sleep(0.5)
        runs = all_runs(tracking_uri)[1] if Path(tracking_uri[10:]).exists() else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "val/neg_elbo")) >= 2:
            break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)  # a forked `python -m bench.run`, as the CLI runs it
    assert proc.returncode != 0 and "Traceback" not in err
    (run,) = all_runs(tracking_uri)[1]
    assert run.info.status == "KILLED"
    assert len(client.get_metric_history(run.info.run_id, "val/neg_elbo")) >= 2


ENTRY_POINTS = [
    (["bench.resume"], 2, "error: usage: python -m bench.resume run=RUN_ID"),
    (["bench.compare", "a=RUN_ID"], 2, "error: which runs? python -m bench.compare a="),
    (["bench.study", "study=nosuch"], 2, "error: unknown study 'nosuch'"),
    (["bench.report", "study=smoke", "tracking_uri=sqlite:///none.db"], 2, "error: no study named"),
    (["bench.perf", "--help"], 0, "usage: python -m bench.perf "),
    (["bench.perf.trials", "--help"], 0, "usage: python -m bench.perf.trials "),
    (["bench.perf.soak", "--help"], 0, "usage: python -m bench.perf.soak "),
    (["bench.report.pruning", "--help"], 0, "usage: python -m bench.report.pruning "),
]


@pytest.fixture(scope="module")
def entry_points(tmp_path_factory):
    """Every entry point started at once, each in a fresh interpreter and folder of its own
    (most of their time is imports; started one by one, they took 35 s here)."""
    started = {}
    for args, _, _ in ENTRY_POINTS:
        folder = tmp_path_factory.mktemp("entry-point")
        command = [sys.executable, "-m", *args]
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        started[tuple(args)] = subprocess.Popen(command, cwd=folder, **pipes)
    yield started
    for proc in started.values():
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("args,code,says", ENTRY_POINTS)
def test_every_module_entry_point_runs(entry_points, args, code, says):
    proc = entry_points[tuple(args)]
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert (stdout + stderr).startswith(says)


def test_a_relative_sqlite_store_keeps_its_artifacts_beside_it(tmp_path):
    assert main(["trainer.epochs=1", "eval.k=5", "tracking_uri=sqlite:///relative.db"]) == 0
    _, (run,) = all_runs(f"sqlite:///{tmp_path / 'relative.db'}")
    assert run.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())


def test_each_split_is_an_mlflow_dataset_input_with_digest_source_and_context(tracking_uri):
    assert main(["trainer.epochs=1", "eval.k=5", f"tracking_uri={tracking_uri}"]) == 0
    _, (run,) = all_runs(tracking_uri)
    inputs = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
        for i in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "validation", "test"}
    sizes = {"training": 1257, "validation": 180, "test": 360}
    for context, dataset in inputs.items():
        assert dataset.name == "digits" and len(dataset.digest) == 16
        assert json.loads(dataset.source)["uri"].endswith("digits.csv.gz")
        profile = json.loads(dataset.profile)
        assert profile["examples"] == sizes[context] and profile["binarize"] == "dynamic"
        assert profile["raw_sha256"] == run.data.tags["dataset.sha256"]
    assert len({d.digest for d in inputs.values()}) == 3
