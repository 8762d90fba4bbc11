"""The compiled spike max-pool as an autograd Function (C code: pool.cpp)."""

from __future__ import annotations

import torch

from . import _build, _memory
from ._build import SUFFIX

MAX_WINDOW = 256  # pool.cpp keeps the window position in a uint8


class CompiledMaxPool(torch.autograd.Function):
    """x: [M, H, W], or [M, H, W, C] (channels last), contiguous -> [M, Ho, Wo] / [M, Ho, Wo, C].

    Keeps one uint8 window position per output for backward.
    """

    @staticmethod
    def forward(ctx, x, kernel, stride):
        y, arg = _pool_forward(x, kernel, stride, keep_arg=True)
        ctx.save_for_backward(arg)
        ctx.geometry = (x.shape, kernel, stride)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        (arg,) = ctx.saved_tensors
        shape, (kh, kw), (sh, sw) = ctx.geometry
        grad_y = grad_y.contiguous()
        grad_x = _memory.empty(shape, grad_y.dtype)
        _kernel("backward", shape, grad_y.dtype)(
            grad_y.data_ptr(), arg.data_ptr(), grad_x.data_ptr(), *shape, kh, kw, sh, sw,
            torch.get_num_threads(),
        )
        return grad_x, None, None


def _kernel(direction: str, shape: torch.Size, dtype: torch.dtype):
    layout = "_nhwc" if len(shape) == 4 else ""
    return getattr(_build.require(), f"plif_pool_{direction}{layout}_{SUFFIX[dtype]}")


def _pool_forward(x: torch.Tensor, kernel, stride, keep_arg: bool):
    (kh, kw), (sh, sw) = kernel, stride
    planes, h, w = x.shape[:3]
    out_shape = (planes, (h - kh) // sh + 1, (w - kw) // sw + 1, *x.shape[3:])
    y = _memory.empty(out_shape, x.dtype)
    arg = torch.empty(out_shape, dtype=torch.uint8) if keep_arg else None
    _kernel("forward", x.shape, x.dtype)(
        x.data_ptr(), y.data_ptr(), None if arg is None else arg.data_ptr(), *x.shape,
        kh, kw, sh, sw, torch.get_num_threads(),
    )
    return y, arg


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
    if torch.is_grad_enabled() and x.requires_grad:
        y = CompiledMaxPool.apply(x, kernel, stride)
    else:
        y, _ = _pool_forward(x, kernel, stride, keep_arg=False)
    if channels_last:
        y = y.reshape(*x_seq.shape[:-3], *y.shape[1:]).movedim(-1, -3)
    else:
        y = y.reshape(*x_seq.shape[:-2], *y.shape[-2:])
    return y.to(x_seq.dtype)
