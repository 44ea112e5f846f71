"""The pruning replay against Optuna's own MedianPruner on the same curves."""

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from bench.report.pruning import Trial, replay

EPOCHS, STARTUP = 10, 3


def crossing_curves(seed: int, n: int = 12) -> list[Trial]:
    """Falling curves with noise whose order changes: fast starters are not always best."""
    rng = np.random.default_rng(seed)
    trials = []
    for number in range(n):
        start, floor, rate = rng.uniform(40, 60), rng.uniform(20, 30), rng.uniform(0.1, 0.8)
        epochs = np.arange(1, EPOCHS + 1)
        curve = floor + (start - floor) * np.exp(-rate * epochs) + rng.normal(0, 0.5, EPOCHS)
        trials.append(Trial(number, curve, float(curve[-1])))
    return trials


def optuna_pruned(trials: list[Trial], warmup: int) -> dict[int, int]:
    """Each trial reported epoch by epoch to a real study; where the harness would stop it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=STARTUP, n_warmup_steps=warmup)
    study = optuna.create_study(pruner=pruner)
    pruned = {}
    for trial in trials:
        handle = study.ask()
        for epoch, value in enumerate(trial.curve, start=1):
            handle.report(float(value), epoch)
            if epoch < EPOCHS and handle.should_prune():  # as bench.study.loop does
                pruned[trial.number] = epoch
                study.tell(handle, state=TrialState.PRUNED)
                break
        else:
            study.tell(handle, trial.final)
    return pruned


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_replay_prunes_what_optuna_prunes(seed):
    trials = crossing_curves(seed)
    seen_pruning = False
    for warmup in range(0, EPOCHS + 1):
        expected = optuna_pruned(trials, warmup)
        assert replay(trials, warmup, STARTUP).pruned == expected, warmup
        seen_pruning |= bool(expected)
    assert seen_pruning  # the curves do exercise the pruner


def test_a_mistake_is_a_pruned_trial_that_would_finish_in_the_best_quarter():
    slow_best = np.linspace(60, 10, EPOCHS)  # worst early, best at the end
    steady = [np.linspace(40, 30 + i, EPOCHS) for i in range(4)]
    trials = [Trial(i, c, float(c[-1])) for i, c in enumerate([*steady, slow_best])]
    early = replay(trials, warmup=1, startup=STARTUP)
    assert early.pruned == {3: 2, 4: 1} and early.mistakes == [4]  # trial 3 ends 4th of 5
    assert early.epochs_saved == pytest.approx((8 + 9) / (5 * EPOCHS))
    late = replay(trials, warmup=EPOCHS - 1, startup=STARTUP)
    assert late.pruned == {3: EPOCHS - 1} and late.mistakes == []  # the slow one now finishes
