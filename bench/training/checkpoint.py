"""A training run's state at the end of an epoch, enough to go on from it with the same numbers:
weights, optimizer and learning-rate schedule, early stopping's best, the per-epoch history, and
the random streams (the data's generator and torch's global one)."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.errors import BenchError
from bench.training.schedules import EarlyStopping

CheckpointWriter = Callable[[dict[str, Any]], None]
FORMAT = 1


@dataclass
class Checkpointing:
    """Calls `write` with the state at the end of an epoch once `minutes` have passed since the
    last call (0: every epoch)."""

    write: CheckpointWriter
    minutes: float
    written: bool = False  # whether this run has written one yet
    _last: float = field(default_factory=time.monotonic)

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.minutes * 60

    def __call__(self, state: dict[str, Any]) -> None:
        self.write(state)
        self.written, self._last = True, time.monotonic()


@dataclass
class TrainingParts:
    """What a run's training state is held in."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    stopping: EarlyStopping
    history: list[dict[str, float]]
    generator: torch.Generator

    def state(self, epoch: int, trained: bool = False) -> dict[str, Any]:
        """The state at the end of `epoch` (tensors shared with the run: save it at once);
        `trained`: training ended there (the last epoch, or early stopping's), so a resume
        trains no more and goes on to the evaluation."""
        return {
            "format": FORMAT,
            "epoch": epoch,
            "trained": trained,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "stopping": self.stopping.state_dict(),
            "history": list(self.history),
            "random": _random_state(self.generator),
        }

    def restore(self, state: dict[str, Any]) -> int:
        """Loads a `state` into the parts; returns the epoch to go on with."""
        if state.get("format") != FORMAT:
            found = state.get("format")
            raise BenchError(f"checkpoint format {found!r}; this harness reads {FORMAT}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.stopping.load_state_dict(state["stopping"])
        self.history.extend(state["history"])
        _restore_random_state(self.generator, state["random"])
        return int(state["epoch"]) + 1


def _random_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if generator.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(generator.device)
    return state


def _restore_random_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    generator.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), generator.device)
