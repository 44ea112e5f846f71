"""A run's data as MLflow dataset inputs (the UI's Dataset column, and runs filterable by it):
one per split, named by the dataset, with the raw files' digest, the raw source, the split's
context and its size and binarization as the profile."""

import hashlib
import json

from mlflow.entities import Dataset as MlflowDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from bench.data.dataset import Dataset

CONTEXTS = {"training": "train", "validation": "val", "test": "test"}
DIGEST_CHARS = 16


def dataset_inputs(data: Dataset) -> list[DatasetInput]:
    raw = data.raw_sha256()
    inputs = []
    for context, split in CONTEXTS.items():
        profile = {
            "split": split,
            "examples": len(getattr(data, split)),
            "binarize": data.binarize,
            "seed": data.seed,
            "image_shape": list(data.image_shape),
            "raw_sha256": raw,
        }
        digest = hashlib.sha256(f"{raw}:{split}:{data.binarize}:{data.seed}".encode()).hexdigest()
        dataset = MlflowDataset(
            name=data.name,
            digest=digest[:DIGEST_CHARS],
            source_type="local",
            source=json.dumps({"uri": data.source}),
            profile=json.dumps(profile),
        )
        inputs.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return inputs
