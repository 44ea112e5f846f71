"""Many workers on one study over real PostgreSQL and a real MLflow server, and their faults."""

import os
import re
import shutil
import signal
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from bench.run import main
from bench.study.space import AskTellGridSampler
from bench.study.storage import open_storage
from tests.conftest import running_with_a_run, wait_for_trials
from tests.servers import PASSWORD, fresh_database, mlflow_server, tcp_proxy
from tests.workers import Worker

GRID = [2, 3, 4, 5, 6, 8]
FAST = ["study.heartbeat_seconds=1", "study.grace_seconds=4", "study.pruner=none"]


@pytest.fixture
def pg(cluster, request):
    """A database of its own for each test, in the module's PostgreSQL cluster."""
    return fresh_database(cluster, request.node.name.lower()[:60])


@pytest.fixture(scope="module")
def server(tmp_path_factory, empty_mlflow_store):
    """One MLflow server for the tests that do not stop it; each logs to an experiment of its
    own (`experiment_of`)."""
    tmp = tmp_path_factory.mktemp("mlflow-server")
    shutil.copyfile(empty_mlflow_store, tmp / "server.db")
    with mlflow_server(f"sqlite:///{tmp / 'server.db'}", tmp / "artifacts") as uri:
        yield uri


def experiment_of(request) -> str:
    return f"experiment={request.node.name}"


def worker(tmp_path, storage, tracking, *extra, env=None) -> Worker:
    """`python -m bench.run study=smoke ...`, forked from the harness already imported."""
    args = ["study=smoke", f"storage={storage}", f"tracking_uri={tracking}", *FAST, *extra]
    return Worker(args, tmp_path, env)


def mlflow_runs(uri, experiment=None):
    """The study's parent and child runs (in `experiment`, an `experiment=NAME` override)."""
    client = MlflowClient(uri)
    found = client.search_experiments()
    if experiment is not None:
        found = [e for e in found if e.name == experiment.split("=", 1)[1]]
    runs = client.search_runs([e.experiment_id for e in found])
    parents = [r for r in runs if r.data.tags.get("study_parent") == "true"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def complete_z(study):
    return sorted(t.params["model.z_dim"] for t in study.trials if t.state == TrialState.COMPLETE)


def test_three_workers_share_one_grid_study_exactly(tmp_path, pg, server, request):
    grid = f"study.space.model.z_dim=[{','.join(map(str, GRID))}]"
    experiment = experiment_of(request)
    procs = [worker(tmp_path, pg, server, grid, "trainer.epochs=10", experiment) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    log = "\n".join(out + err[-1500:] for out, err in outs)
    assert [p.returncode for p in procs] == [0, 0, 0], log
    study = optuna.load_study(study_name="smoke-digits", storage=pg)
    assert len(study.trials) == len(GRID), log  # none more than the target
    assert complete_z(study) == GRID, log  # every grid point once, no duplicates
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) >= 2, log  # the trials really were shared
    writers = [out for out, _ in outs if "report: reports/smoke-digits/README.md" in out]
    assert 1 <= len(writers) < 3, log  # the last trial's worker (two, if their tells raced)
    assert "here: python -m bench.report study=smoke" in "".join(
        o for o, _ in outs if o not in writers
    )
    _, (parent,), children = mlflow_runs(server, experiment)
    assert parent.info.status == "FINISHED" and len(children) == len(GRID)
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}


