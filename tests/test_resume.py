"""A run stopped midway goes on from its last checkpoint with the numbers of one never stopped."""

import copy
import os
import signal

import pytest
import torch
from mlflow.tracking import MlflowClient

from bench import job, resume, run
from bench.data.load import load
from bench.job import build_model
from bench.runtime.processes import this_process
from bench.tracking import mlflow_runs
from bench.training.checkpoint import Checkpointing
from bench.training.loop import train
from tests.conftest import config

# every part of the state matters: warm-up, a stepped learning rate, early stopping's best
RECIPE = [
    "model.h_dim=32",
    "trainer.warmup_epochs=3",
    "trainer.lr_schedule=step",
    "trainer.lr_step_epochs=2",
    "trainer.patience=20",
]

STOPS_EARLY = ["model.h_dim=32", "trainer.epochs=30", "trainer.patience=2", "trainer.lr=0.03"]


def test_training_resumed_from_a_checkpoint_ends_as_if_never_stopped():
    cfg = config(*RECIPE, "trainer.epochs=7", "trainer.checkpoint_minutes=0")
    data = load(cfg.data)
    states = []
    whole = build_model(cfg, data, 0)
    keep = Checkpointing(lambda state: states.append(copy.deepcopy(state)), minutes=0)
    history = train(whole, data, cfg.trainer, checkpoint=keep)
    assert [(s["epoch"], s["trained"]) for s in states] == [
        *((epoch, False) for epoch in range(1, 8)),
        (7, True),  # training's end
    ]

    resumed = build_model(cfg, data, 0)
    rest = train(resumed, data, cfg.trainer, resume=states[2])  # from the end of epoch 3
    assert rest == history and rest.best_epoch == history.best_epoch
    for name, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_a_run_stopped_early_and_killed_in_its_evaluation_trains_no_more_on_resume():
    cfg = config(*STOPS_EARLY)
    cfg.trainer.checkpoint_minutes = 0
    data = load(cfg.data)
    states = []
    whole = build_model(cfg, data, 0)
    keep = Checkpointing(lambda state: states.append(copy.deepcopy(state)), minutes=0)
    history = train(whole, data, cfg.trainer, checkpoint=keep)
    final = states[-1]
    assert final["trained"] and final["epoch"] == len(history) < cfg.trainer.epochs

    resumed = build_model(cfg, data, 0)
    rest = train(resumed, data, cfg.trainer, resume=final)
    assert rest == history and rest.best_epoch == history.best_epoch
    for name, value in whole.state_dict().items():  # the best epoch's weights, as evaluated
        assert torch.equal(resumed.state_dict()[name], value), name
    untold = train(build_model(cfg, data, 0), data, cfg.trainer, resume=final | {"trained": False})
    assert len(untold) > len(history)  # without the mark, early stopping's epoch is trained on


