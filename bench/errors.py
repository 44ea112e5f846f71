class BenchError(Exception):
    """A user-facing failure: printed as one line, exit code non-zero."""


class Pruned(Exception):
    """The pruner stopped a trial after this epoch."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch
