"""A named dataset's files in torchvision's layout under data.root: found there, staged from a
read-only system folder, or downloaded by torchvision; when none of these works, one line
saying which files to put in which folder."""

import gzip
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data.dataset import RawImages
from bench.errors import BenchError


@dataclass(frozen=True)
class NamedSet:
    name: str
    folder: str  # under data.root, where torchvision puts the files
    files: tuple[str, ...]  # what must be in the folder (a trailing / marks a subfolder)
    read: Callable[[Path, Any], RawImages]
    download: Callable[[Path], None]  # torchvision's download, given the folder
    hint: str = ""  # appended to the list of missing files
    labelled: bool = True  # whether its images come with class labels

    def missing(self, folder: Path) -> list[str]:
        return [f for f in self.files if not (folder / f.rstrip("/")).exists()]


def fetch(named: NamedSet, cfg: Any) -> Path:
    """The folder holding every file of `named`, downloading them when allowed."""
    folder = Path(os.path.expanduser(str(cfg.root))) / named.folder
    _stage_gzipped(folder, named.files, [folder, *map(Path, cfg.get("system_dirs") or [])])
    if not named.missing(folder):
        return folder
    if not cfg.download:
        raise BenchError(_missing(named, folder, "data.download=false"))
    try:
        named.download(folder)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError offline
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise BenchError(_missing(named, folder, f"download failed: {lines[-1]}")) from None
    if named.missing(folder):
        raise BenchError(_missing(named, folder, "not all downloaded"))
    return folder


def _stage_gzipped(folder: Path, files: tuple[str, ...], sources: list[Path]) -> None:
    """Unzip `NAME.gz` from the first source having it into `folder/NAME`; sources stay
    untouched (Debian's dataset packages ship the IDX files gzipped, read-only)."""
    for name in files:
        if (folder / name).is_file():
            continue
        gz = next((d / f"{name}.gz" for d in sources if (d / f"{name}.gz").is_file()), None)
        if gz is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.part"
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.rename(folder / name)


def _missing(named: NamedSet, folder: Path, why: str) -> str:
    return (
        f"{named.name} not found in {folder} ({why}); put {', '.join(named.missing(folder))} "
        f"there{named.hint}, or set data.root=DIR"
    )
