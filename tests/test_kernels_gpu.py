"""The CuPy backend against the torch reference on a GPU (skipped without CUDA and cupy)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, surrogate

from plif_zoo import LIFNode, PLIFNode, SpikeMaxPool2d
from plif_zoo import cuda as kernels
from plif_zoo.cuda import ops
from plif_zoo.networks import SpikingConvNet, paper_config
from plif_zoo.neurons import NeuronConfig, multi_step
from plif_zoo.pooling import max_pool_multi_step

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not kernels.available(), reason=f"cupy backend: {kernels.why_unavailable()}"
    ),
]

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# one float32 ulp at the gradient's scale for float32; one ulp of the storage type otherwise
GRAD_TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
SURROGATES = [
    surrogate.ATan(alpha=2.0),
    surrogate.Sigmoid(alpha=4.0),
    surrogate.SoftSign(alpha=2.0),
    surrogate.SuperSpike(alpha=1.0),
    surrogate.PiecewiseQuadratic(alpha=1.0),
    surrogate.PiecewiseExp(alpha=2.0),
    surrogate.Erf(alpha=2.0),
]


def _inputs(shape, dtype, seed=0, contiguous=True):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    if contiguous:
        x = torch.randn(shape, device="cuda", generator=gen) * 1.5 + 0.8
    else:  # same values, laid out as a transposed view of the last two axes
        x = torch.randn(*shape[:-2], shape[-1], shape[-2], device="cuda", generator=gen) * 1.5 + 0.8
        x = x.transpose(-1, -2)
        assert not x.is_contiguous()
    v0 = torch.randn(shape[1:], device="cuda", generator=gen) * 0.3
    return x.to(dtype), v0


def _run(backend, x, v0, k, cfg, grad_s, grad_v):
    x = (
        x.detach().clone().requires_grad_(True)
        if x.is_contiguous()
        else x.detach().requires_grad_(True)
    )
    v0 = v0.detach().clone().requires_grad_(True)
    k = k.detach().clone().requires_grad_(True)
    s, v = multi_step(x, v0, k, cfg, backend=backend)
    loss = (v * grad_v).sum()
    if grad_s is not None:
        loss = loss + (s.float() * grad_s.float()).sum()
    loss.backward()
    return s.detach(), v.detach(), x.grad, v0.grad, k.grad


def _assert_match(got, want, dtype, count):
    s, v, gx, gv0, gk = got
    ws, wv, wgx, wgv0, wgk = want
    assert s.dtype == ws.dtype and torch.equal(s, ws), "spikes differ"
    torch.testing.assert_close(v, wv, rtol=1e-6, atol=1e-6)
    tol = GRAD_TOL[dtype]
    torch.testing.assert_close(gx.float(), wgx.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(gv0, wgv0, rtol=2e-5, atol=2e-5)
    # a sum of `count` float32 terms: its rounding grows with the count
    torch.testing.assert_close(gk, wgk, rtol=1e-4, atol=1e-6 * count)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "v_reset,detach_reset,decay_input,store_v_seq",
    list(itertools.product([0.0, None], [True, False], [True, False], [False, True])),
)
def test_neuron_matches_torch_for_every_option(
    dtype, v_reset, detach_reset, decay_input, store_v_seq
):
    x, v0 = _inputs((6, 4, 33), dtype, seed=1)
    k = torch.tensor(0.45, device="cuda")
    for sg in SURROGATES[:3] if dtype != torch.float32 else SURROGATES:
        cfg = NeuronConfig(decay_input, 1.0, v_reset, detach_reset, sg, store_v_seq)
        gen = torch.Generator(device="cuda").manual_seed(2)
        grad_s = torch.randn(x.shape, device="cuda", generator=gen).to(dtype)
        grad_v = torch.randn(x.shape if store_v_seq else x.shape[1:], device="cuda", generator=gen)
        _assert_match(
            _run("cupy", x, v0, k, cfg, grad_s, grad_v),
            _run("torch", x, v0, k, cfg, grad_s, grad_v),
            dtype,
            x.numel(),
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3, 5), (7, 5, 7, 3), (3, 2, 2 * 256 * 4 + 4), (4, 1027)])
def test_neuron_odd_sizes_and_one_step(dtype, shape):
    """T = 1, neuron counts not divisible by 4 or by the block size, several blocks."""
    x, v0 = _inputs(shape, dtype, seed=3)
    k = torch.tensor(0.5, device="cuda")
    cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), False)
    grad_s = torch.randn(x.shape, device="cuda").to(dtype)
    grad_v = torch.randn(x.shape[1:], device="cuda")
    _assert_match(
        _run("cupy", x, v0, k, cfg, grad_s, grad_v),
        _run("torch", x, v0, k, cfg, grad_s, grad_v),
        dtype,
        x.numel(),
    )


def test_neuron_grad_k_with_more_blocks_than_reduction_threads():
    """Over 1024 partial sums: sum_partials' threads each add several in their fixed order."""
    x, v0 = _inputs((2, 1_050_000), torch.float32, seed=11)  # 1026 blocks of 4 x 256 neurons
    k = torch.tensor(0.5, device="cuda")
    cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), False)
    grad_s = torch.randn(x.shape, device="cuda")
    grad_v = torch.randn(x.shape[1:], device="cuda")
    got = _run("cupy", x, v0, k, cfg, grad_s, grad_v)
    want64 = _run(
        "torch", x.double(), v0.double(), k.double(), cfg, grad_s.double(), grad_v.double()
    )
    # both float32 sums of 2.1M terms should sit within float32 rounding of the float64 one
    want32 = _run("torch", x, v0, k, cfg, grad_s, grad_v)
    err, ref_err = (got[4].double() - want64[4]).abs(), (want32[4].double() - want64[4]).abs()
    assert err <= max(4 * ref_err, 1e-6 * want64[4].abs() + 1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_neuron_non_contiguous_and_misaligned_input(dtype):
    x, v0 = _inputs((5, 3, 8, 12), dtype, seed=4, contiguous=False)
    k = torch.tensor(0.4, device="cuda")
    cfg = NeuronConfig(True, 1.0, None, False, surrogate.Sigmoid(alpha=4.0), False)
    grad_s = torch.randn(x.shape, device="cuda").to(dtype)
    grad_v = torch.randn(x.shape[1:], device="cuda")
    _assert_match(
        _run("cupy", x, v0, k, cfg, grad_s, grad_v),
        _run("torch", x, v0, k, cfg, grad_s, grad_v),
        dtype,
        x.numel(),
    )
    # a contiguous view one element into its storage: 4-neuron packs would be misaligned
    flat = torch.randn(5 * 64 + 1, device="cuda").to(dtype)
    xm = flat[1:].view(5, 64)
    v0m = torch.zeros(64, device="cuda")
    grad_v = torch.randn(64, device="cuda")
    _assert_match(
        _run("cupy", xm, v0m, k, cfg, None, grad_v),
        _run("torch", xm, v0m, k, cfg, None, grad_v),
        dtype,
        xm.numel(),
    )


def test_neuron_gradient_only_through_spikes():
    """No gradient reaches V, and v_init / k need none (the LIF-like call of a first layer)."""
    x, v0 = _inputs((4, 2, 64), torch.float32, seed=5)
    k = torch.tensor(0.5, device="cuda")
    cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), False)
    grads = []
    for backend in ("cupy", "torch"):
        xr = x.clone().requires_grad_(True)
        s, _ = multi_step(xr, v0, k, cfg, backend=backend)
        s.sum().backward()
        grads.append(xr.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_neuron_repeated_backward_is_bit_identical(dtype):
    x, v0 = _inputs((8, 1000, 37), dtype, seed=6)
    node = PLIFNode(backend="cupy").cuda()
    grads = []
    for _ in range(2):
        functional.reset_net(node)
        node.w.grad = None
        xr = x.clone().requires_grad_(True)
        s = node(xr)
        (s.float() * torch.linspace(-1, 1, s.numel(), device="cuda").view_as(s)).sum().backward()
        grads.append((xr.grad.clone(), node.w.grad.clone()))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])


