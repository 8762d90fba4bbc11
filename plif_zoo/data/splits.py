"""One split of any dataset (:func:`get_dataset`) and the accuracy-B train / validation split.

Splits: ``train`` / ``val`` follow accuracy-B (the first 15% of each class of the training
set, in file order, is the validation set; ``train`` is the rest), ``train-full`` is the
whole training set (accuracy-A), ``test`` the official test set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import DatasetNotFoundError
from .catalog import DATASETS, SPLITS, _info
from .events import event_dataset
from .imagefolder import load_imagefolder
from .images import TensorImageDataset, load_static, train_transform

__all__ = ["SubsetWithTargets", "get_dataset", "train_val_indices"]


def train_val_indices(
    targets: Sequence[int] | torch.Tensor, val_fraction: float = 0.15
) -> tuple[list[int], list[int]]:
    """Accuracy-B split: the first ``val_fraction`` of each class (in file order) is validation.

    Returns (train indices, validation indices), both in file order. Deterministic: no RNG.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    targets = torch.as_tensor(targets).tolist()
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(targets):
        by_class.setdefault(c, []).append(i)
    share = Fraction(str(float(val_fraction)))  # 0.29 of 100 is 29; float math gives 28
    val = set()
    for idx in by_class.values():
        val.update(idx[: math.floor(len(idx) * share)])
    train_idx = [i for i in range(len(targets)) if i not in val]
    return train_idx, sorted(val)


class SubsetWithTargets(Dataset):
    """A subset that keeps ``targets`` (the base dataset brings its own transform)."""

    def __init__(self, base: Dataset, indices: Sequence[int]):
        self.base = base
        self.indices = list(indices)
        self.targets = torch.as_tensor(base.targets)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]


def get_dataset(
    name: str,
    split: str,
    data_dir: str | Path | None = None,
    *,
    T: int | None = None,
    augment: bool | None = None,
    val_fraction: float = 0.15,
    download: bool = False,
    image_shape: tuple[int, int, int] | None = None,
) -> Dataset:
    """One split of a dataset, with ``targets`` (a LongTensor) and ``num_classes`` attributes.

    name: a key of ``DATASETS`` or ``"imagefolder"`` (``data_dir`` holds ``train/`` and
    ``test/``, each with one folder per class; images are resized to ``image_shape`` [C, H, W]).
    split: ``train`` / ``val`` (accuracy-B), ``train-full``, ``test``.
    T: frames per sample for event datasets (required there).
    augment: the paper's training augmentation; default True for ``train`` / ``train-full``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    data_dir = None if data_dir is None else Path(data_dir).expanduser()
    if data_dir is not None and not data_dir.is_dir() and not download:
        raise DatasetNotFoundError(
            f"{name}: data folder {data_dir} does not exist; pass the folder that holds the "
            f"dataset's files"
            + (f" (get them from {DATASETS[name].source})" if name in DATASETS else "")
        )
    train_side = split in ("train", "val", "train-full")
    if augment is None:  # validation is evaluated like the test set: no augmentation
        augment = split in ("train", "train-full")
    if name == "imagefolder":
        base = _imagefolder_base(data_dir, train_side, image_shape)
        num_classes = len(base.classes)
    else:
        info = _info(name)
        num_classes = info.num_classes
        if info.event:
            base = event_dataset(name, data_dir, train=train_side, T=T)
        else:
            x, y = load_static(name, data_dir, train_side, download)
            base = TensorImageDataset(x, y, train_transform(name) if augment else None)
    if split in ("train", "val"):
        train_idx, val_idx = train_val_indices(base.targets, val_fraction)
        ds = SubsetWithTargets(base, train_idx if split == "train" else val_idx)
    else:
        ds = base
    ds.num_classes = num_classes
    return ds


def _imagefolder_base(
    data_dir: Path | None, train_side: bool, image_shape: tuple[int, int, int] | None
) -> TensorImageDataset:
    """The train or test side of an image folder, with ``classes`` (names in label order)."""
    if data_dir is None or image_shape is None:
        raise ValueError(
            "imagefolder needs data_dir (with train/ and test/ inside) and image_shape [C, H, W]"
        )
    sub = data_dir / ("train" if train_side else "test")
    if not sub.is_dir():
        raise DatasetNotFoundError(
            f"imagefolder: {sub} not found; data_dir must hold train/ and test/, each with "
            f"one sub-folder of images per class"
        )
    images, targets, classes = load_imagefolder(
        data_dir, train_side, image_shape[0], tuple(image_shape[1:])
    )
    base = TensorImageDataset(images, targets)
    base.classes = classes
    return base
