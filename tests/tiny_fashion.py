"""Shared by the tests that read the real Fashion-MNIST: the skip marker, and a tiny training config."""

import pytest

from plif_zoo import data

requires_fashion_mnist = pytest.mark.skipif(
    not (data.FASHION_MNIST_SYSTEM_DIR / "t10k-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)

# A narrow version of the paper's Fashion-MNIST network through a YAML config (see test_training.py).
TINY_CONFIG = """model: fashion-mnist-plif
model_kwargs: {channels: 32, fc_hidden: [128]}
T: 4
lr: 0.01
backend: torch
"""
