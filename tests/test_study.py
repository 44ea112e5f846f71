import os
import signal
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from bench.config import load_config
from bench.report.markdown import learning_curves
from bench.report.markdown import main as report_main
from bench.report.runs import load_study_runs
from bench.report.table import run_table
from bench.run import main
from bench.score import main as score_main
from bench.study.space import build_pruner
from tests.conftest import running_with_a_run, wait_for_trials
from tests.workers import Worker, start


@pytest.fixture
def stores(tmp_path):
    return [
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"storage=sqlite:///{tmp_path / 'optuna.db'}",
    ]


def load(stores, name="smoke-digits"):
    return optuna.load_study(study_name=name, storage=stores[1].split("=", 1)[1])


def runs(stores):
    client = MlflowClient(stores[0].split("=", 1)[1])
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def states(study):
    return sorted(t.state.name for t in study.get_trials())


def test_smoke_study_end_to_end_and_resume(stores, capsys):
    assert main(["study=smoke", *stores]) == 0
    study = load(stores)
    assert states(study) == ["COMPLETE"] * 3
    assert sorted(t.params["model.z_dim"] for t in study.trials) == [2, 4, 8]
    client, (parent,), children = runs(stores)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_complete"] == 3
    assert parent.data.tags["best_run_id"] in {c.info.run_id for c in children}
    assert len(children) == 3
    (best,) = [c for c in children if c.info.run_id == parent.data.tags["best_run_id"]]
    for key in ("test/nll", "test/neg_elbo", "val_eval/nll"):  # the best's, under its own keys
        assert parent.data.metrics[key] == pytest.approx(best.data.metrics[key])
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in study.trials}
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["study"] == "smoke-digits"
        trial = by_run[child.info.run_id]
        assert child.data.tags["trial"] == str(trial.number)
        assert child.data.params["model.z_dim"] == str(trial.params["model.z_dim"])
        for metric in ("test/nll", "test/neg_elbo", "test/bound_gap", "val_eval/nll"):
            assert metric in child.data.metrics
        assert trial.value == pytest.approx(child.data.metrics["val_eval/nll"])
        for key in ("val/neg_elbo", "val/recon"):  # one key, one estimator: a value per epoch
            history = client.get_metric_history(child.info.run_id, key)
            assert [m.step for m in history] == [1, 2, 3], key
        for key in ("val_eval/neg_elbo", "val_eval/recon", "val_eval/nll"):
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == [3]
    for run in (parent, *children):  # MLflow's standard tags, as its fluent API sets them
        standard = {"mlflow.user", "mlflow.source.name", "mlflow.source.type"}
        assert standard | {"mlflow.source.git.commit"} <= set(run.data.tags)
    out = capsys.readouterr().out
    assert "study smoke-digits: 3 COMPLETE" in out and parent.info.run_id in out
    link = f"/#/experiments/{parent.info.experiment_id}/runs?workflowType=machine_learning"
    assert link in out
    assert f"optuna-dashboard {stores[1].split('=', 1)[1]}" in out

    assert main(["study=smoke", *stores]) == 0  # resumed: nothing to do, nothing duplicated
    assert states(load(stores)) == ["COMPLETE"] * 3
    _, parents, children = runs(stores)
    assert len(parents) == 1 and len(children) == 3


