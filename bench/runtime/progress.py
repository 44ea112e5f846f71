"""Progress bars on long evaluation work: on a terminal only (quiet in CI and in logs), and only
once the work has run a few seconds (quiet for the many short calls)."""

from tqdm import tqdm

SHOW_AFTER_S = 5.0


def progress(total: int, desc: str, unit: str) -> tqdm:
    """A bar of `total` `unit`s, advanced with `.update(n)`; use it as a context manager."""
    return tqdm(total=total, desc=desc, unit=unit, delay=SHOW_AFTER_S, leave=False, disable=None)
