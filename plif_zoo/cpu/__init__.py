"""Compiled CPU backend: PLIF/LIF multi-step and spike max-pooling in C++ with OpenMP.

The neuron math is ``kernels/neuron_math.h``, the same header the CuPy kernels compile.
The library is built with g++ at first use and cached (see ``_build``); where that fails,
``available()`` is False, one warning is emitted, and ``backend="auto"`` uses the torch reference.
Threads: ``torch.get_num_threads()``.
"""

from __future__ import annotations

import warnings

from ..kernels.spec import surrogate_spec
from ..neurons import NeuronConfig
from . import _build
from ._neuron import neuron_multi_step
from ._pool import max_pool_multi_step

__all__ = ["available", "why_unavailable", "supports", "neuron_multi_step", "max_pool_multi_step"]

_warned = False


def available() -> bool:
    """True when the kernels are compiled and loaded (compiles them on the first call)."""
    global _warned
    if _build.library() is not None:
        return True
    if not _warned:
        _warned = True
        warnings.warn(
            f"plif_zoo: compiled CPU backend unavailable ({_build.error()}); "
            f"using the slower torch reference",
            RuntimeWarning,
            stacklevel=2,
        )
    return False


def why_unavailable() -> str:
    return _build.error()


def supports(cfg: NeuronConfig) -> bool:
    """Whether the compiled code implements this neuron's surrogate (see kernels/spec.py)."""
    return surrogate_spec(cfg.surrogate_function) is not None
