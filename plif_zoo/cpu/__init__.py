"""Compiled CPU backend: PLIF/LIF multi-step and spike max-pooling in C++ with OpenMP.

The neuron math is ``csrc/neuron_math.h``, the same header the CUDA kernels compile.
The library is built with g++ at first use and cached (see ``_build``); where that fails,
``available()`` is False and ``backend="auto"`` uses the torch reference, with one warning.
Threads: ``torch.get_num_threads()``.

The predicates ``supports_neuron`` / ``supports_pool`` say what the kernels can run;
``plif_zoo.backends`` decides, and sends everything else to the torch reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .._kernel_spec import MAX_WINDOW, supports
from . import _build
from ._neuron import neuron_multi_step
from ._pool import max_pool_multi_step

if TYPE_CHECKING:
    from ..neurons import NeuronConfig

__all__ = [
    "available",
    "why_unavailable",
    "supports",
    "supports_neuron",
    "supports_pool",
    "neuron_multi_step",
    "max_pool_multi_step",
]


def available() -> bool:
    """True when the kernels are compiled and loaded (compiles them on the first call).
    ``backend="auto"`` warns once when they are not (``plif_zoo.backends``)."""
    return _build.library() is not None


def why_unavailable() -> str:
    return _build.error()


def _real_float(x: torch.Tensor) -> bool:
    return x.dtype.is_floating_point and not x.dtype.is_complex


def supports_neuron(x_seq: torch.Tensor, cfg: NeuronConfig) -> bool:
    """Whether the kernels run this call: a CPU [T, N, *] real float tensor, a known surrogate."""
    return x_seq.device.type == "cpu" and x_seq.dim() >= 2 and _real_float(x_seq) and supports(cfg)


def supports_pool(x_seq: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> bool:
    """Whether the kernels pool this input: a CPU real float [..., H, W] tensor, windows of at
    most 256 elements (a uint8 position each) that fit the input."""
    if not (x_seq.device.type == "cpu" and x_seq.dim() >= 3 and _real_float(x_seq)):
        return False
    h, w = x_seq.shape[-2:]
    return kernel[0] * kernel[1] <= MAX_WINDOW and h >= kernel[0] and w >= kernel[1]
