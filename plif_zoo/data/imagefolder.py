"""Image folders for fine-tuning: ``data_dir/train/<class>/*`` and ``data_dir/test/<class>/*``.

Images are resized to the model's input and held as uint8 ``[N, C, H, W]``; classes are
numbered by the sorted folder names of ``train/``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DataFileError

__all__ = ["imagefolder_classes", "load_imagefolder"]


def _class_folders(root: Path) -> list[str]:
    """The sub-folders of ``root``, sorted; hidden ones (``.ipynb_checkpoints``) are no class."""
    try:
        names = sorted(e.name for e in os.scandir(root) if e.is_dir() and e.name[0] != ".")
    except OSError as err:
        raise DataFileError(
            f"imagefolder: cannot read {root} ({err.strerror or err}); data_dir must hold train/ "
            f"and test/, each with one folder of images per class"
        ) from None
    if not names:
        raise DataFileError(
            f"imagefolder: {root} has no class folder; put each class's images in a folder of "
            f"its own ({root}/<class>/*.png)"
        )
    return names


def imagefolder_classes(data_dir: Path) -> list[str]:
    """Class names of an image folder dataset, numbered alike in both splits: the sub-folders of
    ``data_dir/train``, sorted (without ``train/``: of ``test/``)."""
    root = data_dir / "train" if (data_dir / "train").is_dir() else data_dir / "test"
    return _class_folders(root)


def _imagefolder_samples(
    data_dir: Path, train_side: bool
) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) of a split and the class names. A test/ class unknown to train/ and a
    train/ class without images are errors; a train/ class without test images is a warning."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    classes = imagefolder_classes(data_dir)
    sub = data_dir / ("train" if train_side else "test")
    present = classes if train_side else _class_folders(sub)
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise DataFileError(
            f"imagefolder: {sub} has class folders that {data_dir / 'train'} lacks: "
            f"{', '.join(unknown)}; the model learns train/'s classes ({', '.join(classes)}): "
            f"remove them from test/ or add them to train/"
        )
    samples = make_dataset(
        str(sub),
        {c: i for i, c in enumerate(classes) if c in present},
        extensions=IMG_EXTENSIONS,
        allow_empty=True,
    )
    found = {classes[label] for _, label in samples}
    empty = [c for c in classes if c not in found]
    if empty and train_side:
        raise DataFileError(
            f"imagefolder: no image in {', '.join(str(sub / c) for c in empty)} (images: "
            f"{', '.join(IMG_EXTENSIONS)}); add images or remove the folder"
        )
    if empty:
        warnings.warn(
            f"imagefolder: {sub} has no image of the train/ class(es) {', '.join(empty)}; "
            f"the test accuracy leaves them out",
            UserWarning,
            stacklevel=3,
        )
    return samples, classes


def _to_8_bit(im):
    """16-bit greyscale (PNG, TIFF) scaled to 8 bits; Pillow's convert would clip it to white."""
    from PIL import Image

    if im.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return im
    arr = np.asarray(im, dtype=np.float64) / 257.0  # 65535 -> 255
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def load_imagefolder(
    data_dir: Path, train_side: bool, channels: int, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images ``[N, C, H, W]`` uint8, labels ``[N]`` and class names; unreadable images are
    skipped with a warning that counts them and names the first."""
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(
            f"imagefolder: images become 1 (greyscale) or 3 (RGB) channels, not {channels}; "
            f"fine-tune a model with 1- or 3-channel input, or pass image_shape [1 or 3, H, W]"
        )
    samples, classes = _imagefolder_samples(data_dir, train_side)
    mode = "L" if channels == 1 else "RGB"
    images = torch.empty(len(samples), channels, *size, dtype=torch.uint8)
    targets, bad = [], []
    for path, target in samples:
        try:
            with Image.open(path) as im:
                im = _to_8_bit(im).convert(mode).resize((size[1], size[0]), Image.BILINEAR)
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
