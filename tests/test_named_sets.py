"""CIFAR-10, SVHN, CelebA and Omniglot read from small files written here in each set's own
on-disk format (torchvision's layout), checked pixel by pixel against the format's definition."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.load import load
from bench.data.named.sets import NAMED
from bench.errors import BenchError
from tests.conftest import config


def _load(name: str, root: Path, *overrides: str):
    return load(config(f"data={name}", f"data.root={root}", "data.download=false", *overrides).data)


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    """A batch as the CIFAR-10 archive ships it: a protocol-2 pickle made by Python 2's numpy
    (whose arrays name numpy.core.multiarray)."""
    entry = {"batch_label": "batch", "labels": labels, "data": data, "filenames": ["x.png"] * 3}
    raw = pickle.dumps(entry, protocol=2).replace(
        b"numpy._core.multiarray", b"numpy.core.multiarray"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)


def test_cifar10_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    rng = np.random.default_rng(0)
    batches = {
        f"data_batch_{i}": rng.integers(0, 256, (3, 3072), dtype=np.uint8) for i in range(1, 6)
    }
    batches["test_batch"] = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    for i, (name, data) in enumerate(batches.items()):
        write_cifar_batch(folder / name, data, [i, i, 9 - i])
    data = _load("cifar10", tmp_path, "data.val_size=3")
    assert data.image_shape == (3, 32, 32) and data.n_levels == 256 and data.bytes_per_image == 3072
    assert (len(data.train), len(data.val), len(data.test)) == (12, 3, 3)
    assert torch.equal(data.test.levels, torch.from_numpy(batches["test_batch"]))
    assert data.test.labels.tolist() == [5, 5, 4]
    image = data.test.levels[0].reshape(3, 32, 32)  # the red plane first, row by row
    assert (
        image[0, 1, 0] == batches["test_batch"][0, 32]
        and image[1, 0, 0] == batches["test_batch"][0, 1024]
    )


def test_cifar10_batch_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", np.zeros((1, 3072), np.uint8), [0])
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "test_batch").write_bytes(
        pickle.dumps({"data": Payload(), "labels": [0]}, protocol=2)
    )
    with pytest.raises(
        BenchError, match=r"test_batch is not a CIFAR-10 batch: it asks for posix\.system"
    ):
        _load("cifar10", tmp_path)
    assert not marker.exists()


def test_svhn_mat_files(tmp_path):
    import scipy.io

    folder = tmp_path / "svhn"
    folder.mkdir()
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (32, 32, 3, 6), dtype=np.uint8)  # MATLAB's H×W×C×N
    y = np.array([[10], [1], [2], [3], [9], [10]], dtype=np.uint8)
    scipy.io.savemat(folder / "train_32x32.mat", {"X": x, "y": y})
    scipy.io.savemat(folder / "test_32x32.mat", {"X": x[..., :4], "y": y[:4]})
    data = _load("svhn", tmp_path, "data.val_size=2")
    assert data.image_shape == (3, 32, 32) and len(data.test) == 4
    assert data.test.labels.tolist() == [0, 1, 2, 3]  # 10 is the digit 0
    image = data.test.levels[2].reshape(3, 32, 32)
    assert torch.equal(image, torch.from_numpy(x[..., 2].transpose(2, 0, 1).copy()))
    (folder / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, not really")
    with pytest.raises(BenchError, match=r"^svhn: .*test_32x32.mat is not an SVHN .mat file"):
        _load("svhn", tmp_path, "data.val_size=2")


def write_celeba(root: Path, partitions: list[int], seed: int = 2) -> Path:
    """Aligned 178×218 JPEGs and list_eval_partition.txt, as torchvision extracts them."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i, part in enumerate(partitions, 1):
        pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "img_align_celeba" / f"{i:06d}.jpg", quality=90)
        lines.append(f"{i:06d}.jpg {part}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_celeba_is_cropped_and_resized_as_torchvision_does_and_decoded_once(tmp_path):
    from torchvision import transforms

    folder = write_celeba(tmp_path, [0, 0, 0, 1, 2, 0, 2])
    cache = tmp_path / "decoded"
    data = _load("celeba", tmp_path, f"data.cache={cache}")
    assert data.image_shape == (3, 64, 64) and data.bytes_per_image == 12288 and not data.labelled
    assert (len(data.train), len(data.val), len(data.test)) == (4, 1, 2)  # the official partition
    pipeline = transforms.Compose([transforms.CenterCrop(148), transforms.Resize(64)])
    expected = np.asarray(pipeline(Image.open(folder / "img_align_celeba" / "000005.jpg")))
    assert torch.equal(
        data.test.levels[0], torch.from_numpy(expected.transpose(2, 0, 1).copy()).flatten()
    )
    (entry,) = cache.iterdir()
    again = _load("celeba", tmp_path, f"data.cache={cache}")
    assert torch.equal(again.test.levels, data.test.levels) and list(cache.iterdir()) == [entry]
    assert again.raw_sha256() == data.raw_sha256()
    Image.new("RGB", (178, 218)).save(folder / "img_align_celeba" / "000005.jpg")  # edited
    changed = _load("celeba", tmp_path, f"data.cache={cache}")
    assert changed.test.levels[0].max() == 0 and len(list(cache.iterdir())) == 2
    assert changed.raw_sha256() != data.raw_sha256()
    val_from_train = _load("celeba", tmp_path, "data.val_size=1", "data.cache=null")
    assert (len(val_from_train.train), len(val_from_train.val)) == (4, 1)


def test_celeba_missing_or_broken_image_is_one_line(tmp_path):
    folder = write_celeba(tmp_path, [0, 1, 2])
    (folder / "img_align_celeba" / "000002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(BenchError, match=r"^unreadable image .*000002.jpg"):
        _load("celeba", tmp_path, "data.cache=null")
    (folder / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(BenchError, match=r"^celeba: .*000002.jpg is listed in list_eval_partition"):
        _load("celeba", tmp_path, "data.cache=null")


def write_omniglot(root: Path) -> None:
    """omniglot-py/images_{background,evaluation}/ALPHABET/characterNN/CCCC_DD.png, one-bit
    105×105 drawings: black strokes (0) on white (1). Character c's drawing by drawer d has
    its left c+d columns black."""
    alphabets = {"images_background": ["Latin", "Greek"], "images_evaluation": ["Atlantean"]}
    character = 0
    for part, names in alphabets.items():
        for alphabet in names:
            for c in (1, 2):
                character += 1
                folder = root / "omniglot-py" / part / alphabet / f"character{c:02d}"
                folder.mkdir(parents=True)
                for drawer in (1, 15, 16, 20):
                    image = np.ones((105, 105), dtype=bool)
                    image[:, : 4 * (character + drawer)] = False
                    Image.fromarray(image).save(folder / f"{character:04d}_{drawer:02d}.png")


def test_omniglot_drawers_split_strokes_are_ones_at_28(tmp_path):
    write_omniglot(tmp_path)
    data = _load("omniglot", tmp_path, "data.val_size=2", f"data.cache={tmp_path / 'decoded'}")
    assert data.image_shape == (1, 28, 28) and data.n_classes == 3
    assert (len(data.train) + len(data.val), len(data.test)) == (12, 12)  # drawers 1, 15 | 16, 20
    # alphabets sorted by name: Atlantean 0, Greek 1, Latin 2; test images in file order
    assert data.test.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    first = data.test.levels[0].reshape(28, 28).float()  # Atlantean character 5, drawer 16
    covered = 4 * (5 + 16) * 28 / 105  # black columns, in output pixels
    assert first[:, : int(covered)].min() == 255 and first[:, int(covered) + 1 :].max() == 0


def test_omniglot_burda_reads_chardata_columns_as_column_major_images(tmp_path):
    """chardata.mat as Burda's repository ships it: 784 × N floats, a column per image stored
    column by column (MATLAB's order), and one-hot alphabets, 50 × N."""
    import scipy.io

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (7, 28, 28)) / 255  # the images as a reader should see them
    columns = images.transpose(0, 2, 1).reshape(7, 784).T  # column-major, one per column
    alphabets = np.array([0, 49, 3, 3, 7, 1, 0])
    onehot = np.eye(50)[alphabets].T
    folder = tmp_path / "omniglot-burda"
    folder.mkdir()
    mat = {"data": columns[:, :4], "target": onehot[:, :4]}
    scipy.io.savemat(
        folder / "chardata.mat", mat | {"testdata": columns[:, 4:], "testtarget": onehot[:, 4:]}
    )
    data = _load("omniglot-burda", tmp_path, "data.val_size=1")
    assert data.image_shape == (1, 28, 28) and data.n_levels == 256 and data.n_classes == 50
    assert (len(data.train), len(data.val), len(data.test)) == (3, 1, 3)
    expected = torch.from_numpy(np.rint(images[4:] * 255).astype(np.uint8))
    assert torch.equal(data.test.levels.reshape(3, 28, 28), expected)
    assert data.test.labels.tolist() == [7, 1, 0]
    scipy.io.savemat(
        folder / "chardata.mat", mat | {"testdata": columns[:, 4:] * 2, "testtarget": onehot[:, 4:]}
    )
    with pytest.raises(BenchError, match=r"^omniglot-burda: .*`testdata` has values outside"):
        _load("omniglot-burda", tmp_path, "data.val_size=1")


@pytest.mark.parametrize("name", sorted(NAMED))
def test_missing_named_set_is_one_line_naming_folder_and_files(tmp_path, name, offline):
    named = NAMED[name]
    elsewhere = ["data.system_dirs=[]"] if "system_dirs" in config(f"data={name}").data else []
    with pytest.raises(BenchError) as refused:
        _load(name, tmp_path, *elsewhere)
    message = str(refused.value)
    assert message.startswith(
        f"{name} not found in {tmp_path / named.folder} (data.download=false)"
    )
    assert all(f in message for f in named.files) and "\n" not in message
    with pytest.raises(BenchError, match=rf"^{name} not found in .*download failed: "):
        load(config(f"data={name}", f"data.root={tmp_path}", "data.download=true", *elsewhere).data)
