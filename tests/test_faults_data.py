"""Issue 12, data: damaged dataset files and image folders give one clear error (or a counted
warning), and both image-folder splits number their classes from one list."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import tiny_mnist, write_idx

from plif_zoo import data
from plif_zoo.errors import DataFileError


def _png_folder(root: Path, split: str, classes: list[str], per_class: int = 2) -> None:
    from PIL import Image

    for c in classes:
        d = root / split / c
        d.mkdir(parents=True)
        for k in range(per_class):
            Image.fromarray(np.full((28, 28), 10 * k + len(c), dtype=np.uint8)).save(d / f"{k}.png")


# --------------------------------------------------------------------------- .gz files


def _damage(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "not-gzip":
        path.write_bytes(b"this is an html error page, not gzip" * 10)
    elif how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    else:  # the stored CRC32 (8 bytes before the end) no longer matches the data
        crc = bytearray(raw)
        crc[-8] ^= 0xFF
        path.write_bytes(bytes(crc))


@pytest.mark.parametrize("how", ["not-gzip", "truncated", "crc"])
def test_a_damaged_gz_file_is_an_error_naming_the_file(tmp_path, how):
    tiny_mnist(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    _damage(path, how)
    with pytest.raises(
        DataFileError, match="t10k-labels-idx1-ubyte.gz is not a readable gzip file"
    ) as err:
        data.get_dataset("mnist", "test", tmp_path)
    assert "\n" not in str(err.value) and "fetch the file again" in str(err.value)


def test_a_label_outside_the_classes_is_an_error_naming_the_file(tmp_path):
    x, y = tiny_mnist(tmp_path)
    bad = y[:10].copy()
    bad[3] = 12
    write_idx(tmp_path, "t10k", x[:10], bad)
    with pytest.raises(
        DataFileError,
        match=r"t10k-labels-idx1-ubyte.gz: label 12 at index 3 is outside the 10 classes",
    ):
        data.get_dataset("mnist", "test", tmp_path)
    assert len(data.get_dataset("mnist", "train", tmp_path)) > 0  # the intact split still loads


@pytest.mark.parametrize("how", ["magic", "truncated", "header", "count"])
def test_a_damaged_idx_file_is_a_data_file_error_naming_it(tmp_path, how):
    x, y = tiny_mnist(tmp_path)
    if how == "count":  # 10 images, 9 labels
        write_idx(tmp_path, "t10k", x[:10], y[:9])
    else:
        path = tmp_path / "t10k-images-idx3-ubyte.gz"
        with gzip.open(path) as f:
            raw = f.read()
        raw = {"magic": b"<htm" + raw[4:], "truncated": raw[:-5], "header": raw[:10]}[how]
        with gzip.open(path, "wb") as f:
            f.write(raw)
    with pytest.raises(DataFileError, match="t10k-.*fetch") as err:
        data.get_dataset("mnist", "test", tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", pickle.dumps({"data": 1})])
def test_a_damaged_cifar_batch_is_a_data_file_error_naming_it(tmp_path, content):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0, 1]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "test_batch").write_bytes(content)
    with pytest.raises(DataFileError, match="test_batch is not a CIFAR-10 python batch"):
        data.get_dataset("cifar10", "test", tmp_path)


def test_a_gz_file_that_is_fine_still_loads(tmp_path):
    tiny_mnist(tmp_path)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz") as f:
        assert f.read()[:4] == bytes([0, 0, 8, 1])
    assert len(data.get_dataset("mnist", "test", tmp_path)) == 10


# --------------------------------------------------------------------------- image folders


def test_test_split_numbers_its_classes_like_the_training_split(tmp_path):
    """train/{bag,trouser,tshirt}, test/{bag,tshirt}: tshirt is class 2 in both splits."""
    _png_folder(tmp_path, "train", ["bag", "trouser", "tshirt"])
    _png_folder(tmp_path, "test", ["bag", "tshirt"])
    train = data.get_dataset("imagefolder", "train-full", tmp_path, image_shape=(1, 28, 28))
    with pytest.warns(UserWarning, match="no image of the train/ class.*trouser"):
        test = data.get_dataset("imagefolder", "test", tmp_path, image_shape=(1, 28, 28))
    assert train.targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert test.targets.tolist() == [0, 0, 2, 2]
    assert train.num_classes == test.num_classes == 3
    assert train.classes == test.classes == ["bag", "trouser", "tshirt"]
    assert data.imagefolder_classes(tmp_path) == ["bag", "trouser", "tshirt"]


def test_a_test_class_unknown_to_training_is_an_error(tmp_path):
    _png_folder(tmp_path, "train", ["bag", "tshirt"])
    _png_folder(tmp_path, "test", ["bag", "coat", "tshirt"])
    with pytest.raises(DataFileError, match=r"test has class folders that .*train lacks: coat"):
        data.get_dataset("imagefolder", "test", tmp_path, image_shape=(1, 28, 28))


def test_hidden_and_empty_class_folders(tmp_path):
    """.ipynb_checkpoints is no class; an empty test/ class is left out with a warning like a
    missing one; an empty train/ class is an error naming its folder."""
    _png_folder(tmp_path, "train", ["bag", "tshirt"])
    _png_folder(tmp_path, "test", ["bag"])
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "test" / "tshirt").mkdir()
    (tmp_path / "test" / "tshirt" / "notes.txt").write_text("not an image")
    assert data.imagefolder_classes(tmp_path) == ["bag", "tshirt"]
    with pytest.warns(UserWarning, match="test has no image of the train/ class.*tshirt"):
        test = data.get_dataset("imagefolder", "test", tmp_path, image_shape=(1, 28, 28))
    assert test.targets.tolist() == [0, 0] and test.classes == ["bag", "tshirt"]
    (tmp_path / "train" / "coat").mkdir()
    with pytest.raises(DataFileError, match=r"no image in .*train/coat .*add images or remove"):
        data.get_dataset("imagefolder", "train-full", tmp_path, image_shape=(1, 28, 28))


def test_a_channel_count_images_cannot_have_is_a_clear_error(tmp_path):
    _png_folder(tmp_path, "train", ["bag"])
    with pytest.raises(ValueError, match="1 .greyscale. or 3 .RGB. channels, not 2"):
        data.get_dataset("imagefolder", "train-full", tmp_path, image_shape=(2, 28, 28))


def test_16_bit_greyscale_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    ramp = np.linspace(0, 65535, 28 * 28).reshape(28, 28).astype(np.uint16)
    for split in ("train", "test"):
        (tmp_path / split / "bag").mkdir(parents=True)
        Image.fromarray(ramp).save(tmp_path / split / "bag" / "0.png")  # a 16-bit PNG
    x, _ = data.get_dataset("imagefolder", "test", tmp_path, image_shape=(1, 28, 28))[0]
    expected = torch.from_numpy(np.rint(ramp / 257.0) / 255).float()
    assert torch.allclose(x[0], expected, atol=1 / 255)  # not clipped to white: mean ~0.5
    assert abs(x.mean().item() - 0.5) < 0.01


def test_unreadable_images_are_skipped_with_a_count_and_a_warning(tmp_path):
    _png_folder(tmp_path, "train", ["bag", "tshirt"], per_class=3)
    _png_folder(tmp_path, "test", ["bag", "tshirt"], per_class=3)
    good = (tmp_path / "test" / "bag" / "0.png").read_bytes()
    (tmp_path / "test" / "bag" / "1.png").write_bytes(good[: len(good) // 2])  # truncated
    (tmp_path / "test" / "tshirt" / "2.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + b"garbage" * 20
    )  # corrupt
    with pytest.warns(
        UserWarning, match=r"skipped 2 unreadable image\(s\) of 6 in .*test, e.g. .*1.png"
    ):
        ds = data.get_dataset("imagefolder", "test", tmp_path, image_shape=(1, 28, 28))
    assert len(ds) == 4 and ds.targets.tolist() == [0, 0, 1, 1]
    x, y = ds[1]
    assert x.shape == (1, 28, 28) and y == 0 and torch.allclose(x, torch.full_like(x, 23 / 255))


def test_a_folder_of_only_unreadable_images_is_an_error(tmp_path):
    _png_folder(tmp_path, "train", ["bag"], per_class=1)
    (tmp_path / "train" / "bag" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataFileError, match=r"no readable image in .*train; e.g. .*0.png"):
        data.get_dataset("imagefolder", "train-full", tmp_path, image_shape=(1, 28, 28))
