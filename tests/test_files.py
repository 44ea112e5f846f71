"""The user's own data (data=files): arrays and folders of images in their real formats, written
by the tests; every bad input is one line; the same images read from IDX, .npz and PNG files are
the same tensors and give the same nll."""

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.load import load
from bench.evaluation.evaluator import EvalSettings, evaluate
from bench.job import build_model
from bench.run import main
from bench.training.loop import train
from tests.conftest import config, write_mnist_like

RNG = np.random.default_rng(0)


def files(path: Path, *overrides: str):
    return config("data=files", f"data.path={path}", *overrides)


def write_pngs(folder: Path, images: np.ndarray, labels=None, mode: str | None = None) -> None:
    """One PNG an image, named by its index; in class folders when labels are given."""
    for i, image in enumerate(images):
        where = folder if labels is None else folder / f"class{labels[i]}"
        where.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        (picture.convert(mode) if mode else picture).save(where / f"{i:05d}.png")


def test_an_npz_with_labels_and_a_test_split_grey(tmp_path):
    x, y = RNG.integers(0, 256, (50, 12, 10), dtype=np.uint8), RNG.integers(0, 3, 50)
    tx, ty = RNG.integers(0, 256, (20, 12, 10), dtype=np.uint8), RNG.integers(0, 3, 20)
    np.savez(tmp_path / "my-set.npz", x_train=x, y_train=y, x_test=tx, y_test=ty)
    cfg = files(tmp_path / "my-set.npz", "data.val_size=10")
    data = load(cfg.data)
    assert cfg.data.name == data.name == "my-set" and data.image_shape == (1, 12, 10)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 20)
    assert data.n_levels == 256 and data.n_classes == 3 and data.labelled
    assert torch.equal(data.test.levels, torch.from_numpy(tx.reshape(20, -1)))
    assert data.source == (tmp_path / "my-set.npz").resolve().as_uri()
    assert data.train.levels.dtype == torch.uint8 and data.bytes_per_image == 120


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_colour_arrays_in_either_layout_are_channels_first(tmp_path, layout):
    nhwc = RNG.integers(0, 256, (30, 6, 5, 3), dtype=np.uint8)
    array = nhwc if layout == "NHWC" else nhwc.transpose(0, 3, 1, 2)
    np.save(tmp_path / "colour.npy", array)
    data = load(files(tmp_path / "colour.npy", "data.val_size=5", "data.test_size=5").data)
    assert data.image_shape == (3, 6, 5) and not data.labelled and data.n_classes == 1
    everything = torch.cat([data.train.levels, data.val.levels, data.test.levels])
    expected = torch.from_numpy(nhwc.transpose(0, 3, 1, 2).reshape(30, -1).copy())
    assert sorted(map(tuple, everything.tolist())) == sorted(map(tuple, expected.tolist()))


def test_binary_and_continuous_values(tmp_path):
    np.save(tmp_path / "b.npy", RNG.integers(0, 2, (30, 4, 4)).astype(np.uint8) * 255)
    binary = load(files(tmp_path / "b.npy", "data.val_size=5", "data.test_size=5").data)
    assert binary.n_levels == 2 and int(binary.train.levels.max()) == 1
    np.save(tmp_path / "f.npy", RNG.random((30, 4, 4)).astype(np.float32))
    cfg = files(
        tmp_path / "f.npy", "data.val_size=5", "data.test_size=5", "model.likelihood=gaussian"
    )
    assert load(cfg.data).is_continuous


