"""The compiled CPU backend (plif_zoo.cpu) against the torch reference.

These tests also prove, on the CPU, the per-neuron math of ``plif_zoo/csrc/neuron_math.h``
that the CuPy kernels compile (issue 3): the CPU backend is that header plus plain loops, so
identical spikes and matching gradients here pin the header's charge, fire, reset, surrogates
and backward recurrence to the reference in ``plif_zoo/neurons.py``.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import surrogate

from plif_zoo import PLIFNode, backends, cpu, pooling
from plif_zoo.cpu import _build, _memory
from plif_zoo.neurons import NeuronConfig, _charge, _reset, _TorchMultiStep

if shutil.which(_build.compiler()) is None:
    pytest.skip(f"no C++ compiler {_build.compiler()!r} on this machine", allow_module_level=True)


def test_backend_builds_and_is_the_auto_choice_on_cpu():
    assert cpu.available(), cpu.why_unavailable()
    cfg = _cfg()
    assert backends.resolve("auto", torch.zeros(2, 3), cfg) == "cpu"


SURROGATES = [
    surrogate.ATan(alpha=2.0),
    surrogate.ATan(alpha=3.5),
    surrogate.Sigmoid(alpha=4.0),
    surrogate.Sigmoid(alpha=1.5),
    surrogate.SoftSign(alpha=2.0),
    surrogate.SuperSpike(alpha=1.0),
    surrogate.PiecewiseQuadratic(alpha=1.0),
    surrogate.PiecewiseExp(alpha=1.0),
    surrogate.Erf(alpha=2.0),
]
OPTIONS = list(itertools.product([True, False], [0.0, None], [True, False], [False, True]))


def _cfg(decay_input=True, v_reset=0.0, detach_reset=True, store_v_seq=False, sg=None, v_th=1.0):
    sg = surrogate.ATan() if sg is None else sg
    return NeuronConfig(decay_input, v_th, v_reset, detach_reset, sg, store_v_seq)


def _run(fn, x, v0, w, grad_s, grad_v, cfg):
    """Forward with ``fn``, backward with fixed upstream gradients -> (s, v, dx, dv0, dw)."""
    x = x.detach().requires_grad_(True)
    v0 = v0.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    s, v = fn(x, v0, w.sigmoid(), cfg)
    loss = (s * grad_s).sum() + (v * grad_v).sum()
    return (s, v, *torch.autograd.grad(loss, (x, v0, w)))


def _reference(x, v0, k, cfg):
    return _TorchMultiStep.apply(x, v0, k, cfg)


def _inputs(shape, dtype=torch.float32, seed=0, store_v_seq=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) * 1.5
    v0 = torch.rand(shape[1:], generator=g, dtype=dtype)
    w = torch.tensor(0.3, dtype=dtype)
    grad_s = torch.randn(shape, generator=g, dtype=dtype)
    grad_v = torch.randn(shape if store_v_seq else shape[1:], generator=g, dtype=dtype)
    return x, v0, w, grad_s, grad_v


def _assert_matches(got, want, dtype):
    s, v, *grads = got
    s_ref, v_ref, *grads_ref = want
    assert torch.equal(s, s_ref)
    assert torch.equal(v, v_ref)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for name, g, g_ref in zip(("x", "v_init", "w"), grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=tol, atol=tol, msg=f"gradient of {name}")


@pytest.mark.parametrize("sg", SURROGATES, ids=lambda s: f"{type(s).__name__}{s.alpha}")
@pytest.mark.parametrize("decay_input,v_reset,detach_reset,store_v_seq", OPTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_for_every_option(
    decay_input, v_reset, detach_reset, store_v_seq, sg, dtype
):
    cfg = _cfg(decay_input, v_reset, detach_reset, store_v_seq, sg)
    args = _inputs((7, 3, 5), dtype, store_v_seq=store_v_seq)
    _assert_matches(_run(cpu.neuron_multi_step, *args, cfg), _run(_reference, *args, cfg), dtype)


@pytest.mark.parametrize(
    "steps,neurons", [(1, 1), (1, 700), (3, 511), (5, 513), (2, 1537), (2, 8195)]
)
def test_odd_sizes_and_single_step(steps, neurons):
    cfg = _cfg(detach_reset=False)
    args = _inputs((steps, neurons))
    _assert_matches(
        _run(cpu.neuron_multi_step, *args, cfg), _run(_reference, *args, cfg), torch.float32
    )


def test_non_contiguous_input():
    cfg = _cfg(v_reset=None)
    x, v0, w, grad_s, grad_v = _inputs((6, 4, 9))
    x_nc = x.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    v0_nc = v0.t().contiguous().t()
    assert not x_nc.is_contiguous() and not v0_nc.is_contiguous()
    got = _run(cpu.neuron_multi_step, x_nc, v0_nc, w, grad_s, grad_v, cfg)
    _assert_matches(got, _run(_reference, x, v0, w, grad_s, grad_v, cfg), torch.float32)


class _ReverseGradient(torch.autograd.Function):
    """A view of x forward, -gradient backward (domain adaptation's gradient reversal)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


@pytest.mark.parametrize(
    "between",
    [
        lambda src: src,  # a leaf
        lambda src: src * 1.0,  # an op, as the encoder's BatchNorm
        _ReverseGradient.apply,  # same memory as its input, but a gradient of its own
    ],
    ids=["leaf", "op", "custom-view"],
)
def test_input_expanded_over_time_is_read_in_place_and_gets_the_summed_gradient(between):
    # the static-image encoder feeds one [N, *] tensor to every step through expand()
    cfg = _cfg(detach_reset=False)
    g = torch.Generator().manual_seed(3)
    y0 = torch.randn(3, 4, 5, generator=g) * 1.5
    grad_s = torch.randn(6, 3, 4, 5, generator=g)
    results = []
    for fn in (cpu.neuron_multi_step, _reference):
        src = y0.clone().requires_grad_(True)
        w = torch.tensor(0.2, requires_grad=True)
        y = between(src)
        x_seq = y.unsqueeze(0).expand(6, *y.shape)
        s, v = fn(x_seq, torch.zeros(3, 4, 5), w.sigmoid(), cfg)
        ((s * grad_s).sum() + v.sum()).backward()
        results.append((s, v, src.grad, w.grad))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("leaf", [True, False])
def test_input_expanded_over_time_is_saved_once_not_t_times(leaf):
    y = (torch.randn(2, 50) * 1.5).requires_grad_(True)
    y = y if leaf else y * 1.0
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        x_seq = y.unsqueeze(0).expand(8, 2, 50)
        cpu.neuron_multi_step(x_seq, torch.zeros(2, 50), torch.tensor(0.5), _cfg())
    assert max(t.numel() for t in saved) == 100


def test_input_expanded_over_time_without_input_gradient():
    cfg = _cfg()
    y = torch.randn(7, 9) * 1.5
    w = torch.tensor(0.1, requires_grad=True)
    x_seq = y.expand(4, 7, 9)
    s, v = cpu.neuron_multi_step(x_seq, torch.zeros(7, 9), w.sigmoid(), cfg)
    (s.sum() + v.sum()).backward()
    w_grad = w.grad.clone()
    w.grad = None
    s_ref, v_ref = _reference(x_seq.contiguous(), torch.zeros(7, 9), w.sigmoid(), cfg)
    (s_ref.sum() + v_ref.sum()).backward()
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)
    torch.testing.assert_close(w_grad, w.grad)


