"""Shared test markers and fixtures.

``@pytest.mark.fashion_mnist``: the test reads the real Fashion-MNIST (Debian's
dataset-fashion-mnist); skipped when it is not installed.
``tiny_config``: a YAML training config of a narrow Fashion-MNIST network (trains in seconds).
"""

from pathlib import Path

import pytest

from plif_zoo import data

# A narrow version of the paper's Fashion-MNIST network (see test_training.py).
TINY_CONFIG = """model: fashion-mnist-plif
model_kwargs: {channels: 32, fc_hidden: [128]}
T: 4
lr: 0.01
backend: torch
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fashion_mnist: reads the real Fashion-MNIST (skipped when not installed)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    installed = (data.FASHION_MNIST_SYSTEM_DIR / "t10k-images-idx3-ubyte.gz").exists()
    if item.get_closest_marker("fashion_mnist") is not None and not installed:
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """tmp_path/tiny.yaml holding the tiny training config."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path