def test_a_killed_worker_loses_nothing(tmp_path, pg, server, request):
    grid = ["study.space.model.z_dim=[2,4,6,8]", "trainer.epochs=40", experiment_of(request)]
    first, second = worker(tmp_path, pg, server, *grid), worker(tmp_path, pg, server, *grid)
    pids = {first.pid, second.pid}

    def claimed_by_a_worker(trials):
        return [
            t
            for t in trials
            if t.state == TrialState.RUNNING
            and "mlflow_run_id" in t.user_attrs
            and int(t.user_attrs["worker"].rsplit(":", 1)[1]) in pids
        ]

    killed = claimed_by_a_worker(wait_for_trials(pg, claimed_by_a_worker))[0]
    pid = int(killed.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    survivor = second if pid == first.pid else first
    (first if pid == first.pid else second).wait()
    out, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="smoke-digits", storage=pg)
    assert complete_z(study) == [2, 4, 6, 8]
    (failed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed.number == killed.number
    retries = [t for t in study.trials if killed.number in t.system_attrs.get("retry_history", [])]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
    assert retries[0].params == killed.params
    client, (parent,), children = mlflow_runs(server, experiment_of(request))
    lost = client.get_run(killed.user_attrs["mlflow_run_id"])
    # both workers share this host: the survivor sees the dead pid, or its missing heartbeat,
    # whichever it checks first
    assert lost.info.status == "FAILED"
    assert re.fullmatch(
        rf"worker .+:{pid} (died|lost: no heartbeat)", lost.data.tags["failure_reason"]
    )
    assert sorted(c.info.status for c in children) == ["FAILED"] + ["FINISHED"] * 4
    assert parent.info.status == "FINISHED"


def test_sigterm_on_postgres_fails_the_trial_and_a_rerun_completes(tmp_path, pg):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    one_point = ["trainer.epochs=120", "study.space.model.z_dim=[2]"]  # mid-trial when signalled
    proc = worker(tmp_path, pg, tracking, *one_point)
    wait_for_trials(pg, running_with_a_run)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    study = optuna.load_study(study_name="smoke-digits", storage=pg)
    (failed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed.user_attrs["fail_reason"] == "interrupted"
    client = MlflowClient(tracking)
    assert client.get_run(failed.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    rerun = worker(tmp_path, pg, tracking, *one_point)
    assert rerun.wait(timeout=600) == 0
    assert complete_z(optuna.load_study(study_name="smoke-digits", storage=pg)) == [2]


def test_bad_storage_is_one_line_without_the_password(tmp_path, pg, capsys):
    tracking = f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"
    wrong = pg.replace(PASSWORD, "wrong-pw")
    closed = "postgresql://bench:hunter2@127.0.0.1:9/postgres"
    for url in (wrong, closed):
        assert main(["study=smoke", f"storage={url}", tracking]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(
        line.startswith("error: cannot open Optuna storage") for line in err
    )
    assert "password authentication failed" in err[0] and "***" in err[0]
    assert PASSWORD not in err[0] and "wrong-pw" not in err[0] and "hunter2" not in err[1]


def test_unreachable_tracking_server_stops_a_study_before_training(tmp_path, pg, capsys):
    assert main(["study=smoke", f"storage={pg}", "tracking_uri=http://127.0.0.1:9"]) == 2
    assert "tracking server http://127.0.0.1:9 is unreachable" in capsys.readouterr().err
    with pytest.raises(KeyError):
        optuna.load_study(study_name="smoke-digits", storage=pg)


def test_tracking_server_lost_mid_trial_loses_no_finished_trial(tmp_path, pg, server, request):
    """The worker reaches the server through a proxy; cutting the proxy is, to the worker, the
    server going down (connections reset, new ones refused); a new proxy is the server back."""
    experiment = experiment_of(request)
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    with tcp_proxy(server) as uri:
        proc = worker(tmp_path, pg, uri, "trainer.epochs=40", experiment, env=env)
        wait_for_trials(
            pg,
            lambda trials: (
                any(t.state == TrialState.COMPLETE for t in trials)
                and any(
                    t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
                    for t in trials
                )
            ),
        )
    # the server is gone now, mid-trial
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and err.strip().splitlines()[-1].startswith(
        "error: tracking server"
    )
    study = optuna.load_study(study_name="smoke-digits", storage=pg)
    (failed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert "MlflowException" in failed.user_attrs["fail_reason"]
    kept = complete_z(study)
    assert len(kept) >= 1
    with tcp_proxy(server) as uri:  # back, at another address
        rerun = worker(tmp_path, pg, uri, "trainer.epochs=40", experiment, env=env)
        assert rerun.wait(timeout=600) == 0, rerun.communicate()[1][-2000:]
        study = optuna.load_study(study_name="smoke-digits", storage=pg)
        assert complete_z(study) == [2, 4, 8] and set(kept) <= {2, 4, 8}
        assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 3
        _, (parent,), children = mlflow_runs(uri, experiment)
        assert parent.info.status == "FINISHED"
        assert sum(c.info.status == "FINISHED" for c in children) == 3
        assert "RUNNING" not in {c.info.status for c in children}


def test_a_silent_trial_from_another_host_is_failed_by_heartbeat_and_rerun(tmp_path, pg):
    """A worker elsewhere claimed a grid point, beat once, then went silent (machine lost)."""
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "study=smoke",
        f"storage={pg}",
        f"tracking_uri={tracking}",
        *FAST,
        "study.space.model.z_dim=[2,4]",
    ]
    assert main([*args, "study.n_trials=1"]) == 0  # one of the two grid points done
    storage = open_storage(pg, 1, 4, lambda study, trial: None)
    grid = AskTellGridSampler({"model.z_dim": [2, 4], "trainer.seed": [0]}, seed=0)
    study = optuna.load_study(study_name="smoke-digits", storage=storage, sampler=grid)
    client = MlflowClient(tracking)
    experiment = client.search_experiments()[0].experiment_id
    lost_run = client.create_run(experiment, run_name="trial-elsewhere").info.run_id
    trial = study.ask()
    params = {k: trial.suggest_categorical(k, v) for k, v in grid._search_space.items()}
    trial.set_user_attr("worker", "another-host:4242")
    trial.set_user_attr("mlflow_run_id", lost_run)
    storage.record_heartbeat(trial._trial_id)
    time.sleep(5)  # past the 4 s grace period

    assert main(args) == 0  # waits on nothing alive: the heartbeat check fails it, then reruns it
    trials = optuna.load_study(study_name="smoke-digits", storage=pg).trials
    assert [t.state for t in trials if t.number == trial.number] == [TrialState.FAIL]
    retry = [t for t in trials if trial.number in t.system_attrs.get("retry_history", [])]
    assert [t.state for t in retry] == [TrialState.COMPLETE] and retry[0].params == params
    assert complete_z(optuna.load_study(study_name="smoke-digits", storage=pg)) == [2, 4]
    run = client.get_run(lost_run)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "worker another-host:4242 lost: no heartbeat"