@pytest.mark.parametrize("store_v_seq", [False, True])
def test_channels_last_steps_are_read_in_place_and_outputs_keep_the_layout(store_v_seq):
    cfg = _cfg(store_v_seq=store_v_seq)
    g = torch.Generator().manual_seed(5)
    x = (
        (torch.randn(3 * 2, 4, 5, 6, generator=g) * 1.5)
        .contiguous(memory_format=torch.channels_last)
        .unflatten(0, (3, 2))
    )
    grad_s = torch.randn(3, 2, 4, 5, 6, generator=g)
    grad_v = torch.randn((3, 2, 4, 5, 6) if store_v_seq else (2, 4, 5, 6), generator=g)
    w = torch.tensor(0.3)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        got = _run(cpu.neuron_multi_step, x, torch.zeros(2, 4, 5, 6), w, grad_s, grad_v, cfg)
    assert got[0].stride() == x.stride()
    assert x.data_ptr() in [t.data_ptr() for t in saved]  # no channels-first copy of X
    want = _run(_reference, x.contiguous(), torch.zeros(2, 4, 5, 6), w, grad_s, grad_v, cfg)
    _assert_matches(got, want, torch.float32)


def test_zero_steps_return_the_initial_state():
    v0 = torch.rand(3, 4)
    s, v = cpu.neuron_multi_step(torch.zeros(0, 3, 4), v0, torch.tensor(0.5), _cfg())
    assert s.shape == (0, 3, 4) and torch.equal(v, v0)


