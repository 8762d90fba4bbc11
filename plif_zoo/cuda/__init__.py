"""The CuPy backend (name ``"cupy"``): fused CUDA kernels for the multi-step neurons and spike
max-pooling.

The kernels are real ``.cu`` files in this folder (``neuron.cu``, ``max_pool.cu``; the
per-neuron math is ``csrc/neuron_math.h``, shared with the CPU backend), compiled with NVRTC on
first use per GPU architecture, cached on disk (see :mod:`.build`) and launched through
CuPy. Importing this package needs neither cupy nor a GPU; ``python -m plif_zoo.cuda
--compile-only`` proves every kernel compiles on a machine without either.

The predicates ``supports_neuron`` / ``supports_pool`` say what the kernels can run;
``plif_zoo.backends`` decides, and sends everything else to the torch reference.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

from .._kernel_spec import surrogate_spec
from .build import DTYPE_NAMES

if TYPE_CHECKING:
    from ..neurons import NeuronConfig

__all__ = [
    "available", "why_unavailable", "supports", "supports_neuron", "supports_pool",
    "neuron_multi_step", "max_pool_multi_step",
]

MAX_WINDOW = 256  # max_pool.cu keeps the window position in a uint8


@functools.lru_cache(maxsize=1)
def why_unavailable() -> str:
    """Why this backend cannot run here, or '' when it can."""
    try:
        import cupy
    except ImportError as err:
        return f"cupy is not installed ({err}); install it with `pip install cupy-cuda13x`"
    try:
        from cuda.bindings import nvrtc  # noqa: F401
    except ImportError:
        return "cuda-bindings is not installed (it compiles the kernels): `pip install cuda-bindings`"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device (no GPU or no driver)"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "cupy sees no CUDA device"
    except Exception as err:  # cupy's CUDARuntimeError when the driver is missing or too old
        return f"cupy cannot use the GPU: {err}"
    return ""


def available() -> bool:
    """True when cupy, NVRTC and a CUDA device are present."""
    return why_unavailable() == ""


def supports(cfg: NeuronConfig) -> bool:
    """Whether the kernels implement this NeuronConfig (its surrogate has a kernel id)."""
    return surrogate_spec(cfg.surrogate_function) is not None


def supports_neuron(x_seq: torch.Tensor, cfg: NeuronConfig) -> bool:
    """Whether the kernels run this call: CUDA, a kernel dtype, non-empty [T, N, *], a known
    surrogate."""
    return (
        x_seq.is_cuda and x_seq.dtype in DTYPE_NAMES and x_seq.dim() >= 2
        and x_seq.numel() > 0 and supports(cfg)
    )


def supports_pool(x_seq: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> bool:
    """Whether the kernels pool this input: non-overlapping windows (kernel == stride, floor
    mode) of at most 256 elements that fit the input, a kernel dtype, at least [N, C, H, W]."""
    if not (x_seq.is_cuda and x_seq.dtype in DTYPE_NAMES and x_seq.dim() >= 4):
        return False
    h, w = x_seq.shape[-2:]
    return (
        kernel == stride and kernel[0] * kernel[1] <= MAX_WINDOW
        and h >= kernel[0] and w >= kernel[1] and x_seq.numel() > 0
    )


def neuron_multi_step(x_seq: torch.Tensor, v_init: torch.Tensor, k: torch.Tensor, cfg: NeuronConfig):
    """T steps of the neuron on CUDA; same contract as ``plif_zoo.neurons.multi_step``.

    x_seq: [T, N, *] float32 / float16 / bfloat16 (``supports_neuron``); v_init: [N, *];
    k: 0-dim decay. Returns (spike_seq [T, N, *] in x_seq's dtype, v [N, *] or v_seq
    [T, N, *] in float32).
    """
    from . import ops  # needs numpy; only on this path

    spec = surrogate_spec(cfg.surrogate_function)
    if spec is None:
        raise ValueError(
            f"the cupy backend does not implement surrogate {type(cfg.surrogate_function).__name__}; "
            f"use backend='torch' or 'auto'"
        )
    if not x_seq.is_cuda:
        raise ValueError(f"the cupy backend needs CUDA tensors, got x_seq on {x_seq.device}")
    if x_seq.dim() < 2 or v_init.shape != x_seq.shape[1:]:
        raise ValueError(
            f"expected x_seq [T, N, *] and v_init [N, *], got {tuple(x_seq.shape)} and "
            f"{tuple(v_init.shape)}"
        )
    return ops.neuron(x_seq, v_init, k, cfg, spec)


def max_pool_multi_step(x_seq: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]):
    """Max-pool ``x_seq: [T, N, C, H, W]`` (any [..., H, W]) on CUDA, for inputs that
    ``supports_pool`` accepts -> [..., H/kh, W/kw]."""
    from . import ops

    if not supports_pool(x_seq, kernel, stride):
        raise ValueError(
            f"the cupy max-pool kernel does not take this input (shape {tuple(x_seq.shape)}, "
            f"{x_seq.dtype}, kernel {kernel}, stride {stride}); call "
            f"plif_zoo.pooling.max_pool_multi_step, which falls back to torch"
        )
    return ops.max_pool(x_seq, kernel)
