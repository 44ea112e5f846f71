"""Decoded images kept on disk, so a folder of JPEGs or PNGs is decoded once, not per run.

An entry is keyed by what it was decoded from (each file's path, size and modification time)
and how (the reader's parameters): a changed, added or removed file makes a new entry. It holds
the arrays and the content digest computed when it was built, and is written under a temporary
name and renamed, so a killed run never leaves half an entry. Entries are plain .npz arrays,
read without pickles.
"""

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

Arrays = dict[str, np.ndarray]
DIGEST = "__sha256__"


def cached(
    cache_dir: str | Path | None,
    files: Iterable[Path],
    params: dict,
    build: Callable[[], tuple[Arrays, str]],
) -> tuple[Arrays, str]:
    """(arrays, sha256 of the files' contents) from the cache, else from `build()`, stored."""
    if cache_dir is None:
        return build()
    entry = Path(os.path.expanduser(str(cache_dir))) / f"{_key(files, params)}.npz"
    found = _read(entry)
    if found is not None:
        return found
    arrays, digest = build()
    _write(entry, arrays, digest)
    return arrays, digest


def _key(files: Iterable[Path], params: dict) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for path in files:
        stat = path.stat()
        h.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _read(entry: Path) -> tuple[Arrays, str] | None:
    if not entry.is_file():
        return None
    try:
        with np.load(entry, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # a damaged entry is rebuilt
    digest = arrays.pop(DIGEST, None)
    return (arrays, str(digest)) if digest is not None else None


def _write(entry: Path, arrays: Arrays, digest: str) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f".{entry.stem}.{os.getpid()}.npz")
        np.savez(tmp, **arrays, **{DIGEST: np.array(digest)})
        tmp.replace(entry)
    except OSError:
        pass  # a read-only or full cache only costs decoding again
