"""python -m bench.resume run=RUN_ID [tracking_uri=URI] [force=true]

Goes on with a run that stopped before it finished (interrupted, the machine gone) from the last
training checkpoint it logged (every trainer.checkpoint_minutes): same config, weights, optimizer,
schedule, early stopping and random streams, so it ends with the numbers an uninterrupted run
has. Its epochs after the checkpoint are logged again under the same steps; the run is reopened
and ends FINISHED, KILLED or FAILED as a new one does; `resumed_from_epoch` lists each start.
A RUNNING run whose process is not known to have ended here (another host, or a run from before
runs were tagged with their process) needs force=true.
"""

import sys

from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bench.cli import key_value_main, key_values
from bench.errors import BenchError
from bench.job import run_job
from bench.run import SHOWN
from bench.runtime.processes import gone, this_process
from bench.stored_run import read_checkpoint, stored_config
from bench.tracking import mlflow_runs

USAGE = "run=RUN_ID [tracking_uri=URI] [progress=true|false] [force=true]"


def resume(
    client: MlflowClient, run_id: str, progress: bool | None = None, force: bool = False
) -> dict[str, float]:
    """Trains the run `run_id` on from its checkpoint, then evaluates it; its test metrics.
    `force`: even a RUNNING run whose process is not known to have ended."""
    run = _run(client, run_id)
    if run.info.status == "FINISHED":
        raise BenchError(f"run {run_id} is FINISHED: there is nothing to resume")
    process = run.data.tags.get(mlflow_runs.PROCESS_TAG, "")
    if run.info.status == "RUNNING" and not gone(process) and not force:
        raise BenchError(
            f"run {run_id} is RUNNING in process {process or '(unknown)'}, which is not known to "
            "have ended here: stop it first, resume on its host, or say force=true"
        )
    uri = client.tracking_uri
    cfg = stored_config(run_id, uri)
    state = read_checkpoint(run_id, uri)
    state.setdefault("train_seconds", _seconds_until(client, run, state["epoch"]))
    started = run.data.tags.get("resumed_from_epoch")
    epochs = f"{started},{state['epoch']}" if started else str(state["epoch"])
    tags = {"resumed_from_epoch": epochs, mlflow_runs.PROCESS_TAG: this_process()}
    mlflow_runs.set_tags(client, run_id, tags)
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    with mlflow_runs.run_ending(client, run_id):
        return run_job(cfg, client, run_id, progress=progress, resume=state)


def _seconds_until(client: MlflowClient, run: Run, epoch: int) -> float:
    """For checkpoints that do not carry their training seconds (written before they did): from
    the run's start to the logging of `epoch`, setup included."""
    history = client.get_metric_history(run.info.run_id, "train/objective")
    logged = max(m.timestamp for m in history if m.step == epoch)
    return (logged - run.info.start_time) / 1000


def _run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise BenchError(f"no run {run_id!r} in the tracking store {client.tracking_uri}") from None


def main(argv: list[str] | None = None) -> int:
    return key_value_main(__doc__, argv, _main)


def _main(args: list[str]) -> None:
    options, rest = key_values(args, ("run", "tracking_uri", "progress", "force"))
    if "run" not in options or rest:
        raise BenchError(f"usage: python -m bench.resume {USAGE}")
    client = mlflow_runs.connect(options.get("tracking_uri"))
    shown = options.get("progress", "auto")
    progress = None if shown == "auto" else shown.lower() in ("true", "1")
    force = options.get("force", "false").lower() in ("true", "1")
    metrics = resume(client, options["run"], progress, force)
    print(f"run {options['run']} resumed and finished")
    for key in SHOWN:
        if f"test/{key}" in metrics:
            print(f"  test/{key:<18} {metrics[f'test/{key}']:10.3f}")


if __name__ == "__main__":
    sys.exit(main())