def test_a_changed_config_under_the_same_name_is_refused(stores, capsys):
    assert main(["study=smoke", "study.space.model.z_dim=[2]", *stores]) == 0
    assert main(["study=smoke", "study.space.model.z_dim=[2]", "trainer.epochs=4", *stores]) == 2
    err = capsys.readouterr().err
    assert "made with another config (trainer.epochs: 3 -> 4)" in err and err.count("\n") == 1
    renamed = ["study=smoke", "study.space.model.z_dim=[2]", "study.name=other", "trainer.epochs=4"]
    assert main(renamed + stores) == 0


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(stores, capsys):
    args = [
        "study=smoke",
        "study.space.model.z_dim=[4]",
        "+study.space.trainer.lr=[0.001,1000000.0]",
    ]
    assert main(args + stores) == 0
    study = load(stores)
    assert states(study) == ["COMPLETE", "FAIL"]
    (failed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed.params["trainer.lr"] == 1e6
    assert "diverged in epoch 1" in failed.user_attrs["fail_reason"]
    client, _, children = runs(stores)
    run = client.get_run(failed.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "non-finite loss" in run.data.tags["failure_reason"]
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED"]
    assert "FAIL (training diverged" in capsys.readouterr().out


def test_pruned_trials_are_visible_as_pruned(stores):
    # batch 1024 takes 2 steps an epoch on digits, batch 16 takes 79: after one epoch it is far
    # behind. sampler_seed=1 makes the grid run batch 16 first, so the pruner has a median.
    args = [
        "study=smoke",
        "study.space.model.z_dim=[4]",
        "study.sampler_seed=1",
        "+study.space.trainer.batch_size=[16,1024]",
        "study.pruner=median",  # a grid is not pruned unless asked
        "study.pruner_startup_trials=1",
        "study.pruner_warmup_epochs=0",
    ]
    assert main(args + stores) == 0
    study = load(stores)
    assert study.trials[0].params["trainer.batch_size"] == 16, "premise: seeded grid order"
    assert states(study) == ["COMPLETE", "PRUNED"]
    (pruned,) = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned.params["trainer.batch_size"] == 1024
    assert pruned.user_attrs["pruned"] == "pruned after epoch 1"
    run = runs(stores)[0].get_run(pruned.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert report_main(["study=smoke", *args[1:], stores[0]]) == 0
    text = Path("reports/smoke-digits/README.md").read_text()
    assert "Trials: 1 finished, 1 pruned." in text and "killed" not in text.lower()
    assert "| PRUNED | pruned after epoch 1 |" in text
    study_runs = load_study_runs(stores[0].split("=", 1)[1], "smoke-digits")
    curves = learning_curves(study_runs, run_table(study_runs), "z_dim")
    partial = curves[curves["status"] == "pruned"]
    assert list(partial["epoch"]) == [1] and len(curves[curves["status"] == "finished"]) == 3
    assert main(args + ["study.pruner=none", "study.name=unpruned"] + stores) == 0
    assert states(load(stores, "unpruned")) == ["COMPLETE", "COMPLETE"]


@pytest.mark.parametrize("study", ["zdim", "hdim", "variance", "variants", "rungs", "smoke"])
def test_grids_are_measured_unpruned_and_searches_pruned_after_the_warmup(study):
    spec = load_config([f"study={study}"]).study
    pruner = build_pruner(spec)
    if spec.sampler == "grid":
        assert isinstance(pruner, optuna.pruners.NopPruner)
    else:
        assert isinstance(pruner, optuna.pruners.MedianPruner)
        assert pruner._n_warmup_steps == spec.pruner_warmup_epochs > 0
    forced = load_config([f"study={study}", "study.pruner=median"]).study
    assert isinstance(build_pruner(forced), optuna.pruners.MedianPruner)


def test_a_killed_study_resumes_to_its_target_with_no_running_leftovers(tmp_path, stores):
    args = ["study=smoke", "trainer.epochs=40", *stores]
    proc = Worker(args, tmp_path)
    wait_for_trials(
        stores[1].split("=", 1)[1],
        lambda trials: (
            any(t.state == TrialState.COMPLETE for t in trials)
            and any(
                t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs for t in trials
            )
        ),
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = [t for t in load(stores).get_trials() if t.state == TrialState.RUNNING]
    assert len(killed) == 1
    report = ["study=smoke", "trainer.epochs=40", stores[0], f"report_dir={tmp_path / 'r'}"]
    assert report_main(report) == 0  # a report of what has finished so far
    text = (tmp_path / "r" / "smoke-digits" / "README.md").read_text()
    assert "1 trial(s) still running" in text and "| **best** |" in text

    done = Worker(args, tmp_path)
    assert done.wait(timeout=600) == 0, done.communicate()[1]
    study = load(stores)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["model.z_dim"] for t in complete) == [2, 4, 8]
    (failed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed.number == killed[0].number and "died" in failed.user_attrs["fail_reason"]
    retry = [t for t in complete if failed.number in t.system_attrs.get("retry_history", [])]
    assert len(retry) == 1 and retry[0].params == failed.params
    client, parents, children = runs(stores)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    assert client.get_run(failed.user_attrs["mlflow_run_id"]).info.status == "FAILED"


def test_a_retried_trial_goes_on_from_the_lost_trials_checkpoint_to_the_same_numbers(tmp_path):
    one_point = ["study=smoke", "study.space.model.z_dim=[2]", "eval.gap_examples=0"]
    args = [*one_point, "trainer.checkpoint_minutes=0"]  # a checkpoint after every epoch
    stores, never_stopped = (
        [
            f"tracking_uri=sqlite:///{tmp_path / n / 'mlflow.db'}",
            f"storage=sqlite:///{tmp_path / n / 'optuna.db'}",
        ]
        for n in ("lost", "whole")
    )
    for folder in ("lost", "whole"):
        (tmp_path / folder).mkdir()
    lost = start([*args, *stores], tmp_path, kill_at="train:checkpointed")  # dies at epoch 1's
    lost.join(timeout=300)
    assert lost.exitcode == -signal.SIGKILL
    for store in (stores, never_stopped):
        worker = Worker([*args, *store], tmp_path)
        assert worker.wait(timeout=600) == 0, worker.communicate()[1]

    trials = load(stores).trials
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    (retry,) = [t for t in trials if t.state == TrialState.COMPLETE]
    (whole,) = [t for t in load(never_stopped).trials if t.state == TrialState.COMPLETE]
    client = MlflowClient(stores[0].split("=", 1)[1])
    went_on = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert went_on.data.tags["resumed_from_run"] == failed.user_attrs["mlflow_run_id"]
    assert went_on.data.tags["resumed_from_epoch"] == "1" and went_on.info.status == "FINISHED"
    assert went_on.data.params["model.z_dim"] == "2"  # its setup logged as any trial's is
    curve = client.get_metric_history(went_on.info.run_id, "val/neg_elbo")
    assert sorted(m.step for m in curve) == [1, 2, 3]  # epoch 1 carried over
    for key in ("val_eval/nll", "test/nll", "test/neg_elbo", "epochs_run", "best_epoch"):
        assert retry.user_attrs[key] == whole.user_attrs[key], key
    assert retry.value == whole.value


def test_sigterm_fails_the_trial_kills_its_run_and_a_rerun_completes(tmp_path, stores):
    one_point = ["study.space.model.z_dim=[2]", "trainer.epochs=120"]  # mid-trial when signalled
    args = ["study=smoke", *one_point, *stores]
    proc = Worker(args, tmp_path)
    wait_for_trials(stores[1].split("=", 1)[1], running_with_a_run)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0 and time.monotonic() - started < 10
    (failed,) = [t for t in load(stores).get_trials() if t.state == TrialState.FAIL]
    assert failed.user_attrs["fail_reason"] == "interrupted"
    client, (parent,), _ = runs(stores)
    assert client.get_run(failed.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    assert parent.info.status == "KILLED"

    assert Worker(args, tmp_path).wait(timeout=600) == 0
    study = load(stores)
    assert [t.params["model.z_dim"] for t in study.trials if t.state == TrialState.COMPLETE] == [2]
    _, parents, children = runs(stores)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert "RUNNING" not in {c.info.status for c in children}


def two_workers(stores, *extra: str) -> list[str]:
    return ["study=smoke", "study.workers=2", *extra, *stores]


def two_running(trials) -> bool:
    return (
        sum(t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs for t in trials) == 2
    )


def test_workers_on_one_machine_share_a_study_exactly(tmp_path, stores):
    grid = [2, 3, 4, 5, 6, 8]
    grid_args = [f"study.space.model.z_dim=[{','.join(map(str, grid))}]", "study.pruner=none"]
    args = two_workers(stores, "trainer.epochs=30", *grid_args)
    worker = Worker(args, tmp_path)
    code, (stdout, stderr) = worker.wait(timeout=600), worker.communicate()
    assert code == 0, stderr
    assert "warning" not in stderr
    study = load(stores)
    assert states(study) == ["COMPLETE"] * len(grid)  # none more than the target
    assert sorted(t.params["model.z_dim"] for t in study.trials) == grid
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    assert stdout.count(": COMPLETE") == len(grid)  # both workers' lines reach the console
    _, (parent,), children = runs(stores)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_complete"] == 6
    assert sorted(c.info.status for c in children) == ["FINISHED"] * len(grid)


def test_sigterm_stops_every_local_worker_and_loses_nothing(tmp_path, stores):
    args = two_workers(stores, "trainer.epochs=400")
    proc = Worker(args, tmp_path)
    wait_for_trials(stores[1].split("=", 1)[1], two_running)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    study = load(stores)
    assert "RUNNING" not in states(study)
    failed = study.get_trials(states=(TrialState.FAIL,))
    interrupted = [t for t in failed if t.user_attrs["fail_reason"] == "interrupted"]
    assert len(interrupted) == 2 and len({t.user_attrs["worker"] for t in interrupted}) == 2
    _, _, children = runs(stores)
    assert "RUNNING" not in {c.info.status for c in children}
    helpers = subprocess.run(["pgrep", "-f", f"bench.study .*{tmp_path}"], capture_output=True)
    assert helpers.returncode == 1  # no helper of this study left (other tests' may run)


PREMOVES = {  # archive -> the folder its stores were made in (absolute artifact paths)
    "premove-study.tar.gz": "/tmp/vae-bench-premove",
    "premove2-study.tar.gz": "/tmp/vae-bench-premove2",
}


@pytest.mark.parametrize("archive", sorted(PREMOVES))
def test_a_study_made_before_a_layout_move_resumes_and_its_run_rescores(tmp_path, archive):
    """tests/data/ holds the stores of `python -m bench.run study=smoke study.n_trials=1`, run
    before each move of bench/: premove by commit a27de23 (flat bench/, each variant file with its
    own sizes, the final validation evaluation logged as val/*, pruner median, weights as
    model.pt), premove2 by commit 9524635 (bench/ flat but for study/, report/, perf/,
    estimators/, synthetic/; weights as model.safetensors)."""
    with tarfile.open(Path(__file__).parent / "data" / archive) as tar:
        tar.extractall(tmp_path, filter="data")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # as if made here
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            db.execute(
                f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                (PREMOVES[archive], str(tmp_path)),
            )
    stores = [
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"storage=sqlite:///{tmp_path / 'optuna.db'}",
    ]
    (old,) = load(stores).trials
    assert old.state == TrialState.COMPLETE
    assert ("val/nll" in old.user_attrs) == (archive == "premove-study.tar.gz")  # the old keys

    assert main(["study=smoke", *stores]) == 0  # same fingerprint: resumed, not refused
    study = load(stores)
    assert states(study) == ["COMPLETE"] * 3
    assert study.trials[0].value == old.value and study.trials[0].params == old.params
    assert sorted(t.params["model.z_dim"] for t in study.trials) == [2, 4, 8]
    client, (parent,), children = runs(stores)
    assert parent.info.run_id == study.user_attrs["mlflow_parent_run_id"]
    assert parent.info.status == "FINISHED" and len(children) == 3
    old_run = old.user_attrs["mlflow_run_id"]
    epochs = len(client.get_metric_history(old_run, "val/neg_elbo"))
    assert epochs == (4 if archive == "premove-study.tar.gz" else 3)  # its final eval was val/*
    report = (tmp_path / "reports" / "smoke-digits" / "README.md").read_text()
    assert report.count("| vae |") == 3  # the old trial is in the report beside the new ones
    assert score_main([f"run={old_run}", "eval.k=20", stores[0]]) == 0  # re-scored as it was
    rescored = client.get_run(old_run).data.metrics
    assert rescored["test_k20/nll"] <= rescored["test_k20/neg_elbo"]
