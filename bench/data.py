"""Datasets decoded once into tensors on the training device.

Pixels are kept as integer levels k in [0, L-1]. What the model sees:
- binarize=dynamic: a fresh Bernoulli(k/(L-1)) draw every epoch (train);
- binarize=static: one draw with the data seed;
- binarize=none: uniform dequantization x = (k + u)/L, fresh u every epoch (train),
  so a Gaussian density on x bounds the discrete likelihood of k (Theis et al. 2016).
Validation and test are transformed once with fixed seeds: every run is scored on the same data.
Data of known density (`bench.synthetic`: mixture, linear) carry it as `density`; their draws are
binary levels (L = 2, binarization is the identity) or continuous floats (used as they are).
"""

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bench.errors import BenchError
from bench.idx import read_split

if TYPE_CHECKING:
    from bench.synthetic.families import Density

BINARIZE = ("dynamic", "static", "none")
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
SYNTHETIC = ("mixture", "linear")


@dataclass
class Split:
    levels: torch.Tensor  # uint8 pixel levels, (N, D); float32 values for continuous data
    labels: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    image_shape: tuple[int, int]
    n_levels: int  # 0: continuous data
    n_classes: int
    binarize: str
    seed: int
    sha256: dict[str, str] = field(default_factory=dict)
    density: "Density | None" = None  # the data's own density, when known exactly
    source: str = ""  # where the raw data was read from, as a URI
    val_x: torch.Tensor = field(init=False)
    test_x: torch.Tensor = field(init=False)
    _static_train_x: torch.Tensor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.val_x = self.transform(self.val.levels, self._generator(1)).float()
        self.test_x = self.transform(self.test.levels, self._generator(2)).float()
        if self.binarize == "static":
            self._static_train_x = self.transform(self.train.levels, self._generator(3))

    @property
    def x_dim(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    @property
    def is_binary(self) -> bool:
        return self.binarize != "none"

    @property
    def is_continuous(self) -> bool:
        return self.n_levels == 0

    def neg_log_p_data(self, split: str) -> torch.Tensor | None:
        """-ln p_data(x) per example of the val or test split (float64), when it is known."""
        if self.density is None:
            return None
        return -self.density.log_prob(self.split_x(split)[0].cpu()).to(self.val_x.device)

    def _generator(self, stream: int) -> torch.Generator:
        return torch.Generator(self.train.levels.device).manual_seed(self.seed * 1000 + stream)

    def transform(self, levels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Binary draws as bool (1 byte a pixel; batches become float when taken) or floats."""
        if self.is_continuous:
            return levels
        if self.binarize == "none":
            noise = torch.rand(levels.shape, generator=generator, device=levels.device)
            return (levels.float() + noise) / self.n_levels
        # r uniform on {0..L-2}: P(r < k) = k/(L-1) exactly, ~3x faster than torch.bernoulli on CPU
        r = torch.randint(
            0,
            self.n_levels - 1,
            levels.shape,
            generator=generator,
            dtype=torch.uint8,
            device=levels.device,
        )
        return r < levels

    def split_x(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed inputs and labels of the val or test split."""
        if split == "val":
            return self.val_x, self.val.labels
        if split == "test":
            return self.test_x, self.test.labels
        raise ValueError(f"no fixed split named {split!r}")

    def train_x(self, generator: torch.Generator) -> torch.Tensor:
        """The training inputs for one epoch (bool when binary: take batches with `.float()`)."""
        if self._static_train_x is not None:
            return self._static_train_x
        return self.transform(self.train.levels, generator)

    def provenance(self) -> dict[str, Any]:
        known = {}
        if self.density is not None:
            known = {"density": self.density.name}
            known |= {f"density.{k}": v for k, v in self.density.summary().items()}
        return known | {
            "dataset": self.name,
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test),
            "binarize": self.binarize,
            "seed": self.seed,
            "sha256": self.raw_sha256(),
        }

    def raw_sha256(self) -> str:
        """The sha256 over the raw files' sha256s (and a fitted density's parameters)."""
        return hashlib.sha256("".join(sorted(self.sha256.values())).encode()).hexdigest()


def load(cfg: Any, device: torch.device | str = "cpu") -> Dataset:
    """Build the dataset named by `cfg.name` (a `data` config node)."""
    if cfg.binarize not in BINARIZE:
        raise BenchError(
            f"data.binarize must be one of {', '.join(BINARIZE)}, got {cfg.binarize!r}"
        )
    if cfg.name in SYNTHETIC:
        from bench.synthetic.load import load as load_synthetic

        return load_synthetic(cfg, device)
    images, labels, test_images, test_labels, n_levels, sha = _read(cfg)
    side = int(round(images.shape[1] ** 0.5))
    train, val = _hold_out(images, labels, int(cfg.val_size), int(cfg.seed))
    to = lambda s: Split(s.levels.to(device), s.labels.to(device))  # noqa: E731
    return Dataset(
        name=cfg.name,
        train=to(train),
        val=to(val),
        test=to(Split(test_images, test_labels)),
        image_shape=(side, side),
        n_levels=n_levels,
        n_classes=int(max(labels.max(), test_labels.max())) + 1,
        binarize=cfg.binarize,
        seed=int(cfg.seed),
        sha256=sha,
        source=_source(cfg).resolve().as_uri(),
    )


def _source(cfg: Any) -> Path:
    """The bundled file (digits) or the raw folder the IDX files were read from."""
    return digits_file() if cfg.name == "digits" else _raw_folder(cfg)


def _raw_folder(cfg: Any) -> Path:
    """torchvision's layout: ROOT/<Class>/raw."""
    return Path(os.path.expanduser(str(cfg.root))) / TORCHVISION_CLASSES[cfg.name] / "raw"


def source_images(cfg: Any) -> tuple[torch.Tensor, int, dict[str, str]]:
    """The training images of a real dataset as levels, their number of levels and sha256s."""
    images, _, _, _, n_levels, sha = _read(cfg)
    return images, n_levels, sha


def _read(cfg: Any):
    if cfg.name == "digits":
        return _digits(cfg)
    if cfg.name in TORCHVISION_CLASSES:
        train_x, train_y, test_x, test_y, sha = _torchvision(cfg)
        return train_x, train_y, test_x, test_y, 256, sha
    names = ", ".join(["digits", *TORCHVISION_CLASSES, *SYNTHETIC])
    raise BenchError(f"unknown dataset {cfg.name!r}: choose one of {names}")


def _hold_out(
    images: torch.Tensor, labels: torch.Tensor, n_val: int, seed: int
) -> tuple[Split, Split]:
    if not 0 < n_val < len(labels):
        raise BenchError(f"data.val_size must be in 1..{len(labels) - 1}, got {n_val}")
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val], perm[n_val:]
    return Split(images[train], labels[train]), Split(images[val], labels[val])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digits(cfg: Any):
    source = digits_file()
    table = np.loadtxt(source, delimiter=",", dtype=np.int64)  # as sklearn's load_digits reads it
    images = torch.from_numpy(table[:, :-1].astype(np.uint8))
    labels = torch.from_numpy(table[:, -1])
    n_test = int(cfg.test_size)
    if not 0 < n_test < len(labels):
        raise BenchError(f"data.test_size must be in 1..{len(labels) - 1}, got {n_test}")
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(int(cfg.seed) + 1))
    test, rest = perm[:n_test], perm[n_test:]
    sha = {source.name: _sha256(source)}
    return images[rest], labels[rest], images[test], labels[test], 17, sha


