"""Published reference numbers (bench/references.yaml) and how a run's setup differs from them."""

from importlib.resources import files
from typing import Any

import yaml

from models import variant, variant_names

COMPARED = (
    "binarize", "likelihood", "stochastic_layers", "n_hidden", "h_dim", "z_dim", "activation",
    "k", "epochs",
)  # fmt: skip


def references() -> list[dict[str, Any]]:
    return yaml.safe_load(files("bench").joinpath("references.yaml").read_text())


def matching(dataset: str, binarize: str, variants: set[str]) -> list[dict[str, Any]]:
    """Entries for this data and these variants, with as many stochastic layers as ours; a VAE's
    only as trained with one sample (its multi-sample rows average k ELBOs)."""
    return [
        r
        for r in references()
        if r["dataset"] == dataset
        and r["binarize"] == binarize
        and r["variant"] in variants
        and r["stochastic_layers"] == stochastic_layers(r["variant"])
        and "nll" in r
        and (r["variant"] != "vae" or r["k_train"] == 1)
    ]


def stochastic_layers(name: str) -> int:
    """Our variant's stochastic layers, what a published row is matched on (1 for a name that
    is not a variant of ours)."""
    return variant(name).stochastic_layers if name in variant_names() else 1


def anchors(dataset: str) -> list[dict[str, Any]]:
    """Entries in bits/dim for this data: other model classes (hierarchical VAEs), context for
    any run of ours rather than its like-for-like comparison."""
    return [r for r in references() if r["dataset"] == dataset and "bits_per_dim" in r]


def differences(reference: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """'key: ours vs theirs' for every compared setting that differs (or is unknown)."""
    out = []
    for key in COMPARED:
        theirs, ours = reference.get(key), run.get(key)
        if theirs is None:
            out.append(f"{key}: ours {ours}, theirs not recorded")
        elif str(theirs) != str(ours):
            out.append(f"{key}: ours {ours} vs {theirs}")
    return out
