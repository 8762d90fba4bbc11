"""Datasets of the paper (Sec. 4) as raw tensors, with the paper's augmentation and splits.

Static images (MNIST, Fashion-MNIST, CIFAR-10) leave the pipeline as float tensors
``[C, H, W]`` in [0, 1]: normalisation belongs to the model, so a loaded model and a
user's own images agree. Event datasets (N-MNIST, CIFAR10-DVS, DVS128 Gesture) leave
it as frames ``[T, 2, H, W]`` of raw event counts (SpikingJelly's ``split_by="number"``).

Splits: ``train`` / ``val`` follow accuracy-B (the first 15% of each class of the
training set, in file order, is the validation set; ``train`` is the rest),
``train-full`` is the whole training set (accuracy-A), ``test`` the official test set.
"""

from __future__ import annotations

import gzip
import pickle
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DataFileError, DatasetNotFoundError

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DataFileError",
    "FASHION_MNIST_SYSTEM_DIR",
    "LABEL_NAMES",
    "get_dataset",
    "imagefolder_classes",
    "train_val_indices",
    "train_transform",
]

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "val", "train-full", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    num_classes: int
    shape: tuple[int, ...]  # one sample: [C, H, W] for images, [2, H, W] per frame for events
    event: bool  # True: frames [T, 2, H, W] of event counts
    source: str  # where to get the original files
    classes: tuple[str, ...] = ()  # label names in output order (len == num_classes)


_DIGITS = tuple(str(i) for i in range(10))
_CIFAR10 = (
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
_FASHION = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_GESTURES = (
    "hand clapping",
    "right hand wave",
    "left hand wave",
    "right arm clockwise",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll",
    "air drums",
    "air guitar",
    "other gestures",
)

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "mnist",
            10,
            (1, 28, 28),
            False,
            "http://yann.lecun.com/exdb/mnist/ (or torchvision's downloader: download=True, CLI --download)",
            _DIGITS,
        ),
        DatasetInfo(
            "fashion-mnist",
            10,
            (1, 28, 28),
            False,
            "`apt-get install dataset-fashion-mnist` (files land in /usr/share/datasets/fashion-mnist/), "
            "https://github.com/zalandoresearch/fashion-mnist, or torchvision's downloader (download=True, CLI --download)",
            _FASHION,
        ),
        DatasetInfo(
            "cifar10",
            10,
            (3, 32, 32),
            False,
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract it; or download=True, CLI --download)",
            _CIFAR10,
        ),
        DatasetInfo(
            "nmnist",
            10,
            (2, 34, 34),
            True,
            "https://www.garrickorchard.com/datasets/n-mnist (Train.zip, Test.zip)",
            _DIGITS,
        ),
        DatasetInfo(
            "cifar10-dvs",
            10,
            (2, 128, 128),
            True,
            "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 (the 10 class zips)",
            _CIFAR10,
        ),
        DatasetInfo(
            "dvs128-gesture",
            11,
            (2, 128, 128),
            True,
            "https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz)",
            _GESTURES,
        ),
    )
}
# The one place label names live; the registry's ModelInfo.label_names reads them from here.
LABEL_NAMES: dict[str, tuple[str, ...]] = {name: info.classes for name, info in DATASETS.items()}


def _missing(name: str, looked_in: Sequence[Path], expected: Sequence[str]) -> DatasetNotFoundError:
    places = ", ".join(str(p) for p in looked_in) or "(no folder given)"
    return DatasetNotFoundError(
        f"{name}: dataset files not found. Looked in: {places}. Expected there: "
        f"{', '.join(expected)}. Get them from {DATASETS[name].source}, then pass the folder "
        f"with data_dir=... (CLI: --data-dir DIR)."
    )


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} or 'imagefolder'"
        )
    return DATASETS[name]


# --------------------------------------------------------------------------- static images


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
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(
            f"{path}: header says {dims} but holds {body.size} bytes; the file is truncated"
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
        raise ValueError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    _check_labels(y, 10, labels)
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    """Every label in [0, num_classes); else a DataFileError naming the file and the first bad one."""
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
        with open(folder / f, "rb") as fh:
            batch = pickle.load(fh, encoding="latin1")
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch["labels"], dtype=np.int64))
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


# --------------------------------------------------------------------------- splits


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
    val = set()
    for idx in by_class.values():
        val.update(idx[: int(len(idx) * val_fraction)])
    train_idx = [i for i in range(len(targets)) if i not in val]
    return train_idx, sorted(val)


class SubsetWithTargets(Dataset):
    """A subset that keeps ``targets`` and swaps in its own transform (e.g. none for validation)."""

    def __init__(self, base: Dataset, indices: Sequence[int]):
        self.base = base
        self.indices = list(indices)
        self.targets = torch.as_tensor(base.targets)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]


# --------------------------------------------------------------------------- image folders


def imagefolder_classes(data_dir: Path) -> list[str]:
    """Class names of an image folder dataset, numbered alike in both splits: the sub-folders of
    ``data_dir/train``, sorted (without ``train/``: of ``test/``)."""
    from torchvision.datasets.folder import find_classes

    root = data_dir / "train" if (data_dir / "train").is_dir() else data_dir / "test"
    return find_classes(str(root))[0]