@pytest.mark.parametrize("store_v_seq", [False, True])
def test_two_halves_equal_one_run(store_v_seq):
    cfg = _cfg(store_v_seq=store_v_seq)
    x, v0, w, *_ = _inputs((8, 300))
    k = w.sigmoid()
    s_full, v_full = cpu.neuron_multi_step(x, v0, k, cfg)
    s_a, v_a = cpu.neuron_multi_step(x[:4], v0, k, cfg)
    s_b, v_b = cpu.neuron_multi_step(x[4:], v_a[-1] if store_v_seq else v_a, k, cfg)
    assert torch.equal(torch.cat((s_a, s_b)), s_full)
    assert torch.equal(torch.cat((v_a, v_b)) if store_v_seq else v_b, v_full)


def test_two_halves_backpropagate_like_one_run():
    cfg = _cfg()
    x, v0, w, grad_s, _ = _inputs((8, 300))

    def split(x, v0, k, cfg):
        s_a, v_a = cpu.neuron_multi_step(x[:4], v0, k, cfg)
        s_b, v_b = cpu.neuron_multi_step(x[4:], v_a, k, cfg)
        return torch.cat((s_a, s_b)), v_b

    grad_v = torch.randn(300)
    _assert_matches(
        _run(split, x, v0, w, grad_s, grad_v, cfg),
        _run(cpu.neuron_multi_step, x, v0, w, grad_s, grad_v, cfg),
        torch.float32,
    )


def _away_from_threshold(decay_input, v_reset, steps=4, neurons=6, margin=0.05):
    """float64 inputs whose H stays ``margin`` away from V_th (spikes do not flip under
    gradcheck)."""
    cfg = _cfg(decay_input, v_reset, store_v_seq=True)
    for seed in range(1000):
        x, v0, *_ = _inputs((steps, neurons), torch.float64, seed)
        x = x * 0.8
        k = torch.tensor(0.4, dtype=torch.float64)
        h = []
        v = v0
        for t in range(steps):
            ht = _charge(v, x[t], k, cfg)
            h.append(ht)
            v = _reset(ht, (ht >= 1.0).to(ht), cfg)
        if (torch.stack(h) - 1.0).abs().min() > margin:
            return x, v0
    raise AssertionError("no seed gave inputs away from the threshold")


