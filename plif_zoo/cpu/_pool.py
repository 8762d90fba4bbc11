"""The compiled spike max-pool as torch.library custom ops (C code: pool.cpp)."""

from __future__ import annotations

import torch

from .._kernel_spec import MAX_WINDOW
from . import _build, _memory
from ._build import SUFFIX

# Forward and backward as torch.library custom ops (see _neuron.py for why). The forward keeps
# one uint8 window position per output for the backward when ``keep_arg`` (else returns an
# empty one).


@torch.library.custom_op("plif_zoo::cpu_max_pool_forward", mutates_args=())
def pool_forward(
    x: torch.Tensor, kh: int, kw: int, sh: int, sw: int, keep_arg: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [M, H, W], or [M, H, W, C] (channels last), contiguous -> (y [M, Ho, Wo(, C)], arg)."""
    planes, h, w = x.shape[:3]
    out_shape = (planes, (h - kh) // sh + 1, (w - kw) // sw + 1, *x.shape[3:])
    y = _memory.empty(out_shape, x.dtype)
    arg = torch.empty(out_shape if keep_arg else (0,), dtype=torch.uint8)
    _kernel("forward", x.shape, x.dtype)(
        x.data_ptr(),
        y.data_ptr(),
        arg.data_ptr() if keep_arg else None,
        *x.shape,
        kh,
        kw,
        sh,
        sw,
        torch.get_num_threads(),
    )
    return y, arg


@pool_forward.register_fake
def _(x, kh, kw, sh, sw, keep_arg):
    planes, h, w = x.shape[:3]
    out_shape = (planes, (h - kh) // sh + 1, (w - kw) // sw + 1, *x.shape[3:])
    return x.new_empty(out_shape), x.new_empty(out_shape if keep_arg else (0,), dtype=torch.uint8)


@torch.library.custom_op("plif_zoo::cpu_max_pool_backward", mutates_args=())
def pool_backward(
    grad_y: torch.Tensor, arg: torch.Tensor, x_shape: list[int], kh: int, kw: int, sh: int, sw: int
) -> torch.Tensor:
    """dL/dy [M, Ho, Wo(, C)] and the forward's arg -> dL/dx of shape ``x_shape``."""
    grad_y = grad_y.contiguous()
    grad_x = _memory.empty(tuple(x_shape), grad_y.dtype)
    _kernel("backward", x_shape, grad_y.dtype)(
        grad_y.data_ptr(),
        arg.data_ptr(),
        grad_x.data_ptr(),
        *x_shape,
        kh,
        kw,
        sh,
        sw,
        torch.get_num_threads(),
    )
    return grad_x


@pool_backward.register_fake
def _(grad_y, arg, x_shape, kh, kw, sh, sw):
    return grad_y.new_empty(x_shape)


def _setup_pool(ctx, inputs, output):
    x, kh, kw, sh, sw, _ = inputs
    ctx.save_for_backward(output[1])
    ctx.geometry = (list(x.shape), kh, kw, sh, sw)


def _pool_grad(ctx, grad_y, grad_arg):
    (arg,) = ctx.saved_tensors
    return pool_backward(grad_y, arg, *ctx.geometry), None, None, None, None, None


pool_forward.register_autograd(_pool_grad, setup_context=_setup_pool)


def _kernel(direction: str, shape, dtype: torch.dtype):
    layout = "_nhwc" if len(shape) == 4 else ""
    return getattr(_build.require(), f"plif_pool_{direction}{layout}_{SUFFIX[dtype]}")


def max_pool_multi_step(
    x_seq: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """Max-pool ``x_seq: [..., C, H, W]`` (e.g. [T, N, C, H, W]) -> [..., C, Ho, Wo], floor mode.

    ``kernel`` and ``stride`` are (h, w) pairs (``pooling`` normalises them). The gradient goes
    to the first maximal element of each window, as in nn.MaxPool2d. Channels-last input stays
    channels-last (no copy).
    """
    if x_seq.device.type != "cpu":
        raise ValueError(f"backend='cpu' needs CPU tensors, got {x_seq.device}; use backend='auto'")
    if x_seq.dim() < 3:
        raise ValueError(f"max-pooling needs [..., H, W] input, got shape {tuple(x_seq.shape)}")
    if kernel[0] * kernel[1] > MAX_WINDOW:
        raise ValueError(
            f"the cpu max-pool kernel takes windows of at most {MAX_WINDOW} elements, got "
            f"kernel_size {kernel}; plif_zoo.pooling.max_pool_multi_step falls back to torch"
        )
    h, w = x_seq.shape[-2:]
    if h < kernel[0] or w < kernel[1]:
        raise ValueError(f"input {h}x{w} is smaller than the pooling window {kernel}")
    compute = torch.promote_types(x_seq.dtype, torch.float32)
    if compute not in SUFFIX:
        raise TypeError(f"backend='cpu' needs real floating-point input, got {x_seq.dtype}")
    # channels-last input ([..., C, H, W] laid out as [..., H, W, C]) is pooled in place
    channels_last = not x_seq.is_contiguous() and x_seq.movedim(-3, -1).is_contiguous()
    if channels_last:
        x = x_seq.to(compute).movedim(-3, -1).reshape(-1, h, w, x_seq.shape[-3])
    else:
        x = x_seq.to(compute).reshape(-1, h, w).contiguous()
    keep_arg = torch.is_grad_enabled() and x.requires_grad
    y, _ = pool_forward(x, *kernel, *stride, keep_arg)
    if channels_last:
        y = y.reshape(*x_seq.shape[:-3], *y.shape[1:]).movedim(-1, -3)
    else:
        y = y.reshape(*x_seq.shape[:-2], *y.shape[-2:])
    return y.to(x_seq.dtype)