def _imagefolder_samples(
    data_dir: Path, train_side: bool
) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) of a split and the class names; a test class unknown to train/ is an error,
    a train/ class without test images a warning."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    classes = imagefolder_classes(data_dir)
    sub = data_dir / ("train" if train_side else "test")
    present = classes if train_side else find_classes(str(sub))[0]
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise DataFileError(
            f"imagefolder: {sub} has class folders that {data_dir / 'train'} lacks: {', '.join(unknown)}; "
            f"the model learns train/'s classes ({', '.join(classes)}): remove them from test/ or add them to train/"
        )
    missing = [c for c in classes if c not in present]
    if missing:
        warnings.warn(
            f"imagefolder: {sub} has no folder for the train/ class(es) {', '.join(missing)}; "
            f"the test accuracy leaves them out",
            UserWarning,
            stacklevel=3,
        )
    samples = make_dataset(
        str(sub), {c: i for i, c in enumerate(classes) if c in present}, extensions=IMG_EXTENSIONS
    )
    return samples, classes


def _load_imagefolder(
    data_dir: Path, train_side: bool, channels: int, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images ``[N, C, H, W]`` uint8, labels ``[N]`` and class names; unreadable images are
    skipped with a warning that counts them and names the first."""
    from PIL import Image

    samples, classes = _imagefolder_samples(data_dir, train_side)
    mode = "L" if channels == 1 else "RGB"
    images = torch.empty(len(samples), channels, *size, dtype=torch.uint8)
    targets, bad = [], []
    for path, target in samples:
        try:
            with Image.open(path) as im:
                im = im.convert(mode).resize((size[1], size[0]), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError ... on damaged files
            bad.append(f"{path} ({err})")
            continue
        images[len(targets)] = torch.from_numpy(
            arr.reshape(size[0], size[1], channels).transpose(2, 0, 1).copy()
        )
        targets.append(target)
    if bad:
        where = data_dir / ("train" if train_side else "test")
        if not targets:
            raise DataFileError(f"imagefolder: no readable image in {where}; e.g. {bad[0]}")
        warnings.warn(
            f"imagefolder: skipped {len(bad)} unreadable image(s) of {len(samples)} in {where}, "
            f"e.g. {bad[0]}",
            UserWarning,
            stacklevel=2,
        )
    return images[: len(targets)], torch.tensor(targets, dtype=torch.int64), classes


# --------------------------------------------------------------------------- event data


# SpikingJelly's layout under data_dir: download/ (the original archives, md5-checked and
# extracted by SpikingJelly), extract/ (the extracted originals), events_np/ (events as .npz),
# frames_number_{T}_split_by_number/ (frames). Any stage present is enough.
_EVENT_ORIGINALS = {
    "nmnist": (
        "download/Train.zip + download/Test.zip, or extract/Train/<digit>/*.bin + extract/Test/<digit>/*.bin",
        ("Train", "Test"),
    ),
    "cifar10-dvs": (
        "download/<class>.zip for the 10 classes, or extract/<class>/cifar10_<class>_<i>.aedat",
        ("airplane",),
    ),
    "dvs128-gesture": (
        "download/DvsGesture.tar.gz (+ gesture_mapping.csv, LICENSE.txt, README.txt), or "
        "extract/DvsGesture/ with user*_*.aedat, user*_*_labels.csv, trials_to_train.txt, trials_to_test.txt",
        ("DvsGesture",),
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
    converter when the archives are not there (SpikingJelly would insist on md5-checked archives)."""
    raw_root = root / "events_np"
    if raw_root.exists():
        return
    expected, markers = _EVENT_ORIGINALS[name]
    extract = root / "extract"
    download = root / "download"
    if extract.is_dir() and all((extract / m).exists() for m in markers):
        marker = raw_root.with_name(raw_root.name + ".building")
        marker.touch(exist_ok=False)
        raw_root.mkdir()
        _sj_class(name).create_raw_from_extracted(extract, raw_root)
        marker.unlink()
        return
    if download.is_dir() and any(download.iterdir()):
        return  # SpikingJelly checks the archives' md5 and extracts them
    raise _missing(name, [root], [expected])


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


def _event_dataset(name: str, data_dir: Path | None, train: bool, T: int | None) -> Dataset:
    if data_dir is None:
        raise _missing(name, [], [_EVENT_ORIGINALS[name][0]])
    if not isinstance(T, int) or T < 1:
        raise ValueError(
            f"{name}: event data needs the number of frames T (a positive int), got {T!r}"
        )
    _prepare_events(name, data_dir)
    cls = _sj_class(name)
    kw = dict(data_type="frame", frames_number=T, split_by="number")
    if (
        name == "cifar10-dvs"
    ):  # no official split: per class, numeric index 0-899 train, 900-999 test
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
    label_of_folder = _CIFAR10.index if name == "cifar10-dvs" else int
    return EventFrames(sj, indices, label_of_folder)


# --------------------------------------------------------------------------- entry point


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
    if name in DATASETS and DATASETS[name].event and data_dir is None:
        raise _missing(name, [], [_EVENT_ORIGINALS[name][0]])
    if name == "imagefolder":
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
        images, targets, classes = _load_imagefolder(
            data_dir, train_side, image_shape[0], tuple(image_shape[1:])
        )
        base = TensorImageDataset(images, targets)
        base.classes = classes
        num_classes = len(classes)
    else:
        info = _info(name)
        num_classes = info.num_classes
        if info.event:
            base = _event_dataset(name, data_dir, train=train_side, T=T)
        else:
            if name == "cifar10":
                x, y = _load_cifar_split(
                    _find_cifar(data_dir, download), "train" if train_side else "test"
                )
            else:
                x, y = _load_idx_split(
                    _find_idx(name, data_dir, download), "train" if train_side else "test"
                )
            base = TensorImageDataset(x, y, train_transform(name) if augment else None)
    if split in ("train", "val"):
        train_idx, val_idx = train_val_indices(base.targets, val_fraction)
        ds = SubsetWithTargets(base, train_idx if split == "train" else val_idx)
    else:
        ds = base
    ds.num_classes = num_classes
    return ds
