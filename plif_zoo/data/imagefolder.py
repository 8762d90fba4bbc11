"""Image folders for fine-tuning: ``data_dir/train/<class>/*`` and ``data_dir/test/<class>/*``.

Images are resized to the model's input and held as uint8 ``[N, C, H, W]``; classes are
numbered by the sorted folder names of ``train/``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DataFileError

__all__ = ["imagefolder_classes", "load_imagefolder"]


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
            f"imagefolder: {sub} has class folders that {data_dir / 'train'} lacks: "
            f"{', '.join(unknown)}; the model learns train/'s classes ({', '.join(classes)}): "
            f"remove them from test/ or add them to train/"
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


def load_imagefolder(
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
