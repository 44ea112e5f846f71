"""Trials cut short: FAIL with their reason, MLflow runs ended, parameters queued again.

A trial's worker may be interrupted (SIGINT/SIGTERM), die on this host (its pid is gone), or go
silent elsewhere (no heartbeat for the grace period); a run may be left RUNNING because the
tracking server was down when its trial failed.
"""

import optuna
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from bench.processes import gone
from bench.signals import deferred
from bench.study.storage import RETRY


class LostTrial:
    """Optuna's stale-trial callback: the trial's worker stopped beating. End its MLflow run
    FAILED with the reason (the FAIL trial itself is frozen), then queue its parameters again."""

    def __init__(self, client: MlflowClient):
        self.client = client

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        reason = f"worker {trial.user_attrs.get('worker', '?')} lost: no heartbeat"
        end_run(self.client, trial.user_attrs.get("mlflow_run_id"), reason)
        RETRY(study, trial)


def fail_trial(
    study: optuna.Study, trial: optuna.Trial | FrozenTrial, reason: str, retry: bool = False
) -> None:
    """FAIL with its reason; with `retry`, its parameters are queued to run again."""
    handle = trial if isinstance(trial, optuna.Trial) else optuna.Trial(study, trial._trial_id)
    with deferred():
        handle.set_user_attr("fail_reason", reason)
        study.tell(trial.number, state=TrialState.FAIL)
        if retry:
            (frozen,) = [t for t in study.get_trials(deepcopy=False) if t.number == trial.number]
            RETRY(study, frozen)


def fail_dead_local_trials(study: optuna.Study, client: MlflowClient) -> None:
    """RUNNING trials of a process on this host that no longer exists: FAIL, rerun, run FAILED."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(trial.user_attrs.get("worker", ""))
        if not gone(worker):
            continue
        fail_trial(study, trial, f"worker {worker} died", retry=True)
        end_run(client, trial.user_attrs.get("mlflow_run_id"), f"worker {worker} died")


def close_orphan_runs(study: optuna.Study, client: MlflowClient) -> None:
    """FAIL trials whose MLflow run could not be ended then (tracking was down): end it now."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        reason = trial.user_attrs.get("fail_reason", "trial failed")
        end_run(client, trial.user_attrs.get("mlflow_run_id"), reason)


def end_run(client: MlflowClient, run_id: str | None, reason: str) -> None:
    """Mark a run left RUNNING by a dead process FAILED, with the reason."""
    if not run_id:
        return
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, "failure_reason", reason)
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
    except MlflowException:
        pass  # the run is in another tracking store
