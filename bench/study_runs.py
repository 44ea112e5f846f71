"""A study's runs read back from MLflow (any tracking URI) into pandas."""

from dataclasses import dataclass

import mlflow
import pandas as pd

from bench import tracking
from bench.errors import BenchError

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
    def running(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "RUNNING"]

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
    tracking.check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:
        parents = mlflow.search_runs(
            search_all_experiments=True,
            filter_string=f"tags.study = '{study}' and tags.study_parent = 'true'",
            order_by=["attributes.start_time DESC"],
        )
    except Exception as e:
        raise BenchError(f"cannot read runs from {uri}: {e}") from None
    if parents.empty:
        raise BenchError(f"no study named {study!r} in the MLflow store {uri}")
    parent = parents.iloc[0]
    runs = mlflow.search_runs(
        experiment_ids=[parent["experiment_id"]],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent['run_id']}'",
        order_by=["attributes.start_time ASC"],
    )
    return StudyRuns(study, parent, runs)
