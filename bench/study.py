"""Optuna studies over the one-run job: a parent MLflow run per study, a child per trial.

Rerunning the same command resumes, and any number of workers may run it at once against one
storage: finished trials are kept and the study goes on to exactly its target. A trial is
finished when it is COMPLETE, PRUNED, or FAIL for a reason of its own (diverged, bad config).
A trial cut short (Ctrl-C, SIGTERM, a worker gone: dead pid on this host, or no heartbeat) is
FAIL too, its MLflow run ends KILLED or FAILED, and its parameters are queued again.
"""

import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from bench import tracking
from bench.config import load_config
from bench.errors import BenchError, Pruned
from bench.job import run_job
from bench.local_workers import join_helpers, start_helpers
from bench.space import (
    Space,
    as_overrides,
    build_pruner,
    build_sampler,
    grid_size,
    override_key,
    search_space,
    suggest,
)
from bench.workers import (
    RETRY,
    heartbeat,
    heartbeat_warnings_off,
    open_storage,
    safe_url,
    study_lock,
)

LOCATION_KEYS = (
    "tracking_uri",
    "storage",
    "experiment",
    "progress",
    "study.n_trials",
    "study.heartbeat_seconds",
    "study.grace_seconds",
    "study.workers",
    "data.root",
    "data.download",
    "data.system_dirs",
    "trainer.device",
    "trainer.compile",
    "eval.rows_per_chunk",
)
NEEDS_LIKELIHOOD = ("nll", "neg_elbo")
WORKER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class StudyResult:
    study: optuna.Study
    storage: str
    parent_run_id: str
    target: int


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
    target = _target(cfg.study, space)
    client = tracking.connect(cfg.tracking_uri)
    url = storage_url(cfg.storage)
    spec = cfg.study
    with study_lock(url, spec.name):  # one creator of tables, study and parent run
        storage = open_storage(url, spec.heartbeat_seconds, spec.grace_seconds, LostTrial(client))
        study = open_study(cfg, space, storage, url)
        parent = _parent_run(client, study, cfg)
        _close_orphan_runs(study, client)
    base = [o for o in overrides if override_key(o) not in space]
    experiment = client.get_run(parent).info.experiment_id
    worker = Worker(
        study, storage, url, client, experiment, parent, space, base, spec.heartbeat_seconds
    )
    bar = tqdm(
        total=target,
        initial=min(finished(study), target),
        desc=study.study_name,
        unit="trial",
        disable=None if progress is None else not progress,
    )
    helpers = start_helpers(spec.workers, overrides)
    try:
        _work(worker, target, bar)
    except BaseException as e:
        join_helpers(helpers, interrupted=True)
        if isinstance(e, KeyboardInterrupt):
            client.set_terminated(parent, RunStatus.to_string(RunStatus.KILLED))
        raise
    finally:
        bar.close()
    for code in join_helpers(helpers, interrupted=False):
        print(f"warning: a helper worker exited with code {code}", file=sys.stderr)
    _finish_parent(client, parent, study)
    return StudyResult(study, url, parent, target)


def _work(worker: Worker, target: int, bar: tqdm) -> None:
    """Run trials until the study has `target` finished ones, waiting on other workers' trials."""
    while True:
        tracking.check_reachable(worker.client.tracking_uri)
        trial = _claim(worker, target)
        if trial is not None:
            bar.write(_run_trial(worker, trial))
            sys.stdout.flush()
        done = finished(worker.study)
        bar.update(min(done, target) - bar.n)
        if trial is None:
            if done >= target:
                return
            time.sleep(worker.heartbeat_seconds)


def _claim(worker: Worker, target: int) -> optuna.Trial | None:
    """A new trial when finished and running ones leave room for it (atomic across workers)."""
    study = worker.study
    with study_lock(worker.url, study.study_name), heartbeat_warnings_off():
        optuna.storages.fail_stale_trials(study)
        _fail_dead_local_trials(study, worker.client)
        trials = study.get_trials(deepcopy=False)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if finished(study) + running >= target:
            return None
        trial = study.ask()
        trial.set_user_attr("worker", WORKER)
        return trial


