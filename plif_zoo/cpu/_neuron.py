"""The compiled multi-step PLIF/LIF as torch.library custom ops (math: csrc/neuron_math.h)."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import torch

from .._kernel_spec import surrogate_spec
from . import _build, _memory
from ._build import SUFFIX

if TYPE_CHECKING:
    from ..neurons import NeuronConfig


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _spec(cfg: NeuronConfig) -> tuple[int, float]:
    spec = surrogate_spec(cfg.surrogate_function)
    if spec is None:
        raise ValueError(
            f"backend='cpu' does not implement surrogate {type(cfg.surrogate_function).__name__}; "
            f"use backend='torch' or 'auto'"
        )
    return spec


# The kernels as torch.library custom ops, so that autograd, torch.compile and torch.export see
# one operation each (a fake implementation gives their shapes; no data pointer is touched
# while tracing). Scalars travel as op arguments: v_reset is 0.0 when hard is False.


@torch.library.custom_op("plif_zoo::cpu_neuron_forward", mutates_args=())
def neuron_forward(
    x: torch.Tensor,
    v_init: torch.Tensor,
    k: torch.Tensor,
    steps: int,
    v_threshold: float,
    v_reset: float,
    hard: bool,
    decay_input: bool,
    store_v_seq: bool,
    detach_reset: bool,
    sg_id: int,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [T, M] (or [M], the same input at every step), v_init: [M], both contiguous, k: 0-dim
    -> (s [T, M], v_last [M] or v_seq [T, M]). The last three scalars are for the backward."""
    n = v_init.numel()
    s = _memory.empty((steps, n), x.dtype)
    v_seq = _memory.empty((steps, n), x.dtype) if store_v_seq else None
    v_last = torch.empty_like(v_init)
    getattr(_build.require(), f"plif_forward_{SUFFIX[x.dtype]}")(
        x.data_ptr(),
        n if x.dim() == 2 else 0,
        v_init.data_ptr(),
        k.item(),
        s.data_ptr(),
        _ptr(v_seq),
        v_last.data_ptr(),
        steps,
        n,
        v_threshold,
        v_reset,
        int(hard),
        int(decay_input),
        torch.get_num_threads(),
    )
    return s, (v_seq if v_seq is not None else v_last)


@neuron_forward.register_fake
def _(x, v_init, k, steps, v_threshold, v_reset, hard, decay_input, store_v_seq, *backward_only):
    n = v_init.numel()
    s = x.new_empty((steps, n))
    return s, (x.new_empty((steps, n)) if store_v_seq else torch.empty_like(v_init))


