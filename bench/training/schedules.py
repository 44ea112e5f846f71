"""What changes over the epochs of a training run: the KL (or regularizer) weight of the warm-up,
the learning rate, and when validation says to stop."""

import copy
import math
from typing import Any

import torch

LR_SCHEDULES = ("none", "cosine", "step", "multistep", "burda")
BURDA_STAGES = 8  # Burda et al. 2016: stage i lasts 3^i epochs at lr 1e-3 * 10^(-i/7)


def kl_weight(epoch: int, warmup_epochs: int) -> float:
    """The regularizer's weight in epoch `epoch` (from 1): rising linearly to 1 over
    `warmup_epochs` (Sønderby et al. 2016; epoch / warm-up as in Tomczak's VampPrior code)."""
    return 1.0 if warmup_epochs <= 0 else min(1.0, epoch / warmup_epochs)


def lr_schedule(optimizer: torch.optim.Optimizer, cfg: Any) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch."""
    name = cfg.lr_schedule
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step_epochs, cfg.lr_gamma)
    if name == "multistep":
        milestones = list(cfg.lr_milestones)
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, cfg.lr_gamma)
    factor = burda_factor if name == "burda" else (lambda _: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def burda_factor(epoch: int) -> float:
    """10^(-i/7) in stage i, which starts after 3^0 + ... + 3^(i-1) epochs (0-based epoch)."""
    stage = 0
    while stage < BURDA_STAGES - 1 and epoch >= (3 ** (stage + 1) - 1) // 2:
        stage += 1
    return 10 ** (-stage / 7)


class EarlyStopping:
    """Keeps the weights of the epoch with the lowest validation criterion; says to stop after
    `patience` epochs without a new best (0: never), counted from the end of the warm-up at the
    earliest (as Tomczak's VampPrior code resets its count during the warm-up)."""

    def __init__(self, patience: int, warmup_epochs: int = 0):
        self.patience, self.warmup_epochs = patience, warmup_epochs
        self.best, self.best_epoch, self.state = math.inf, 0, None

    def update(self, epoch: int, criterion: float, model: torch.nn.Module) -> bool:
        if criterion < self.best:
            self.best, self.best_epoch = criterion, epoch
            if self.patience > 0:
                self.state = copy.deepcopy(model.state_dict())
        since = epoch - max(self.best_epoch, self.warmup_epochs)
        return self.patience > 0 and since >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.state = state["best"], state["best_epoch"], state["state"]

    def restore(self, model: torch.nn.Module, last_epoch: int) -> int:
        """Loads the best weights (with patience) and returns the epoch they are from; without
        patience the last epoch's weights stay and `last_epoch` is returned."""
        if self.state is None:
            return last_epoch
        model.load_state_dict(self.state)
        return self.best_epoch