def test_a_folder_with_train_test_and_class_folders(tmp_path):
    x = RNG.integers(0, 256, (24, 9, 7, 3), dtype=np.uint8)
    write_pngs(tmp_path / "set" / "train", x[:16], labels=[i % 2 for i in range(16)])
    write_pngs(tmp_path / "set" / "test", x[16:], labels=[i % 2 for i in range(8)])
    (tmp_path / "set" / "train" / "README.txt").write_text("not an image: skipped")
    cache = f"data.cache={tmp_path / 'decoded'}"
    data = load(files(tmp_path / "set", "data.val_size=4", cache).data)
    assert data.name == "set" and data.image_shape == (3, 9, 7) and data.n_classes == 2
    assert torch.equal(
        data.test.levels, torch.from_numpy(x[16:].transpose(0, 3, 1, 2).copy()).flatten(1)
    )
    assert data.test.labels.tolist() == [i % 2 for i in range(8)]
    entries = sorted((tmp_path / "decoded").iterdir())  # train/ and test/, decoded once
    again = load(files(tmp_path / "set", "data.val_size=4", cache).data)
    assert torch.equal(again.test.levels, data.test.levels) and again.sha256 == data.sha256
    assert sorted((tmp_path / "decoded").iterdir()) == entries and len(entries) == 2
    write_pngs(tmp_path / "set" / "test", x[:1], labels=[1])  # class1/0.png added
    changed = load(files(tmp_path / "set", "data.val_size=4", cache).data)
    assert changed.sha256 != data.sha256 and len(list((tmp_path / "decoded").iterdir())) == 3
    assert torch.equal(
        changed.test.levels[1], data.train.levels.new_tensor(x[0].transpose(2, 0, 1)).flatten()
    )


def test_a_folder_of_binary_pngs_is_binary(tmp_path):
    x = (RNG.integers(0, 2, (20, 8, 8)) * 255).astype(np.uint8)
    write_pngs(tmp_path / "bw", x, mode="1")
    data = load(files(tmp_path / "bw", "data.val_size=4", "data.test_size=4").data)
    assert data.n_levels == 2 and data.image_shape == (1, 8, 8)


def test_the_same_images_from_idx_npz_and_pngs_are_the_same_tensors_and_nll(tmp_path):
    arrays = write_mnist_like(tmp_path / "FashionMNIST" / "raw", n_train=200, n_test=40)
    x, y = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    tx, ty = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    np.savez(tmp_path / "fmnist.npz", x_train=x, y_train=y, x_test=tx, y_test=ty)
    write_pngs(tmp_path / "pngs" / "train", x.astype(np.uint8), labels=y)
    write_pngs(tmp_path / "pngs" / "test", tx.astype(np.uint8), labels=ty)
    common = ["data.val_size=50", "trainer.epochs=1", "model.h_dim=32", "eval.k=10"]
    cfgs = [
        config("data=fashion-mnist", f"data.root={tmp_path}", "data.download=false", *common),
        files(tmp_path / "fmnist.npz", *common),
        files(tmp_path / "pngs", *common),
    ]
    results = []
    for cfg in cfgs:
        data = load(cfg.data)
        model = build_model(cfg, data, 0)
        train(model, data, cfg.trainer, progress=False)
        torch.manual_seed(0)
        nll = evaluate(model, data, EvalSettings(k=10)).metrics["nll"]
        results.append((data, nll))
    (idx, nll), *others = results
    for data, other_nll in others:
        for split in ("train", "val", "test"):
            assert torch.equal(getattr(data, split).levels, getattr(idx, split).levels)
            assert torch.equal(getattr(data, split).labels, getattr(idx, split).labels)
        assert other_nll == nll
    assert [d.n_levels for d, _ in results] == [256] * 3


