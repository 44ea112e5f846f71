"""A results file made of blocks, one per device (and measurement): a run rewrites only its own
block, so the GPU rows written on a GPU node stand beside the CPU rows written here."""

import re
from pathlib import Path


def _marks(key: str) -> tuple[str, str]:
    return f"<!-- bench.perf: {key} -->", f"<!-- /bench.perf: {key} -->"


def write_block(path: Path, key: str, body: str, title: str) -> None:
    """Put `body` in the block `key` of `path`: replaced where it is, else appended; a new file
    starts with `title`."""
    start, end = _marks(key)
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else f"{title}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


def read_block(path: Path, key: str) -> str | None:
    start, end = _marks(key)
    found = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), path.read_text(), re.DOTALL)
    return found[1] if found else None
