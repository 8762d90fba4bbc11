"""Backend names and the one decision "kernel or torch reference".

``torch`` is the readable reference, ``cpu`` the compiled C++ kernels (:mod:`plif_zoo.cpu`),
``cupy`` the CUDA kernels (:mod:`plif_zoo.cuda`), ``auto`` the fastest one available for the
tensor's device. A backend module provides ``available()``, ``why_unavailable()``,
``supports(cfg)`` (this surrogate?), the pure predicates ``supports_neuron(x, cfg)`` and
``supports_pool(x, kernel, stride)`` (dtype, shape, window...), and the kernels
``neuron_multi_step`` / ``max_pool_multi_step``. :func:`resolve` alone sends what a kernel does
not take to the reference; the layers (``neurons``, ``pooling``) only follow its answer.

The backend modules are imported here, not by name at run time, so that ``torch.compile`` can
trace the decision (their imports are light: the kernels are built at first use).
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from . import cpu, cuda

if TYPE_CHECKING:
    from .neurons import NeuronConfig

NAMES = ("auto", "torch", "cpu", "cupy")
_MODULES: dict[str, ModuleType] = {"cpu": cpu, "cupy": cuda}


def check_name(backend: str) -> str:
    """Validate a backend name given to a layer."""
    if backend not in NAMES:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(NAMES)}")
    return backend


def get(name: str) -> ModuleType:
    """The module implementing a non-reference backend ("cpu" or "cupy")."""
    return _MODULES[name]


# Availability is a fact of the machine, checked (and the kernels built) once: torch.compile
# takes it as a constant instead of tracing the build and its lock.
@torch.compiler.assume_constant_result
def available(name: str) -> bool:
    """Whether backend ``name`` ("cpu" or "cupy") can run here (builds the CPU kernels once)."""
    return _MODULES[name].available()


_LABELS = {"cpu": "compiled CPU backend", "cupy": "CuPy backend"}
_warned: set[str] = set()


@torch.compiler.assume_constant_result
def _auto_available(name: str) -> bool:
    """``available(name)`` for ``backend="auto"``: the first time it is False, one warning
    names the cause (auto then uses the torch reference, as documented)."""
    if _MODULES[name].available():
        return True
    if name not in _warned:
        _warned.add(name)
        warnings.warn(
            f"plif_zoo: {_LABELS[name]} unavailable ({_MODULES[name].why_unavailable()}); "
            f"using the slower torch reference",
            RuntimeWarning,
            stacklevel=4,
        )
    return False


def resolve(
    backend: str,
    x: torch.Tensor,
    cfg: NeuronConfig | None = None,
    pool: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> str:
    """The backend that runs this call: a kernel backend's name, or "torch" for the reference.

    ``auto`` means cupy on CUDA, compiled cpu on CPU, when available. ``cfg`` is the neuron's
    NeuronConfig, ``pool`` the max-pool's (kernel, stride). An explicitly chosen backend that
    cannot run here at all (wrong device, not installed, surrogate without a kernel) is an
    error; an input that its kernels do not take (a dtype, an empty tensor, a window over 256
    elements, overlapping windows on cupy) falls back to the reference, as under ``auto``.
    """
    check_name(backend)
    if backend == "torch":
        return "torch"
    if backend == "auto":
        name = "cupy" if x.is_cuda else "cpu"
        if not _auto_available(name) or (cfg is not None and not _MODULES[name].supports(cfg)):
            return "torch"
    else:
        name = backend
        _check_explicit(name, x, cfg)
    module = _MODULES[name]
    if cfg is not None and not module.supports_neuron(x, cfg):
        return "torch"
    if pool is not None and not module.supports_pool(x, *pool):
        return "torch"
    return name


def _check_explicit(name: str, x: torch.Tensor, cfg: NeuronConfig | None) -> None:
    """Errors that say why an explicitly chosen backend cannot run here, and what to do."""
    module = _MODULES[name]
    if name == "cupy" and not x.is_cuda:
        raise ValueError(
            f"backend='cupy' needs CUDA tensors, got a tensor on {x.device}; move the model "
            f"and input with .cuda() or use backend='auto'"
        )
    if name == "cpu" and x.device.type != "cpu":
        raise ValueError(
            f"backend='cpu' needs CPU tensors, got a tensor on {x.device}; use backend='auto' "
            f"(or 'cupy' on CUDA)"
        )
    if not available(name):
        hint = "; or use backend='auto' (the torch reference where no kernel runs)"
        raise ValueError(f"backend={name!r} is not available: {module.why_unavailable()}{hint}")
    if cfg is not None and not module.supports(cfg):
        raise ValueError(
            f"backend={name!r} does not support surrogate "
            f"{type(cfg.surrogate_function).__name__}; use backend='torch' or 'auto'"
        )


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or a ValueError that says why this machine cannot use it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r}: {err}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} asked for, but CUDA is not available here; "
                f"use device 'cpu' (--device cpu)"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"device {str(device)!r}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    return dev


def set_backend(
    net: torch.nn.Module, backend: str, instance: type | tuple[type, ...] = torch.nn.Module
) -> None:
    """Set ``backend`` on every module of ``net`` (of type ``instance``) that lists it in its
    ``supported_backends``: SpikingJelly's protocol, so mixed networks work.

    Modules without ``supported_backends`` are left alone; modules that do not support this
    backend keep theirs, with a warning (as ``spikingjelly...functional.set_backend`` does in
    the SpikingJelly versions that have it; 2.0.0 does not).
    """
    for module in net.modules():
        supported = getattr(module, "supported_backends", None)
        if not isinstance(module, instance) or supported is None:
            continue
        if backend in supported:
            module.backend = backend
        else:
            warnings.warn(
                f"{type(module).__name__} supports backends {tuple(supported)}, not {backend!r}; "
                f"it keeps backend={getattr(module, 'backend', None)!r}",
                stacklevel=2,
            )