@pytest.mark.parametrize("node_cls", [PLIFNode, LIFNode])
def test_nodes_train_the_same_on_both_backends(node_cls):
    x, _ = _inputs((8, 16, 3, 10, 10), torch.float32, seed=7)
    out = {}
    for backend in ("cupy", "torch"):
        node = node_cls(backend=backend).cuda()
        xr = x.clone().requires_grad_(True)
        s = node(xr)
        s2 = node(xr)  # a second call continues from the stored V
        (s.sum() + 2 * s2.sum()).backward()
        w_grad = node.w.grad if node_cls is PLIFNode else torch.zeros(())
        out[backend] = (s, s2, node.v, xr.grad, w_grad)
    for a, b in zip(out["cupy"], out["torch"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_inference_under_no_grad_matches_torch():
    x, _ = _inputs((4, 8, 3, 17), torch.float32, seed=10)
    outs = []
    for backend in ("cupy", "torch"):
        node = PLIFNode(backend=backend, store_v_seq=True).cuda()
        with torch.no_grad():
            outs.append((node(x), node.v_seq))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-6, atol=1e-6)


def test_float64_input_falls_back_to_the_reference():
    x, v0 = _inputs((3, 2, 5), torch.float64, seed=8)
    k = torch.tensor(0.5, device="cuda", dtype=torch.float64)
    cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), False)
    s, v = multi_step(x, v0.double(), k, cfg, backend="cupy")
    ws, wv = multi_step(x, v0.double(), k, cfg, backend="torch")
    assert torch.equal(s, ws) and torch.equal(v, wv)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kernel,hw",
    [
        ((2, 2), (8, 8)),
        ((2, 2), (7, 8)),
        ((2, 2), (7, 9)),
        ((2, 2), (6, 5)),
        ((3, 3), (9, 10)),
        ((2, 3), (6, 9)),
    ],
)
def test_max_pool_matches_max_pool2d(dtype, kernel, hw):
    gen = torch.Generator(device="cuda").manual_seed(9)
    spikes = (torch.rand(3, 4, 5, *hw, device="cuda", generator=gen) < 0.3).to(dtype)
    ties = torch.randint(0, 3, (3, 4, 5, *hw), device="cuda", generator=gen).to(dtype)
    for x in (spikes, ties, spikes.transpose(-1, -2).contiguous().transpose(-1, -2)):
        xr = x.clone().requires_grad_(True)
        y = max_pool_multi_step(xr, kernel, kernel, backend="cupy")
        xt = x.float().flatten(0, 1).requires_grad_(True)
        want = F.max_pool2d(xt, kernel, kernel)
        assert y.dtype == dtype and torch.equal(y.float().flatten(0, 1), want)
        grad_y = torch.randn(y.shape, device="cuda", generator=gen).to(dtype)
        y.backward(grad_y)
        want.backward(grad_y.float().flatten(0, 1))
        assert torch.equal(xr.grad.float().flatten(0, 1), xt.grad)


