"""MLflow through its client: URI resolution, reachability, experiments, batched logging."""

import os
import random
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import DatasetInput, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from bench.errors import BenchError, Pruned, first_line
from bench.runtime.file_lock import file_lock
from bench.runtime.processes import this_process
from bench.signals import deferred
from bench.tracking.redaction import redact, without_password

PACKAGES = ("torch", "torchvision", "mlflow", "optuna", "hydra-core", "numpy", "vae-bench")
T = TypeVar("T")
MAX_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call
PROCESS_TAG = "process"  # host:pid of the process that runs it (bench.resume checks it is gone)


def tracking_uri(configured: str | None) -> str:
    if configured:
        return str(configured)
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BenchError(f"tracking server {redact(uri)} is unreachable: {reason}") from None


def connect(configured: str | None) -> MlflowClient:
    """A client for the configured (or default) tracking URI, checked to answer."""
    uri = tracking_uri(configured)
    check_reachable(uri)
    try:
        with _store_creation_lock(uri):
            return MlflowClient(tracking_uri=uri)
    except Exception as e:
        reason = redact(first_line(e))
        raise BenchError(f"cannot open MLflow tracking store {redact(uri)}: {reason}") from None


@contextmanager
def _store_creation_lock(uri: str) -> Iterator[None]:
    """Processes opening a new SQLite store at once would all run MLflow's schema migrations on
    it and fail on each other's tables, columns and version rows: one creates and migrates it
    while the others wait, then finds it ready. (A server store is created by its server.)"""
    if not uri.startswith("sqlite:///"):
        yield
        return
    with file_lock(uri.removeprefix("sqlite:///")):
        yield


RACE_ATTEMPTS = 5


def retried_on_race(
    call: Callable[[], T], race: Callable[[Exception], bool], wait: float = 0.2
) -> T:
    """`call()` (its store writes deferred), tried again after a growing, jittered wait while it
    fails on a race another process is winning, at most RACE_ATTEMPTS times."""
    for attempt in range(RACE_ATTEMPTS - 1):
        try:
            with deferred():
                return call()
        except Exception as e:
            if not race(e):
                raise
            time.sleep(wait * 2**attempt * (1 + random.random()))
    with deferred():
        return call()


# MLflow 3's experiment kind: the UI shows such an experiment as model training, not GenAI traces
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it if needed (artifacts beside a SQLite store)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    uri = client.tracking_uri
    location = None
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///")).resolve()  # sqlite:///rel.db: from the cwd
        location = (store.parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
    except Exception:  # another process created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@contextmanager
def tracked_run(
    client: MlflowClient,
    experiment: str,
    name: str,
    tags: Mapping[str, str] | None = None,
    parent_id: str | None = None,
) -> Iterator[str]:
    """A run that ends FINISHED, KILLED (interrupted or pruned) or FAILED with `failure_reason`."""
    tags = environment_tags() | {PROCESS_TAG: this_process()} | dict(tags or {})
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    with deferred():
        run_id = client.create_run(experiment, run_name=name, tags=tags).info.run_id
    with run_ending(client, run_id):
        yield run_id


@contextmanager
def run_ending(client: MlflowClient, run_id: str) -> Iterator[None]:
    """The run ends FINISHED when the block does, KILLED (interrupted or pruned) or FAILED with
    `failure_reason` when it raises."""
    status = RunStatus.FAILED
    try:
        yield
        status = RunStatus.FINISHED
    except (KeyboardInterrupt, Pruned) as e:
        status = RunStatus.KILLED
        set_tags(client, run_id, {"killed_reason": str(e) or "interrupted"})
        raise
    except Exception as e:
        set_tags(client, run_id, {"failure_reason": f"{type(e).__name__}: {e}"[:5000]})
        raise
    finally:
        with deferred():
            client.set_terminated(run_id, RunStatus.to_string(status))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(value)
    return flat


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    items = [Param(k, redact(v)) for k, v in params.items()]
    with deferred():
        for start in range(0, len(items), 100):
            client.log_batch(run_id, params=items[start : start + 100])


def log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0
) -> None:
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    with deferred():
        for start in range(0, len(items), MAX_BATCH):
            client.log_batch(run_id, metrics=items[start : start + MAX_BATCH])


def log_inputs(client: MlflowClient, run_id: str, inputs: Sequence[DatasetInput]) -> None:
    """MLflow creates a dataset the first time a run logs it; runs starting at once (a study's
    workers) race on its unique key and the loser's insert fails (SQLite: UNIQUE constraint,
    PostgreSQL: duplicate key). Tried again, it finds the dataset the winner made."""
    retried_on_race(lambda: client.log_inputs(run_id, datasets=list(inputs)), _unique_race, 0.05)


def _unique_race(error: Exception) -> bool:
    return isinstance(error, MlflowException) and "unique" in str(error).lower()


def tag_filter(tags: Mapping[str, str]) -> str:
    """An MLflow search filter for the runs that carry these tag values (a quote is left out of
    a value: MLflow's filter strings have no escape for it)."""
    return " AND ".join(f"tags.{k} = '{str(v).replace(chr(39), '')}'" for k, v in tags.items())


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    with deferred():
        client.log_batch(run_id, tags=[RunTag(k, redact(str(v))) for k, v in tags.items()])


def environment_tags() -> dict[str, str]:
    """MLflow's standard run tags as its fluent API sets them (mlflow.user, mlflow.source.name,
    mlflow.source.type, mlflow.source.git.commit: the columns its UI shows), and the versions of
    the packages the numbers depend on."""
    tags = dict(resolve_tags({}))
    commit = _git_commit()  # the harness's own checkout, whatever started the process
    if commit:
        tags[MLFLOW_GIT_COMMIT] = commit
    return tags | {f"version.{name}": package_version(name) for name in PACKAGES}


def ui_links(uri: str, experiment_id: str, run_id: str | None = None) -> list[str]:
    """How to look at it in MLflow's UI, in the training view (MLflow 3 opens experiments in its
    GenAI view unless the link says otherwise): for a local store the `mlflow ui` command first."""
    lines = []
    if uri.startswith(("http://", "https://")):
        server = without_password(uri).rstrip("/")
    else:
        server = "http://127.0.0.1:5000"
        lines.append(f"mlflow ui --backend-store-uri {without_password(uri)}")
    experiment = f"{server}/#/experiments/{experiment_id}"
    lines.append(f"{experiment}/runs?{TRAINING_VIEW}")
    if run_id is not None:  # without the parameter the run's page, too, opens in the GenAI view
        lines.append(f"{experiment}/runs/{run_id}?{TRAINING_VIEW}")
    return lines


TRAINING_VIEW = "workflowType=machine_learning"


SKINNY = {"mlflow": "mlflow-skinny"}  # what a worker installed from the wheelhouse has


def package_version(package: str) -> str:
    for name in (package, SKINNY.get(package)):
        try:
            found = version(name) if name else None
        except PackageNotFoundError:
            continue
        if found:
            return found if name == package else f"{found} ({name})"
    return "not installed"


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
