"""A signal that lands in a finalizer is dropped by Python; the harness raises it again."""

import os
import signal
import sys

import pytest

from bench import signals
from bench.data.load import load
from bench.job import build_model
from bench.tracking import mlflow_runs
from bench.training.loop import train
from tests.conftest import config


@pytest.fixture
def installed():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signals.install()
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)
    signals._received = None


class SignalledWhileFinalized:
    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs in here: "Exception ignored"


def test_a_signal_swallowed_by_a_finalizer_is_raised_at_the_next_safe_point(installed, monkeypatch):
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_value))
    SignalledWhileFinalized()  # created and collected at once; nothing propagates from here
    assert [repr(e) for e in dropped] == ["KeyboardInterrupt('SIGTERM')"]  # Python dropped it...
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        signals.raise_if_interrupted()  # ...the harness does not


def test_the_training_loop_stops_on_a_swallowed_signal(installed, monkeypatch):
    monkeypatch.setattr(sys, "unraisablehook", lambda u: None)
    cfg = config("trainer.epochs=1", "model.h_dim=16")
    data = load(cfg.data)
    model = build_model(cfg, data, 0)
    SignalledWhileFinalized()
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        train(model, data, cfg.trainer)


def test_a_signal_during_a_store_write_lets_it_finish_then_raises(installed, tmp_path):
    client = mlflow_runs.connect(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(mlflow_runs.experiment_id(client, "signals")).info.run_id
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), signals.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        mlflow_runs.log_metrics(client, run_id, {"after": 1.0})  # nested: raised at the outer end
    assert client.get_run(run_id).data.metrics == {"after": 1.0}


def test_a_signal_being_handled_is_not_raised_again_by_a_write(installed):
    written = []
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            with signals.deferred():  # the run's ending, recorded while the signal unwinds
                written.append("status")
            written.append("after")
            raise
    assert written == ["status", "after"]
