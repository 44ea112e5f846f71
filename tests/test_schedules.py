"""What changes over a run's epochs: the warm-up's weight, the learning rate, early stopping."""

import pytest
import torch

from bench.config import load_config
from bench.training.loop import Steps, validation_elbo
from bench.training.schedules import EarlyStopping, burda_factor, kl_weight, lr_schedule
from models.base import LossParts
from tests.test_training import fit


def test_warmup_weight_rises_linearly_to_one_and_is_one_without_warmup():
    assert [kl_weight(e, 4) for e in range(1, 7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert kl_weight(1, 0) == 1.0


def test_the_loop_weights_the_regularizer_by_the_warmup_and_logs_it():
    _, _, history = fit("trainer.epochs=4", "trainer.warmup_epochs=2")
    assert [h["train/kl_weight"] for h in history] == [0.5, 1.0, 1.0, 1.0]
    recon, kl = torch.tensor([3.0]), torch.tensor([2.0])
    steps = Steps(None, None, None, kl_weight=0.25)
    assert steps.objective(LossParts(recon, kl, recon + kl)) == 3.5


@pytest.mark.parametrize(
    "schedule,expected",
    [
        ("none", [1e-3] * 6),
        ("step", [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]),
        ("multistep", [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]),
        (
            "cosine",
            [1e-3 * (1 + torch.cos(torch.tensor(e * torch.pi / 6))).item() / 2 for e in range(6)],
        ),
    ],
)
def test_learning_rate_schedules_per_epoch(schedule, expected):
    cfg = load_config(
        [
            f"trainer.lr_schedule={schedule}",
            "trainer.lr_step_epochs=2",
            "trainer.lr_milestones=[3,5]",
            "trainer.epochs=6",
        ]
    )
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.trainer.lr)
    scheduler, rates = lr_schedule(optimizer, cfg.trainer), []
    for _ in range(6):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx(expected)


def test_burda_schedule_stages_last_three_to_the_i_epochs():
    starts = [0, 1, 4, 13, 40, 121, 364, 1093]
    for i, start in enumerate(starts):
        assert burda_factor(start) == pytest.approx(10 ** (-i / 7))
        if start:
            assert burda_factor(start - 1) == pytest.approx(10 ** (-(i - 1) / 7))
    assert burda_factor(5000) == pytest.approx(10 ** (-1))


def test_early_stopping_restores_the_best_validation_weights():
    model, data, history = fit(
        "trainer.epochs=40", "trainer.patience=2", "trainer.lr=0.03", "trainer.seed=3"
    )
    val = [h["val/neg_elbo"] for h in history]
    assert len(history) < 40  # it stopped
    assert history.best_epoch == 1 + val.index(min(val)) <= len(history) - 2
    restored = validation_elbo(model, data, 3)["neg_elbo"]
    assert restored == min(val)


def test_patience_counts_from_the_end_of_the_warmup():
    stopping, model = EarlyStopping(patience=2, warmup_epochs=5), torch.nn.Linear(1, 1)
    worse = [stopping.update(epoch, 10.0 + epoch, model) for epoch in range(1, 9)]
    assert worse == [False] * 6 + [True, True]  # best at 1; counting starts at epoch 5
    assert stopping.restore(model, 8) == 1
