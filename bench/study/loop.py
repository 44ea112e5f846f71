"""Optuna studies over the one-run job: a parent MLflow run per study, a child per trial.

Rerunning the same command resumes, and any number of workers may run it at once against one
storage: finished trials are kept and the study goes on to exactly its target. A trial is
finished when it is COMPLETE, PRUNED, or FAIL for a reason of its own (diverged, bad config).
A trial cut short (Ctrl-C, SIGTERM, a worker gone: dead pid on this host, or no heartbeat) is
FAIL too, its MLflow run ends KILLED or FAILED, and its parameters are queued again: the retry
goes on from the furthest training checkpoint its lost runs logged (bench.study.carried).
"""

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from tqdm import tqdm

from bench.config import load_config
from bench.errors import BenchError, Pruned
from bench.job import run_job
from bench.runtime.faults import kill_point
from bench.runtime.processes import this_process
from bench.signals import deferred, raise_if_interrupted
from bench.study.carried import Carried, carried_checkpoint
from bench.study.definition import open_study, storage_url, target
from bench.study.local_workers import join_helpers, start_helpers
from bench.study.parent_run import finish_parent, parent_run
from bench.study.recovery import WORKER_TAG, LostTrial, close_orphan_runs, fail_trial, recover
from bench.study.space import Space, as_overrides, override_key, search_space, suggest
from bench.study.storage import heartbeat, heartbeat_warnings_off, open_storage, study_lock
from bench.tracking import mlflow_runs
from models import LIKELIHOODS, variant

NEEDS_LIKELIHOOD = ("nll", "neg_elbo")
IDLE_POLL_SECONDS = 1.0  # a worker with nothing to claim checks this often for others' trials


@dataclass
class StudyResult:
    study: optuna.Study
    storage: str
    parent_run_id: str
    target: int
    experiment_id: str
    ended_here: bool  # this worker's trial finished the study last, or it ran none


@dataclass
class Worker:
    """What a worker needs to run trials of one study."""

    study: optuna.Study
    storage: RDBStorage
    url: str
    client: MlflowClient
    experiment: str
    parent: str
    space: Space
    base: list[str]
    heartbeat_seconds: int


def run_study(cfg: DictConfig, overrides: list[str], progress: bool | None = None) -> StudyResult:
    space = search_space(cfg.study)
    wanted = target(cfg.study, space)
    client = mlflow_runs.connect(cfg.tracking_uri)
    url = storage_url(cfg.storage)
    spec = cfg.study
    with study_lock(url, spec.name):  # one creator of tables, study and parent run
        storage = open_storage(url, spec.heartbeat_seconds, spec.grace_seconds, LostTrial(client))
        study = open_study(cfg, space, storage, url)
        kill_point("study:opened")
        parent = parent_run(client, study, cfg)
        experiment = client.get_run(parent).info.experiment_id
        recover(study, client)
        close_orphan_runs(study, client, experiment)
    base = [o for o in overrides if override_key(o) not in space]
    worker = Worker(
        study, storage, url, client, experiment, parent, space, base, spec.heartbeat_seconds
    )
    bar = tqdm(
        total=wanted,
        initial=min(finished(study), wanted),
        desc=study.study_name,
        unit="trial",
        disable=None if progress is None else not progress,
    )
    helpers = start_helpers(spec.workers, overrides)
    try:
        ended_here = _work(worker, wanted, bar)
    except BaseException as e:
        join_helpers(helpers, interrupted=True)
        if isinstance(e, KeyboardInterrupt):
            client.set_terminated(parent, RunStatus.to_string(RunStatus.KILLED))
        raise
    finally:
        bar.close()
    for code in join_helpers(helpers, interrupted=False):
        print(f"warning: a helper worker exited with code {code}", file=sys.stderr)
    with study_lock(url, spec.name):  # finishing workers would race on the same tags
        close_orphan_runs(study, client, experiment)
        finish_parent(client, parent, study)
    return StudyResult(study, url, parent, wanted, experiment, ended_here)


