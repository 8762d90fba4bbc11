"""plif_zoo.data: real Fashion-MNIST, files written in each dataset's original format, splits,
errors."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from plif_zoo import data

FMNIST = data.FASHION_MNIST_SYSTEM_DIR


def write_idx(
    folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = True
) -> None:
    """Write IDX files as distributed by LeCun / Zalando (magic 0x0803 / 0x0801, big-endian
    dims)."""
    folder.mkdir(parents=True, exist_ok=True)
    img = (
        bytes([0, 0, 8, 3])
        + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
        + images.astype(np.uint8).tobytes()
    )
    lab = bytes([0, 0, 8, 1]) + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    with opener(folder / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as f:
        f.write(img)
    with opener(folder / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as f:
        f.write(lab)


def tiny_mnist(
    folder: Path, n_train: int = 40, n_test: int = 10, gz: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    y = np.arange(n_train) % 10
    write_idx(folder, "train", x, y, gz)
    write_idx(folder, "t10k", x[:n_test], y[:n_test], gz)
    return x, y


@pytest.mark.fashion_mnist  # tests/conftest.py skips it when not installed
def test_fashion_mnist_is_found_without_a_data_dir_and_split_for_accuracy_b():
    sizes = {split: len(data.get_dataset("fashion-mnist", split)) for split in data.SPLITS}
    assert sizes == {"train": 51000, "val": 9000, "train-full": 60000, "test": 10000}
    x, y = data.get_dataset("fashion-mnist", "test")[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5  # raw [0, 1], not normalised
    assert y == 9  # the first test image of Fashion-MNIST is an ankle boot


@pytest.mark.fashion_mnist  # tests/conftest.py skips it when not installed
def test_fashion_mnist_validation_is_the_first_15_percent_of_each_class():
    full = data.get_dataset("fashion-mnist", "train-full")
    val = data.get_dataset("fashion-mnist", "val")
    assert torch.bincount(val.targets).tolist() == [900] * 10
    for c in range(10):
        first = (full.targets == c).nonzero().flatten()[:900].tolist()
        assert [
            i for i, t in zip(val.indices, val.targets.tolist(), strict=True) if t == c
        ] == first


def test_train_val_split_is_per_class_ordered_disjoint_and_reproducible():
    targets = [0, 1, 0, 0, 1, 2, 0, 1, 2, 2, 0, 1, 2, 0, 1, 2, 0, 1, 0, 2]
    train, val = data.train_val_indices(targets, 0.25)
    assert sorted(train + val) == list(range(len(targets)))
    assert val == [
        0,
        1,
        2,
        5,
    ]  # int(n / 4) first of each class: 2 of class 0 (8), 1 of class 1 (6), 1 of class 2 (6)
    assert data.train_val_indices(targets, 0.25) == (train, val)


def test_the_hold_out_is_exact_and_never_silently_empty():
    targets = [0] * 100 + [1] * 100
    assert len(data.train_val_indices(targets, 0.29)[1]) == 58  # 29 per class, not 28
    assert len(data.train_val_indices(targets, 0.15)[1]) == 30
    assert data.train_val_indices([0, 1, 2, 0, 1, 2], 0.15) == ([0, 1, 2, 3, 4, 5], [])


def test_idx_files_in_a_torchvision_layout_load_as_raw_tensors(tmp_path):
    x, y = tiny_mnist(tmp_path / "MNIST" / "raw", gz=False)
    ds = data.get_dataset("mnist", "train-full", tmp_path, augment=False)
    assert len(ds) == 40 and ds.num_classes == 10
    img, label = ds[3]
    assert torch.equal(img, torch.from_numpy(x[3]).float().div(255).unsqueeze(0))
    assert label == y[3]


def test_mnist_training_split_is_augmented_and_validation_is_not(tmp_path):
    tiny_mnist(tmp_path, n_train=80)
    torch.manual_seed(0)
    train = data.get_dataset("mnist", "train", tmp_path)
    val = data.get_dataset("mnist", "val", tmp_path)
    raw = data.get_dataset("mnist", "train-full", tmp_path, augment=False)
    i = train.indices[0]
    assert not torch.equal(
        train[0][0], raw[i][0]
    )  # RandomAffine(30 deg, 15% shift, 0.85-1.11 scale)
    j = val.indices[0]
    assert torch.equal(val[0][0], raw[j][0])


def test_cifar10_python_batches_load_and_are_cropped_and_flipped(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump(
                {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}, f
            )
    test = data.get_dataset("cifar10", "test", tmp_path)
    assert len(test) == 4 and test[0][0].shape == (3, 32, 32)
    train = data.get_dataset("cifar10", "train-full", tmp_path)
    raw = data.get_dataset("cifar10", "train-full", tmp_path, augment=False)
    torch.manual_seed(0)
    assert any(not torch.equal(train[i][0], raw[i][0]) for i in range(len(raw)))


def test_a_missing_data_folder_names_the_folder_the_files_and_the_source(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(data.DatasetNotFoundError, match="nowhere") as err:
        data.get_dataset("mnist", "train", missing)
    assert "yann.lecun.com" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.get_dataset("fashion-mnist", "test", empty)
    msg = str(err.value)
    assert str(empty) in msg and "t10k-images-idx3-ubyte" in msg and "dataset-fashion-mnist" in msg


def test_unknown_dataset_and_split_are_rejected():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.get_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="split must be"):
        data.get_dataset("mnist", "validation")


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    tiny_mnist(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        data.get_dataset("mnist", "test", tmp_path)


def test_imagefolder_images_are_resized_to_the_model_input(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for c, name in enumerate(["cat", "dog", "eel"]):
            d = tmp_path / split / name
            d.mkdir(parents=True)
            for k in range(3):
                Image.fromarray(np.full((40, 50, 3), 40 * c + k, dtype=np.uint8)).save(
                    d / f"{k}.png"
                )
    ds = data.get_dataset("imagefolder", "test", tmp_path, image_shape=(1, 28, 28))
    assert len(ds) == 9 and ds.num_classes == 3
    x, y = ds[4]
    assert x.shape == (1, 28, 28) and y == 1 and torch.allclose(x, torch.full_like(x, 41 / 255))


# ------------------------------------------------------- event data in the original formats


def nmnist_bin(events: list[tuple[int, int, int, int]]) -> bytes:
    """N-MNIST .bin: 5 bytes per event, x, y, then polarity (bit 7) and a 23-bit timestamp (us)."""
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def cifar10dvs_aedat(events: list[tuple[int, int, int, int]]) -> bytes:
    """jAER AEDAT 2.0 as CIFAR10-DVS ships it: '#' header lines, then big-endian (address,
    timestamp) pairs; address bits 1-7 = sensor x, 8-14 = sensor y, bit 0 = polarity. The
    dataset is stored rotated: frame x = 127 - sensor y, frame y = 127 - sensor x, frame
    polarity = 1 - bit 0."""
    header = (
        b"#!AER-DAT2.0\r\n"
        b"# This is a raw AE data file - do not edit\r\n"
        b"# Data format is int32 address, int32 timestamp (8 bytes total)\r\n"
    )
    words = []
    for x, y, p, t in events:
        sx, sy, bit = 127 - y, 127 - x, 1 - p
        words += [(sy << 8) | (sx << 1) | bit, t]
    return header + np.asarray(words, dtype=">u4").tobytes()


def aedat31(events: list[tuple[int, int, int, int]]) -> bytes:
    """AEDAT 3.1 (DVS128 Gesture): text header up to '#!END-HEADER', then packets of a 28-byte
    little-endian header (type 1 = polarity, size 8, capacity, ...) and 8-byte events
    (data: x << 17 | y << 2 | polarity << 1 | valid, timestamp)."""
    import struct

    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"
    body = b"".join(
        struct.pack("<II", (x << 17) | (y << 2) | (p << 1) | 1, t) for x, y, p, t in events
    )
    n = len(events)
    return header + struct.pack("<HHIIIIII", 1, 1, 8, 4, 0, n, n, n) + body


def random_events(rng, n: int, size: int, t0: int = 0) -> list[tuple[int, int, int, int]]:
    return [
        (int(rng.integers(size)), int(rng.integers(size)), int(rng.integers(2)), t0 + 10 * k)
        for k in range(n)
    ]


def frames_of(events, T: int, size: int) -> torch.Tensor:
    """Reference integration: T frames of equal event count (the last takes the remainder)."""
    out = torch.zeros(T, 2, size, size)
    step = len(events) // T
    for k, (x, y, p, _) in enumerate(events):
        out[min(k // step, T - 1), p, y, x] += 1
    return out


def test_nmnist_bin_files_become_frames_of_raw_event_counts(tmp_path):
    rng = np.random.default_rng(0)
    written = {}
    for split in ("Train", "Test"):
        for digit in range(10):
            folder = tmp_path / "extract" / split / str(digit)
            folder.mkdir(parents=True)
            for k in range(7 if split == "Train" else 2):
                ev = random_events(rng, 20 + k, 34)
                (folder / f"{k:05d}.bin").write_bytes(nmnist_bin(ev))
                written[(split, digit, k)] = ev
    test = data.get_dataset("nmnist", "test", tmp_path, T=4)
    assert len(test) == 20 and test.num_classes == 10
    frames, label = test[5]  # class 2, second file
    assert frames.shape == (4, 2, 34, 34) and frames.dtype == torch.float32 and label == 2
    assert torch.equal(frames, frames_of(written[("Test", 2, 1)], 4, 34))
    assert (tmp_path / "frames_number_4_split_by_number").is_dir()  # SpikingJelly's cache
    sizes = [
        len(data.get_dataset("nmnist", s, tmp_path, T=4)) for s in ("train-full", "train", "val")
    ]
    assert sizes == [70, 60, 10]  # accuracy-B: the first 15% of each class (int(7 * 0.15) = 1)
    val = data.get_dataset("nmnist", "val", tmp_path, T=4)
    assert torch.equal(val[3][0], frames_of(written[("Train", 3, 0)], 4, 34))


def test_cifar10_dvs_aedat_files_split_900_100_by_numeric_index(tmp_path):
    rng = np.random.default_rng(1)
    classes = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    written = {}
    for c, name in enumerate(classes):
        folder = tmp_path / "extract" / name
        folder.mkdir(parents=True)
        for i in range(
            12
        ):  # per class, the last tenth by numeric index is test: 11 (a text sort says 9)
            ev = random_events(rng, 8, 128)
            (folder / f"cifar10_{name}_{i}.aedat").write_bytes(cifar10dvs_aedat(ev))
            written[(c, i)] = ev
    test = data.get_dataset("cifar10-dvs", "test", tmp_path, T=2)
    train = data.get_dataset("cifar10-dvs", "train-full", tmp_path, T=2)
    assert len(test) == 10 and len(train) == 110
    assert [Path(f).stem for f in test.files[:2]] == [
        "cifar10_airplane_11",
        "cifar10_automobile_11",
    ]
    assert [Path(f).stem for f in train.files[:3]] == [f"cifar10_airplane_{i}" for i in range(3)]
    frames, label = test[3]
    assert label == 3 and torch.equal(frames, frames_of(written[(3, 11)], 2, 128))


def test_dvs128_gesture_keeps_every_trial_of_the_official_lists(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "extract" / "DvsGesture"
    folder.mkdir(parents=True)
    every = list(range(1, 12))
    trials = {"user01_fluorescent": every, "user02_lab": [3, 3, 11], "user24_led": every}
    segments = {}
    for trial, labels in trials.items():
        events, rows = [], []
        for k, c in enumerate(labels):
            start = 1000 * (k + 1)
            seg = random_events(rng, 6, 128, t0=start)
            events += seg
            rows.append(f"{c},{start},{start + 500}")
            segments[(trial, c, sum(1 for x in labels[:k] if x == c))] = seg
        (folder / f"{trial}.aedat").write_bytes(aedat31(events))
        (folder / f"{trial}_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n" + "\n".join(rows) + "\n"
        )
    (folder / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser02_lab.aedat\n")
    (folder / "trials_to_test.txt").write_text("user24_led.aedat\n")
    train = data.get_dataset("dvs128-gesture", "train-full", tmp_path, T=3)
    test = data.get_dataset("dvs128-gesture", "test", tmp_path, T=3)
    assert len(train) == 14 and len(test) == 11 and train.num_classes == 11
    assert sorted(train.targets.tolist()) == sorted(list(range(11)) + [2, 2, 10])
    i = train.files.index(
        next(f for f in train.files if Path(f).stem == "user02_lab_1" and "/2/" in f)
    )
    frames, label = train[i]
    assert label == 2 and torch.equal(frames, frames_of(segments[("user02_lab", 3, 1)], 3, 128))


def test_missing_event_data_names_the_expected_files(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.get_dataset("dvs128-gesture", "train", tmp_path, T=4)
    assert "DvsGesture.tar.gz" in str(err.value) and "trials_to_train.txt" in str(err.value)
    with pytest.raises(data.DatasetNotFoundError, match="Train.zip"):
        data.get_dataset("nmnist", "test", None, T=4)


@pytest.mark.fashion_mnist  # tests/conftest.py skips it when not installed
def test_download_uses_torchvision_against_a_local_mirror(tmp_path, monkeypatch):
    """download=True fetches the original files with torchvision's downloader (md5-checked);
    the mirror is a server on 127.0.0.1 serving the real Fashion-MNIST files of this machine."""
    import functools
    import hashlib
    import http.server
    import threading

    from torchvision import datasets

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(FMNIST))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(
            datasets.FashionMNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"]
        )
        # Debian recompressed the .gz files: the mirror's checksums are those of the files it
        # serves.
        resources = [
            (name, hashlib.md5((FMNIST / name).read_bytes()).hexdigest())
            for name, _ in datasets.FashionMNIST.resources
        ]
        monkeypatch.setattr(datasets.FashionMNIST, "resources", resources)
        test = data.get_dataset("fashion-mnist", "test", tmp_path / "fm", download=True)
    finally:
        server.shutdown()
    assert len(test) == 10000 and test.targets[0] == 9
    assert (tmp_path / "fm" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()


def test_event_conversion_is_atomic_and_a_cut_short_one_is_redone(tmp_path, monkeypatch):
    from spikingjelly.datasets import n_mnist

    rng = np.random.default_rng(2)
    for split in ("Train", "Test"):
        for digit in range(10):
            folder = tmp_path / "extract" / split / str(digit)
            folder.mkdir(parents=True)
            (folder / "00000.bin").write_bytes(nmnist_bin(random_events(rng, 12, 34)))
    convert = n_mnist.NMNIST.create_raw_from_extracted

    def fails_midway(extract_root, events_np_root):
        (Path(events_np_root) / "partial.npz").write_bytes(b"")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(n_mnist.NMNIST, "create_raw_from_extracted", staticmethod(fails_midway))
    with pytest.raises(OSError, match="No space"):
        data.get_dataset("nmnist", "test", tmp_path, T=4)
    assert not (tmp_path / "events_np").exists()
    assert not (tmp_path / "events_np.building").exists()
    # a conversion killed mid-way (its temporary folder left behind) is redone
    (tmp_path / "events_np.building").mkdir()
    monkeypatch.setattr(n_mnist.NMNIST, "create_raw_from_extracted", staticmethod(convert))
    assert len(data.get_dataset("nmnist", "test", tmp_path, T=4)) == 10
    assert not (tmp_path / "events_np.building").exists()
    # an in-place conversion of an earlier version, cut short: marker file, partial events_np/
    shutil.rmtree(tmp_path / "frames_number_4_split_by_number")
    shutil.rmtree(tmp_path / "events_np" / "test" / "9")
    (tmp_path / "events_np.building").touch()
    assert len(data.get_dataset("nmnist", "test", tmp_path, T=4)) == 10
    # SpikingJelly's frame conversion cut short (its marker left): redone, not refused
    frames = tmp_path / "frames_number_4_split_by_number"
    shutil.rmtree(frames / "test" / "9")
    (tmp_path / "frames_number_4_split_by_number.building").touch()
    test = data.get_dataset("nmnist", "test", tmp_path, T=4)
    assert len(test) == 10 and test[9][1] == 9
    assert not (tmp_path / "frames_number_4_split_by_number.building").exists()


def test_an_extraction_cut_short_is_extracted_again_from_the_archives(tmp_path, monkeypatch):
    """SpikingJelly marks events_np.building, then extracts download/ into extract/: a kill
    leaves a partial extract/ that must not be converted as if it were the whole dataset."""
    from plif_zoo.data import events

    for name in data.DATASETS["cifar10-dvs"].classes:
        (tmp_path / "download").mkdir(exist_ok=True)
        (tmp_path / "download" / f"{name}.zip").write_bytes(b"zip")
    (tmp_path / "extract" / "airplane").mkdir(parents=True)
    (tmp_path / "extract" / "airplane" / "cifar10_airplane_0.aedat").write_bytes(b"")
    (tmp_path / "events_np.building").touch()
    converted = []

    class NoConversion:
        @staticmethod
        def create_raw_from_extracted(extract_root, raw_root):
            converted.append(extract_root)

    monkeypatch.setattr(events, "_sj_class", lambda name: NoConversion)
    events._prepare_events("cifar10-dvs", tmp_path)  # leaves the archives to SpikingJelly
    assert converted == [] and not (tmp_path / "extract").exists()
    assert not (tmp_path / "events_np.building").exists()
    assert (tmp_path / "download" / "truck.zip").is_file()
    # without archives, an extract/ that lacks classes is not taken for the dataset either
    shutil.rmtree(tmp_path / "download")
    (tmp_path / "extract" / "airplane").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="extract/<class>"):
        events._prepare_events("cifar10-dvs", tmp_path)
    assert converted == []
