"""Thin launchers and autograd Functions over the CUDA kernels (needs cupy and a GPU).

Kernels run on torch's current stream of the tensor's device; tensors reach them as raw
pointers. The neuron forward keeps one float32 H per neuron-step for backward (H in the
input dtype would round it, and spikes recomputed from a rounded H could differ from the
forward's); the max-pool forward keeps one uint8 per output.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from . import build

NEURON_BLOCK = 256  # neuron.cu's kNeuronBlock
REDUCE_BLOCK = 1024  # neuron.cu's kReduceBlock
POOL_BLOCK = 256

_modules: dict[tuple[int, str], object] = {}
_functions: dict[tuple[int, str], object] = {}
_streams: dict[tuple[int, int], object] = {}


def _kernel(device: torch.device, source: str, name: str):
    """The cupy kernel ``name`` of ``source`` for ``device``, compiled and loaded once."""
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    fn = _functions.get((index, name))
    if fn is None:
        module = _modules.get((index, source))
        if module is None:
            major, minor = torch.cuda.get_device_capability(index)
            path = build.cached_cubin(source, f"sm_{major}{minor}")
            module = _modules[(index, source)] = cupy.RawModule(path=str(path))
        with cupy.cuda.Device(index):
            fn = _functions[(index, name)] = module.get_function(name)
    return fn


def _launch(device: torch.device, source: str, name: str, grid: int, block: int, args) -> None:
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    fn = _kernel(device, source, name)
    ptr = torch.cuda.current_stream(index).cuda_stream
    stream = _streams.get((index, ptr))
    if stream is None:
        # cupy 14 deprecates ExternalStream for Stream.from_external, which needs the CUDA
        # stream protocol that older torch streams lack; the raw pointer works with both.
        with cupy.cuda.Device(index), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            stream = _streams[(index, ptr)] = cupy.cuda.ExternalStream(ptr, index)
    with cupy.cuda.Device(index), stream:
        fn((grid,), (block,), args)


def _ptr(t: torch.Tensor | None) -> np.uint64:
    return np.uint64(0 if t is None else t.data_ptr())


def _aligned(bytes_: int, *tensors: torch.Tensor | None) -> bool:
    return all(t is None or t.data_ptr() % bytes_ == 0 for t in tensors)


def _neuron_scalars(cfg, spec: tuple[int, float]) -> tuple:
    sg_id, alpha = spec
    hard = cfg.v_reset is not None
    return (
        np.float32(cfg.v_threshold),
        np.float32(cfg.v_reset if hard else 0.0),
        np.float32(alpha),
        np.int32(sg_id),
        np.int32(hard),
        np.int32(cfg.decay_input),
        np.int32(cfg.detach_reset),
        np.int32(cfg.store_v_seq),
    )


def _vec(neurons: int, dtype: torch.dtype, stored: list, state: list) -> int:
    """4 neurons per thread when every pointer allows 4-element packs, else 1."""
    if neurons % 4:
        return 1
    itemsize = torch.finfo(dtype).bits // 8
    return 4 if _aligned(4 * itemsize, *stored) and _aligned(16, *state) else 1


class NeuronFunction(torch.autograd.Function):
    """Fused multi-step neuron: same semantics as plif_zoo.neurons._TorchMultiStep."""

    @staticmethod
    def forward(ctx, x_seq, v_init, k, cfg, spec, grad_enabled: bool = True):
        x = x_seq.contiguous()
        steps, neurons = x.shape[0], x[0].numel()
        v0 = v_init.to(device=x.device, dtype=torch.float32).contiguous()
        k32 = k.to(device=x.device, dtype=torch.float32).reshape(()).contiguous()
        s_seq = torch.empty_like(x)
        # H is only kept for a backward pass; inference (no_grad) skips writing it. Inside
        # forward grad mode is always off, so the caller tells whether it was on.
        needs_backward = grad_enabled and any(ctx.needs_input_grad[:3])
        h_seq = torch.empty(x.shape, device=x.device, dtype=torch.float32) if needs_backward else None
        v_shape = x.shape if cfg.store_v_seq else x.shape[1:]
        v_out = torch.empty(v_shape, device=x.device, dtype=torch.float32)
        vec = _vec(neurons, x.dtype, [x, s_seq], [v0, h_seq, v_out])
        grid = math.ceil(neurons // vec / NEURON_BLOCK)
        _launch(
            x.device, "neuron.cu", build.entry_name("neuron_forward", build.DTYPE_NAMES[x.dtype], f"v{vec}"),
            grid, NEURON_BLOCK,
            (_ptr(x), _ptr(v0), _ptr(k32), _ptr(s_seq), _ptr(h_seq), _ptr(v_out),
             np.int64(neurons), np.int32(steps), *_neuron_scalars(cfg, spec)),
        )
        ctx.save_for_backward(h_seq, v0, k32)
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None: not read
        ctx.cfg, ctx.spec, ctx.x_dtype, ctx.k_shape = cfg, spec, x.dtype, k.shape
        return s_seq, v_out

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v):
        h_seq, v0, k32 = ctx.saved_tensors
        if h_seq is None:
            raise RuntimeError("NeuronFunction ran its forward without grad mode; it has no H to go back through")
        cfg = ctx.cfg
        steps, neurons = h_seq.shape[0], h_seq[0].numel()
        gs = None if grad_s_seq is None else grad_s_seq.to(ctx.x_dtype).contiguous()
        gv = None if grad_v is None else grad_v.to(torch.float32).contiguous()
        grad_x = torch.empty(h_seq.shape, device=h_seq.device, dtype=ctx.x_dtype)
        grad_v0 = torch.empty_like(v0) if ctx.needs_input_grad[1] else None
        vec = _vec(neurons, ctx.x_dtype, [gs, grad_x], [gv, h_seq, v0, grad_v0])
        grid = math.ceil(neurons // vec / NEURON_BLOCK)
        partials = None
        if ctx.needs_input_grad[2]:
            partials = torch.empty(grid, device=h_seq.device, dtype=torch.float32)
        _launch(
            h_seq.device, "neuron.cu",
            build.entry_name("neuron_backward", build.DTYPE_NAMES[ctx.x_dtype], f"v{vec}"),
            grid, NEURON_BLOCK,
            (_ptr(gs), _ptr(gv), _ptr(h_seq), _ptr(v0), _ptr(k32), _ptr(grad_x), _ptr(grad_v0),
             _ptr(partials), np.int64(neurons), np.int32(steps), *_neuron_scalars(cfg, ctx.spec)),
        )
        grad_k = None
        if partials is not None:
            total = torch.empty((), device=h_seq.device, dtype=torch.float32)
            _launch(h_seq.device, "neuron.cu", "sum_partials", 1, REDUCE_BLOCK,
                    (_ptr(partials), np.int64(grid), _ptr(total)))
            grad_k = total.reshape(ctx.k_shape)
        return grad_x, grad_v0, grad_k, None, None, None


class MaxPoolFunction(torch.autograd.Function):
    """Max-pool over non-overlapping kh x kw windows of x: [..., H, W] -> [..., H/kh, W/kw]."""

    @staticmethod
    def forward(ctx, x_seq, kernel: tuple[int, int]):
        x = x_seq.contiguous()
        kh, kw = kernel
        H, W = x.shape[-2:]
        Ho, Wo = H // kh, W // kw
        y = torch.empty((*x.shape[:-2], Ho, Wo), device=x.device, dtype=x.dtype)
        arg = torch.empty(y.shape, device=x.device, dtype=torch.uint8)
        _launch_pool("forward", x, (x, y, arg), y.numel(), kernel)
        ctx.save_for_backward(arg)
        ctx.kernel, ctx.x_shape, ctx.x_dtype = kernel, x.shape, x.dtype
        return y

    @staticmethod
    def backward(ctx, grad_y):
        (arg,) = ctx.saved_tensors
        kh, kw = ctx.kernel
        H, W = ctx.x_shape[-2:]
        gy = grad_y.to(ctx.x_dtype).contiguous()
        ragged = H % kh or W % kw  # rows / columns outside every window get zero gradient
        alloc = torch.zeros if ragged else torch.empty
        grad_x = alloc(ctx.x_shape, device=gy.device, dtype=gy.dtype)
        _launch_pool("backward", grad_x, (gy, arg, grad_x), arg.numel(), ctx.kernel)
        return grad_x, None


def _launch_pool(kind: str, x: torch.Tensor, pointers: tuple, outputs: int, kernel: tuple[int, int]) -> None:
    """Launch max_pool_{kind} for input-shaped tensor x ([..., H, W]) over `outputs` windows."""
    kh, kw = kernel
    H, W = x.shape[-2:]
    variant = "k2" if _pool_k2(kernel, W, x) else "any"
    _launch(
        x.device, "max_pool.cu", build.entry_name(f"max_pool_{kind}", build.DTYPE_NAMES[x.dtype], variant),
        _pool_grid(outputs), POOL_BLOCK,
        (*map(_ptr, pointers), np.int64(outputs), np.int32(H), np.int32(W),
         np.int32(H // kh), np.int32(W // kw), np.int32(kh), np.int32(kw)),
    )


def _pool_k2(kernel: tuple[int, int], W: int, x: torch.Tensor) -> bool:
    """The 2 x 2 variant loads window rows as 2-element packs: W even, x aligned to a pack."""
    return kernel == (2, 2) and W % 2 == 0 and x.data_ptr() % (2 * x.element_size()) == 0


def _pool_grid(outputs: int) -> int:
    return min(math.ceil(outputs / POOL_BLOCK), 2**31 - 1)  # the kernels loop past the grid
