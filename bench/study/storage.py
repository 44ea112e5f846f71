"""What lets many worker processes share one study: storage, a study-wide lock, heartbeats.

The lock makes "count the trials, then start one" atomic across workers, so a study stops at
exactly its target (Optuna's MaxTrialsCallback can overshoot by workers - 1). PostgreSQL (and
any server database) gets an advisory lock; SQLite, which lives on one machine, a file lock.
"""

import hashlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache

import optuna
import sqlalchemy
from optuna.storages import RDBStorage

from bench.errors import BenchError, first_line
from bench.runtime.file_lock import file_lock
from bench.tracking.redaction import redact

TABLE_RACE_RETRIES = 3  # opening again after another process made the tables at that moment


def open_storage(
    url: str, heartbeat_seconds: int, grace_seconds: int, on_stale: Callable[..., None]
) -> RDBStorage:
    """RDB storage with heartbeats; `on_stale(study, trial)` runs for each trial whose worker
    stopped beating for `grace_seconds`, after Optuna marked it FAIL."""
    attempt = 0
    while True:
        try:
            with heartbeat_warnings_off():
                return RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_seconds,
                    grace_period=grace_seconds,
                    heartbeat_stale_trial_callback=on_stale,
                )
        except Exception as e:
            if attempt == TABLE_RACE_RETRIES or not _lost_table_race(e):
                reason = first_line(e)
                raise BenchError(f"cannot open Optuna storage {redact(url)}: {reason}") from None
            attempt += 1
            time.sleep(0.2 * attempt)


def _lost_table_race(e: Exception) -> bool:
    """Another process (a worker of another study, optuna-dashboard, the user's script) made
    Optuna's tables, or stamped their version, at the same moment: they exist now, so opening
    again succeeds. PostgreSQL says UniqueViolation (pg_type) or DuplicateTable; SQLite "table
    ... already exists"."""
    if isinstance(e, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)):
        return True
    return isinstance(e, sqlalchemy.exc.OperationalError) and "already exists" in str(e)


@contextmanager
def heartbeat_warnings_off() -> Iterator[None]:
    """Optuna warns that heartbeats are meant for Study.optimize; this loop beats for itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed", UserWarning)
        yield


@contextmanager
def study_lock(url: str, study: str) -> Iterator[None]:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        held = ExitStack()
        try:
            held.enter_context(file_lock(path))
        except OSError as e:
            reason = f"{e.strerror} ({path}.lock)"
            raise BenchError(f"cannot open Optuna storage {url}: {reason}") from None
        with held:
            yield
        return
    key = int.from_bytes(hashlib.sha256(study.encode()).digest()[:8], "big", signed=True)
    with _connect(url) as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def _connect(url: str) -> sqlalchemy.Connection:
    try:
        connection = _engine(url).connect()
    except Exception as e:
        reason = first_line(getattr(e, "orig", None) or e)
        raise BenchError(f"cannot open Optuna storage {redact(url)}: {reason}") from None
    if connection.dialect.name != "postgresql":
        connection.close()
        raise BenchError(f"studies need PostgreSQL or SQLite storage, not {redact(url)}")
    return connection


@lru_cache(maxsize=4)
def _engine(url: str) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(url, pool_size=1, pool_pre_ping=True)


@contextmanager
def heartbeat(storage: RDBStorage, trial_id: int, seconds: float) -> Iterator[None]:
    """Record the trial's heartbeat every `seconds` while it runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(seconds):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a missed beat only risks a retry of this trial elsewhere
                pass

    storage.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