def digits_file() -> Path:
    """The 8x8 digits bundled with vae-bench: scikit-learn's copy, byte for byte
    (bench/datasets/README.md)."""
    return Path(__file__).resolve().parent / "datasets" / "digits.csv.gz"


def _torchvision(cfg: Any):
    raw = _raw_folder(cfg)
    _stage_gzipped(raw, [raw, *[Path(p) for p in cfg.get("system_dirs", [])]])
    if not all((raw / f).is_file() for f in IDX_FILES):
        if not cfg.download:
            raise BenchError(_missing(cfg.name, raw, "data.download=false"))
        try:
            _download(cfg.name, raw.parents[1])  # ROOT of ROOT/<Class>/raw
        except Exception as e:  # torchvision raises RuntimeError/URLError/OSError offline
            lines = str(e).strip().splitlines() or [type(e).__name__]
            raise BenchError(_missing(cfg.name, raw, f"download failed: {lines[-1]}")) from None
    try:
        train_x, train_y = read_split(raw / IDX_FILES[0], raw / IDX_FILES[1])
        test_x, test_y = read_split(raw / IDX_FILES[2], raw / IDX_FILES[3])
    except BenchError as e:
        raise BenchError(f"{cfg.name}: {e}") from None
    sha = {f: _sha256(raw / f) for f in IDX_FILES}
    levels = lambda a: torch.from_numpy(a.copy())  # noqa: E731  (IDX arrays are read-only)
    labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return levels(train_x), labels(train_y), levels(test_x), labels(test_y), sha


def _download(name: str, root: Path) -> None:
    """torchvision's download into ROOT/<Class>/raw (torchvision is imported only for this)."""
    import torchvision.datasets

    getattr(torchvision.datasets, TORCHVISION_CLASSES[name])(root, train=True, download=True)


def _stage_gzipped(raw: Path, sources: list[Path]) -> None:
    """Unzip `NAME.gz` from the first source having it into `raw/NAME`; sources stay untouched."""
    for name in IDX_FILES:
        if (raw / name).is_file():
            continue
        gz = next((d / f"{name}.gz" for d in sources if (d / f"{name}.gz").is_file()), None)
        if gz is None:
            continue
        raw.mkdir(parents=True, exist_ok=True)
        tmp = raw / f".{name}.part"
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.rename(raw / name)


def _missing(name: str, raw: Path, why: str) -> str:
    return (
        f"{name} not found in {raw} ({why}); put {', '.join(IDX_FILES)} there "
        f"(gzipped or not), or set data.root=DIR"
    )
