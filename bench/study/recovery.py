"""Trials cut short: FAIL with their reason, MLflow runs ended, parameters queued again.

A worker may die at any moment: while claiming a trial (under the study lock), while running it,
while recording its end, or while recovering another worker's trial. Whatever it left, the
next worker to take the study lock (or a rerun) finds and repairs it:

- a RUNNING trial without a `worker` tag: its claimer died inside the claim, which tags the
  trial last (after its parameters and first heartbeat), and which nobody else is inside now;
- a RUNNING trial whose worker process is gone from this host, or that stopped beating for the
  grace period (Optuna's stale-trial check, for workers on other hosts);
- a FAIL trial that Optuna's stale check failed but whose requeue never happened;
- MLflow runs left RUNNING by any of these (found by their `study` and `trial` tags, so a run
  whose id never reached its trial is found too).

Requeueing is idempotent (a trial already in a retry's history is not queued again), and comes
before the FAIL, so dying between the two leaves a RUNNING trial that is recovered again.
"""

import optuna
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from bench.runtime.faults import kill_point
from bench.runtime.processes import gone
from bench.signals import deferred
from bench.study.storage import heartbeat_warnings_off
from bench.tracking.mlflow_runs import tag_filter
from bench.tracking.redaction import redact

WORKER_TAG = "worker"  # the trial's user attribute naming its worker (host:pid); set last
RUN_END = {  # the MLflow status a run gets when its trial ended this way and the run did not
    TrialState.COMPLETE: RunStatus.FINISHED,
    TrialState.PRUNED: RunStatus.KILLED,
    TrialState.FAIL: RunStatus.FAILED,
}


class LostTrial:
    """Optuna's stale-trial callback: the trial's worker stopped beating. End its MLflow run
    FAILED with the reason (the FAIL trial itself is frozen), then queue its parameters again."""

    def __init__(self, client: MlflowClient):
        self.client = client

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        reason = f"worker {trial.user_attrs.get(WORKER_TAG, '?')} lost: no heartbeat"
        kill_point("recovery:stale-failed")
        end_run(self.client, trial.user_attrs.get("mlflow_run_id"), reason)
        requeue(study, trial)


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """A WAITING copy of the trial (its parameters, grid point and retry history, none of its
    run's attributes), unless one was queued already."""
    trials = study.get_trials(deepcopy=False)
    if any(trial.number in t.system_attrs.get("retry_history", []) for t in trials):
        return
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    system_attrs = trial.system_attrs | {"failed_trial": history[0], "retry_history": history}
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs=system_attrs,
        )
    )


def fail_trial(
    study: optuna.Study, trial: optuna.Trial | FrozenTrial, reason: str, retry: bool = False
) -> None:
    """FAIL with its reason; with `retry`, its parameters are queued to run again first."""
    handle = trial if isinstance(trial, optuna.Trial) else optuna.Trial(study, trial._trial_id)
    with deferred():
        handle.set_user_attr("fail_reason", redact(reason))
        if retry:
            requeue(study, study._storage.get_trial(trial._trial_id))
            kill_point("recovery:requeued")
        study.tell(trial.number, state=TrialState.FAIL)


def recover(study: optuna.Study, client: MlflowClient) -> None:
    """Fail and requeue the trials whose workers died, whenever they died. Call it holding the
    study lock: a trial without a worker tag is then one whose claimer is gone."""
    with heartbeat_warnings_off():
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    requeued = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            reason = _death(trial)
            if reason is not None:
                fail_trial(study, trial, reason, retry=True)
                end_run(client, trial.user_attrs.get("mlflow_run_id"), reason)
        elif (
            trial.state == TrialState.FAIL
            and "fail_reason" not in trial.user_attrs
            and trial.number not in requeued
        ):
            requeue(study, trial)  # Optuna's stale check failed it; its callback never ran


def _death(trial: FrozenTrial) -> str | None:
    """Why a RUNNING trial's worker is known dead, or None while it may be alive."""
    worker = trial.user_attrs.get(WORKER_TAG)
    if worker is None:
        return "its worker died while claiming it"
    if gone(str(worker)):
        return f"worker {worker} died"
    return None


def close_orphan_runs(study: optuna.Study, client: MlflowClient, experiment: str) -> None:
    """MLflow runs of this study left RUNNING by a trial that has ended (its worker died before
    ending the run, or tracking was down then): ended as their trial did."""
    trials = {str(t.number): t for t in study.get_trials(deepcopy=False)}
    running = tag_filter({"study": study.study_name}) + " AND attributes.status = 'RUNNING'"
    try:
        runs = client.search_runs([experiment], running, max_results=10_000)
    except MlflowException:
        return
    for run in runs:
        trial = trials.get(run.data.tags.get("trial", ""))
        if trial is None or trial.state not in RUN_END:
            continue  # the parent run, or a trial still running
        reason = trial.user_attrs.get("fail_reason", "its worker died before ending the run")
        _end(client, run.info.run_id, RUN_END[trial.state], reason)


def end_run(client: MlflowClient, run_id: str | None, reason: str) -> None:
    """Mark a run left RUNNING by a dead process FAILED, with the reason."""
    if not run_id:
        return
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            _end(client, run_id, RunStatus.FAILED, reason)
    except MlflowException:
        pass  # the run is in another tracking store


def _end(client: MlflowClient, run_id: str, status: int, reason: str) -> None:
    if status != RunStatus.FINISHED:
        client.set_tag(run_id, "failure_reason", redact(reason))
    client.set_terminated(run_id, RunStatus.to_string(status))
