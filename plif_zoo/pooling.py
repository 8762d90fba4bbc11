"""Spike max-pooling (paper Sec. 3.6) and the average-pooling ablation, multi-step.

On binary spikes max-pooling is an OR over the window: a pooled neuron fires when
any neuron of its window fires. The gradient goes to the element of each window that
``nn.MaxPool2d`` picks (the first maximal one; the last NaN in a window holding NaN),
recomputed from the input in backward instead of keeping int64 indices. Every backend
follows these rules, and refuses an input smaller than the window, as ``nn.MaxPool2d`` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import base

from . import backends

__all__ = ["SpikeMaxPool2d", "SpikeAvgPool2d", "max_pool_multi_step"]


def _pair(v: int | tuple[int, int], name: str = "kernel_size") -> tuple[int, int]:
    """An int or a pair -> a pair of positive ints (h, w)."""
    pair = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (tuple, list)) else ()
    if len(pair) != 2 or not all(
        isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in pair
    ):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {v!r}")
    return pair


def _windows(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """[M, C, H, W] -> [M, C, Ho, Wo, kh*kw] for non-overlapping windows (floor mode)."""
    kh, kw = kernel
    M, C, H, W = x.shape
    Ho, Wo = H // kh, W // kw
    x = x[:, :, : Ho * kh, : Wo * kw].reshape(M, C, Ho, kh, Wo, kw)
    return x.permute(0, 1, 2, 4, 3, 5).reshape(M, C, Ho, Wo, kh * kw)


class _WindowMaxPool(torch.autograd.Function):
    """Reference max-pool over non-overlapping windows; backward recomputes the argmax."""

    @staticmethod
    def forward(ctx, x, kernel):
        ctx.save_for_backward(x)
        ctx.kernel = kernel
        return _windows(x, kernel).amax(-1)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        kh, kw = ctx.kernel
        win = _windows(x, ctx.kernel)
        hit = win == win.amax(-1, keepdim=True)
        first = hit & (hit.cumsum(-1) == 1)
        # a window holding NaN outputs NaN (amax propagates it); nn.MaxPool2d then sends the
        # gradient to its last NaN, and so does every backend
        nan = win.isnan()
        last_nan = nan & (nan.flip(-1).cumsum(-1).flip(-1) == 1)
        pick = torch.where(nan.any(-1, keepdim=True), last_nan, first)
        grad_win = pick.to(grad_out.dtype) * grad_out.unsqueeze(-1)
        M, C, Ho, Wo, _ = grad_win.shape
        grad_win = grad_win.reshape(M, C, Ho, Wo, kh, kw).permute(0, 1, 2, 4, 3, 5)
        grad_x = torch.zeros_like(x)
        grad_x[:, :, : Ho * kh, : Wo * kw] = grad_win.reshape(M, C, Ho * kh, Wo * kw)
        return grad_x, None


def max_pool_multi_step(
    x_seq: torch.Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    backend: str = "auto",
) -> torch.Tensor:
    """Max-pool ``x_seq: [T, N, C, H, W]`` (or any [M, C, H, W]) -> [T, N, C, Ho, Wo]."""
    kernel_size, stride = _pair(kernel_size), _pair(stride, "stride")
    _check_fits(x_seq, kernel_size)
    name = backends.resolve(backend, x_seq, pool=(kernel_size, stride))
    if name != "torch":
        return backends.get(name).max_pool_multi_step(x_seq, kernel_size, stride)
    flat = x_seq.flatten(0, x_seq.dim() - 4)
    if kernel_size == stride:
        y = _WindowMaxPool.apply(flat, kernel_size)
    else:  # overlapping windows: torch's own kernel
        y = F.max_pool2d(flat, kernel_size, stride)
    return y.reshape(*x_seq.shape[:-3], *y.shape[1:])


def _check_fits(x: torch.Tensor, kernel: tuple[int, int]) -> None:
    """An input smaller than the window has no output position: one error on every backend."""
    if x.dim() < 4:
        raise ValueError(
            f"pooling needs [T, N, C, H, W] (or any [M, C, H, W]) input, got shape "
            f"{tuple(x.shape)}; add the missing dimensions with unsqueeze"
        )
    h, w = x.shape[-2:]
    if h < kernel[0] or w < kernel[1]:
        raise ValueError(
            f"input of height x width {h}x{w} is smaller than the pooling window "
            f"{kernel[0]}x{kernel[1]}; use a smaller kernel_size or a larger input"
        )


class _SpikePool2d(torch.nn.Module, base.StepModule):
    supported_backends = backends.NAMES  # SpikingJelly's protocol, see backends.set_backend

    def __init__(self, kernel_size, stride, step_mode: str, backend: str):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(self.kernel_size if stride is None else stride, "stride")
        if step_mode not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' or 'm', got {step_mode!r}")
        self.step_mode = step_mode
        self.backend = backends.check_name(backend)

    def _check(self, x: torch.Tensor) -> None:
        rank = 5 if self.step_mode == "m" else 4
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"{type(self).__name__} expects a floating-point tensor, got {got}")
        if x.dim() != rank:
            shape = "[T, N, C, H, W]" if rank == 5 else "[N, C, H, W]"
            raise ValueError(
                f"{type(self).__name__} in step_mode={self.step_mode!r} expects {shape}, "
                f"got shape {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, step_mode={self.step_mode}, "
            f"backend={self.backend}"
        )


class SpikeMaxPool2d(_SpikePool2d):
    """Max-pooling on spikes: ``[T, N, C, H, W] -> [T, N, C, H', W']`` with
    ``H' = (H - k) // stride + 1`` (H/k for the default stride k; ``[N, C, H, W]`` in 's' mode)."""

    def __init__(self, kernel_size=2, stride=None, step_mode: str = "m", backend: str = "auto"):
        super().__init__(kernel_size, stride, step_mode, backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return max_pool_multi_step(x, self.kernel_size, self.stride, self.backend)


class SpikeAvgPool2d(_SpikePool2d):
    """Average-pooling on spikes, the paper's ablation (Table 5); same shapes as SpikeMaxPool2d."""

    def __init__(self, kernel_size=2, stride=None, step_mode: str = "m", backend: str = "auto"):
        super().__init__(kernel_size, stride, step_mode, backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        _check_fits(x, self.kernel_size)
        backends.resolve(self.backend, x)  # same errors as max-pooling for a bad backend
        flat = x.flatten(0, x.dim() - 4)
        y = F.avg_pool2d(flat, self.kernel_size, self.stride)
        return y.reshape(*x.shape[:-3], *y.shape[1:])