def test_max_pool_overlapping_windows_fall_back_to_torch():
    x = (torch.rand(2, 3, 4, 9, 9, device="cuda") < 0.4).float()
    y = max_pool_multi_step(x, (3, 3), (2, 2), backend="cupy")
    assert torch.equal(y.flatten(0, 1), F.max_pool2d(x.flatten(0, 1), 3, 2))


def test_max_pool_layer_keeps_one_byte_per_output():
    layer = SpikeMaxPool2d(2, backend="cupy")
    x = (torch.rand(4, 8, 16, 32, 32, device="cuda") < 0.2).float().requires_grad_(True)
    y = layer(x)
    saved = y.grad_fn.saved_tensors
    assert [t.dtype for t in saved] == [torch.uint8] and saved[0].numel() == y.numel()


@pytest.fixture
def launched(monkeypatch):
    """The kernel entries launched, in order (the real launches still run)."""
    names = []
    real = ops._launch

    def spy(device, source, name, grid, block, args):
        names.append(name)
        real(device, source, name, grid, block, args)

    monkeypatch.setattr(ops, "_launch", spy)
    return names


@pytest.mark.parametrize("dtype", DTYPES)
def test_neuron_on_a_misaligned_view_takes_the_one_neuron_path(dtype, launched):
    """A view one element into its storage: the 4-neuron packs would be misaligned, so the
    alignment guard must pick v1 (the fault the host harness cannot show)."""
    flat = (torch.randn(5 * 64 + 1, device="cuda") * 1.5 + 0.8).to(dtype).requires_grad_(True)
    x = flat[1:].view(5, 64)
    assert x.storage_offset() == 1 and x.is_contiguous()
    v0 = torch.zeros(64, device="cuda")
    k = torch.tensor(0.4, device="cuda")
    cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), False)
    s, v = multi_step(x, v0, k, cfg, backend="cupy")
    (s.float().sum() + v.sum()).backward()
    d = build_name(dtype)
    assert launched[0] == f"neuron_forward_{d}_v1"
    want = _run(
        "torch",
        x.detach(),
        v0,
        k,
        cfg,
        torch.ones(x.shape, device="cuda").to(dtype),
        torch.ones(64, device="cuda"),
    )
    assert torch.equal(s.detach(), want[0])
    torch.testing.assert_close(
        flat.grad[1:].view(5, 64).float(),
        want[2].float(),
        rtol=GRAD_TOL[dtype],
        atol=GRAD_TOL[dtype],
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_on_a_misaligned_view_takes_the_any_path(dtype, launched):
    base = (torch.rand(2 * 3 * 8 * 8 + 1, device="cuda") < 0.3).to(dtype)
    x = base[1:].view(2, 3, 8, 8)  # contiguous, one element into its storage: no 2-wide packs
    assert x.storage_offset() == 1 and x.is_contiguous()
    y = max_pool_multi_step(x, (2, 2), (2, 2), backend="cupy")
    assert launched == [f"max_pool_forward_{build_name(dtype)}_any"]
    assert torch.equal(y.float(), F.max_pool2d(x.float(), 2, 2))


def test_max_pool_2x2_with_odd_height_takes_the_pack_path(launched):
    x = (torch.rand(3, 2, 4, 7, 8, device="cuda") < 0.3).float().requires_grad_(True)
    y = max_pool_multi_step(x, (2, 2), (2, 2), backend="cupy")
    y.backward(torch.ones_like(y))
    assert launched == ["max_pool_forward_f32_k2", "max_pool_backward_f32_k2"]
    xt = x.detach().flatten(0, 1).requires_grad_(True)
    want = F.max_pool2d(xt, 2, 2)
    want.backward(torch.ones_like(want))
    assert torch.equal(y.detach().flatten(0, 1), want) and torch.equal(
        x.grad.flatten(0, 1), xt.grad
    )


def build_name(dtype):
    return {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}[dtype]


def test_kernels_run_on_a_side_stream():
    """Inputs made on a side stream behind a long sleep: a kernel launched on any other stream
    would read them before they exist. Results are read after wait_stream."""
    cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), False)
    base = torch.randn(8, 1 << 20, device="cuda")
    k = torch.tensor(0.5, device="cuda")
    ws, wv = multi_step(
        base * 1.5 + 0.8, torch.zeros(1 << 20, device="cuda"), k, cfg, backend="torch"
    )
    wy = F.max_pool2d((base > 0).float().view(8, 256, 64, 64), 2, 2)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)  # tens of milliseconds of a busy side stream
        x = base * 1.5 + 0.8
        s, v = multi_step(x, torch.zeros(1 << 20, device="cuda"), k, cfg, backend="cupy")
        y = max_pool_multi_step(
            (base > 0).float().view(8, 256, 64, 64), (2, 2), (2, 2), backend="cupy"
        )
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(s, ws) and torch.equal(y, wy)
    torch.testing.assert_close(v, wv, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="one GPU: no second device index")