def finished(study: optuna.Study) -> int:
    """COMPLETE, PRUNED, and FAIL trials whose parameters were not queued again."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.number not in retried)
        for t in trials
    )


def _work(worker: Worker, wanted: int, bar: tqdm) -> bool:
    """Run trials until the study has `wanted` finished ones, waiting on other workers' trials;
    whether this worker ended the study (its trial was the last to finish, or it ran none)."""
    ran_any = ended = False
    while True:
        raise_if_interrupted()
        mlflow_runs.check_reachable(worker.client.tracking_uri)
        claimed = _claim(worker, wanted)
        if claimed is not None:
            bar.write(_run_trial(worker, *claimed))
            sys.stdout.flush()
        done = finished(worker.study)
        bar.update(min(done, wanted) - bar.n)
        if claimed is not None:
            ran_any, ended = True, done >= wanted
        elif done >= wanted:
            return ended or not ran_any
        else:
            time.sleep(min(worker.heartbeat_seconds, IDLE_POLL_SECONDS))


def _claim(worker: Worker, wanted: int) -> tuple[optuna.Trial, dict[str, Any]] | None:
    """A new trial, with its parameters, when finished and running ones leave room for it.

    One step under the study lock: recover dead workers' trials, count, ask, suggest, record a
    first heartbeat, and tag the trial with this worker last. Whoever takes the lock next knows
    a RUNNING trial without the tag lost its claimer, and one with it has params and a heartbeat
    (so the dead-process and stale-heartbeat checks cover it)."""
    study = worker.study
    with study_lock(worker.url, study.study_name), heartbeat_warnings_off():
        recover(study, worker.client)
        trials = study.get_trials(deepcopy=False)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if finished(study) + running >= wanted:
            return None
        trial = study.ask()
        kill_point("claim:asked")
        params = suggest(trial, worker.space)
        kill_point("claim:suggested")
        worker.storage.record_heartbeat(trial._trial_id)
        kill_point("claim:beating")
        trial.set_user_attr(WORKER_TAG, this_process())
        kill_point("claim:tagged")
        return trial, params


def objective_metric(cfg: DictConfig) -> str:
    """The trial's value: a metric of the final evaluation of the validation split; where the
    run bounds no likelihood, ae's recon or the seed's BCE loss."""
    wanted = cfg.study.objective
    if wanted not in (*NEEDS_LIKELIHOOD, "recon"):
        raise BenchError(f"study.objective must be nll, neg_elbo or recon, got {wanted!r}")
    if bounds_likelihood(cfg) or wanted == "recon":
        return f"val_eval/{wanted}"
    return "val_eval/loss" if variant(cfg.model.name).stochastic else "val_eval/recon"


def bounds_likelihood(cfg: DictConfig) -> bool:
    """LatentModel.bounds_likelihood, from the config."""
    return variant(cfg.model.name).stochastic and LIKELIHOODS[cfg.model.likelihood].normalized


def _run_trial(worker: Worker, trial: optuna.Trial, params: dict[str, Any]) -> str:
    """Run and tell one claimed trial; returns its one-line summary. The trial is told COMPLETE
    before its MLflow run ends: a worker dying between the two loses no result (the run is
    ended FINISHED by the next worker's orphan check)."""
    study, client = worker.study, worker.client
    label = f"trial {trial.number} {' '.join(as_overrides(params))}"
    try:
        cfg = load_config(worker.base + as_overrides(params))
        objective = objective_metric(cfg)
        trial.set_user_attr("objective", objective)
        tags = {"study": study.study_name, "trial": str(trial.number)}
        name = f"trial-{trial.number}"
        with (
            heartbeat(worker.storage, trial._trial_id, worker.heartbeat_seconds),
            mlflow_runs.tracked_run(client, worker.experiment, name, tags, worker.parent) as run_id,
        ):
            kill_point("trial:run-created")
            trial.set_user_attr("mlflow_run_id", run_id)
            metric = "val/neg_elbo" if bounds_likelihood(cfg) else "val/objective"
            on_epoch = _pruning(trial, metric, cfg.trainer.epochs)
            carried = _went_on_from(worker, trial, run_id)
            if carried is not None:
                label += f" (went on from epoch {carried.epoch} of run {carried.run_id})"
            metrics = run_job(
                cfg,
                client,
                run_id,
                progress=False,
                on_epoch=on_epoch,
                validate=True,
                resume=carried.state if carried else None,
                carried=carried is not None,
            )
            kill_point("trial:evaluated")
            with deferred():
                for key, value in metrics.items():
                    trial.set_user_attr(key, value)
                study.tell(trial, metrics[objective])
            kill_point("trial:told")
    except Pruned as e:
        trial.set_user_attr("pruned", str(e))
        study.tell(trial, state=TrialState.PRUNED)
        return f"{label}: PRUNED ({e})"
    except KeyboardInterrupt:
        if not _told(study, trial):
            fail_trial(study, trial, "interrupted", retry=True)
        raise
    except Exception as e:
        reason = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
        if _told(study, trial):  # ending its MLflow run failed: the orphan check ends it later
            return f"{label}: COMPLETE (its MLflow run not yet ended: {reason})"
        # MLflow failing (server gone past its retries) is not the trial's fault: run it again
        fail_trial(study, trial, reason, retry=isinstance(e, MlflowException))
        return f"{label}: FAIL ({reason})"
    shown = ", ".join(f"{k}={metrics[k]:.2f}" for k in (objective, "test/nll") if k in metrics)
    return f"{label}: COMPLETE {shown}"


def _went_on_from(worker: Worker, trial: optuna.Trial, run_id: str) -> Carried | None:
    """The checkpoint a retried trial goes on from, recorded on its run and trial."""
    carried = carried_checkpoint(worker.study, trial, worker.client)
    if carried is not None:
        tags = {"resumed_from_run": carried.run_id, "resumed_from_epoch": str(carried.epoch)}
        mlflow_runs.set_tags(worker.client, run_id, tags)
        trial.set_user_attr("resumed_from_epoch", carried.epoch)
    return carried


def _told(study: optuna.Study, trial: optuna.Trial) -> bool:
    return study._storage.get_trial(trial._trial_id).state != TrialState.RUNNING


def _pruning(
    trial: optuna.Trial, metric: str, epochs: int
) -> Callable[[int, dict[str, float]], None]:
    """Report each epoch's value; prune before the last epoch only (a trial that has finished
    training is evaluated, whatever its curve)."""

    def report(epoch: int, metrics: dict[str, float]) -> None:
        trial.report(metrics[metric], epoch)
        if epoch < epochs and trial.should_prune():
            raise Pruned(epoch)

    return report


def main(argv: list[str] | None = None) -> int:
    """python -m bench.study [key=value ...]: join the study as one more worker; no report."""
    from bench.cli import run_command

    args = sys.argv[1:] if argv is None else argv

    def join() -> None:
        run_study(load_config(args), args, progress=False)

    return run_command(join)
