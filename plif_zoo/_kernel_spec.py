"""Which SpikingJelly surrogates the compiled kernels implement, as ``(surrogate_id, alpha)``.

A leaf module (no cupy, no other plif_zoo module): the CPU and the CUDA backends both use it.
:data:`SURROGATE_IDS` is the one list of ids; :func:`c_defines` hands it to both compilers
as ``-DPLIF_SG_*=n`` flags, which ``csrc/neuron_math.h`` requires.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import surrogate

__all__ = ["SURROGATE_IDS", "MAX_WINDOW", "surrogate_spec", "supports", "c_defines"]

MAX_WINDOW = 256  # pool.cpp and max_pool.cu keep a window position in a uint8

# (macro suffix, SpikingJelly class); the position is the id the kernels switch on.
_SURROGATES: tuple[tuple[str, type], ...] = (
    ("ATAN", surrogate.ATan),
    ("SIGMOID", surrogate.Sigmoid),
    ("SOFT_SIGN", surrogate.SoftSign),
    ("SUPER_SPIKE", surrogate.SuperSpike),
    ("PIECEWISE_QUADRATIC", surrogate.PiecewiseQuadratic),
    ("PIECEWISE_EXP", surrogate.PiecewiseExp),
    ("ERF", surrogate.Erf),
)
SURROGATE_IDS: dict[type, int] = {cls: i for i, (_, cls) in enumerate(_SURROGATES)}


def c_defines() -> list[str]:
    """``["-DPLIF_SG_ATAN=0", ...]``: the surrogate ids as compiler flags (g++, nvcc, NVRTC)."""
    return [f"-DPLIF_SG_{name}={i}" for i, (name, _) in enumerate(_SURROGATES)]


def surrogate_spec(surrogate_function: torch.nn.Module) -> tuple[int, float] | None:
    """``(surrogate_id, alpha)`` for a surrogate the kernels implement, else None.

    Only the exact classes count (a subclass may change the gradient), with alpha as
    their one parameter; alpha is read at every call, so changing it needs no recompile.
    """
    sg_id = SURROGATE_IDS.get(type(surrogate_function))
    if sg_id is None:
        return None
    params = getattr(surrogate_function, "_sg_params", None)
    if not isinstance(params, dict) or set(params) != {"alpha"}:
        return None
    return sg_id, float(params["alpha"])


def supports(cfg) -> bool:
    """Whether the kernels implement this NeuronConfig: its surrogate has a kernel id. Both
    backends export it as their ``supports``."""
    return surrogate_spec(cfg.surrogate_function) is not None