class LostTrial:
    """Optuna's stale-trial callback: the trial's worker stopped beating. End its MLflow run
    FAILED with the reason (the FAIL trial itself is frozen), then queue its parameters again."""

    def __init__(self, client: MlflowClient):
        self.client = client

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        reason = f"worker {trial.user_attrs.get('worker', '?')} lost: no heartbeat"
        end_run(self.client, trial.user_attrs.get("mlflow_run_id"), reason)
        RETRY(study, trial)


def storage_url(configured: str | None) -> str:
    return str(configured) if configured else f"sqlite:///{os.path.abspath('optuna.db')}"


def open_study(cfg: DictConfig, space: Space, storage: RDBStorage, url: str) -> optuna.Study:
    """Create the study or load it; refuse another config's study under the same name."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=cfg.study.name,
            storage=storage,
            sampler=build_sampler(cfg.study, space),
            pruner=build_pruner(cfg.study),
            direction="minimize",
            load_if_exists=True,
        )
    except BenchError:
        raise
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BenchError(f"cannot open Optuna storage {safe_url(url)}: {reason}") from None
    fingerprint = study_fingerprint(cfg)
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", fingerprint)
    elif stored != fingerprint:
        raise BenchError(
            f"study {cfg.study.name!r} in {safe_url(url)} was made with another config "
            f"({_differences(stored, fingerprint)}): set study.name=NEW to start another"
        )
    return study


def _differences(old: dict[str, str], new: dict[str, str], shown: int = 3) -> str:
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    parts = [f"{k}: {old.get(k)} -> {new.get(k)}" for k in keys[:shown]]
    return "; ".join(parts) + ("; ..." if len(keys) > shown else "")


def study_fingerprint(cfg: DictConfig) -> dict[str, str]:
    """The resolved config without what says only where or how things run or are stored."""
    flat = tracking.flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items() if not k.startswith(LOCATION_KEYS)}


def finished(study: optuna.Study) -> int:
    """COMPLETE, PRUNED, and FAIL trials whose parameters were not queued again."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.number not in retried)
        for t in trials
    )


def _target(spec: DictConfig, space: Space) -> int:
    if spec.sampler == "grid":
        size = grid_size(space)
        return size if spec.n_trials is None else min(int(spec.n_trials), size)
    if spec.n_trials is None or int(spec.n_trials) < 1:
        raise BenchError(f"study.n_trials must be >= 1 for study.sampler={spec.sampler}")
    return int(spec.n_trials)


def objective_metric(cfg: DictConfig, stochastic: bool) -> str:
    wanted = cfg.study.objective
    if wanted not in (*NEEDS_LIKELIHOOD, "recon"):
        raise BenchError(f"study.objective must be nll, neg_elbo or recon, got {wanted!r}")
    return f"val/{wanted}" if stochastic or wanted == "recon" else "val/recon"


def _run_trial(worker: Worker, trial: optuna.Trial) -> str:
    """Run and tell one claimed trial; returns its one-line summary."""
    study, client = worker.study, worker.client
    params = suggest(trial, worker.space)
    label = f"trial {trial.number} {' '.join(as_overrides(params))}"
    try:
        cfg = load_config(worker.base + as_overrides(params))
        stochastic = cfg.model.name != "ae"
        objective = objective_metric(cfg, stochastic)
        trial.set_user_attr("objective", objective)
        tags = {"study": study.study_name, "trial": str(trial.number)}
        name = f"trial-{trial.number}"
        with (
            heartbeat(worker.storage, trial._trial_id, worker.heartbeat_seconds),
            tracking.tracked_run(client, worker.experiment, name, tags, worker.parent) as run_id,
        ):
            trial.set_user_attr("mlflow_run_id", run_id)
            on_epoch = _pruning(trial, "val/neg_elbo" if stochastic else "val/recon")
            metrics = run_job(cfg, client, run_id, progress=False, on_epoch=on_epoch, validate=True)
    except Pruned as e:
        trial.set_user_attr("pruned", str(e))
        study.tell(trial, state=TrialState.PRUNED)
        return f"{label}: PRUNED ({e})"
    except KeyboardInterrupt:
        fail_trial(study, trial, "interrupted", retry=True)
        raise
    except Exception as e:
        reason = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
        # MLflow failing (server gone past its retries) is not the trial's fault: run it again
        fail_trial(study, trial, reason, retry=isinstance(e, MlflowException))
        return f"{label}: FAIL ({reason})"
    for name, value in metrics.items():
        trial.set_user_attr(name, value)
    study.tell(trial, metrics[objective])
    shown = ", ".join(f"{k}={metrics[k]:.2f}" for k in (objective, "test/nll") if k in metrics)
    return f"{label}: COMPLETE {shown}"


