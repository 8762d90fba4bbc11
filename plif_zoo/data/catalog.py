"""The datasets of the paper (Sec. 4): what a model needs to know of each, and their label names.

``DATASETS`` maps a name to its :class:`DatasetInfo`; ``LABEL_NAMES`` is the one place label
names live (the registry's ``ModelInfo.label_names`` reads them from here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetNotFoundError

__all__ = ["DATASETS", "DatasetInfo", "LABEL_NAMES", "SPLITS"]

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
            "http://yann.lecun.com/exdb/mnist/ "
            "(or torchvision's downloader: download=True, CLI --download)",
            _DIGITS,
        ),
        DatasetInfo(
            "fashion-mnist",
            10,
            (1, 28, 28),
            False,
            "`apt-get install dataset-fashion-mnist` "
            "(files land in /usr/share/datasets/fashion-mnist/), "
            "https://github.com/zalandoresearch/fashion-mnist, "
            "or torchvision's downloader (download=True, CLI --download)",
            _FASHION,
        ),
        DatasetInfo(
            "cifar10",
            10,
            (3, 32, 32),
            False,
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz "
            "(extract it; or download=True, CLI --download)",
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
