"""Datasets decoded once into tensors on the training device.

Pixels are kept as integer levels k in [0, L-1]. What the model sees:
- binarize=dynamic: a fresh Bernoulli(k/(L-1)) draw every epoch (train);
- binarize=static: one draw with the data seed;
- binarize=none: uniform dequantization x = (k + u)/L, fresh u every epoch (train),
  so a density on x (Gaussian, continuous Bernoulli) bounds the discrete likelihood of k (Theis
  et al. 2016); with dequantize=False (a discretized likelihood) the levels x = k/(L-1).
Validation and test are transformed once with fixed seeds: every run is scored on the same data.
Data of known density (`bench.data.synthetic`: mixture, linear) carry it as `density`; their
draws are binary levels (L = 2, binarization is the identity) or continuous floats (used as
they are).
"""

import copy
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from bench.data.synthetic.families import Density

BINARIZE = ("dynamic", "static", "none")


@dataclass
class RawImages:
    """A dataset as its reader gives it, before the splits are held out: images (N, C, H, W) as
    uint8 levels (float32 in [0, 1] for continuous data), labels or None, and the test and
    validation splits when the source has its own."""

    images: torch.Tensor
    labels: torch.Tensor | None
    test_images: torch.Tensor | None
    test_labels: torch.Tensor | None
    n_levels: int  # 0: continuous
    sha256: dict[str, str]
    source: str  # URI of what was read
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None


@dataclass
class Split:
    levels: torch.Tensor  # uint8 pixel levels, (N, C*H*W); float32 values for continuous data
    labels: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    image_shape: tuple[int, int, int]  # channels, height, width; levels are flattened C-major
    n_levels: int  # 0: continuous data
    n_classes: int  # 1 when the data have no labels
    binarize: str
    seed: int
    dequantize: bool = True  # binarize=none: (k + u)/L, or k/(L-1) for a discrete likelihood
    sha256: dict[str, str] = field(default_factory=dict)
    density: "Density | None" = None  # the data's own density, when known exactly
    source: str = ""  # where the raw data was read from, as a URI
    labelled: bool = True  # whether labels came with the images (what cvae conditions on)
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
        channels, height, width = self.image_shape
        return channels * height * width

    @property
    def bytes_per_image(self) -> int:
        """What one training image takes on the device: a byte a pixel (4 when continuous)."""
        return self.x_dim * self.train.levels.element_size()

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
        if self.binarize == "none" and not self.dequantize:
            return levels.float() / (self.n_levels - 1)
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

    def train_batch(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The float inputs of the training images `rows`, binarized or dequantized afresh (one
        draw of `generator` per pixel of the batch): the split itself stays 1 byte a pixel."""
        if self._static_train_x is not None:
            return self._static_train_x[rows].float()
        return self.transform(self.train.levels[rows], generator).float()

    def first_test_examples(self, n: int) -> "Dataset":
        """The same data with only the first `n` test examples, their fixed draws kept."""
        out = copy.copy(self)
        out.test = Split(self.test.levels[:n], self.test.labels[:n])
        out.test_x = self.test_x[:n]
        return out

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
