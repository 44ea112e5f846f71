"""A training run's state at the end of an epoch, enough to go on from it with the same numbers:
weights, optimizer and learning-rate schedule, early stopping's best, the per-epoch history, and
the random streams (the data's generator and torch's global one)."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

CheckpointWriter = Callable[[dict[str, Any]], None]
FORMAT = 1


@dataclass
class Checkpointing:
    """Calls `write` with the state at the end of an epoch once `minutes` have passed since the
    last call (0: every epoch)."""

    write: CheckpointWriter
    minutes: float
    _last: float = field(default_factory=time.monotonic)

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.minutes * 60

    def __call__(self, state: dict[str, Any]) -> None:
        self.write(state)
        self._last = time.monotonic()


def random_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if generator.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(generator.device)
    return state


def restore_random_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    generator.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), generator.device)