def run_lines(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(list(args))
    return code, capsys.readouterr().err.strip().splitlines()


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (overrides, the error line expected)."""
    (tmp_path / "empty").mkdir()
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    Image.new("L", (8, 8)).save(sizes / "a.png")
    Image.new("L", (9, 8)).save(sizes / "b.png")
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.new("L", (8, 8)).save(broken / "a.png")
    (broken / "b.png").write_bytes(b"\x89PNG not really")
    np.save(tmp_path / "rank.npy", np.zeros((4, 4), np.uint8))
    np.save(tmp_path / "dtype.npy", np.zeros((4, 4, 4), np.complex64))
    nan = np.zeros((4, 4, 4), np.float32)
    nan[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "range.npy", np.full((4, 4, 4), 1.5, np.float32))
    np.save(tmp_path / "levels.npy", np.full((4, 4, 4), 300, np.int32))
    np.savez(tmp_path / "labels.npz", x=np.zeros((6, 4, 4), np.uint8), y=np.zeros(5, np.int64))
    np.save(tmp_path / "few.npy", RNG.integers(0, 256, (40, 4, 4), dtype=np.uint8))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    p = lambda name: f"data.path={tmp_path / name}"  # noqa: E731
    return {
        "missing": (
            [p("nothing-here")],
            f"data.path: no such file or folder: {tmp_path / 'nothing-here'}",
        ),
        "unset": (
            [],
            "data.path is not set: data=files needs data.path=PATH (.npz, .npy or a folder)",
        ),
        "empty": (
            [p("empty")],
            f"{tmp_path / 'empty'}: no images (any format Pillow reads, in it or in class folders)",
        ),
        "sizes": (
            [p("sizes")],
            f"images of different sizes: {sizes / 'a.png'} is 8×8, {sizes / 'b.png'} is 9×8",
        ),
        "unreadable": ([p("broken")], f"unreadable image {broken / 'b.png'}: "),
        "rank": (
            [p("rank.npy")],
            f"{tmp_path / 'rank.npy'}: images must be N×H×W, N×H×W×C or N×C×H×W, "
            "got rank 2 (shape 4×4)",
        ),
        "dtype": (
            [p("dtype.npy")],
            f"{tmp_path / 'dtype.npy'}: dtype complex64 is not images: uint8 levels or "
            "floats in [0, 1]",
        ),
        "nan": ([p("nan.npy")], f"{tmp_path / 'nan.npy'}: 1 values are NaN or infinite"),
        "range": (
            [p("range.npy")],
            f"{tmp_path / 'range.npy'}: float values must lie in [0, 1], found 1.5..1.5",
        ),
        "levels": (
            [p("levels.npy")],
            f"{tmp_path / 'levels.npy'}: integer values must lie in 0..255, found 300..300",
        ),
        "labels": ([p("labels.npz")], f"{tmp_path / 'labels.npz'}: 5 labels for 6 images"),
        "batch": (
            [p("few.npy"), "data.val_size=4", "data.test_size=4"],
            "few: 32 training images, fewer than trainer.batch_size=128",
        ),
        "corrupt": ([p("corrupt.npz")], f"{tmp_path / 'corrupt.npz'}: unreadable as .npz: "),
        "cvae": (
            [p("few.npy"), "model=cvae", "trainer.batch_size=8"],
            "model=cvae conditions on labels and few has none: put the images in class "
            "folders, or the labels in the .npz under y",
        ),
    }


def test_every_bad_input_is_one_line_exit_2_and_no_run(tmp_path, capsys):
    store = tmp_path / "mlflow.db"
    for name, (overrides, expected) in bad_inputs(tmp_path).items():
        code, lines = run_lines(capsys, "data=files", *overrides, f"tracking_uri=sqlite:///{store}")
        assert code == 2 and len(lines) == 1, (name, lines)
        assert lines[0].startswith(f"error: {expected}"), (name, lines[0])
    assert not store.exists() or not sqlite3.connect(store).execute("SELECT * FROM runs").fetchall()


def test_a_run_on_a_colour_folder_logs_a_colour_grid(tmp_path, capsys, empty_mlflow_store):
    x = RNG.integers(0, 256, (60, 6, 6, 3), dtype=np.uint8)
    write_pngs(tmp_path / "tiles", x, labels=[i % 3 for i in range(60)])
    store = tmp_path / "mlflow.db"
    store.write_bytes(empty_mlflow_store.read_bytes())
    args = [f"data.path={tmp_path / 'tiles'}", "data.val_size=8", "data.test_size=8"]
    args += ["trainer.epochs=2", "trainer.batch_size=16", "model.h_dim=16", "eval.k=5"]
    code = main(["data=files", "model=cvae", *args, f"tracking_uri=sqlite:///{store}"])
    assert code == 0, capsys.readouterr().err
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    (run,) = client.search_runs(client.search_experiments()[0].experiment_id)
    assert run.info.status == "FINISHED" and run.data.params["data.name"] == "tiles"
    grid = Image.open(client.download_artifacts(run.info.run_id, "samples.png", str(tmp_path)))
    assert grid.mode == "RGB"
    (dataset,) = {i.dataset.source for i in run.inputs.dataset_inputs}
    assert (tmp_path / "tiles").resolve().as_uri() in dataset
