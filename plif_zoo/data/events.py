"""Event datasets (N-MNIST, CIFAR10-DVS, DVS128 Gesture) as frames through SpikingJelly.

A sample leaves as frames ``[T, 2, H, W]`` of raw event counts (SpikingJelly's
``split_by="number"``). CIFAR10-DVS has no official split: per class, the first 90% in
natural file order train, the last 10% test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .catalog import DATASETS, _missing

__all__ = ["EventFrames", "event_dataset"]


# SpikingJelly's layout under data_dir: download/ (the original archives, md5-checked and
# extracted by SpikingJelly), extract/ (the extracted originals), events_np/ (events as .npz),
# frames_number_{T}_split_by_number/ (frames). Any stage present is enough. Per dataset: what
# the user must provide, and the paths a complete extract/ holds.
_EVENT_ORIGINALS = {
    "nmnist": (
        "download/Train.zip + download/Test.zip, "
        "or extract/Train/<digit>/*.bin + extract/Test/<digit>/*.bin",
        tuple(f"{split}/{digit}" for split in ("Train", "Test") for digit in range(10)),
    ),
    "cifar10-dvs": (
        "download/<class>.zip for the 10 classes, or extract/<class>/cifar10_<class>_<i>.aedat",
        DATASETS["cifar10-dvs"].classes,
    ),
    "dvs128-gesture": (
        "download/DvsGesture.tar.gz (+ gesture_mapping.csv, LICENSE.txt, README.txt), or "
        "extract/DvsGesture/ with user*_*.aedat, user*_*_labels.csv, "
        "trials_to_train.txt, trials_to_test.txt",
        ("DvsGesture/trials_to_train.txt", "DvsGesture/trials_to_test.txt"),
    ),
}


def _sj_class(name: str):
    from spikingjelly.datasets import cifar10_dvs, dvs128_gesture, n_mnist

    return {
        "nmnist": n_mnist.NMNIST,
        "cifar10-dvs": cifar10_dvs.CIFAR10DVS,
        "dvs128-gesture": dvs128_gesture.DVS128Gesture,
    }[name]


def _prepare_events(name: str, root: Path) -> None:
    """Make sure ``root/events_np`` exists, converting ``root/extract`` with SpikingJelly's own
    converter when the archives are not there (SpikingJelly would insist on md5-checked
    archives)."""
    raw_root, building = root / "events_np", root / "events_np.building"
    extract, download = root / "extract", root / "download"
    has_archives = download.is_dir() and any(download.iterdir())
    if building.is_file():
        # SpikingJelly's marker of a preparation cut short (it extracts download/ into extract/,
        # then converts into events_np/ in place; earlier plif-zoo versions used it too): redo
        # what it may have left half-done, extract/ too when the archives can give it again.
        shutil.rmtree(raw_root, ignore_errors=True)
        if has_archives:
            shutil.rmtree(extract, ignore_errors=True)
        building.unlink()
    elif building.is_dir():  # a conversion of ours that was cut short
        shutil.rmtree(building)
    if raw_root.exists():
        return
    expected, markers = _EVENT_ORIGINALS[name]
    if extract.is_dir() and all((extract / m).exists() for m in markers):
        # Convert into a temporary folder and rename it: a kill or an error mid-way never
        # leaves a partial events_np/ that a later run would take for the whole dataset.
        building.mkdir()
        try:
            _sj_class(name).create_raw_from_extracted(extract, building)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        os.replace(building, raw_root)
        return
    if has_archives:
        return  # SpikingJelly checks the archives' md5 and extracts them
    raise _missing(name, [root], [expected])


def _clear_unfinished_frames(root: Path, T: int) -> None:
    """Remove the frames folder of a SpikingJelly frame conversion that was cut short (its
    ``.building`` marker is left), so that SpikingJelly converts again instead of refusing."""
    frames = root / f"frames_number_{T}_split_by_number"
    marker = frames.with_name(frames.name + ".building")
    if marker.exists():
        shutil.rmtree(frames, ignore_errors=True)
        marker.unlink()


def _natural_key(path: str) -> tuple:
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", Path(path).stem))


class EventFrames(Dataset):
    """Frames ``[T, 2, H, W]`` (float32 event counts) of a SpikingJelly frame dataset, a subset of
    its samples in natural file order within each class.

    Labels come from the class folder's name, not from SpikingJelly's index (which follows a text
    sort of the folder names: DVS128 Gesture's "10" would come before "2").
    """

    def __init__(self, sj_dataset, indices: Sequence[int], label_of_folder: Callable[[str], int]):
        self.sj = sj_dataset
        self.indices = list(indices)
        self.files = [sj_dataset.samples[i][0] for i in self.indices]
        self.targets = torch.tensor(
            [label_of_folder(Path(f).parent.name) for f in self.files], dtype=torch.int64
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        frames = self.sj.loader(self.files[i])
        return torch.from_numpy(np.asarray(frames, dtype=np.float32)), int(self.targets[i])


def event_dataset(name: str, data_dir: Path | None, train: bool, T: int | None) -> Dataset:
    if data_dir is None:
        raise _missing(name, [], [_EVENT_ORIGINALS[name][0]])
    if not isinstance(T, int) or T < 1:
        raise ValueError(
            f"{name}: event data needs the number of frames T (a positive int), got {T!r}"
        )
    _prepare_events(name, data_dir)
    _clear_unfinished_frames(data_dir, T)
    cls = _sj_class(name)
    kw = dict(data_type="frame", frames_number=T, split_by="number")
    if name == "cifar10-dvs":
        # no official split: per class, the first 90% by numeric index train, the last 10% test
        sj = cls(str(data_dir), **kw)
        by_class: dict[int, list[int]] = {}
        for i, (_path, c) in enumerate(sj.samples):
            by_class.setdefault(c, []).append(i)
        indices = []
        for c in sorted(by_class):
            ordered = sorted(by_class[c], key=lambda i: _natural_key(sj.samples[i][0]))
            n_test = len(ordered) // 10
            indices += (
                ordered[: len(ordered) - n_test] if train else ordered[len(ordered) - n_test :]
            )
    else:
        sj = cls(str(data_dir), train=train, **kw)
        indices = sorted(
            range(len(sj.samples)),
            key=lambda i: (int(Path(sj.samples[i][0]).parent.name), _natural_key(sj.samples[i][0])),
        )
    label_of_folder = DATASETS["cifar10-dvs"].classes.index if name == "cifar10-dvs" else int
    return EventFrames(sj, indices, label_of_folder)
