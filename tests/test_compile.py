"""torch.compile and torch.export over the kernel backends (issue 14).

The compiled kernels are torch.library custom ops (``plif_zoo::*``) with fake implementations
and autograd formulas, and the backend choice is traceable, so ``fullgraph=True`` compiles
whole networks. Compiled and exported models must give eager's spikes exactly and eager's
gradients to float tolerance (inductor reorders the float sums of convs and BatchNorm).
"""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, layer, surrogate
from torch import nn

from plif_zoo import LIFNode, PLIFNode, SpikeMaxPool2d, backends, create_model
from plif_zoo.cpu import _neuron, _pool

CPU_KERNELS = ["cpu"] if backends.available("cpu") else []
# The cupy cases carry the gpu marker, so that benchmarks/gpu_check.sh (pytest -m gpu) runs them.
CUPY = pytest.param(
    "cupy",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(
            not (torch.cuda.is_available() and backends.available("cupy")),
            reason="needs a CUDA device and cupy",
        ),
    ],
)
BACKENDS = ["torch", *CPU_KERNELS, CUPY]


def _small_net(backend: str) -> nn.Module:
    return nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1, bias=False, step_mode="m"),
        PLIFNode(backend=backend),
        SpikeMaxPool2d(2, backend=backend),
        layer.Flatten(step_mode="m"),
        layer.Linear(4 * 4 * 4, 10, bias=False, step_mode="m"),
        LIFNode(tau=2.0, v_reset=None, backend=backend),
    )


def _device(backend: str) -> str:
    return "cuda" if backend == "cupy" else "cpu"


def _run(fn, model, x):
    """Spikes and parameter gradients of one forward/backward from a fresh state."""
    model.zero_grad(set_to_none=True)
    functional.reset_net(model)
    torch.manual_seed(0)
    y = fn(x)
    if model.training:
        (y * torch.linspace(-1, 1, y.shape[-1], device=y.device)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return y.detach(), grads


def _assert_compiled_equals_eager(model, x, compiler: str = "aot_eager"):
    """``aot_eager`` traces exactly what inductor gets (dynamo, fake tensors, the joint
    forward/backward graph) without inductor's C++ build, which takes minutes on 2 cores;
    one test per backend runs inductor itself."""
    compiled = torch.compile(model, fullgraph=True, backend=compiler)
    y_c, g_c = _run(compiled, model, x)
    y_e, g_e = _run(model, model, x)
    assert torch.equal(y_c, y_e)
    assert len(g_c) == len(g_e)
    for a, b in zip(g_c, g_e, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * max(1.0, b.abs().max().item()))


@pytest.fixture(autouse=True)
def _same_dropout_masks():
    # inductor draws random numbers its own way unless told to use eager's generator
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    with inductor_config.patch(fallback_random=True):
        yield


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("train", [True, False])
def test_fullgraph_compile_of_a_user_net_equals_eager(backend, train):
    torch.manual_seed(1)
    model = _small_net(backend).to(_device(backend)).train(train)
    x = torch.rand(3, 2, 1, 8, 8, device=_device(backend)) * 3
    _assert_compiled_equals_eager(model, x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("train", [True, False])
def test_fullgraph_compile_of_a_zoo_model_equals_eager(backend, train):
    torch.manual_seed(2)
    model = (
        create_model("fashion-mnist-plif", T=2, backend=backend).to(_device(backend)).train(train)
    )
    _assert_compiled_equals_eager(model, torch.rand(2, 1, 28, 28, device=_device(backend)))


@pytest.mark.parametrize("backend", [*CPU_KERNELS, CUPY])
def test_inductor_compile_of_a_zoo_model_trains_like_eager(backend):
    torch.manual_seed(3)
    model = create_model("fashion-mnist-plif", T=2, backend=backend).to(_device(backend)).train()
    _assert_compiled_equals_eager(
        model, torch.rand(2, 1, 28, 28, device=_device(backend)), "inductor"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_export_round_trip_equals_eager(backend, tmp_path):
    model = create_model("fashion-mnist-lif", T=2, backend=backend).to(_device(backend)).eval()
    x = torch.rand(3, 1, 28, 28, device=_device(backend))
    functional.reset_net(model)
    expected = model(x)
    functional.reset_net(model)
    program = torch.export.export(model, (x,))
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)
    loaded = torch.export.load(path)
    assert torch.equal(loaded.module()(x), expected)


# ---- the custom ops themselves ----------------------------------------------------------------


def _neuron_args(hard, decay_input, store_v_seq, detach_reset, dtype=torch.float32, shared=False):
    steps, n = 3, 10
    x = torch.randn(n if shared else (steps, n), dtype=dtype) * 2
    v0 = torch.randn(n, dtype=dtype) * 0.3
    k = torch.tensor(0.6, dtype=dtype)
    for t in (x, v0, k):
        t.requires_grad_(True)
    return (
        x,
        v0,
        k,
        steps,
        1.0,
        0.0 if not hard else -0.1,
        hard,
        decay_input,
        store_v_seq,
        detach_reset,
        0,
        2.0,
    )


@pytest.mark.skipif(not CPU_KERNELS, reason="no compiled CPU backend here")
@pytest.mark.parametrize(
    "options",
    [
        (True, True, False, True),
        (False, False, True, False),
        (True, False, True, True),
    ],
)
@pytest.mark.parametrize("shared", [False, True])
def test_opcheck_cpu_neuron_ops(options, shared):
    args = _neuron_args(*options, shared=shared)
    torch.library.opcheck(_neuron.neuron_forward, args)
    x, v0, k, steps = args[:4]
    s, v = _neuron.neuron_forward(*args)
    grad_s, grad_v = torch.randn_like(s), torch.randn_like(v)
    backward_args = (
        x.detach(),
        v0.detach(),
        k.detach(),
        grad_s,
        grad_v,
        steps,
        *args[4:8],
        args[9],
        args[8],
        *args[10:],
    )
    torch.library.opcheck(_neuron.neuron_backward, backward_args)
    torch.library.opcheck(
        _neuron.neuron_backward, (*backward_args[:3], None, grad_v, *backward_args[5:])
    )


@pytest.mark.skipif(not CPU_KERNELS, reason="no compiled CPU backend here")
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("window", [(2, 2, 2, 2), (3, 2, 2, 1)])
def test_opcheck_cpu_max_pool_ops(channels_last, window):
    shape = (4, 7, 6, 3) if channels_last else (4, 7, 6)
    x = (torch.rand(shape) > 0.5).float().requires_grad_(True)
    torch.library.opcheck(_pool.pool_forward, (x, *window, True))
    torch.library.opcheck(_pool.pool_forward, (x.detach(), *window, False))
    y, arg = _pool.pool_forward(x, *window, True)
    torch.library.opcheck(_pool.pool_backward, (torch.randn_like(y), arg, list(shape), *window))


def test_surrogate_spikes_equal_for_other_surrogates_under_compile():
    backend = (CPU_KERNELS or ["torch"])[0]
    node = PLIFNode(
        surrogate_function=surrogate.Sigmoid(alpha=4.0), detach_reset=False, backend=backend
    )
    x = torch.randn(4, 2, 5, requires_grad=True)
    _assert_compiled_equals_eager(node, x)
