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

import ctypes
import functools
from typing import TYPE_CHECKING

import torch

from .._kernel_spec import MAX_WINDOW, supports, surrogate_spec
from . import build
from .build import DTYPE_NAMES

if TYPE_CHECKING:
    from ..neurons import NeuronConfig

__all__ = [
    "available",
    "why_unavailable",
    "install_hint",
    "supports",
    "supports_neuron",
    "supports_pool",
    "neuron_multi_step",
    "max_pool_multi_step",
]


@functools.lru_cache(maxsize=1)
def why_unavailable() -> str:
    """Why this backend cannot run here, or '' when it can: each kernel source was built (or
    found intact in the cache) for the current GPU and loaded. Checked once per process."""
    try:
        import cupy
    except ImportError as err:
        return f"cupy is not installed ({err}); {install_hint()}"
    try:
        from cuda.bindings import nvrtc  # noqa: F401
    except ImportError:
        return f"cuda-bindings is not installed (its NVRTC compiles the kernels); {install_hint()}"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device (no GPU or no driver)"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "cupy sees no CUDA device"
    except Exception as err:  # cupy's CUDARuntimeError when the driver is missing or too old
        return f"cupy cannot use the GPU: {err}; {install_hint()}"
    return _first_build_problem(torch.cuda.current_device())


def _first_build_problem(index: int) -> str:
    """Build and load one kernel of each source on GPU ``index``: what the first launch needs
    (the NVRTC library, the CUDA headers, NVRTC support for the GPU's arch, a writable cache,
    a driver that loads the cubin). '' when it worked."""
    from . import ops  # needs numpy and cupy: only here

    major, minor = torch.cuda.get_device_capability(index)
    try:
        for source in build.sources():
            ops.load(torch.device("cuda", index), source)
    except Exception as err:  # any failure means: not usable here; the message says why
        return (
            f"the CUDA kernels cannot be built or loaded for GPU {index} "
            f"(sm_{major}{minor}): {err}{_driver_mismatch()}"
        )
    return ""


def _driver_mismatch() -> str:
    """A hint when NVRTC is newer than the driver (its cubins would not load), else ''."""
    driver = driver_cuda_version()
    try:
        nvrtc_major = int(build.nvrtc_version().split(".")[0])
    except Exception:  # no NVRTC: the error above already says so
        return ""
    if driver is None or nvrtc_major <= driver // 1000:
        return ""
    return (
        f"; NVRTC {nvrtc_major} makes cubins that this CUDA {driver // 1000} driver cannot "
        f"load: {install_hint(driver)}"
    )


def driver_cuda_version() -> int | None:
    """The CUDA version the installed driver supports (e.g. 12080 for 12.8), None without one."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int()
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) == 0:
            return version.value
    except (OSError, AttributeError):
        pass
    return None


def install_hint(driver: int | None = -1) -> str:
    """The pip command for this machine's driver (``driver`` like 12080; -1: ask the driver).

    CUDA 13 drivers (580 and later) take ``plif-zoo[cuda]`` (cupy-cuda13x, NVRTC 13); CUDA 12
    drivers (525 to 575) ``plif-zoo[cuda12]`` (cupy-cuda12x, NVRTC 12).
    """
    if driver == -1:
        driver = driver_cuda_version()
    if driver is not None and driver >= 13000:
        return "install it with `pip install plif-zoo[cuda]` (cupy-cuda13x and NVRTC 13)"
    if driver is not None and driver >= 12000:
        return (
            f"this driver supports CUDA {driver // 1000}.{driver % 1000 // 10}: install "
            f"`pip install plif-zoo[cuda12]` (cupy-cuda12x and NVRTC 12)"
        )
    return (
        "install `pip install plif-zoo[cuda]` for a CUDA 13 driver (580 or later) or "
        "`pip install plif-zoo[cuda12]` for a CUDA 12 driver (525 to 575)"
    )


def available() -> bool:
    """True when cupy, NVRTC and a CUDA device are present and the kernels build and load."""
    return why_unavailable() == ""


def supports_neuron(x_seq: torch.Tensor, cfg: NeuronConfig) -> bool:
    """Whether the kernels run this call: CUDA, a kernel dtype, non-empty [T, N, *], a known
    surrogate."""
    return (
        x_seq.is_cuda
        and x_seq.dtype in DTYPE_NAMES
        and x_seq.dim() >= 2
        and x_seq.numel() > 0
        and supports(cfg)
    )


def supports_pool(x_seq: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> bool:
    """Whether the kernels pool this input: non-overlapping windows (kernel == stride, floor
    mode) of at most 256 elements that fit the input, a kernel dtype, at least [N, C, H, W]."""
    if not (x_seq.is_cuda and x_seq.dtype in DTYPE_NAMES and x_seq.dim() >= 4):
        return False
    h, w = x_seq.shape[-2:]
    return (
        kernel == stride
        and kernel[0] * kernel[1] <= MAX_WINDOW
        and h >= kernel[0]
        and w >= kernel[1]
        and x_seq.numel() > 0
    )


def neuron_multi_step(
    x_seq: torch.Tensor, v_init: torch.Tensor, k: torch.Tensor, cfg: NeuronConfig
):
    """T steps of the neuron on CUDA; same contract as ``plif_zoo.neurons.multi_step``.

    x_seq: [T, N, *] float32 / float16 / bfloat16 (``supports_neuron``); v_init: [N, *];
    k: 0-dim decay. Returns (spike_seq [T, N, *] in x_seq's dtype, v [N, *] or v_seq
    [T, N, *] in float32).
    """
    from . import ops  # needs numpy; only on this path

    spec = surrogate_spec(cfg.surrogate_function)
    if spec is None:
        raise ValueError(
            f"the cupy backend does not implement surrogate "
            f"{type(cfg.surrogate_function).__name__}; "
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
    """Max-pool ``x_seq: [T, N, C, H, W]`` (any [M, C, H, W]) on CUDA, for inputs that
    ``supports_pool`` accepts -> [..., H/kh, W/kw]."""
    from . import ops

    if not supports_pool(x_seq, kernel, stride):
        raise ValueError(
            f"the cupy max-pool kernel does not take this input (shape {tuple(x_seq.shape)}, "
            f"{x_seq.dtype}, kernel {kernel}, stride {stride}); call "
            f"plif_zoo.pooling.max_pool_multi_step, which falls back to torch"
        )
    return ops.max_pool(x_seq, kernel)
