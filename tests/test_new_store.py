"""Many processes opening one SQLite tracking store that does not exist yet, at the same moment:
one creates and migrates it, the others wait for it, and every one of them logs its run. An
Optuna storage opened while another process makes its tables."""

from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage
from optuna.storages._rdb import models

from bench.study.storage import open_storage
from bench.tracking import mlflow_runs
from tests import workers

PROCESSES = 8


def _open_and_log(uri: str, go, index: int) -> None:
    go.wait()
    client = mlflow_runs.connect(uri)
    experiment = mlflow_runs.experiment_id(client, "vae-bench")
    with mlflow_runs.tracked_run(client, experiment, f"run-{index}") as run_id:
        mlflow_runs.log_params(client, run_id, {"index": str(index)})


def test_eight_processes_create_one_new_store_together(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    (tmp_path / "new").mkdir()
    go = workers.CONTEXT.Event()
    procs = [
        workers.CONTEXT.Process(target=_open_and_log, args=(uri, go, i)) for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    go.set()
    codes = [workers.finish(p, timeout=120) for p in procs]
    assert codes == [0] * PROCESSES
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.params["index"] for r in runs) == [str(i) for i in range(PROCESSES)]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_an_optuna_storage_opened_as_another_process_makes_its_tables_opens(tmp_path, monkeypatch):
    """The race, made to happen: the other process makes the tables after this one checked they
    were missing, so this one's CREATE TABLE fails on the real database ("already exists")."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    make_tables, raced = models.BaseModel.metadata.create_all, []

    def racing(engine, **kwargs):
        if raced:
            return make_tables(engine, **kwargs)
        raced.append(True)
        RDBStorage(url).engine.dispose()  # the other process wins
        return make_tables(engine, checkfirst=False)  # this one had already looked

    monkeypatch.setattr(models.BaseModel.metadata, "create_all", racing)
    storage = open_storage(url, 1, 2, lambda study, trial: None)
    assert raced == [True]
    assert optuna.create_study(study_name="after-the-race", storage=storage).trials == []
