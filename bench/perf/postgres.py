"""A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's `postgresql` server binaries), for the
scale-out tests and the soak benchmark: a user `bench` with a password, thrown away at the end."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PASSWORD = "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: apt-get install -y postgresql (.ci/run does)"
        )
    return found[-1].parent


@contextmanager
def postgres() -> Iterator[str]:
    """A fresh cluster (initdb, ~1.5 s); yields its URL with user `bench` and a password."""
    bindir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="vae-bench-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
    port = free_port()
    pid = None
    try:
        (root / "pw").write_text(PASSWORD)
        if as_user:
            shutil.chown(root / "pw", "postgres")
        run = lambda *a: subprocess.run([*as_user, *a], check=True, capture_output=True)  # noqa: E731
        run(
            bindir / "initdb",
            "-D",
            root / "data",
            "-U",
            "bench",
            f"--pwfile={root / 'pw'}",
            "--auth=scram-sha-256",
            "-N",
            "-E",
            "UTF8",
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(
            bindir / "pg_ctl", "-D", root / "data", "-o", options, "-l", root / "log", "-w", "start"
        )
        pid = int((root / "data" / "postmaster.pid").read_text().splitlines()[0])
        yield f"postgresql://bench:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        if pid is not None:
            stop_daemon(pid, signal.SIGQUIT)  # immediate shutdown: the cluster is thrown away
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(cluster: str, name: str) -> str:
    """A new database in a running cluster; its URL (same user and password)."""
    import psycopg

    with psycopg.connect(cluster, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return cluster.rsplit("/", 1)[0] + f"/{name}"


def stop_daemon(pid: int, sig: int, timeout: float = 30) -> None:
    """Signal a process that is not our child (pg_ctl daemonized it) and wait until it is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
