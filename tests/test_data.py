from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from bench.data.load import load
from bench.data.named.idx_sets import IDX_FILES
from bench.errors import BenchError
from bench.run import main
from tests.conftest import OFFLINE, config, write_idx, write_mnist_like
from tests.workers import Worker


def test_digits_splits_are_disjoint_and_fixed():
    cfg = config("data=digits")
    a, b = load(cfg.data), load(cfg.data)
    assert (len(a.train), len(a.val), len(a.test)) == (1797 - 360 - 180, 180, 360)
    assert a.image_shape == (1, 8, 8) and a.n_levels == 17 and a.n_classes == 10
    torch.testing.assert_close(a.test_x, b.test_x)
    torch.testing.assert_close(a.val_x, b.val_x)
    rows = {tuple(r.tolist()) for r in a.test.levels}
    assert (
        sum(tuple(r.tolist()) in rows for r in a.train.levels) < 20
    )  # digits has a few duplicates


def test_binarization_modes():
    dynamic = load(config("data.binarize=dynamic").data)
    g = torch.Generator().manual_seed(0)
    rows = torch.arange(len(dynamic.train))
    first, second = dynamic.train_batch(rows, g), dynamic.train_batch(rows, g)
    assert dynamic.train.levels.dtype == torch.uint8 and dynamic.bytes_per_image == 64
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
    assert abs(first.mean() - (dynamic.train.levels.float() / (dynamic.n_levels - 1)).mean()) < 0.01
    static = load(config("data.binarize=static").data)
    assert torch.equal(static.train_batch(rows[:9], g), static.train_batch(rows[:9], g))


def test_dequantized_levels_stay_in_their_bins():
    data = load(config("data.binarize=none", "model.likelihood=gaussian").data)
    x = data.train_batch(torch.arange(len(data.train)), torch.Generator().manual_seed(0))
    assert 0 <= x.min() and x.max() < 1
    assert torch.equal((x * data.n_levels).floor().to(torch.uint8), data.train.levels)
    assert not data.is_binary


def test_torchvision_path_on_written_idx_files(tmp_path):
    arrays = write_mnist_like(tmp_path / "MNIST" / "raw", gz=True)
    data = load(config("data=mnist", f"data.root={tmp_path}", "data.val_size=10").data)
    assert (len(data.train), len(data.val), len(data.test)) == (50, 10, 20)
    assert data.image_shape == (1, 28, 28) and data.n_levels == 256
    expected = torch.from_numpy(arrays["t10k-images-idx3-ubyte"].reshape(20, -1).astype(np.uint8))
    assert torch.equal(data.test.levels, expected)
    assert set(data.sha256) == set(IDX_FILES)
    assert len(data.provenance()["sha256"]) == 64


def test_fashion_mnist_from_a_read_only_system_dir(tmp_path):
    system = tmp_path / "usr-share"
    write_mnist_like(system, gz=True)
    before = sorted(p.name for p in system.iterdir())
    cfg = config(
        "data=fashion-mnist",
        f"data.root={tmp_path / 'cache'}",
        "data.val_size=10",
        f"data.system_dirs=[{system}]",
        "data.download=false",
    )
    data = load(cfg.data)
    assert len(data.test) == 20
    assert sorted(p.name for p in system.iterdir()) == before
    assert all((tmp_path / "cache" / "FashionMNIST" / "raw" / f).is_file() for f in IDX_FILES)


@pytest.mark.parametrize("name", ["mnist", "kmnist"])
def test_offline_download_gives_a_clear_error(tmp_path, offline, name):
    with pytest.raises(BenchError, match=r"not found in .*download failed.*put train-images"):
        load(config(f"data={name}", f"data.root={tmp_path}").data)


def test_missing_data_without_download(tmp_path):
    with pytest.raises(BenchError, match="data.download=false"):
        load(config("data=mnist", f"data.root={tmp_path}", "data.download=false").data)


def test_offline_cli_is_one_line(tmp_path, tracking_uri):
    args = ["data=kmnist", f"data.root={tmp_path}", f"tracking_uri={tracking_uri}"]
    worker = Worker(args, tmp_path, env=OFFLINE)  # a forked `python -m bench.run`, offline
    _, stderr = worker.communicate(timeout=300)
    assert worker.returncode == 2
    assert stderr.startswith("error: kmnist not found in") and stderr.count("\n") == 1
    client = MlflowClient(tracking_uri)  # refused before any run was made
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def truncated(payload: bytes) -> bytes:
    return payload[:1000]


def zeroed(payload: bytes) -> bytes:
    return bytes(len(payload))


def header_only(payload: bytes) -> bytes:
    return payload[:3]


CORRUPT = [
    (
        "train-images-idx3-ubyte",
        truncated,
        "1000 bytes, but its header (60×28×28 bytes) needs 47056",
    ),
    (
        "train-images-idx3-ubyte",
        zeroed,
        "bad magic number 0x00000000, expected 0x00000803 (unsigned bytes, 3 dimensions)",
    ),
    ("t10k-labels-idx1-ubyte", header_only, "3 bytes, too short for an IDX header"),
]


@pytest.mark.parametrize("name,corrupt,reason", CORRUPT)
def test_a_corrupt_idx_file_is_named_with_what_is_wrong(tmp_path, capsys, name, corrupt, reason):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_like(raw)
    (raw / name).write_bytes(corrupt((raw / name).read_bytes()))
    args = ["data=mnist", f"data.root={tmp_path}", "data.val_size=10", "data.download=false"]
    assert main([*args, f"tracking_uri=sqlite:///{tmp_path / 'm.db'}"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: mnist: cannot read IDX file {raw / name}: {reason}\n"


def test_labels_that_do_not_match_the_images_are_refused(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_like(raw)
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(59))
    with pytest.raises(BenchError, match="59 labels for the 60 images of train-images-idx3-ubyte"):
        load(config("data=mnist", f"data.root={tmp_path}", "data.val_size=10").data)


def test_digits_are_scikit_learns_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = load(config("data=digits").data)
    ours = torch.cat([data.train.levels, data.val.levels, data.test.levels])
    labels = torch.cat([data.train.labels, data.val.labels, data.test.labels])
    theirs = {
        (tuple(x), int(y)) for x, y in zip(bunch.data.astype(np.uint8), bunch.target, strict=True)
    }
    assert {(tuple(x.tolist()), int(y)) for x, y in zip(ours, labels, strict=True)} == theirs
    assert len(ours) == len(bunch.data)


def test_the_bundled_digits_are_scikit_learns_file_byte_for_byte():
    """Same bytes, same sha256: runs and studies made with scikit-learn's copy stay comparable."""
    import sklearn

    from bench.data.sources import digits_file

    theirs = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    assert digits_file().read_bytes() == theirs.read_bytes()
