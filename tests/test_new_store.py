"""Many processes opening one SQLite tracking store that does not exist yet, at the same moment:
one creates and migrates it, the others wait for it, and every one of them logs its run."""

from pathlib import Path

from mlflow.tracking import MlflowClient

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
