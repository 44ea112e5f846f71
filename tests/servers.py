"""Real PostgreSQL and MLflow servers on 127.0.0.1 for the tests, stopped by process id."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
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
            _stop_daemon(pid, signal.SIGQUIT)  # immediate shutdown: the cluster is thrown away
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(cluster: str, name: str) -> str:
    """A new database in a running cluster; its URL (same user and password)."""
    import psycopg

    with psycopg.connect(cluster, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return cluster.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def mlflow_server(backend: str, artifacts: Path) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _answers(f"{uri}/health"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start (exit code {proc.poll()})")
            time.sleep(0.5)
        yield uri
    finally:
        stop_child(proc)


@contextmanager
def tcp_proxy(target: str) -> Iterator[str]:
    """A TCP proxy to the server at `target` (a URL); its own URL. Leaving the block cuts every
    connection and refuses new ones, as a server that went down does: the server behind it, and
    its store, stay for the next proxy."""
    upstream = urllib.parse.urlsplit(target)
    listener = socket.create_server(("127.0.0.1", 0))
    live: list[socket.socket] = []

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _cut(source, sink)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was shut down
                return
            server = socket.create_connection((upstream.hostname, upstream.port))
            live.extend((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=pipe, args=(source, sink), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        _cut(listener, *live)


def _cut(*sockets: socket.socket) -> None:
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop_child(proc: subprocess.Popen, grace: float = 1) -> None:
    """SIGTERM to the child's process group, SIGKILL after `grace` seconds. Waits on the child
    itself: a dead child not yet waited for is a zombie, which kill(pid, 0) finds alive."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # what the leader left behind in its group
    except ProcessLookupError:
        pass


def _stop_daemon(pid: int, sig: int, timeout: float = 30) -> None:
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