@pytest.mark.parametrize(
    "decay_input,v_reset", [(True, 0.0), (True, None), (False, 0.0), (False, None)]
)
@pytest.mark.parametrize("store_v_seq", [False, True])
def test_gradcheck_float64_where_the_surrogate_is_exact(decay_input, v_reset, store_v_seq):
    # PiecewiseQuadratic(alpha=50) is zero farther than 0.02 from V_th, so with H kept away from
    # the threshold the surrogate gradient is the true gradient and finite differences apply.
    cfg = _cfg(decay_input, v_reset, False, store_v_seq, surrogate.PiecewiseQuadratic(alpha=50.0))
    x, v0 = _away_from_threshold(decay_input, v_reset)
    w = torch.tensor(-0.4, dtype=torch.float64, requires_grad=True)

    def fn(x, v0, w):
        return cpu.neuron_multi_step(x, v0, w.sigmoid(), cfg)

    assert torch.autograd.gradcheck(fn, (x.requires_grad_(), v0.requires_grad_(), w), eps=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_runs_in_float32(dtype):
    cfg = _cfg()
    x = (torch.randn(4, 50) * 1.5).to(dtype)
    v0 = torch.zeros(50)
    k = torch.tensor(0.5)
    s, v = cpu.neuron_multi_step(x, v0, k, cfg)
    s_ref, v_ref = _TorchMultiStep.apply(x.float(), v0, k, cfg)
    assert s.dtype == dtype and v.dtype == torch.float32
    assert torch.equal(s.float(), s_ref) and torch.equal(v, v_ref)


def test_inference_path_saves_nothing_and_gives_the_same_output():
    cfg = _cfg()
    x, v0, w, *_ = _inputs((5, 40))
    s_grad, v_grad = cpu.neuron_multi_step(x.requires_grad_(), v0, w.sigmoid(), cfg)
    with torch.no_grad():
        s, v = cpu.neuron_multi_step(x, v0, w.sigmoid(), cfg)
    assert s.grad_fn is None
    assert torch.equal(s, s_grad) and torch.equal(v, v_grad)


def test_gradient_of_decay_is_deterministic_and_independent_of_threads():
    cfg = _cfg()
    args = _inputs((4, 5000))
    threads = torch.get_num_threads()
    try:
        grads = []
        for n in (1, 2, 2):
            torch.set_num_threads(n)
            grads.append(_run(cpu.neuron_multi_step, *args, cfg)[4])
    finally:
        torch.set_num_threads(threads)
    assert grads[0].item() == grads[1].item() == grads[2].item()


def test_plif_node_on_cpu_backend_matches_torch_backend():
    x = torch.randn(4, 2, 3, 6, 6) * 2
    grads = []
    for backend in ("cpu", "torch"):
        node = PLIFNode(backend=backend, detach_reset=False)
        xi = x.clone().requires_grad_(True)
        s = node(xi)
        (s.sum() + node.v.sum()).backward()
        grads.append((s, node.v, xi.grad, node.w.grad))
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_unsupported_surrogate_falls_back_to_torch_under_auto():
    class MyATan(surrogate.ATan):
        pass

    cfg = _cfg(sg=MyATan())
    assert not cpu.supports(cfg)
    assert backends.resolve("auto", torch.zeros(3), cfg) == "torch"
    with pytest.raises(ValueError, match="does not support surrogate"):
        backends.resolve("cpu", torch.zeros(3), cfg)


def test_bad_input_says_what_to_do():
    cfg = _cfg()
    k = torch.tensor(0.5)
    with pytest.raises(ValueError, match="does not match one step"):
        cpu.neuron_multi_step(torch.zeros(3, 4, 5), torch.zeros(5, 4), k, cfg)
    with pytest.raises(ValueError, match=r"\[T, N, \*\]"):
        cpu.neuron_multi_step(torch.zeros(3), torch.zeros(()), k, cfg)
    with pytest.raises(TypeError, match="real floating-point"):
        cpu.neuron_multi_step(torch.zeros(3, 4, dtype=torch.complex64), torch.zeros(4), k, cfg)


# ---- spike max-pooling ------------------------------------------------------------------


def _spikes(shape, seed=0, p=0.3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).to(dtype)


@pytest.mark.parametrize(
    "shape,kernel,stride",
    [
        ((3, 2, 4, 8, 8), (2, 2), (2, 2)),
        ((2, 3, 5, 7, 9), (2, 2), (2, 2)),  # odd sizes: floor mode drops the last row/column
        ((2, 2, 3, 9, 9), (3, 3), (2, 2)),  # overlapping windows
        ((1, 2, 2, 6, 8), (2, 3), (1, 2)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_pool_matches_max_pool2d(shape, kernel, stride, dtype):
    x = _spikes(shape, dtype=dtype)  # binary: many ties, the first maximum must win
    grad = torch.randn(
        *shape[:3],
        (shape[3] - kernel[0]) // stride[0] + 1,
        (shape[4] - kernel[1]) // stride[1] + 1,
        dtype=dtype,
    )
    outs = []
    for fn in (cpu.max_pool_multi_step, lambda x, k, s: F.max_pool2d(x.flatten(0, 1), k, s)):
        xi = x.clone().requires_grad_(True)
        y = fn(xi, kernel, stride).reshape(grad.shape)
        (gx,) = torch.autograd.grad((y * grad).sum(), xi)
        outs.append((y, gx))
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize(
    "shape,kernel,stride",
    [
        ((2, 3, 8, 8, 8), (2, 2), (2, 2)),
        ((2, 2, 5, 7, 9), (2, 2), (2, 2)),
        ((1, 2, 3, 9, 9), (3, 3), (2, 2)),
    ],
)
def test_channels_last_max_pool_matches_max_pool2d_and_stays_channels_last(shape, kernel, stride):
    t, n, c, h, w = shape
    x = _spikes((t * n, c, h, w), seed=2).contiguous(memory_format=torch.channels_last)
    x = x.unflatten(0, (t, n))
    outs = []
    for fn in (cpu.max_pool_multi_step, lambda x, k, s: F.max_pool2d(x.flatten(0, 1), k, s)):
        xi = x.detach().requires_grad_(True)
        y = fn(xi, kernel, stride)
        y = y.unflatten(0, (t, n)) if y.dim() == 4 else y
        grad = torch.arange(y.numel(), dtype=torch.float32).reshape(y.shape)
        (gx,) = torch.autograd.grad((y * grad).sum(), xi)
        outs.append((y, gx))
    assert outs[0][0].movedim(-3, -1).is_contiguous()  # no channels-first copy came out
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])


def test_max_pool_keeps_one_byte_per_output_for_backward():
    x = _spikes((2, 3, 4, 8, 8)).requires_grad_(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = cpu.max_pool_multi_step(x, (2, 2), (2, 2))
    assert [(t.dtype, t.numel()) for t in saved] == [(torch.uint8, y.numel())]


def test_pooling_auto_uses_cpu_and_matches_torch_backend():
    x = _spikes((4, 2, 3, 10, 10), seed=1).requires_grad_(True)
    y_auto = pooling.max_pool_multi_step(x, (2, 2), (2, 2), backend="auto")
    y_ref = pooling.max_pool_multi_step(x, (2, 2), (2, 2), backend="torch")
    assert torch.equal(y_auto, y_ref)
    g = torch.randn_like(y_ref)
    assert torch.equal(*(torch.autograd.grad((y * g).sum(), x)[0] for y in (y_auto, y_ref)))


def test_max_pool_rejects_windows_larger_than_the_input():
    with pytest.raises(ValueError, match="smaller than the pooling window"):
        cpu.max_pool_multi_step(torch.zeros(1, 1, 1, 2, 2), (3, 3), (3, 3))


# ---- output buffers -------------------------------------------------------------------------


def _vma_flags(address: int) -> dict[str, str]:
    """The /proc/self/smaps fields of the mapping that holds ``address``."""
    fields, inside = {}, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= address < hi
            elif inside:
                fields[head.rstrip(":")] = line.split(":", 1)[1].strip()
    return fields


def _thp_mode() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "never"


@pytest.mark.skipif(_thp_mode() == "never", reason="transparent huge pages are off here")
def test_large_outputs_are_eligible_for_huge_pages():
    t = _memory.empty((8, 2**20), torch.float32)
    t.fill_(1.0)
    assert t.shape == (8, 2**20) and t.dtype == torch.float32 and t.is_contiguous()
    assert _vma_flags(t.data_ptr() + t.nbytes // 2).get("THPeligible") == "1"


# ---- building, caching and the fallback ---------------------------------------------------


def test_concurrent_builds_leave_one_complete_library(tmp_path, monkeypatch):
    # a one-function source keeps this fast; the temp-name-then-rename path is the real one
    source = tmp_path / "src" / "tiny.cpp"
    source.parent.mkdir()
    source.write_text('extern "C" int plif_tiny(void) { return 7; }\n')
    monkeypatch.setattr(_build, "SOURCES", (source,))
    cache = tmp_path / "cache"
    monkeypatch.setenv("PLIF_ZOO_CACHE", str(cache))
    paths, errors = [], []

    def build():
        try:
            paths.append(_build._build())
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    workers = [threading.Thread(target=build) for _ in range(2)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors and len(set(paths)) == 1
    # the library and its recorded sha256, no temporary leftovers
    assert sorted(p.name for p in (cache / "cpu").iterdir()) == [
        paths[0].name,
        paths[0].name + ".sha256",
    ]
    assert _build.intact(paths[0])
    assert ctypes.CDLL(str(paths[0])).plif_tiny() == 7


@pytest.mark.parametrize("damage", ["half", "4KiB"])
def test_damaged_cached_library_is_rebuilt_and_the_run_works(tmp_path, damage):
    """A cached .so cut short (a full disk, a copy cut short) once killed every process with
    SIGBUS at load; its recorded sha256 no longer matches, so it is rebuilt."""
    built = _build._build()  # this machine's library, under the default cache
    cache = tmp_path / "cache"
    (cache / "cpu").mkdir(parents=True)
    target = cache / "cpu" / built.name
    shutil.copy(built, target)
    shutil.copy(_build.digest_path(built), _build.digest_path(target))
    good = built.read_bytes()
    with open(target, "r+b") as f:
        f.truncate(len(good) // 2 if damage == "half" else 4096)
    script = textwrap.dedent(
        """
        import torch
        from plif_zoo import PLIFNode
        x = torch.randn(4, 3, 5) * 2
        s = PLIFNode(backend="cpu")(x)
        assert torch.equal(s, PLIFNode(backend="torch")(x))
        print("ran")
        """
    )
    env = dict(os.environ, PLIF_ZOO_CACHE=str(cache))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "ran"
    assert _build.intact(target) and target.stat().st_size > len(good) // 2


def test_compiler_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PLIF_ZOO_CACHE", str(tmp_path))
    monkeypatch.setenv("PLIF_ZOO_CXX", "false")
    with pytest.raises(_build.BuildError, match="failed to compile"):
        _build._build()
    assert list((tmp_path / "cpu").iterdir()) == []


def test_missing_compiler_warns_once_and_falls_back_to_torch(tmp_path):
    script = textwrap.dedent(
        """
        import warnings, torch
        warnings.simplefilter("always")
        from plif_zoo import PLIFNode, backends
        from spikingjelly.activation_based import functional
        x = torch.randn(4, 3, 5) * 2
        node = PLIFNode(backend="auto")
        s1 = node(x); functional.reset_net(node)
        s2 = node(x); functional.reset_net(node)
        ref = PLIFNode(backend="torch")(x)
        assert torch.equal(s1, ref) and torch.equal(s2, ref)
        assert backends.resolve("auto", x) == "torch"
        try:
            backends.resolve("cpu", x)
        except ValueError as err:
            print("ERR", err)
        from plif_zoo import cpu
        try:
            cpu.neuron_multi_step(x, torch.zeros(3, 5), torch.tensor(0.5), node.config)
        except RuntimeError as err:
            print("RUNTIME", err)
        """
    )
    env = dict(os.environ, PLIF_ZOO_CXX=str(tmp_path / "no-such-g++"), PLIF_ZOO_CACHE=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    warning_lines = [
        ln for ln in done.stderr.splitlines() if "compiled CPU backend unavailable" in ln
    ]
    assert len(warning_lines) == 1
    assert "no-such-g++" in warning_lines[0] and "torch reference" in warning_lines[0]
    assert "ERR backend='cpu' is not available" in done.stdout and "PLIF_ZOO_CXX" in done.stdout
    assert "RUNTIME the compiled CPU backend is unavailable" in done.stdout


# ---- one decision, one list of surrogate ids ----------------------------------------------


def test_windows_over_256_fall_back_to_torch_instead_of_raising():
    x = _spikes((2, 1, 2, 17, 17), seed=3).requires_grad_(True)
    assert not cpu.supports_pool(x, (17, 17), (17, 17))
    assert backends.resolve("cpu", x, pool=((17, 17), (17, 17))) == "torch"
    y = pooling.max_pool_multi_step(x, (17, 17), (17, 17), backend="cpu")
    y_ref = pooling.max_pool_multi_step(x, (17, 17), (17, 17), backend="torch")
    assert torch.equal(y, y_ref) and y.shape == (2, 1, 2, 1, 1)


def test_backend_predicates_are_pure_and_say_what_the_kernels_take():
    cfg = _cfg()
    assert cpu.supports_neuron(torch.zeros(2, 3), cfg)
    assert not cpu.supports_neuron(torch.zeros(3), cfg)  # not [T, N, *]
    assert not cpu.supports_neuron(torch.zeros(2, 3, dtype=torch.complex64), cfg)
    assert cpu.supports_pool(torch.zeros(1, 4, 4), (2, 2), (2, 2))
    assert not cpu.supports_pool(torch.zeros(1, 1, 1), (2, 2), (2, 2))  # window larger than input


def test_backends_never_import_the_layers():
    import ast
    import pathlib

    root = pathlib.Path(cpu.__file__).parent.parent
    for path in [*root.glob("cpu/*.py"), *root.glob("cuda/*.py")]:
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
            for n in ast.walk(block)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in typing_only:
                top = (node.module or "").split(".")[0]
                assert top not in ("neurons", "pooling"), f"{path.name} imports {node.module}"


def test_surrogate_ids_come_only_from_kernel_spec(tmp_path):
    from plif_zoo._kernel_spec import SURROGATE_IDS, c_defines

    header = _build.HEADERS[0]
    assert "#define PLIF_SG_" not in header.read_text()
    assert [d.split("=")[1] for d in c_defines()] == [
        str(i) for i in sorted(SURROGATE_IDS.values())
    ]
    src = tmp_path / "probe.cpp"
    src.write_text('#include "neuron_math.h"\nint probe() { return PLIF_SG_ERF; }\n')
    base = [_build.compiler(), "-fsyntax-only", "-I", str(header.parent), str(src)]
    without = subprocess.run(base, capture_output=True, text=True)
    assert without.returncode != 0 and "PLIF_SG_" in without.stderr
    assert subprocess.run([*base, *c_defines()], capture_output=True).returncode == 0
