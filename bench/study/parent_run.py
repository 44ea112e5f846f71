"""The study's MLflow parent run: its config as params, at the end the counts and the best."""

from typing import Any

import optuna
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from bench.runtime.faults import kill_point
from bench.study.space import as_overrides
from bench.tracking import mlflow_runs


def parent_run(client: MlflowClient, study: optuna.Study, cfg: DictConfig) -> str:
    """The study's parent run: reused when it exists in this tracking store, else created."""
    run_id = study.user_attrs.get("mlflow_parent_run_id")
    if run_id:
        try:
            client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            return run_id
        except MlflowException:
            pass
    experiment = mlflow_runs.experiment_id(client, cfg.experiment)
    params = mlflow_runs.flatten(OmegaConf.to_container(cfg, resolve=True))
    run_id = _unrecorded_parent(client, experiment, study.study_name)
    if run_id is None:
        tags = mlflow_runs.environment_tags() | {"study": study.study_name, "study_parent": "true"}
        run_id = client.create_run(experiment, run_name=study.study_name, tags=tags).info.run_id
        kill_point("parent:created")
        mlflow_runs.log_params(client, run_id, params)
    else:
        try:  # its creator may have died before logging them all
            mlflow_runs.log_params(client, run_id, params)
        except MlflowException:
            pass  # logged by its creator, with another value of a how-it-runs key
    study.set_user_attr("mlflow_parent_run_id", run_id)
    return run_id


def _unrecorded_parent(client: MlflowClient, experiment: str, study: str) -> str | None:
    """The parent run a worker created and died before recording in the study."""
    tags = {"study": study, "study_parent": "true"}
    found = client.search_runs([experiment], mlflow_runs.tag_filter(tags), max_results=1)
    if not found:
        return None
    client.update_run(found[0].info.run_id, status="RUNNING")
    return found[0].info.run_id


def finish_parent(client: MlflowClient, parent: str, study: optuna.Study) -> None:
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
        # the best trial's own test/ and val_eval/ keys: the runs table lines the parent up with
        # its children, column for column
        summary |= {
            k: v for k, v in best.user_attrs.items() if k.startswith(("test/", "val_eval/"))
        }
        client.set_tag(parent, "best_params", " ".join(as_overrides(best.params)))
        client.set_tag(parent, "best_objective", best.user_attrs.get("objective", ""))
        client.set_tag(parent, "best_run_id", best.user_attrs.get("mlflow_run_id", ""))
    mlflow_runs.log_metrics(client, parent, summary)
    kill_point("parent:finishing")
    client.set_terminated(parent, RunStatus.to_string(RunStatus.FINISHED))
