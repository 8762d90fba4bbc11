"""Backend names and their selection: ``torch`` (the reference), ``cpu`` (compiled), ``cupy`` (CUDA).

A backend module provides ``available() -> bool``, ``why_unavailable() -> str``,
``supports(cfg) -> bool`` (can it run this neuron configuration, e.g. this surrogate) and
the functions the layers call (``neuron_multi_step``, ``max_pool_multi_step``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

NAMES = ("auto", "torch", "cpu", "cupy")
_MODULES = {"cpu": "plif_zoo.cpu", "cupy": "plif_zoo.kernels"}


def check_name(backend: str) -> str:
    """Validate a backend name given to a layer."""
    if backend not in NAMES:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(NAMES)}")
    return backend


def get(name: str) -> ModuleType:
    """The module implementing a non-reference backend."""
    return importlib.import_module(_MODULES[name])


def _available(name: str) -> bool:
    try:
        return get(name).available()
    except ImportError:
        return False


def resolve(backend: str, x: torch.Tensor, cfg=None) -> str:
    """Pick the backend for tensor ``x``: ``auto`` means cupy on CUDA, compiled cpu on CPU.

    ``cfg`` is the neuron's NeuronConfig (None for pooling); ``auto`` falls back to the
    torch reference when the fast backend does not support it (e.g. an exotic surrogate).
    """
    check_name(backend)
    if backend == "auto":
        preferred = "cupy" if x.is_cuda else "cpu"
        if _available(preferred) and (cfg is None or get(preferred).supports(cfg)):
            return preferred
        return "torch"
    if backend == "cupy":
        if not x.is_cuda:
            raise ValueError(
                f"backend='cupy' needs CUDA tensors, got a tensor on {x.device}; move the model "
                f"and input with .cuda() or use backend='auto'"
            )
        if not _available("cupy"):
            raise ValueError(
                "backend='cupy' is not available: " + _why("cupy")
                + "; install it with `pip install plif-zoo[cuda]` or use backend='auto'"
            )
    if backend == "cpu":
        if x.is_cuda:
            raise ValueError("backend='cpu' needs CPU tensors; use backend='auto' or 'cupy' on CUDA")
        if not _available("cpu"):
            raise ValueError("backend='cpu' is not available: " + _why("cpu"))
    if backend != "torch" and cfg is not None and not get(backend).supports(cfg):
        raise ValueError(
            f"backend={backend!r} does not support surrogate "
            f"{type(cfg.surrogate_function).__name__}; use backend='torch' or 'auto'"
        )
    return backend


def _why(name: str) -> str:
    try:
        return get(name).why_unavailable()
    except ImportError as err:
        return str(err)
