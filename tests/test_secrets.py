"""A study on a password-protected PostgreSQL, its MLflow store in PostgreSQL too: the password
is in none of the MLflow store, the Optuna study's attributes, the artifacts, the report, and
what the console showed."""

from pathlib import Path

import psycopg
import pytest

from bench.run import main
from bench.tracking.redaction import redact, without_password
from tests.servers import PASSWORD, fresh_database


def database_text(url: str) -> str:
    """Every row of every table, as text."""
    with psycopg.connect(url) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        rows = [
            str(row)
            for (table,) in tables
            for row in connection.execute(f'SELECT t::text FROM "{table}" t').fetchall()
        ]
    assert rows, f"nothing stored in {redact(url)}"
    return "\n".join(rows)


def files_containing(folder: Path, secret: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_the_password_is_written_nowhere(tmp_path, capfd, monkeypatch, cluster):
    optuna_db = fresh_database(cluster, "optuna")
    mlflow_db = fresh_database(cluster, "mlflow")
    args = [
        "study=smoke",
        "study.space.model.z_dim=[2]",
        "trainer.epochs=1",
        f"storage={optuna_db}",
        f"tracking_uri={mlflow_db}",
    ]
    assert main(args) == 0
    assert main([*args, "study.name=smoke-digits", "model.h_dim=65"]) == 2  # other config
    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # libpq's way: no password in the URLs
    free = [a if "://" not in a else a.replace(f":{PASSWORD}@", "@") for a in args]
    assert main([*free, "study.n_trials=1"]) == 0  # the same study, resumed
    out, err = capfd.readouterr()
    stored = {"MLflow store": database_text(mlflow_db), "Optuna": study_attrs(optuna_db)}
    assert PASSWORD not in out + err
    assert f"optuna-dashboard {without_password(optuna_db)}" in out
    assert "error: study 'smoke-digits' in postgresql://bench:***@" in err
    for name, text in stored.items():
        assert PASSWORD not in text, name
        assert "postgresql://bench:***@" in text or name == "Optuna"  # the params, masked
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in written)
    assert any(p.name == "README.md" and "reports" in p.parts for p in written)
    assert files_containing(tmp_path, PASSWORD.encode()) == []


def study_attrs(url: str) -> str:
    """What the harness writes into the study (its config fingerprint, trial attributes)."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT value_json FROM study_user_attributes UNION ALL "
            "SELECT value_json FROM trial_user_attributes"
        ).fetchall()
    return "\n".join(value for (value,) in rows)


@pytest.mark.parametrize(
    "text,masked",
    [
        ("postgresql://bench:pw@h:5/db", "postgresql://bench:***@h:5/db"),
        ("postgresql+psycopg://u:p%40ss@h/db?x=1", "postgresql+psycopg://u:***@h/db?x=1"),
        (
            "at http://alice:tok@host:5000 and https://b:c@d/",
            "at http://alice:***@host:5000 and https://b:***@d/",
        ),
        ("sqlite:////tmp/x.db and http://host:5000", "sqlite:////tmp/x.db and http://host:5000"),
    ],
)
def test_passwords_in_urls_are_masked(text, masked):
    assert redact(text) == masked
