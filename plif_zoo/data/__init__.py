"""Datasets of the paper (Sec. 4) as raw tensors, with the paper's augmentation and splits.

Static images (MNIST, Fashion-MNIST, CIFAR-10) leave the pipeline as float tensors
``[C, H, W]`` in [0, 1]: normalisation belongs to the model, so a loaded model and a
user's own images agree. Event datasets (N-MNIST, CIFAR10-DVS, DVS128 Gesture) leave
it as frames ``[T, 2, H, W]`` of raw event counts (SpikingJelly's ``split_by="number"``).

Splits: ``train`` / ``val`` follow accuracy-B (the first 15% of each class of the
training set, in file order, is the validation set; ``train`` is the rest),
``train-full`` is the whole training set (accuracy-A), ``test`` the official test set.

Modules, each one idea: ``catalog`` (DatasetInfo, DATASETS, LABEL_NAMES), ``images``
(IDX and CIFAR files), ``events`` (SpikingJelly frames), ``imagefolder`` (fine-tuning
folders), ``splits`` (get_dataset, the accuracy-B split).
"""

from ..errors import DataFileError, DatasetNotFoundError
from .catalog import DATASETS, LABEL_NAMES, SPLITS, DatasetInfo
from .events import EventFrames
from .imagefolder import imagefolder_classes
from .images import FASHION_MNIST_SYSTEM_DIR, TensorImageDataset, train_transform
from .splits import SubsetWithTargets, get_dataset, train_val_indices

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DataFileError",
    "EventFrames",
    "FASHION_MNIST_SYSTEM_DIR",
    "LABEL_NAMES",
    "SPLITS",
    "SubsetWithTargets",
    "TensorImageDataset",
    "get_dataset",
    "imagefolder_classes",
    "train_val_indices",
    "train_transform",
]
