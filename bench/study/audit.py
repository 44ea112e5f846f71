"""Whether a study ended as it must, however its workers died: exactly its target of finished
trials, each grid point COMPLETE once, nothing RUNNING or WAITING in Optuna, nothing RUNNING in
MLflow, one FINISHED run per COMPLETE trial, and the parent run FINISHED."""

from collections import Counter
from dataclasses import dataclass, field

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from bench.study.loop import finished
from bench.tracking.mlflow_runs import tag_filter


@dataclass
class Audit:
    finished: int
    states: dict[str, int]  # Optuna trial states
    run_states: dict[str, int]  # MLflow statuses of the trial runs
    requeued: int  # trials cut short and queued to run again
    problems: list[str] = field(default_factory=list)


def audit(storage: str, tracking_uri: str, study_name: str, target: int, param: str) -> Audit:
    """`param`: the swept key whose values must each be COMPLETE once."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    requeued = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    client = MlflowClient(tracking_uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=tag_filter({"study": study_name}),
        max_results=10_000,
    )
    parents = [r for r in runs if r.data.tags.get("study_parent") == "true"]
    children = [r for r in runs if r.data.tags.get("study_parent") != "true"]
    result = Audit(
        finished(study),
        dict(states),
        dict(Counter(r.info.status for r in children)),
        len(requeued),
    )
    problems = result.problems
    if result.finished != target:
        problems.append(f"{result.finished} finished trials, target {target}")
    values = Counter(t.params.get(param) for t in complete)
    if any(n > 1 for n in values.values()):
        problems.append(f"a point ran twice: {sorted(v for v, n in values.items() if n > 1)}")
    if states.get("RUNNING") or states.get("WAITING"):
        problems.append(f"trials left RUNNING or WAITING: {dict(states)}")
    if "RUNNING" in {r.info.status for r in runs}:
        problems.append("MLflow runs left RUNNING")
    finished_runs = sorted(
        int(r.data.tags["trial"]) for r in children if r.info.status == "FINISHED"
    )
    if finished_runs != sorted(t.number for t in complete):
        problems.append("FINISHED runs do not match COMPLETE trials one to one")
    if [p.info.status for p in parents] != ["FINISHED"]:
        problems.append(f"parent runs: {[p.info.status for p in parents]}")
    return result
