"""A study's runs read back from MLflow (any tracking URI): tables, curves, image grids."""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from bench.errors import BenchError
from bench.tracking import mlflow_runs
from bench.tracking.redaction import redact

RANGE_KEYS = (".low", ".high", ".log", ".type")


@dataclass
class StudyRuns:
    name: str
    parent: pd.Series
    runs: pd.DataFrame  # one row per child run, all statuses

    @property
    def finished(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "FINISHED"]

    @property
    def stopped(self) -> pd.DataFrame:
        return self.runs[self.runs["status"].isin(["FAILED", "KILLED"])]

    @property
    def pruned(self) -> pd.DataFrame:
        return self.runs[self.status() == "PRUNED"]

    @property
    def running(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "RUNNING"]

    def status(self) -> pd.Series:
        """Each run's MLflow status, PRUNED for a run the pruner stopped (MLflow: KILLED)."""
        reason = self.runs.get("tags.killed_reason", pd.Series(index=self.runs.index, dtype=str))
        pruned = (self.runs["status"] == "KILLED") & reason.fillna("").str.startswith("pruned")
        return self.runs["status"].where(~pruned, "PRUNED")

    def swept(self) -> list[str]:
        """The searched config keys, from the parent's `study.space.*` params (seeds included)."""
        keys = []
        for column in self.parent.index:
            if not column.startswith("params.study.space.") or pd.isna(self.parent[column]):
                continue
            key = column.removeprefix("params.study.space.")
            for suffix in RANGE_KEYS:
                key = key.removesuffix(suffix)
            if key not in keys:
                keys.append(key)
        return keys


def load_study_runs(uri: str, study: str) -> StudyRuns:
    mlflow_runs.check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:
        parents = mlflow.search_runs(
            search_all_experiments=True,
            filter_string=f"tags.study = '{study}' and tags.study_parent = 'true'",
            order_by=["attributes.start_time DESC"],
        )
    except Exception as e:
        raise BenchError(f"cannot read runs from {redact(uri)}: {redact(str(e))}") from None
    if parents.empty:
        raise BenchError(f"no study named {study!r} in the MLflow store {redact(uri)}")
    parent = parents.iloc[0]
    runs = mlflow.search_runs(
        experiment_ids=[parent["experiment_id"]],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent['run_id']}'",
        order_by=["attributes.start_time ASC"],
    )
    return StudyRuns(study, parent, runs)


def epoch_series(run_id: str, key: str) -> pd.DataFrame:
    """(epoch, value) of a per-epoch metric, one value per epoch. Runs before the final
    validation evaluation had keys of its own (`val_eval/*`) logged it as `val/*` at the last
    epoch too: the first value logged at each step is the per-epoch one."""
    history = MlflowClient(mlflow.get_tracking_uri()).get_metric_history(run_id, key)
    ordered = sorted(history, key=lambda m: (m.step, m.timestamp))
    first = {m.step: m.value for m in reversed(ordered)}
    return pd.DataFrame({"epoch": sorted(first), "value": [first[s] for s in sorted(first)]})


def download_artifacts(run_id: str, names: dict[str, str], out: Path) -> list[Path]:
    """Copy the run's artifacts `names` (artifact -> file name in `out`) that it has."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    present = {a.path for a in MlflowClient(mlflow.get_tracking_uri()).list_artifacts(run_id)}
    copied = []
    with tempfile.TemporaryDirectory() as tmp:
        for source, target in names.items():
            if source in present:
                local = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=source, dst_path=tmp
                )
                copied.append(Path(shutil.copyfile(local, out / target)))
    return copied
