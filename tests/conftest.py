import gzip
import os
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

# pytest-xdist's workers split the cores between them; so do the processes a test starts.
THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bench.config import load_config  # noqa: E402

torch.set_num_threads(THREADS)


@pytest.hookimpl(optionalhook=True)  # a node without pytest-xdist runs -o addopts=-ra
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (the default, pyproject.toml): a worker per core, at most eight; the tests
    start processes of their own (study workers, servers), so more would only queue."""
    return min(os.cpu_count() or 1, 8)


def config(*overrides: str):
    return load_config(list(overrides))


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """An IDX file as torchvision and LeCun's MNIST use: magic, dims, uint8 payload."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_mnist_like(
    folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = False, seed: int = 0
):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, gz=gz)
    return arrays


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with MLflow's schema and nothing in it, made once per session:
    creating the schema (its migrations) costs ~2 s, copying the file nothing. Its Default
    experiment is deleted, so the first client makes one where the copy is, as on a new file."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM experiments")
    return path


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_store: Path) -> None:
    """Default stores and reports (./mlflow.db, ./optuna.db, ./reports) land in the test's tmp;
    ./mlflow.db starts as a copy of the empty store."""
    shutil.copyfile(empty_mlflow_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)


OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No network for this process (a dead proxy) and the environment for workers it starts.
    urllib's cached opener is dropped and restored, so the dead proxy ends with the test (a
    later test's urlopen would otherwise still go through it)."""
    import urllib.request

    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(urllib.request, "_opener", None)
    return OFFLINE


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """One throwaway PostgreSQL cluster for the session; each test takes a database of its own
    (fresh_database)."""
    from tests.servers import postgres

    with postgres() as url:
        yield url


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def optuna_tables_made(storage: str) -> bool:
    """Whether a worker has finished making Optuna's tables: stamping alembic's revision is its
    last step. Optuna's RDBStorage, even with skip_table_creation, inserts its version row and
    stamps alembic's table when they are missing; a poll that built one sooner raced the worker
    making them (PostgreSQL: UniqueViolation on pg_type, and the worker exited)."""
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(storage, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            stamp = sqlalchemy.text("SELECT version_num FROM alembic_version")
            return connection.execute(stamp).first() is not None
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def wait_for_trials(storage: str, predicate, study: str = "smoke-digits", timeout: float = 300):
    """Poll the study (which may not exist yet) until `predicate(trials)`; its trials. Each
    poll's connection is closed at once (NullPool): a storage per poll would otherwise keep its
    pool until collected, and a slow test ran PostgreSQL out of connections. The poll only reads,
    once the workers have made Optuna's tables (optuna_tables_made)."""
    import time

    import optuna
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    NOT_YET = (SQLAlchemyError, optuna.exceptions.StorageInternalError)  # noqa: N806
    deadline, seen = time.monotonic() + timeout, "no tables yet"
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if not optuna_tables_made(storage):
            continue
        polled = optuna.storages.RDBStorage(
            storage, engine_kwargs={"poolclass": NullPool}, skip_table_creation=True
        )
        try:
            trials = optuna.load_study(study_name=study, storage=polled).get_trials()
        except (KeyError, *NOT_YET):  # no study yet
            seen = "no study yet"
            continue
        finally:
            polled.engine.dispose()
        if predicate(trials):
            return trials
        seen = ", ".join(f"{t.number}:{t.state.name}{sorted(t.user_attrs)}" for t in trials)
    raise AssertionError(f"timed out waiting on the trials of {study}; last seen: {seen}")


def running_with_a_run(trials) -> bool:
    """A trial is mid-run: RUNNING with its MLflow run created (a finished one keeps its id)."""
    from optuna.trial import TrialState

    return any(t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs for t in trials)
