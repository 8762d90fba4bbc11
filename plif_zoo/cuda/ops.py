"""Thin launchers over the CUDA kernels, as torch.library custom ops (needs cupy and a GPU).

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


def load(device: torch.device, source: str):
    """The cupy module of ``source`` for ``device``: compiled (or taken intact from the cache),
    loaded once, and checked to hold its first kernel entry."""
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    module = _modules.get((index, source))
    if module is None:
        major, minor = torch.cuda.get_device_capability(index)
        path = build.cached_cubin(source, f"sm_{major}{minor}")
        with cupy.cuda.Device(index):
            module = cupy.RawModule(path=str(path))
            module.get_function(build.entry_names(source)[0])  # loads the cubin now
        _modules[(index, source)] = module
    return module


def _kernel(device: torch.device, source: str, name: str):
    """The cupy kernel ``name`` of ``source`` for ``device``, compiled and loaded once."""
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    fn = _functions.get((index, name))
    if fn is None:
        module = load(device, source)
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


def _neuron_scalars(
    v_threshold, v_reset, alpha, sg_id, hard, decay_input, detach_reset, store_v_seq
) -> tuple:
    return (
        np.float32(v_threshold),
        np.float32(v_reset),
        np.float32(alpha),
        np.int32(sg_id),
        np.int32(hard),
        np.int32(decay_input),
        np.int32(detach_reset),
        np.int32(store_v_seq),
    )


def _vec(neurons: int, dtype: torch.dtype, stored: list, state: list) -> int:
    """4 neurons per thread when every pointer allows 4-element packs, else 1."""
    if neurons % 4:
        return 1
    itemsize = torch.finfo(dtype).bits // 8
    return 4 if _aligned(4 * itemsize, *stored) and _aligned(16, *state) else 1


# The kernels as torch.library custom ops, so that autograd, torch.compile and torch.export see
# one operation each; fake implementations give the shapes without touching a data pointer.
# Scalars are op arguments: v_reset is 0.0 for a soft reset (hard False).


@torch.library.custom_op("plif_zoo::cupy_neuron_forward", mutates_args=())
def neuron_forward(
    x: torch.Tensor,
    v_init: torch.Tensor,
    k: torch.Tensor,
    v_threshold: float,
    v_reset: float,
    alpha: float,
    sg_id: int,
    hard: bool,
    decay_input: bool,
    detach_reset: bool,
    store_v_seq: bool,
    keep_h: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x: [T, N, *] -> (s [T, N, *] in x's dtype, v [N, *] or v_seq [T, N, *] float32,
    H [T, N, *] float32 for the backward when ``keep_h``, else an empty tensor)."""
    x = x.contiguous()
    steps, neurons = x.shape[0], x[0].numel()
    v0 = v_init.to(device=x.device, dtype=torch.float32).contiguous()
    k32 = k.to(device=x.device, dtype=torch.float32).reshape(()).contiguous()
    s_seq = torch.empty_like(x)
    h_seq = torch.empty(x.shape, device=x.device, dtype=torch.float32) if keep_h else None
    v_out = torch.empty(
        x.shape if store_v_seq else x.shape[1:], device=x.device, dtype=torch.float32
    )
    vec = _vec(neurons, x.dtype, [x, s_seq], [v0, h_seq, v_out])
    _launch(
        x.device,
        "neuron.cu",
        build.entry_name("neuron_forward", build.DTYPE_NAMES[x.dtype], f"v{vec}"),
        math.ceil(neurons // vec / NEURON_BLOCK),
        NEURON_BLOCK,
        (
            _ptr(x),
            _ptr(v0),
            _ptr(k32),
            _ptr(s_seq),
            _ptr(h_seq),
            _ptr(v_out),
            np.int64(neurons),
            np.int32(steps),
            *_neuron_scalars(
                v_threshold, v_reset, alpha, sg_id, hard, decay_input, detach_reset, store_v_seq
            ),
        ),
    )
    return s_seq, v_out, (h_seq if keep_h else x.new_empty(0, dtype=torch.float32))


@neuron_forward.register_fake
def _(
    x,
    v_init,
    k,
    v_threshold,
    v_reset,
    alpha,
    sg_id,
    hard,
    decay_input,
    detach_reset,
    store_v_seq,
    keep_h,
):
    f32 = torch.float32
    v_out = x.new_empty(x.shape if store_v_seq else x.shape[1:], dtype=f32)
    return (
        torch.empty_like(x, memory_format=torch.contiguous_format),
        v_out,
        x.new_empty(x.shape if keep_h else (0,), dtype=f32),
    )


@torch.library.custom_op("plif_zoo::cupy_neuron_backward", mutates_args=())
def neuron_backward(
    grad_s: torch.Tensor | None,
    grad_v: torch.Tensor | None,
    h_seq: torch.Tensor,
    v_init: torch.Tensor,
    k: torch.Tensor,
    x_dtype: torch.dtype,
    v_threshold: float,
    v_reset: float,
    alpha: float,
    sg_id: int,
    hard: bool,
    decay_input: bool,
    detach_reset: bool,
    store_v_seq: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (dL/dx [T, N, *] in x_dtype, dL/dv_init float32, dL/dk 0-dim float32)."""
    steps, neurons = h_seq.shape[0], h_seq[0].numel()
    v0 = v_init.to(torch.float32).contiguous()
    k32 = k.to(torch.float32).reshape(()).contiguous()
    gs = None if grad_s is None else grad_s.to(x_dtype).contiguous()
    gv = None if grad_v is None else grad_v.to(torch.float32).contiguous()
    grad_x = torch.empty(h_seq.shape, device=h_seq.device, dtype=x_dtype)
    grad_v0 = torch.empty_like(v0)
    vec = _vec(neurons, x_dtype, [gs, grad_x], [gv, h_seq, v0, grad_v0])
    grid = math.ceil(neurons // vec / NEURON_BLOCK)
    partials = torch.empty(grid, device=h_seq.device, dtype=torch.float32)
    _launch(
        h_seq.device,
        "neuron.cu",
        build.entry_name("neuron_backward", build.DTYPE_NAMES[x_dtype], f"v{vec}"),
        grid,
        NEURON_BLOCK,
        (
            _ptr(gs),
            _ptr(gv),
            _ptr(h_seq),
            _ptr(v0),
            _ptr(k32),
            _ptr(grad_x),
            _ptr(grad_v0),
            _ptr(partials),
            np.int64(neurons),
            np.int32(steps),
            *_neuron_scalars(
                v_threshold, v_reset, alpha, sg_id, hard, decay_input, detach_reset, store_v_seq
            ),
        ),
    )
    total = torch.empty((), device=h_seq.device, dtype=torch.float32)
    _launch(
        h_seq.device,
        "neuron.cu",
        "sum_partials",
        1,
        REDUCE_BLOCK,
        (_ptr(partials), np.int64(grid), _ptr(total)),
    )
    return grad_x, grad_v0, total


@neuron_backward.register_fake
def _(grad_s, grad_v, h_seq, v_init, k, x_dtype, *scalars):
    return (
        h_seq.new_empty(h_seq.shape, dtype=x_dtype),
        v_init.new_empty(v_init.shape, dtype=torch.float32),
        h_seq.new_empty(()),
    )


def _setup_neuron(ctx, inputs, output):
    x, v_init, k, *scalars = inputs
    ctx.save_for_backward(output[2], v_init, k)
    ctx.scalars, ctx.x_dtype, ctx.v_dtype = scalars[:-1], x.dtype, v_init.dtype


def _neuron_grad(ctx, grad_s, grad_v, grad_h):
    h_seq, v_init, k = ctx.saved_tensors
    if h_seq.numel() == 0 and v_init.numel() != 0:
        raise RuntimeError(
            "cupy_neuron_forward ran with keep_h=False; it has no H to go back through"
        )
    grad_x, grad_v0, grad_k = neuron_backward(
        grad_s, grad_v, h_seq, v_init, k, ctx.x_dtype, *ctx.scalars
    )
    return grad_x, grad_v0.to(ctx.v_dtype), grad_k.to(k.dtype).reshape(k.shape), *([None] * 9)


neuron_forward.register_autograd(_neuron_grad, setup_context=_setup_neuron)


def neuron(x_seq, v_init, k, cfg, spec: tuple[int, float]):
    """The fused multi-step neuron (same semantics as plif_zoo.neurons._TorchMultiStep):
    -> (s [T, N, *], v [N, *] or v_seq [T, N, *])."""
    sg_id, alpha = spec
    hard = cfg.v_reset is not None
    keep_h = torch.is_grad_enabled() and (
        x_seq.requires_grad or v_init.requires_grad or k.requires_grad
    )
    s, v, _ = neuron_forward(
        x_seq,
        v_init,
        k,
        float(cfg.v_threshold),
        float(cfg.v_reset) if hard else 0.0,
        float(alpha),
        int(sg_id),
        hard,
        bool(cfg.decay_input),
        bool(cfg.detach_reset),
        bool(cfg.store_v_seq),
        keep_h,
    )
    return s, v


@torch.library.custom_op("plif_zoo::cupy_max_pool_forward", mutates_args=())
def pool_forward(x: torch.Tensor, kh: int, kw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Max-pool over non-overlapping kh x kw windows: x [..., H, W] -> (y [..., H/kh, W/kw],
    the uint8 window position of each output, kept for the backward)."""
    x = x.contiguous()
    H, W = x.shape[-2:]
    y = torch.empty((*x.shape[:-2], H // kh, W // kw), device=x.device, dtype=x.dtype)
    arg = torch.empty(y.shape, device=x.device, dtype=torch.uint8)
    _launch_pool("forward", x, (x, y, arg), y.numel(), (kh, kw))
    return y, arg


@pool_forward.register_fake
def _(x, kh, kw):
    shape = (*x.shape[:-2], x.shape[-2] // kh, x.shape[-1] // kw)
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.uint8)


@torch.library.custom_op("plif_zoo::cupy_max_pool_backward", mutates_args=())
def pool_backward(
    grad_y: torch.Tensor, arg: torch.Tensor, x_shape: list[int], kh: int, kw: int
) -> torch.Tensor:
    """dL/dy and the forward's window positions -> dL/dx of shape ``x_shape``."""
    gy = grad_y.contiguous()
    H, W = x_shape[-2:]
    alloc = torch.zeros if H % kh or W % kw else torch.empty  # rows outside every window: zero
    grad_x = alloc(x_shape, device=gy.device, dtype=gy.dtype)
    _launch_pool("backward", grad_x, (gy, arg, grad_x), arg.numel(), (kh, kw))
    return grad_x


@pool_backward.register_fake
def _(grad_y, arg, x_shape, kh, kw):
    return grad_y.new_empty(x_shape)


def _setup_pool(ctx, inputs, output):
    x, kh, kw = inputs
    ctx.save_for_backward(output[1])
    ctx.geometry, ctx.x_dtype = (list(x.shape), kh, kw), x.dtype


def _pool_grad(ctx, grad_y, grad_arg):
    (arg,) = ctx.saved_tensors
    return pool_backward(grad_y.to(ctx.x_dtype), arg, *ctx.geometry), None, None


pool_forward.register_autograd(_pool_grad, setup_context=_setup_pool)


def max_pool(x_seq: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Max-pool x_seq [..., H, W] over non-overlapping ``kernel`` windows."""
    return pool_forward(x_seq, *kernel)[0]


def _launch_pool(
    kind: str, x: torch.Tensor, pointers: tuple, outputs: int, kernel: tuple[int, int]
) -> None:
    """Launch max_pool_{kind} for input-shaped tensor x ([..., H, W]) over `outputs` windows."""
    kh, kw = kernel
    H, W = x.shape[-2:]
    variant = "k2" if _pool_k2(kernel, W, x) else "any"
    _launch(
        x.device,
        "max_pool.cu",
        build.entry_name(f"max_pool_{kind}", build.DTYPE_NAMES[x.dtype], variant),
        _pool_grid(outputs),
        POOL_BLOCK,
        (
            *map(_ptr, pointers),
            np.int64(outputs),
            np.int32(H),
            np.int32(W),
            np.int32(H // kh),
            np.int32(W // kw),
            np.int32(kh),
            np.int32(kw),
        ),
    )


def _pool_k2(kernel: tuple[int, int], W: int, x: torch.Tensor) -> bool:
    """The 2 x 2 variant loads window rows as 2-element packs: W even, x aligned to a pack."""
    return kernel == (2, 2) and W % 2 == 0 and x.data_ptr() % (2 * x.element_size()) == 0


def _pool_grid(outputs: int) -> int:
    return min(math.ceil(outputs / POOL_BLOCK), 2**31 - 1)  # the kernels loop past the grid
