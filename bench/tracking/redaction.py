"""Passwords in URLs (`scheme://user:password@host`) kept out of everything the harness writes:
MLflow params, tags and artifacts, study attributes, reports, console and error lines. A user
who keeps them out of the URLs altogether has the ecosystem's own ways: PGPASSWORD or ~/.pgpass
for PostgreSQL (libpq), MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD for MLflow."""

import re

MASK = "***"
_CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][\w+.\-]*://[^:/?#@\s]*):(?P<password>[^@\s]*)@")


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)


def without_password(url: str) -> str:
    """The URL with its password left out, for a command to copy: libpq then takes it from
    PGPASSWORD or ~/.pgpass."""
    return _CREDENTIALS.sub(lambda m: f"{m['head']}@", url)
