"""A worker SIGKILLed at each named point of its life leaves a study that the next worker
finishes at exactly its target: every grid point COMPLETE once, nothing RUNNING in Optuna or
MLflow, one FINISHED run per COMPLETE trial, the parent run FINISHED."""

import random
import signal
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from bench.study.audit import Audit, audit
from bench.study.space import AskTellGridSampler
from bench.study.storage import open_storage
from tests import workers

GRID = [2, 3]
POINTS = [
    "study:opened",
    "parent:created",
    "claim:asked",  # the wedge: a RUNNING trial with no params, heartbeat or worker tag
    "claim:suggested",
    "claim:beating",
    "claim:tagged",
    "trial:run-created",
    "job:trained",
    "job:evaluated",
    "trial:evaluated",
    "trial:told",
    "parent:finishing",
]


def study_args(tmp_path: Path, grace: int = 2) -> list[str]:
    return [
        "study=smoke",
        f"study.space.model.z_dim=[{','.join(map(str, GRID))}]",
        "trainer.epochs=1",
        "eval.gap_examples=0",
        "study.heartbeat_seconds=1",
        f"study.grace_seconds={grace}",
        f"storage=sqlite:///{tmp_path / 'optuna.db'}",
        f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "progress=false",
    ]


def killed_at(point: str, args: list[str], tmp_path: Path) -> None:
    code = workers.finish(workers.start(args, tmp_path, kill_at=point), timeout=120)
    assert code == -signal.SIGKILL, f"the worker did not reach {point} (exit code {code})"


def audited(tmp_path: Path, points: int) -> Audit:
    optuna_db, mlflow_db = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    return audit(optuna_db, mlflow_db, "smoke-digits", points, "model.z_dim")


def assert_finished_exactly(tmp_path: Path, args: list[str]) -> None:
    assert workers.finish(workers.start(args, tmp_path), timeout=120) == 0, "the rerun wedged"
    result = audited(tmp_path, len(GRID))
    assert result.problems == []
    assert result.states == {"COMPLETE": len(GRID), "FAIL": result.requeued} or (
        result.states == {"COMPLETE": len(GRID)} and result.requeued == 0
    )


def test_workers_killed_at_every_point_of_their_life_leave_a_study_that_finishes(tmp_path):
    """One worker after another, each killed at the next point; each finds what the last left."""
    args = study_args(tmp_path)
    for point in POINTS:
        killed_at(point, args, tmp_path)
    assert_finished_exactly(tmp_path, args)


def test_a_worker_killed_while_requeueing_a_dead_workers_trial(tmp_path):
    args = study_args(tmp_path, grace=600)  # this host's dead-process check, not the heartbeat's
    killed_at("claim:tagged", args, tmp_path)  # a trial of a dead worker, to be recovered
    killed_at("recovery:requeued", args, tmp_path)  # requeued, not yet FAIL
    assert_finished_exactly(tmp_path, args)


def test_a_worker_killed_between_the_stale_check_and_its_requeue(tmp_path):
    """A worker on another host claimed a point, beat once and went silent; the worker that
    finds it stale dies after Optuna's FAIL and before the requeue."""
    args = study_args(tmp_path)
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db", 1, 2, lambda study, trial: None)
    grid = AskTellGridSampler({"model.z_dim": GRID, "trainer.seed": [0]}, seed=0)
    study = optuna.create_study(study_name="smoke-digits", storage=storage, sampler=grid)
    trial = study.ask()
    for key, choices in grid._search_space.items():
        trial.suggest_categorical(key, choices)
    storage.record_heartbeat(trial._trial_id)
    trial.set_user_attr("worker", "another-host:4242")
    time.sleep(3)  # past the 2 s grace period
    killed_at("recovery:stale-failed", args, tmp_path)
    lost, *others = optuna.load_study(study_name="smoke-digits", storage=storage).get_trials()
    assert lost.state == TrialState.FAIL  # by Optuna's stale check, and not yet requeued:
    assert not [t for t in others if lost.number in t.system_attrs.get("retry_history", [])]
    assert_finished_exactly(tmp_path, args)


def test_soak_workers_killed_at_random_moments(tmp_path):
    """Four workers on an eight-point grid, one SIGKILLed every 0.3-1.2 s for 10 s and a fresh
    one started in its place (kills land in start-up, claims, training, evaluation, logging);
    then the workers left finish and one more is started."""
    grid = list(range(2, 10))
    args = study_args(tmp_path)
    args[1] = f"study.space.model.z_dim=[{','.join(map(str, grid))}]"
    rng = random.Random(0)
    live = [workers.start(args, tmp_path) for _ in range(4)]
    kills, deadline = 0, time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 1.2))
        running = [p for p in live if p.is_alive()]
        if not running:
            break
        victim = rng.choice(running)
        victim.kill()
        victim.join()
        kills += 1
        live = [p for p in running if p is not victim] + [workers.start(args, tmp_path)]
    assert kills >= 6
    assert [workers.finish(p, timeout=120) for p in live] == [0] * len(live)
    assert workers.finish(workers.start(args, tmp_path), timeout=120) == 0
    result = audit(
        args[6].split("=", 1)[1], args[7].split("=", 1)[1], "smoke-digits", 8, "model.z_dim"
    )
    assert result.problems == [] and result.states["COMPLETE"] == 8