def test_kernels_run_on_a_second_device():
    cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), False)
    x, v0 = _inputs((6, 3, 1000), torch.float32, seed=12)
    k = torch.tensor(0.45, device="cuda")
    grad_s = torch.randn(x.shape, device="cuda")
    grad_v = torch.randn(x.shape[1:], device="cuda")
    want = _run("torch", x, v0, k, cfg, grad_s, grad_v)
    dev = torch.device("cuda", 1)
    got = _run("cupy", x.to(dev), v0.to(dev), k.to(dev), cfg, grad_s.to(dev), grad_v.to(dev))
    assert all(t.device == dev for t in got)
    _assert_match([t.to("cuda:0") for t in got], want, torch.float32, x.numel())


@pytest.mark.parametrize("dtype", DTYPES)
def test_zoo_model_forward_and_backward_match_the_torch_backend(dtype, monkeypatch):
    """The Fashion-MNIST network of Table 1 on the same weights and input: identical spikes
    and predictions, gradients to float tolerance (float16 / bfloat16 under autocast)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    torch.manual_seed(0)
    images = torch.rand(4, 1, 28, 28, device="cuda")
    cfg = paper_config("fashion-mnist")
    runs = {}
    for backend in ("cupy", "torch"):
        torch.manual_seed(1)
        model = SpikingConvNet(cfg, backend=backend).cuda().eval()
        spikes = []
        hooks = [
            m.register_forward_hook(lambda m, i, o, out=spikes: out.append(o.detach()))
            for m in model.modules()
            if isinstance(m, (PLIFNode, LIFNode, SpikeMaxPool2d))
        ]
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            rates = model(images)
        rates.float().pow(2).sum().backward()
        for h in hooks:
            h.remove()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        runs[backend] = (spikes, rates.detach(), grads)
    (s_cupy, r_cupy, g_cupy), (s_torch, r_torch, g_torch) = runs["cupy"], runs["torch"]
    assert len(s_cupy) == len(s_torch) > 0
    for a, b in zip(s_cupy, s_torch, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert torch.equal(r_cupy, r_torch)
    assert torch.equal(r_cupy.argmax(1), r_torch.argmax(1))
    assert g_cupy.keys() == g_torch.keys() and g_cupy
    tol = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    for name in g_cupy:
        torch.testing.assert_close(g_cupy[name], g_torch[name], rtol=tol, atol=tol, msg=name)
