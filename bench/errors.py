class BenchError(Exception):
    """A user-facing failure: printed as one line, exit code non-zero."""
