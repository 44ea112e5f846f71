"""How every command ends: one `error:` line and a non-zero exit, never a bare traceback."""

import argparse
import logging
import os
import sys
from collections.abc import Callable


def run_command(command: Callable[[], None]) -> int:
    """0 on success; 2 for bad input or a clear failure, 130 when interrupted, 1 otherwise."""
    from bench import signals
    from bench.errors import BenchError, first_line
    from bench.runtime.allocator import keep_freed_memory
    from bench.tracking.redaction import redact

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    signals.install()
    keep_freed_memory()
    try:
        command()
    except BenchError as e:
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the running MLflow run was marked KILLED", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("VAE_BENCH_DEBUG"):
            raise
        print(
            f"error: {type(e).__name__}: {redact(first_line(e))} "
            "(VAE_BENCH_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


def run_parsed(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    command: Callable[[argparse.Namespace], None],
) -> int:
    """Parse `argv` (default: the command line; kept as `args.argv`), then `run_command`."""
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_intermixed_args(raw)
    args.argv = raw
    return run_command(lambda: command(args))


def key_values(args: list[str], known: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """`key=value` arguments split into those with a `known` key and the rest (overrides)."""
    from bench.errors import BenchError

    bare = [a for a in args if "=" not in a]
    if bare:
        raise BenchError(f"arguments are key=value, got {' '.join(bare)}")
    options = dict(a.split("=", 1) for a in args if a.split("=", 1)[0] in known)
    return options, [a for a in args if a.split("=", 1)[0] not in known]


def key_value_main(doc: str, argv: list[str] | None, body: Callable[[list[str]], None]) -> int:
    """A `key=value` command: `-h`/`--help` prints `doc`, else `run_command` of `body(args)`."""
    args = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(args):
        print(doc.strip())
        return 0
    return run_command(lambda: body(args))
