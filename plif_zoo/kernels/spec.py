"""Which SpikingJelly surrogates the compiled kernels implement, as ``(surrogate_id, alpha)``.

Pure Python (no cupy): the CPU backend uses it too. The ids are the ``PLIF_SG_*`` macros of
``neuron_math.h``; keep both lists equal.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import surrogate

__all__ = ["SURROGATE_IDS", "surrogate_spec"]

SURROGATE_IDS: dict[type, int] = {
    surrogate.ATan: 0,
    surrogate.Sigmoid: 1,
    surrogate.SoftSign: 2,
    surrogate.SuperSpike: 3,
    surrogate.PiecewiseQuadratic: 4,
    surrogate.PiecewiseExp: 5,
    surrogate.Erf: 6,
}


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
