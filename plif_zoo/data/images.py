"""Static image datasets (MNIST, Fashion-MNIST, CIFAR-10) read from their original files.

Images stay in memory as uint8 ``[N, C, H, W]`` and leave as float ``[C, H, W]`` in [0, 1]:
normalisation belongs to the model. MNIST and Fashion-MNIST come as IDX files (optionally
gzipped, also in torchvision's layout), CIFAR-10 as the python pickle batches.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataFileError
from .catalog import _missing

__all__ = ["FASHION_MNIST_SYSTEM_DIR", "TensorImageDataset", "load_static", "train_transform"]

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


class TensorImageDataset(Dataset):
    """Images held in memory as uint8 ``[N, C, H, W]``, returned as float [0, 1] ``[C, H, W]``."""

    def __init__(
        self, images: torch.Tensor, targets: torch.Tensor, transform: Callable | None = None
    ):
        self.images = images
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].float().div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[i])


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format of MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # not gzip, cut short, failed CRC
        raise DataFileError(
            f"{path} is not a readable gzip file ({err or 'it ends early'}); the download is "
            f"damaged: fetch the file again (or give the uncompressed file without .gz)"
        ) from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataFileError(
            f"{path} is not an unsigned-byte IDX file (bad magic number); fetch it again"
        )
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataFileError(
            f"{path} ends inside its header ({len(data)} bytes); the file is truncated: "
            f"fetch it again"
        )
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataFileError(
            f"{path}: header says {dims} but holds {body.size} bytes; the file is truncated: "
            f"fetch it again"
        )
    return body.reshape(dims)


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def _find_idx(name: str, data_dir: Path | None, download: bool) -> Path:
    """The folder holding the four IDX files, given or in a torchvision layout below it."""
    roots = [data_dir] if data_dir is not None else []
    if name == "fashion-mnist" and data_dir is None:
        roots.append(FASHION_MNIST_SYSTEM_DIR)
    candidates = []
    for root in roots:
        candidates += [root, root / "raw", root / _TORCHVISION_FOLDER[name] / "raw"]

    def complete(folder: Path) -> bool:
        return all(
            (folder / f).exists() or (folder / (f + ".gz")).exists()
            for pair in _IDX_FILES.values()
            for f in pair
        )

    for folder in candidates:
        if complete(folder):
            return folder
    if download:
        if data_dir is None:
            raise ValueError(f"{name}: download=True needs a data_dir to download into")
        from torchvision import datasets

        cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
        for train in (True, False):
            cls(str(data_dir), train=train, download=True)
        return data_dir / _TORCHVISION_FOLDER[name] / "raw"
    expected = [f + "[.gz]" for pair in _IDX_FILES.values() for f in pair]
    raise _missing(name, candidates, expected)


def _load_idx_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = (
        folder / f if (folder / f).exists() else folder / (f + ".gz") for f in _IDX_FILES[split]
    )
    x = _read_idx(images)
    y = _read_idx(labels)
    if len(x) != len(y):
        raise DataFileError(
            f"{images} holds {len(x)} images but {labels} holds {len(y)} labels; one of them is "
            f"damaged or from another dataset: fetch both again"
        )
    _check_labels(y, 10, labels)
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    """Every label in [0, num_classes); else a DataFileError naming the file and the first bad
    one."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DataFileError(
            f"{path}: label {int(labels[bad[0]])} at index {int(bad[0])} is outside the "
            f"{num_classes} classes ({bad.size} such labels); the file is damaged: fetch it again"
        )


_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = ["test_batch"]


def _find_cifar(data_dir: Path | None, download: bool) -> Path:
    candidates = [] if data_dir is None else [data_dir, data_dir / "cifar-10-batches-py"]
    for folder in candidates:
        if all((folder / f).exists() for f in _CIFAR_TRAIN + _CIFAR_TEST):
            return folder
    if download and data_dir is not None:
        from torchvision import datasets

        datasets.CIFAR10(str(data_dir), download=True)
        return data_dir / "cifar-10-batches-py"
    raise _missing("cifar10", candidates, _CIFAR_TRAIN + _CIFAR_TEST)


def _load_cifar_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for f in _CIFAR_TRAIN if split == "train" else _CIFAR_TEST:
        try:  # CIFAR-10's python batches are pickles (torchvision reads them the same way)
            with open(folder / f, "rb") as fh:
                batch = pickle.load(fh, encoding="latin1")
            xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch["labels"], dtype=np.int64))
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
            raise DataFileError(
                f"{folder / f} is not a CIFAR-10 python batch ({type(err).__name__}: {err}); "
                f"the file is damaged: fetch cifar-10-python.tar.gz again"
            ) from err
        _check_labels(ys[-1], 10, folder / f)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def train_transform(name: str) -> Callable | None:
    """The paper's training augmentation for a static dataset, on [0, 1] tensors (None: none)."""
    from torchvision import transforms

    if name == "mnist":
        return transforms.RandomAffine(degrees=30, translate=(0.15, 0.15), scale=(0.85, 1.11))
    if name == "cifar10":
        return transforms.Compose(
            [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
        )
    return None


def load_static(
    name: str, data_dir: Path | None, train_side: bool, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, C, H, W]`` uint8 and labels ``[N]`` of the train or test side of ``name``."""
    split = "train" if train_side else "test"
    if name == "cifar10":
        return _load_cifar_split(_find_cifar(data_dir, download), split)
    return _load_idx_split(_find_idx(name, data_dir, download), split)
