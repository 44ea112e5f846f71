class BenchError(Exception):
    """A user-facing failure: printed as one line, exit code non-zero."""


class Pruned(Exception):
    """The pruner stopped a trial after this epoch."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


def first_line(error: BaseException) -> str:
    """The first line of an error's message (a database error's can run to a page of SQL)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