@torch.library.custom_op("plif_zoo::cpu_neuron_backward", mutates_args=())
def neuron_backward(
    x: torch.Tensor,
    v_init: torch.Tensor,
    k: torch.Tensor,
    grad_s: torch.Tensor | None,
    grad_v: torch.Tensor | None,
    steps: int,
    v_threshold: float,
    v_reset: float,
    hard: bool,
    decay_input: bool,
    detach_reset: bool,
    store_v_seq: bool,
    sg_id: int,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (dL/dx like x, dL/dv_init like v_init, dL/dk 0-dim). Saves nothing: the kernel
    recomputes H and V[t-1] from X chunk by chunk in cache."""
    n = v_init.numel()
    grad_s = None if grad_s is None else grad_s.contiguous()
    grad_v = None if grad_v is None else grad_v.contiguous()
    grad_x = _memory.empty(x.shape, x.dtype)
    grad_v_init = torch.empty_like(v_init)
    grad_k = ctypes.c_double()
    status = getattr(_build.require(), f"plif_backward_{SUFFIX[x.dtype]}")(
        x.data_ptr(),
        n if x.dim() == 2 else 0,
        v_init.data_ptr(),
        k.item(),
        _ptr(grad_s),
        _ptr(grad_v) if store_v_seq else None,
        None if store_v_seq else _ptr(grad_v),
        grad_x.data_ptr(),
        grad_v_init.data_ptr(),
        ctypes.byref(grad_k),
        steps,
        n,
        v_threshold,
        v_reset,
        alpha,
        sg_id,
        int(hard),
        int(decay_input),
        int(detach_reset),
        torch.get_num_threads(),
    )
    if status == 1:  # neuron.cpp: the per-thread partial sums could not be allocated
        raise MemoryError("plif_zoo cpu backend: out of memory in the neuron backward pass")
    if status != 0:  # 2: no kernel for this surrogate id (supports() should have said so)
        raise RuntimeError(f"plif_zoo cpu backend: neuron backward failed (status {status})")
    return grad_x, grad_v_init, torch.tensor(grad_k.value, dtype=k.dtype)


@neuron_backward.register_fake
def _(x, v_init, k, grad_s, grad_v, *args):
    return torch.empty_like(x), torch.empty_like(v_init), k.new_empty(())


def _setup_neuron(ctx, inputs, output):
    x, v_init, k, *scalars = inputs
    ctx.save_for_backward(x, v_init, k)
    ctx.scalars = scalars


def _neuron_grad(ctx, grad_s, grad_v):
    x, v_init, k = ctx.saved_tensors
    steps, v_th, v_reset, hard, decay_input, store_v_seq, detach_reset, sg_id, alpha = ctx.scalars
    grad_x, grad_v_init, grad_k = neuron_backward(
        x,
        v_init,
        k,
        grad_s,
        grad_v,
        steps,
        v_th,
        v_reset,
        hard,
        decay_input,
        detach_reset,
        store_v_seq,
        sg_id,
        alpha,
    )
    return grad_x, grad_v_init, grad_k.reshape(k.shape), *([None] * len(ctx.scalars))


neuron_forward.register_autograd(_neuron_grad, setup_context=_setup_neuron)


def _shared_input(x_seq: torch.Tensor, need_grad: bool) -> torch.Tensor | None:
    """The [N, *] tensor that every step of x_seq views, when x_seq is one input expanded over T
    (a static image's encoding), else None."""
    if x_seq.shape[0] < 2 or x_seq.stride(0) != 0:
        return None
    if not (need_grad and x_seq.requires_grad):
        return x_seq[0]
    if torch.compiler.is_compiling():
        # No data pointers while tracing. The op's dL/dX for the [N, *] step is already summed
        # over T; autograd routes it through select and expand, which the compiler fuses away.
        return x_seq[0]
    # Feed the expanded tensor's base to the Function, so that autograd sends it dL/dX summed
    # over T (computed in the kernel) instead of building a [T, N, *] gradient to sum.
    base = x_seq._base
    if (
        base is not None
        and base.requires_grad
        and base.shape == x_seq.shape[1:]
        and base.stride() == x_seq.stride()[1:]
        and base.data_ptr() == x_seq.data_ptr()
        and _only_views_between(x_seq, base)
    ):
        return base
    return None


_VIEW_NODES = ("ExpandBackward0", "UnsqueezeBackward0", "ViewBackward0")


def _only_views_between(x_seq: torch.Tensor, base: torch.Tensor) -> bool:
    """Whether autograd goes from x_seq to base through view nodes alone: same memory is not
    enough (a custom Function returning ``x.view_as(x)``, e.g. gradient reversal, sits between
    them and must not be skipped)."""
    fn = x_seq.grad_fn
    for _ in range(len(_VIEW_NODES) + 1):
        if fn is None or type(fn).__name__ not in _VIEW_NODES:
            return False
        inputs = [f for f, _ in fn.next_functions if f is not None]
        if len(inputs) != 1:
            return False
        fn = inputs[0]
        if fn is base.grad_fn or getattr(fn, "variable", None) is base:  # a leaf's AccumulateGrad
            return True
    return False


def _memory_order(t: torch.Tensor) -> list[int]:
    """t's dims, outermost first, in the order its memory is laid out when t is dense (e.g.
    channels-last), else the natural order (and the caller copies)."""
    order = sorted(range(t.dim()), key=lambda d: -t.stride(d))  # stable: ties keep their order
    return order if t.permute(order).is_contiguous() else list(range(t.dim()))


def neuron_multi_step(
    x_seq: torch.Tensor, v_init: torch.Tensor, k: torch.Tensor, cfg: NeuronConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_seq: [T, N, *], v_init: [N, *], k: 0-dim -> (spike_seq [T, N, *], v [N, *] or [T, N, *]).

    Spikes have x_seq's dtype; state and v are float32 (float64 for float64 input). Outputs keep
    x_seq's memory layout (e.g. channels-last steps), as torch.empty_like would.
    """
    if x_seq.device.type != "cpu":
        raise ValueError(
            f"backend='cpu' needs CPU tensors, got x_seq on {x_seq.device}; use backend='auto'"
        )
    if x_seq.dim() < 2:
        raise ValueError(f"x_seq must be [T, N, *], got shape {tuple(x_seq.shape)}")
    compute = torch.promote_types(x_seq.dtype, torch.float32)
    if compute not in SUFFIX:
        raise TypeError(f"backend='cpu' needs real floating-point input, got {x_seq.dtype}")
    if k.numel() != 1:
        raise ValueError(f"k must be a 0-dim decay factor, got shape {tuple(k.shape)}")
    step_shape = x_seq.shape[1:]
    try:
        v0 = v_init.to(compute).expand(step_shape)
    except RuntimeError as err:
        raise ValueError(
            f"v_init of shape {tuple(v_init.shape)} does not match one step of x_seq "
            f"{tuple(step_shape)}"
        ) from err
    steps = x_seq.shape[0]
    need_grad = torch.is_grad_enabled() and (
        x_seq.requires_grad or v0.requires_grad or k.requires_grad
    )
    # The kernels see each step as a flat run of memory: permute the step dims into memory
    # order (views, no copy, for any dense layout) and undo the permutation on the outputs.
    order = _memory_order(x_seq[0]) if steps else list(range(len(step_shape)))
    inverse = sorted(range(len(order)), key=order.__getitem__)
    shared = _shared_input(x_seq, need_grad)
    if shared is not None:
        x = shared.to(compute).permute(order).reshape(-1).contiguous()
    else:
        x = x_seq.to(compute).permute(0, *(d + 1 for d in order)).reshape(steps, v0.numel())
        x = x.contiguous()
    v0 = v0.permute(order).reshape(-1).contiguous()
    k = k.to(compute).reshape(())
    sg_id, alpha = _spec(cfg)
    hard = cfg.v_reset is not None
    s, v_out = neuron_forward(
        x,
        v0,
        k,
        steps,
        float(cfg.v_threshold),
        float(cfg.v_reset) if hard else 0.0,
        hard,
        bool(cfg.decay_input),
        bool(cfg.store_v_seq),
        bool(cfg.detach_reset),
        sg_id,
        alpha,
    )
    ordered_step = [step_shape[d] for d in order]
    s = s.reshape(steps, *ordered_step).permute(0, *(d + 1 for d in inverse))
    if cfg.store_v_seq:
        v_out = v_out.reshape(steps, *ordered_step).permute(0, *(d + 1 for d in inverse))
    else:
        v_out = v_out.reshape(ordered_step).permute(inverse)
    return s.to(x_seq.dtype), v_out
