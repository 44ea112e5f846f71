"""Real PostgreSQL and MLflow servers on 127.0.0.1 for the tests, stopped by process id."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.perf.postgres import PASSWORD, free_port, fresh_database, postgres  # noqa: F401


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
    no_jobs = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runners
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=no_jobs,
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
            for end in (client, server):  # relayed in pieces, each would wait for a delayed ACK
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
