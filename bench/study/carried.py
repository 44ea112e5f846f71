"""A retried trial goes on from the training checkpoint of the trials it retries (the one that got
furthest), so a worker lost late in a long trial costs the epochs since its last checkpoint, not
the trial. The study's fingerprint makes their configs the same but for how they run."""

import pickle
from dataclasses import dataclass
from typing import Any

import optuna
from mlflow.tracking import MlflowClient

from bench.errors import BenchError
from bench.stored_run import read_checkpoint
from bench.training.checkpoint import FORMAT


@dataclass
class Carried:
    run_id: str  # the run of the retried trial that wrote it
    state: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])


def carried_checkpoint(
    study: optuna.Study, trial: optuna.Trial, client: MlflowClient
) -> Carried | None:
    """The furthest readable checkpoint among the runs of the trials `trial` retries; None when
    it retries none, or none of them wrote one."""
    retried = study._storage.get_trial_system_attrs(trial._trial_id).get("retry_history", [])
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    found = []
    for number in retried:
        run_id = by_number[number].user_attrs.get("mlflow_run_id") if number in by_number else None
        state = _checkpoint(run_id, client.tracking_uri) if run_id else None
        if state is not None:
            found.append(Carried(run_id, state))
    return max(found, key=lambda c: c.epoch, default=None)


def _checkpoint(run_id: str, tracking_uri: str) -> dict[str, Any] | None:
    """The run's checkpoint, or None where it has none or one that cannot be read (cut short
    while being written, or of another format)."""
    try:
        state = read_checkpoint(run_id, tracking_uri)
    except (BenchError, RuntimeError, EOFError, OSError, pickle.UnpicklingError):
        return None
    return state if isinstance(state, dict) and state.get("format") == FORMAT else None
