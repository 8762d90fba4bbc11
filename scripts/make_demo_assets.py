"""Write plif_zoo/assets/fashion-mnist-samples.safetensors: 8 Fashion-MNIST test images for
`plif-zoo demo`.

Source: the original t10k IDX files (MIT licence, Zalando Research), e.g. from Debian's
dataset-fashion-mnist package. Picks the first test image of 8 different classes.
Usage: python scripts/make_demo_assets.py [/usr/share/datasets/fashion-mnist]
"""

import gzip
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from plif_zoo._io import atomic_write

CLASSES = (
    9,
    2,
    1,
    6,
    4,
    5,
    7,
    8,
)  # ankle boot, pullover, trouser, shirt, coat, sandal, sneaker, bag


def main(src: Path) -> None:
    with gzip.open(src / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(src / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    index = [int(np.flatnonzero(labels == c)[0]) for c in CLASSES]
    out = (
        Path(__file__).resolve().parent.parent
        / "plif_zoo"
        / "assets"
        / "fashion-mnist-samples.safetensors"
    )
    tensors = {
        "images": torch.from_numpy(images[index].copy()),
        "labels": torch.tensor(labels[index], dtype=torch.int64),
        "test_index": torch.tensor(index, dtype=torch.int64),
    }
    metadata = {
        "dataset": "fashion-mnist",
        "split": "test",
        "license": "MIT (Zalando Research)",
        "source": "t10k-images-idx3-ubyte.gz / t10k-labels-idx1-ubyte.gz",
    }
    atomic_write(out, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    print(out, index)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"))
