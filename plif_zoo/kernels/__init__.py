"""The CuPy backend: fused CUDA kernels for the multi-step neurons and spike max-pooling.

The kernels are real ``.cu`` files in this folder (``neuron.cu``, ``max_pool.cu``; the
per-neuron math is ``neuron_math.h``, shared with the CPU backend), compiled with NVRTC on
first use per GPU architecture, cached on disk (see :mod:`.build`) and launched through
CuPy. Importing this package needs neither cupy nor a GPU; ``python -m plif_zoo.kernels
--compile-only`` proves every kernel compiles on a machine without either.
"""

from __future__ import annotations

import functools

import torch

from .spec import surrogate_spec

__all__ = ["available", "why_unavailable", "supports", "neuron_multi_step", "max_pool_multi_step"]

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


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


def supports(cfg) -> bool:
    """Whether the kernels implement this NeuronConfig (its surrogate has a kernel id)."""
    return surrogate_spec(cfg.surrogate_function) is not None


def neuron_multi_step(x_seq: torch.Tensor, v_init: torch.Tensor, k: torch.Tensor, cfg):
    """T steps of the neuron on CUDA; same contract as ``plif_zoo.neurons.multi_step``.

    x_seq: [T, N, *] float32 / float16 / bfloat16; v_init: [N, *]; k: 0-dim decay.
    Returns (spike_seq [T, N, *] in x_seq's dtype, v [N, *] or v_seq [T, N, *] in float32).
    Other dtypes and empty tensors go to the torch reference.
    """
    from ..neurons import _TorchMultiStep
    from .ops import NeuronFunction

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
    if x_seq.dtype not in _KERNEL_DTYPES or x_seq.numel() == 0:
        compute = torch.promote_types(x_seq.dtype, torch.float32)
        s_seq, v = _TorchMultiStep.apply(x_seq.to(compute), v_init.to(compute), k.to(compute), cfg)
        return s_seq.to(x_seq.dtype), v
    return NeuronFunction.apply(x_seq, v_init, k, cfg, spec, torch.is_grad_enabled())


def max_pool_multi_step(x_seq: torch.Tensor, kernel_size, stride) -> torch.Tensor:
    """Max-pool ``x_seq: [T, N, C, H, W]`` (any [..., H, W]) on CUDA.

    Non-overlapping windows (kernel == stride, floor mode) of float32 / float16 / bfloat16
    run the kernel; anything else goes to plif_zoo.pooling's torch path.
    """
    from ..pooling import _pair
    from ..pooling import max_pool_multi_step as torch_max_pool
    from .ops import MaxPoolFunction

    kernel, stride = _pair(kernel_size), _pair(stride)
    if not x_seq.is_cuda:
        raise ValueError(f"the cupy backend needs CUDA tensors, got x_seq on {x_seq.device}")
    H, W = x_seq.shape[-2:] if x_seq.dim() >= 3 else (0, 0)
    if (
        kernel != stride
        or x_seq.dtype not in _KERNEL_DTYPES
        or x_seq.dim() < 4
        or kernel[0] * kernel[1] > 256
        or H < kernel[0]
        or W < kernel[1]
        or x_seq.numel() == 0
    ):
        return torch_max_pool(x_seq, kernel, stride, backend="torch")
    return MaxPoolFunction.apply(x_seq, kernel)