def _pruning(trial: optuna.Trial, metric: str) -> Callable[[int, dict[str, float]], None]:
    def report(epoch: int, metrics: dict[str, float]) -> None:
        trial.report(metrics[metric], epoch)
        if trial.should_prune():
            raise Pruned(epoch)

    return report


def fail_trial(
    study: optuna.Study, trial: optuna.Trial | FrozenTrial, reason: str, retry: bool = False
) -> None:
    """FAIL with its reason; with `retry`, its parameters are queued to run again."""
    handle = trial if isinstance(trial, optuna.Trial) else optuna.Trial(study, trial._trial_id)
    handle.set_user_attr("fail_reason", reason)
    study.tell(trial.number, state=TrialState.FAIL)
    if retry:
        (frozen,) = [t for t in study.get_trials(deepcopy=False) if t.number == trial.number]
        RETRY(study, frozen)


def _fail_dead_local_trials(study: optuna.Study, client: MlflowClient) -> None:
    """RUNNING trials of a process on this host that no longer exists: FAIL, rerun, run FAILED."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
            continue
        fail_trial(study, trial, f"worker {host}:{pid} died", retry=True)
        end_run(client, trial.user_attrs.get("mlflow_run_id"), f"worker {host}:{pid} died")


def _close_orphan_runs(study: optuna.Study, client: MlflowClient) -> None:
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parent_run(client: MlflowClient, study: optuna.Study, cfg: DictConfig) -> str:
    """The study's parent run: reused when it exists in this tracking store, else created."""
    run_id = study.user_attrs.get("mlflow_parent_run_id")
    if run_id:
        try:
            client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            return run_id
        except MlflowException:
            pass
    experiment = tracking.experiment_id(client, cfg.experiment)
    tags = tracking.environment_tags() | {"study": study.study_name, "study_parent": "true"}
    run_id = client.create_run(experiment, run_name=study.study_name, tags=tags).info.run_id
    tracking.log_params(client, run_id, tracking.flatten(OmegaConf.to_container(cfg, resolve=True)))
    study.set_user_attr("mlflow_parent_run_id", run_id)
    return run_id


def _finish_parent(client: MlflowClient, parent: str, study: optuna.Study) -> None:
    trials = study.get_trials(deepcopy=False)
    counts = {
        f"trials_{s.name.lower()}": sum(t.state == s for t in trials)
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    summary: dict[str, Any] = dict(counts)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = min(complete, key=lambda t: t.value)
        summary |= {"best_value": best.value, "best_trial": best.number}
        summary |= {f"best_{k}": v for k, v in best.user_attrs.items() if k.startswith("test/")}
        client.set_tag(parent, "best_params", " ".join(as_overrides(best.params)))
        client.set_tag(parent, "best_objective", best.user_attrs.get("objective", ""))
        client.set_tag(parent, "best_run_id", best.user_attrs.get("mlflow_run_id", ""))
    tracking.log_metrics(client, parent, summary)
    client.set_terminated(parent, RunStatus.to_string(RunStatus.FINISHED))


def main(argv: list[str] | None = None) -> int:
    """python -m bench.study [key=value ...]: join the study as one more worker; no report."""
    from bench.cli import run_command

    args = sys.argv[1:] if argv is None else argv

    def join() -> None:
        run_study(load_config(args), args, progress=False)

    return run_command(join)


if __name__ == "__main__":
    sys.exit(main())