def test_bench_resume_of_a_run_killed_in_its_evaluation_only_evaluates(
    tracking_uri, monkeypatch, handlers_restored
):
    args = [*STOPS_EARLY, "trainer.checkpoint_minutes=0", "eval.k=20", "eval.gap_examples=0"]
    args += [f"tracking_uri={tracking_uri}"]

    def signalled_once_trained(name: str) -> None:
        if name == "job:trained":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(job, "kill_point", signalled_once_trained)
    assert run.main(args) == 130
    monkeypatch.undo()
    client = MlflowClient(tracking_uri)
    (stopped,) = _runs(client)
    run_id = stopped.info.run_id
    assert resume.main([f"run={run_id}", f"tracking_uri={tracking_uri}"]) == 0
    assert run.main(args) == 0
    resumed, whole = _runs(client)
    epochs = int(whole.data.metrics["epochs_run"])
    assert epochs < 30  # stopped early: its last periodic checkpoint is of the epoch before
    assert resumed.data.tags["resumed_from_epoch"] == str(epochs)
    steps = [m.step for m in client.get_metric_history(run_id, "train/objective")]
    assert steps == list(range(1, epochs + 1))  # no epoch trained again
    for key in ("test/neg_elbo", "test/nll", "epochs_run", "best_epoch"):
        assert resumed.data.metrics[key] == whole.data.metrics[key], key


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_bench_resume_finishes_an_interrupted_run_with_the_numbers_of_an_uninterrupted_one(
    net, tracking_uri, monkeypatch, handlers_restored, capsys
):
    args = [*RECIPE, "trainer.epochs=12", "trainer.checkpoint_minutes=0", "eval.k=20", f"net={net}"]
    args += ["eval.gap_examples=0", f"tracking_uri={tracking_uri}"]
    log_metrics = mlflow_runs.log_metrics

    def signalled_in_epoch_5(client, run_id, metrics, step=0):
        if step == 5 and "train/objective" in metrics:
            os.kill(os.getpid(), signal.SIGTERM)  # lands inside the epoch's tracking writes
        log_metrics(client, run_id, metrics, step)

    monkeypatch.setattr(mlflow_runs, "log_metrics", signalled_in_epoch_5)
    assert run.main(args) == 130
    monkeypatch.setattr(mlflow_runs, "log_metrics", log_metrics)
    client = MlflowClient(tracking_uri)
    (stopped,) = _runs(client)
    run_id = stopped.info.run_id
    hint = f"go on from its checkpoint: python -m bench.resume run={run_id}"
    assert hint in capsys.readouterr().err
    assert stopped.info.status == "KILLED"
    assert len(client.get_metric_history(run_id, "val/neg_elbo")) == 5  # epoch 5 logged in full

    assert resume.main([f"run={run_id}", f"tracking_uri={tracking_uri}"]) == 0
    assert run.main(args) == 0  # the same run, never stopped
    resumed, whole = _runs(client)
    assert resumed.info.run_id == run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from_epoch"] == "4"  # epoch 5's checkpoint never written
    for key in ("test/neg_elbo", "test/nll", "epochs_run", "best_epoch"):
        assert resumed.data.metrics[key] == whole.data.metrics[key], key
    assert resumed.data.metrics["train_seconds"] > 0


def test_a_finished_run_or_an_unknown_one_is_refused_in_one_line(tracking_uri, capsys):
    args = ["trainer.epochs=1", "eval.k=5", "eval.gap_examples=0", f"tracking_uri={tracking_uri}"]
    assert run.main(args) == 0
    (finished,) = _runs(MlflowClient(tracking_uri))
    for run_id in (finished.info.run_id, "nosuchrun"):
        assert resume.main([f"run={run_id}", f"tracking_uri={tracking_uri}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: run {finished.info.run_id} is FINISHED: there is nothing to resume"
    assert err[1].startswith("error: no run 'nosuchrun'")


@pytest.fixture
def handlers_restored():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def _runs(client: MlflowClient):
    experiment = client.get_experiment_by_name("vae-bench").experiment_id
    return client.search_runs([experiment], order_by=["attributes.start_time ASC"])


def test_a_run_whose_process_still_lives_is_not_resumed_beside_it(tracking_uri, capsys):
    client = mlflow_runs.connect(tracking_uri)
    experiment = mlflow_runs.experiment_id(client, "vae-bench")
    run_id = client.create_run(experiment, tags={"process": this_process()}).info.run_id
    assert resume.main([f"run={run_id}", f"tracking_uri={tracking_uri}"]) == 2
    assert f"run {run_id} is RUNNING in process {this_process()}" in capsys.readouterr().err
    assert client.get_run(run_id).info.status == "RUNNING"  # left as it was


def test_a_checkpoint_without_its_seconds_counts_them_from_the_runs_log(tracking_uri):
    client = mlflow_runs.connect(tracking_uri)
    run = client.create_run(mlflow_runs.experiment_id(client, "vae-bench"))
    start = run.info.start_time
    for epoch in (1, 2, 3):
        client.log_metric(run.info.run_id, "train/objective", 1.0, start + 1500 * epoch, epoch)
    assert resume._seconds_until(client, client.get_run(run.info.run_id), 2) == 3.0
