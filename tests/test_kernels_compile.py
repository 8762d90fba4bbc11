"""The CuPy backend without a GPU: every kernel compiles, the kernels' per-thread bodies run on
the host against the torch reference, and the backend reports itself unavailable clearly."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import surrogate

from plif_zoo import PLIFNode, SpikeMaxPool2d
from plif_zoo import cuda as kernels
from plif_zoo._kernel_spec import c_defines, surrogate_spec
from plif_zoo.cuda import __main__ as compile_tool
from plif_zoo.cuda import build, ops
from plif_zoo.neurons import NeuronConfig, multi_step

HARNESS = Path(__file__).with_name("kernel_host_harness.cu")
DTYPE_IDS = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def test_compile_only_builds_and_reports_every_variant(capsys):
    assert compile_tool.main(["--compile-only", "--arch", "sm_90"]) == 0
    out = capsys.readouterr().out
    for source in build.sources():
        for name in build.entry_names(source):
            line = next((ln for ln in out.splitlines() if f" {name} " in ln), None)
            assert line is not None, f"{name} not reported"
            assert line.startswith("ok") and "sm_90" in line and "registers" in line
            assert "spill stores 0 B" in line


def test_compile_only_checks_entries_in_the_cubin_not_the_log(capsys, monkeypatch):
    # The NVRTC of a GPU machine's image (2026-12-04) gave a log without ptxas's report: that
    # is no missing kernel. A kernel is missing when its symbol is not in the cubin.
    real = build.compile_cubin
    monkeypatch.setattr(build, "sources", lambda: ["max_pool.cu"])
    monkeypatch.setattr(build, "compile_cubin", lambda s, a: (real(s, a)[0], ""))
    assert compile_tool.compile_all(["sm_90"]) == 0
    out = capsys.readouterr().out
    names = build.entry_names("max_pool.cu")
    assert all(f" {n} " in out for n in names) and out.count("(no ptxas report)") == len(names)
    assert "no ptxas report; it begins:\n(empty)" in out

    gone = names[0].encode()
    monkeypatch.setattr(
        build, "compile_cubin", lambda s, a: (real(s, a)[0].replace(gone, b"x" * len(gone)), "")
    )
    assert compile_tool.compile_all(["sm_90"]) == 1
    assert f"FAIL sm_90 max_pool.cu {names[0]}: entry not in the cubin" in capsys.readouterr().out


def test_every_dtype_and_kind_has_a_variant():
    names = [n for s in build.sources() for n in build.entry_names(s)]
    for kind in ("neuron_forward", "neuron_backward", "max_pool_forward", "max_pool_backward"):
        for dtype in build.DTYPE_NAMES.values():
            assert any(n.startswith(f"{kind}_{dtype}_") for n in names)


def test_pack_variants_compile_to_vector_memory_instructions():
    neuron_ptx = build.compile_ptx("neuron.cu", "compute_90")
    pool_ptx = build.compile_ptx("max_pool.cu", "compute_90")

    def body(ptx, name):
        return ptx.split(f".entry {name}(")[1].split(".entry")[0]

    for dtype, pack in (("f32", "v4.f32"), ("f16", "v4.u16"), ("bf16", "v4.u16")):
        for kind in ("neuron_forward", "neuron_backward"):
            code = body(neuron_ptx, f"{kind}_{dtype}_v4")
            assert f"ld.global.nc.{pack}" in code and "ld.global.nc.v4.f32" in code  # x or dL/dS, H
    assert "ld.global.nc.v2.f32" in body(pool_ptx, "max_pool_forward_f32_k2")
    assert "st.global.v2.f32" in body(pool_ptx, "max_pool_backward_f32_k2")


def test_compile_only_rejects_a_bad_arch(capsys):
    assert compile_tool.main(["--compile-only", "--arch", "ampere"]) == 2
    assert "sm_80" in capsys.readouterr().err


def test_a_source_that_does_not_compile_is_reported_with_its_log(tmp_path, monkeypatch):
    for path in build.KERNEL_DIR.iterdir():
        if path.suffix in (".cuh", ".h"):
            shutil.copy(path, tmp_path)
    (tmp_path / "neuron.cu").write_text(
        '#include "dtypes.cuh"\nextern "C" __global__ void k() { undefined_call(); }\n'
    )
    monkeypatch.setattr(build, "KERNEL_DIR", tmp_path)
    with pytest.raises(build.CompileError, match="undefined_call"):
        build.compile_cubin("neuron.cu", "sm_80")


def test_ptxas_log_is_parsed_per_entry():
    log = (
        "ptxas info    : Compiling entry function 'a' for 'sm_90'\n"
        "ptxas info    : Function properties for a\n"
        "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
        "ptxas info    : Used 40 registers, used 1 barriers\n"
        "ptxas info    : Compiling entry function 'b' for 'sm_90'\n"
        "ptxas info    : Used 10 registers, used 0 barriers\n"
    )
    usages = build.parse_ptxas_log(log)
    assert usages["a"] == build.Usage(40, 4, 12, 8)
    assert usages["b"] == build.Usage(10, 0, 0, 0)


def _one_byte_bytes_intact() -> bool:
    """CPython shares one bytes object per byte value (b" ", bytes([32]), b"a b"[1:2]...)."""
    return all(bytes([i])[0] == i and len(bytes([i])) == 1 for i in range(256))


def test_nvrtc_writes_no_shared_python_bytes():
    """NVRTC writes its log into the buffer it is given. A compile that prints nothing (every
    PTX compile) has a 1-byte log; given `b" " * 1`, CPython's shared b" ", its NUL made every
    b" " in the process b"\\0" and broke unrelated code later (torch.load of a checkpoint)."""
    assert _one_byte_bytes_intact()
    ptx, log = build._compile("max_pool.cu", "compute_80", ptx=True)
    assert log == ""  # the 1-byte (NUL only) log: the case that hit the shared b" "
    cubin, log = build.compile_cubin("max_pool.cu", "sm_80")
    assert "registers" in log and isinstance(ptx, bytes) and isinstance(cubin, bytes)
    assert _one_byte_bytes_intact(), "NVRTC wrote into a shared 1-byte bytes object"
    assert b" ".join([b"a", b"b"]) == b"a b" and bytes([32]) == b" "


def test_cubin_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("PLIF_ZOO_CACHE", str(tmp_path))
    path = build.cached_cubin("max_pool.cu", "sm_80")
    assert path.parent == tmp_path / "cuda" and path.stat().st_size > 0  # one layout: _io.cache_dir
    # the cubin and its recorded sha256; no temporary left behind
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".sha256"]
    stamp = path.stat().st_mtime_ns
    assert build.cached_cubin("max_pool.cu", "sm_80") == path
    assert path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("damage", ["half", "4KiB", "no record"])
def test_damaged_cached_cubin_is_rebuilt_not_loaded(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("PLIF_ZOO_CACHE", str(tmp_path))
    path = build.cached_cubin("max_pool.cu", "sm_80")
    good = path.read_bytes()
    if damage == "no record":  # a cubin cached before records were kept
        build.digest_path(path).unlink()
    else:
        with open(path, "r+b") as f:
            f.truncate(len(good) // 2 if damage == "half" else 4096)
    assert not build.intact(path)
    assert build.cached_cubin("max_pool.cu", "sm_80") == path
    assert path.read_bytes() == good and build.intact(path)


def test_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("PLIF_ZOO_CACHE", str(tmp_path / "file"))  # a folder under a file
    with pytest.raises(RuntimeError, match="PLIF_ZOO_CACHE to a writable folder"):
        build.cached_cubin("max_pool.cu", "sm_80")


def test_nvrtc_without_support_for_the_arch_is_named():
    archs = build.supported_archs()
    assert 80 in archs and 90 in archs
    old = next(n for n in (70, 72, 60) if n not in archs)  # NVRTC 13 dropped sm_70 / sm_72
    with pytest.raises(RuntimeError, match=rf"cannot compile for sm_{old}.*plif-zoo\[cuda12\]"):
        build.check_toolchain(f"sm_{old}")


@pytest.mark.parametrize(
    "driver,extra,package",
    [
        (12080, "cuda12", "cupy-cuda12x"),
        (12020, "cuda12", "cupy-cuda12x"),
        (13000, "cuda", "cupy-cuda13x"),
    ],
)
def test_install_hint_names_the_package_for_the_driver(driver, extra, package):
    hint = kernels.install_hint(driver)
    assert f"plif-zoo[{extra}]" in hint and package in hint
    assert "cuda12" in kernels.install_hint(None) and "plif-zoo[cuda]" in kernels.install_hint(None)


# A machine that has a GPU (as torch and cupy report it: sm_90) but lacks what the first build
# needs. The NVRTC library is hidden where cuda-bindings looks for it (cuda.pathfinder), so its
# first call raises the DynamicLibNotFoundError that a missing libnvrtc gives.
_FAKE_GPU = """
import json, sys, types, warnings
import torch
import cuda.pathfinder._dynamic_libs.load_nvidia_dynamic_lib as finder
from cuda.pathfinder import DynamicLibNotFoundError

CASE = sys.argv[1]
if CASE == "no libnvrtc":
    real = finder._load_lib_no_cache
    def hidden(name):
        if name == "nvrtc":
            raise DynamicLibNotFoundError('Failure finding "libnvrtc.so*": not on this machine')
        return real(name)
    finder._load_lib_no_cache = hidden
loaded = []
class RawModule:
    def __init__(self, path):
        loaded.append(path)
    def get_function(self, name):
        return name
class Device:
    def __init__(self, index): pass
    def __enter__(self): return self
    def __exit__(self, *exc): return False
cupy = types.ModuleType("cupy")
cupy.RawModule = RawModule
cupy.cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1), Device=Device
)
sys.modules["cupy"] = cupy
torch.cuda.is_available = lambda: True
torch.cuda.current_device = lambda: 0
torch.cuda.get_device_capability = lambda index=None: (7, 0) if CASE == "sm_70" else (9, 0)

from torch._subclasses.fake_tensor import FakeTensorMode
from spikingjelly.activation_based import surrogate
from plif_zoo import backends, cuda
from plif_zoo.cuda import build
from plif_zoo.neurons import NeuronConfig

if CASE == "no headers":
    import cuda.pathfinder as pathfinder
    pathfinder.find_nvidia_header_directory = lambda name: None
    build.SYSTEM_INCLUDE_DIRS = ()
cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), False)
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught, FakeTensorMode():
    x = torch.empty(4, 2, 8, device="cuda")
    names = [backends.resolve("auto", x, cfg) for _ in range(3)]
    try:
        backends.resolve("cupy", x, cfg)
        explicit = ""
    except ValueError as err:
        explicit = str(err)
print(json.dumps(dict(why=cuda.why_unavailable(), names=names, explicit=explicit, loaded=loaded,
                      warnings=[str(w.message) for w in caught if w.category is RuntimeWarning])))
"""


def _fake_gpu(case: str, cache) -> dict:
    env = dict(os.environ, PLIF_ZOO_CACHE=str(cache))
    done = subprocess.run(
        [sys.executable, "-c", _FAKE_GPU, case],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "case,cause",
    [
        ("no libnvrtc", "NVRTC library cannot be loaded"),
        ("no headers", "cannot find the CUDA headers"),
        ("sm_70", "cannot compile for sm_70"),
        ("read-only cache", "PLIF_ZOO_CACHE to a writable folder"),
    ],
)
def test_auto_falls_back_with_one_warning_when_the_first_build_would_fail(tmp_path, case, cause):
    """Availability means "the kernels were built and loaded": where the first launch would
    fail, auto uses the torch reference with one warning naming the cause, and an explicit
    backend="cupy" is an error naming it."""
    cache = tmp_path / "cache"
    if case == "read-only cache":
        cache.write_text("")  # a file where the cache folder should be: nothing can be written
    got = _fake_gpu(case, cache)
    assert cause in got["why"]
    assert got["names"] == ["torch"] * 3 and got["loaded"] == []
    assert len(got["warnings"]) == 1
    assert "CuPy backend unavailable" in got["warnings"][0] and cause in got["warnings"][0]
    assert "backend='cupy' is not available" in got["explicit"] and cause in got["explicit"]


def test_cupy_is_available_once_every_source_is_built_and_loaded(tmp_path):
    got = _fake_gpu("ok", tmp_path)
    assert got["why"] == "" and got["names"] == ["cupy"] * 3 and got["warnings"] == []
    assert sorted(Path(p).name.split("-")[0] for p in got["loaded"]) == ["max_pool", "neuron"]
    assert all(build.intact(Path(p)) for p in got["loaded"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_backend_reports_unavailable_with_a_reason():
    assert kernels.available() is False
    assert kernels.why_unavailable()


def test_cupy_backend_on_a_cpu_tensor_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA"):
        PLIFNode(backend="cupy")(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="CUDA"):
        SpikeMaxPool2d(2, backend="cupy")(torch.rand(2, 1, 1, 4, 4))


def test_supports_exactly_the_surrogates_with_a_kernel_id():
    cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), False)
    assert kernels.supports(cfg)
    assert not kernels.supports(cfg._replace(surrogate_function=surrogate.QPseudoSpike()))


# ---- the kernels' per-thread bodies, run on the host ------------------------------------------


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    nvcc = shutil.which("nvcc") or (
        "/usr/local/bin/nvcc" if Path("/usr/local/bin/nvcc").exists() else None
    )
    if nvcc is None:
        pytest.skip("nvcc is not installed; the host run of the kernel bodies needs it")
    digest = hashlib.sha256(HARNESS.read_bytes() + build.source_digest().encode()).hexdigest()[:16]
    lib = tmp_path_factory.mktemp("harness") / f"harness-{digest}.so"
    subprocess.run(
        [
            nvcc,
            "-x",
            "cu",
            "-shared",
            "-Xcompiler",
            "-fPIC",
            "-Xcompiler",
            "-ffp-contract=off",
            "-O1",
            "-arch=sm_80",
            "--fmad=false",
            f"-I{build.KERNEL_DIR}",
            f"-I{build.CSRC_DIR}",
            *c_defines(),
            "-o",
            str(lib),
            str(HARNESS),
        ],
        check=True,
        capture_output=True,
    )
    dll = ctypes.CDLL(str(lib))
    ll, i, f, p = ctypes.c_longlong, ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    opts = [f, f, f, i, i, i, i, i]
    dll.host_neuron_forward.argtypes = [i, i, p, p, f, p, p, p, ll, i, *opts]
    dll.host_neuron_backward.argtypes = [i, i, p, p, p, p, f, p, p, p, ll, i, *opts]
    dll.host_max_pool.argtypes = [i, i, i, p, p, p, ll, i, i, i, i, i, i]
    return dll


def _ptr(t):
    return None if t is None else t.data_ptr()


def _options(cfg):
    sg_id, alpha = surrogate_spec(cfg.surrogate_function)
    hard = cfg.v_reset is not None
    return (
        cfg.v_threshold,
        cfg.v_reset if hard else 0.0,
        alpha,
        sg_id,
        int(hard),
        int(cfg.decay_input),
        int(cfg.detach_reset),
        int(cfg.store_v_seq),
    )


def _host_neuron(dll, x, v0, k, cfg, vec, grad_s, grad_v):
    """Forward and backward through the kernel bodies; returns s, v_out, grad_x, grad_v0, grad_k."""
    steps, neurons = x.shape[0], x[0].numel()
    s = torch.empty_like(x)
    h = torch.empty(x.shape, dtype=torch.float32)
    v_out = torch.empty(x.shape if cfg.store_v_seq else x.shape[1:], dtype=torch.float32)
    dt = DTYPE_IDS[x.dtype]
    assert (
        dll.host_neuron_forward(
            dt,
            vec,
            _ptr(x),
            _ptr(v0),
            float(k),
            _ptr(s),
            _ptr(h),
            _ptr(v_out),
            neurons,
            steps,
            *_options(cfg),
        )
        == 0
    )
    grad_x = torch.empty_like(x)
    grad_v0 = torch.empty_like(v0)
    partials = torch.empty(-(-neurons // vec // 256), dtype=torch.float32)
    assert (
        dll.host_neuron_backward(
            dt,
            vec,
            _ptr(grad_s),
            _ptr(grad_v),
            _ptr(h),
            _ptr(v0),
            float(k),
            _ptr(grad_x),
            _ptr(grad_v0),
            _ptr(partials),
            neurons,
            steps,
            *_options(cfg),
        )
        == 0
    )
    return s, v_out, grad_x, grad_v0, partials.sum()


def _torch_neuron(x, v0, k, cfg, grad_s, grad_v):
    x = x.clone().requires_grad_(True)
    v0 = v0.clone().requires_grad_(True)
    k = k.clone().requires_grad_(True)
    s, v = multi_step(x, v0, k, cfg, backend="torch")
    loss = (v * grad_v).sum()
    if grad_s is not None:
        loss = loss + (s.float() * grad_s.float()).sum()
    loss.backward()
    return s.detach(), v.detach(), x.grad, v0.grad, k.grad


SURROGATES = [
    surrogate.ATan(alpha=2.0),
    surrogate.Sigmoid(alpha=4.0),
    surrogate.PiecewiseQuadratic(alpha=1.0),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("vec", [1, 4])
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("decay_input", [True, False])
def test_kernel_bodies_match_the_torch_reference(
    harness, dtype, vec, v_reset, detach_reset, decay_input
):
    gen = torch.Generator().manual_seed(hash((vec, v_reset, detach_reset, decay_input)) % 2**31)
    steps, shape = 5, (3, 4) if vec == 4 else (7,)
    x = (torch.randn(steps, *shape, generator=gen) * 1.5 + 0.8).to(dtype)
    v0 = torch.randn(shape, generator=gen) * 0.3
    k = torch.tensor(0.4)
    for sg in SURROGATES:
        for store_v_seq in (False, True):
            cfg = NeuronConfig(decay_input, 1.0, v_reset, detach_reset, sg, store_v_seq)
            v_shape = x.shape if store_v_seq else x.shape[1:]
            grad_s = torch.randn(x.shape, generator=gen).to(dtype)
            grad_v = torch.randn(v_shape, generator=gen)
            got = _host_neuron(harness, x, v0, k, cfg, vec, grad_s, grad_v)
            want = _torch_neuron(x, v0, k, cfg, grad_s, grad_v)
            _assert_neuron_close(got, want, dtype)


def test_kernel_bodies_without_a_spike_gradient_and_across_blocks(harness):
    """grad_s = None (only V is used) and more than one block of partial sums of dL/dk."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 2 * 256 * 4 + 8, generator=gen) + 0.7
    v0 = torch.zeros(x.shape[1:])
    k = torch.tensor(0.5)
    cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), False)
    grad_v = torch.randn(x.shape[1:], generator=gen)
    for vec in (1, 4):
        got = _host_neuron(harness, x, v0, k, cfg, vec, None, grad_v)
        xr, v0r, kr = (t.clone().requires_grad_(True) for t in (x, v0, k))
        s, v = multi_step(xr, v0r, kr, cfg, backend="torch")
        (v * grad_v).sum().backward()
        _assert_neuron_close(
            got, (s.detach(), v.detach(), xr.grad, v0r.grad, kr.grad), torch.float32
        )


def _assert_neuron_close(got, want, dtype):
    s, v, gx, gv0, gk = got
    ws, wv, wgx, wgv0, wgk = want
    assert torch.equal(s, ws), "spikes differ"
    torch.testing.assert_close(v, wv, rtol=1e-6, atol=1e-6)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    torch.testing.assert_close(gx.float(), wgx.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(gv0, wgv0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gk.reshape(()), wgk.reshape(()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "kernel,hw,k2",
    [
        ((2, 2), (6, 8), True),
        ((2, 2), (5, 7), False),
        ((3, 3), (7, 9), False),
        ((2, 3), (4, 9), False),
    ],
)
def test_max_pool_bodies_match_max_pool2d(harness, dtype, kernel, hw, k2):
    gen = torch.Generator().manual_seed(7)
    spikes = (torch.rand(6, 3, *hw, generator=gen) < 0.3).float()
    ties = torch.randint(0, 3, (6, 3, *hw), generator=gen).float()  # many equal maxima
    for x in (spikes, ties):
        x = x.to(dtype)
        H, W = hw
        Ho, Wo = H // kernel[0], W // kernel[1]
        y = torch.empty(6, 3, Ho, Wo, dtype=dtype)
        arg = torch.empty(y.shape, dtype=torch.uint8)
        args = (y.numel(), H, W, Ho, Wo, *kernel)
        assert (
            harness.host_max_pool(DTYPE_IDS[dtype], 0, int(k2), _ptr(x), _ptr(arg), _ptr(y), *args)
            == 0
        )
        xr = x.float().requires_grad_(True)
        want = F.max_pool2d(xr, kernel, kernel)
        assert torch.equal(y.float(), want.detach())
        grad_y = torch.randn(y.shape, generator=gen).to(dtype)
        grad_x = torch.zeros_like(x)
        assert (
            harness.host_max_pool(
                DTYPE_IDS[dtype], 1, int(k2), _ptr(grad_y), _ptr(arg), _ptr(grad_x), *args
            )
            == 0
        )
        want.backward(grad_y.float())
        assert torch.equal(grad_x.float(), xr.grad)


@pytest.mark.parametrize("k2", [True, False])
def test_max_pool_bodies_send_the_gradient_to_the_nan_max_pool2d_picks(harness, k2):
    """A window holding NaN outputs NaN; nn.MaxPool2d's gradient goes to its last NaN."""
    nan = float("nan")
    x = torch.tensor(
        [[1.0, nan, 0.0, 1.0], [nan, 2.0, 1.0, nan], [nan, nan, 3.0, 4.0], [nan, nan, 5.0, 0.0]]
    ).view(1, 4, 4)
    y = torch.empty(1, 2, 2)
    arg = torch.empty(y.shape, dtype=torch.uint8)
    args = (y.numel(), 4, 4, 2, 2, 2, 2)
    assert harness.host_max_pool(0, 0, int(k2), _ptr(x), _ptr(arg), _ptr(y), *args) == 0
    xr = x.clone().requires_grad_(True)
    want = F.max_pool2d(xr, 2, 2)
    assert torch.equal(y.isnan(), want.isnan()) and torch.equal(y.nan_to_num(), want.nan_to_num())
    grad_y = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    grad_x = torch.zeros_like(x)
    assert harness.host_max_pool(0, 1, int(k2), _ptr(grad_y), _ptr(arg), _ptr(grad_x), *args) == 0
    want.backward(grad_y)
    assert torch.equal(grad_x, xr.grad)


# ---- the launchers (ops.py) against the emulated launch ----------------------------------------

_PTX_TYPES = {
    np.uint64: ("u64", "b64"),
    np.int64: ("u64", "s64", "b64"),
    np.int32: ("u32", "s32", "b32"),
    np.float32: ("f32",),
}
_C_TYPES = {
    np.uint64: ctypes.c_void_p,
    np.int64: ctypes.c_longlong,
    np.int32: ctypes.c_int,
    np.float32: ctypes.c_float,
}


@pytest.fixture(scope="module")
def ptx_params():
    return {
        name: p for source in build.sources() for name, p in build.kernel_params(source).items()
    }


@pytest.fixture
def emulated(harness, ptx_params, monkeypatch):
    """Replace ops._launch by the host emulation; check each argument against the kernel's PTX."""
    launched = []

    def launch(device, source, name, grid, block, args):
        assert device.type == "cpu" and name in build.entry_names(source)
        params = ptx_params[name]
        assert len(args) == len(params), (
            f"{name}: {len(args)} arguments for {len(params)} parameters"
        )
        for i, (arg, ptx_type) in enumerate(zip(args, params, strict=True)):
            assert ptx_type in _PTX_TYPES[type(arg)], (
                f"{name}: argument {i} is {type(arg).__name__}, kernel takes .{ptx_type}"
            )
        c_args = [_C_TYPES[type(a)](a.item()) for a in args]
        grid_block = (ctypes.c_longlong(grid), ctypes.c_int(block))
        if name == "sum_partials":
            rc = harness.emu_sum_partials(*grid_block, *c_args)
        else:
            kind, dtype, variant = name.rsplit("_", 2)
            dt = ("f32", "f16", "bf16").index(dtype)
            if kind == "neuron_forward":
                rc = harness.emu_neuron_forward(dt, int(variant[1:]), *grid_block, *c_args)
            elif kind == "neuron_backward":
                rc = harness.emu_neuron_backward(dt, int(variant[1:]), *grid_block, *c_args)
            else:
                rc = harness.emu_max_pool(
                    dt, int(kind == "max_pool_backward"), int(variant == "k2"), *grid_block, *c_args
                )
        assert rc == 0, f"{name}: wrong launch configuration grid={grid} block={block}"
        launched.append(name)

    monkeypatch.setattr(ops, "_launch", launch)
    yield launched
    # nothing the launch checks or the emulated kernels ran may corrupt the interpreter's shared
    # objects (it once did through build.kernel_params: see
    # test_nvrtc_writes_no_shared_python_bytes)
    assert _one_byte_bytes_intact()


def _launcher_neuron(x, v0, k, cfg, grad_s, grad_v):
    spec = surrogate_spec(cfg.surrogate_function)
    x = x.detach().requires_grad_(True)
    v0 = v0.clone().requires_grad_(True)
    k = k.clone().requires_grad_(True)
    s, v = ops.neuron(x, v0, k, cfg, spec)
    loss = (v * grad_v).sum()
    if grad_s is not None:
        loss = loss + (s.float() * grad_s.float()).sum()
    loss.backward()
    return s.detach(), v.detach(), x.grad, v0.grad, k.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("store_v_seq", [False, True])
@pytest.mark.parametrize("neurons,vec", [(8 * 129, 4), (3 * 7, 1), (2 * 256 * 4 + 4, 4)])
def test_neuron_launchers_match_the_torch_reference(emulated, dtype, store_v_seq, neurons, vec):
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(4, neurons, generator=gen) * 1.5 + 0.8).to(dtype)
    v0 = torch.randn(neurons, generator=gen) * 0.3
    k = torch.tensor(0.45)
    cfg = NeuronConfig(True, 1.0, 0.0, False, surrogate.Sigmoid(alpha=4.0), store_v_seq)
    grad_s = torch.randn(x.shape, generator=gen).to(dtype)
    grad_v = torch.randn(x.shape if store_v_seq else x.shape[1:], generator=gen)
    got = _launcher_neuron(x, v0, k, cfg, grad_s, grad_v)
    _assert_neuron_close(got, _torch_neuron(x, v0, k, cfg, grad_s, grad_v), dtype)
    d = {torch.float32: "f32", torch.bfloat16: "bf16"}[dtype]
    assert emulated == [f"neuron_forward_{d}_v{vec}", f"neuron_backward_{d}_v{vec}", "sum_partials"]


def test_neuron_launcher_in_inference_writes_no_h(emulated, monkeypatch):
    x = torch.randn(3, 2, 40) + 0.8
    v0 = torch.zeros(2, 40)
    cfg = NeuronConfig(True, 1.0, 0.0, True, surrogate.ATan(alpha=2.0), True)
    spec = surrogate_spec(cfg.surrogate_function)
    allocated = []
    real_empty = torch.empty
    monkeypatch.setattr(
        torch, "empty", lambda *a, **kw: allocated.append(a) or real_empty(*a, **kw)
    )
    with torch.no_grad():
        s, v_seq = ops.neuron(x.requires_grad_(True), v0, torch.tensor(0.5), cfg, spec)
    ws, wv = multi_step(x.detach(), v0, torch.tensor(0.5), cfg, backend="torch")
    assert torch.equal(s, ws) and torch.equal(v_seq, wv)
    assert len(allocated) == 1  # v_seq only: no H buffer
    assert emulated == ["neuron_forward_f32_v4"]


def test_neuron_launchers_fall_back_to_one_neuron_per_thread_when_misaligned(emulated):
    x = (torch.randn(3 * 64 + 1) + 0.8)[1:].view(3, 64)  # a view one float into its storage
    v0 = torch.zeros(64)
    cfg = NeuronConfig(True, 1.0, None, True, surrogate.ATan(alpha=2.0), False)
    grad_v = torch.randn(64)
    got = _launcher_neuron(x, v0, torch.tensor(0.5), cfg, None, grad_v)  # no spike gradient
    _assert_neuron_close(
        got, _torch_neuron(x, v0, torch.tensor(0.5), cfg, None, grad_v), torch.float32
    )
    # backward's tensors (H, gradients) are fresh, aligned allocations: packs again
    assert emulated == ["neuron_forward_f32_v1", "neuron_backward_f32_v4", "sum_partials"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(
    "kernel,hw,variant",
    [
        ((2, 2), (8, 10), "k2"),
        ((2, 2), (7, 10), "k2"),
        ((2, 2), (7, 9), "any"),
        ((3, 3), (9, 10), "any"),
    ],
)
def test_max_pool_launchers_match_max_pool2d(emulated, dtype, kernel, hw, variant):
    gen = torch.Generator().manual_seed(12)
    x = (torch.rand(3, 2, 5, *hw, generator=gen) < 0.3).to(dtype)
    x = x.transpose(-1, -2).contiguous().transpose(-1, -2)  # non-contiguous input
    xr = x.clone().requires_grad_(True)
    y = ops.max_pool(xr, kernel)
    xt = x.float().flatten(0, 1).requires_grad_(True)
    want = F.max_pool2d(xt, kernel, kernel)
    assert torch.equal(y.float().flatten(0, 1), want)
    grad_y = torch.randn(y.shape, generator=gen).to(dtype)
    y.backward(grad_y)
    want.backward(grad_y.float().flatten(0, 1))
    assert torch.equal(xr.grad.float().flatten(0, 1), xt.grad)
    d = {torch.float32: "f32", torch.float16: "f16"}[dtype]
    assert emulated == [f"max_pool_forward_{d}_{variant}", f"max_pool_backward_{d}_{variant}"]


# ---- the custom ops (plif_zoo::cupy_*): schema, fakes and autograd, on the emulated launch -----


@pytest.mark.parametrize("store_v_seq", [False, True])
def test_opcheck_cupy_neuron_ops(emulated, store_v_seq):
    x = (torch.randn(3, 2, 8) + 0.8).requires_grad_(True)
    v0 = torch.zeros(2, 8, requires_grad=True)
    k = torch.tensor(0.5, requires_grad=True)
    scalars = (1.0, 0.0, 2.0, 0, True, True, True, store_v_seq)
    torch.library.opcheck(ops.neuron_forward, (x, v0, k, *scalars, True))
    s, v, h = ops.neuron_forward(x, v0, k, *scalars, True)
    grad_s, grad_v = torch.randn_like(s), torch.randn_like(v)
    torch.library.opcheck(
        ops.neuron_backward,
        (grad_s, grad_v, h.detach(), v0.detach(), k.detach(), x.dtype, *scalars),
    )


def test_opcheck_cupy_max_pool_ops(emulated):
    x = (torch.rand(3, 2, 6, 7) < 0.3).float().requires_grad_(True)
    torch.library.opcheck(ops.pool_forward, (x, 2, 2))
    y, arg = ops.pool_forward(x, 2, 2)
    torch.library.opcheck(ops.pool_backward, (torch.randn_like(y), arg, list(x.shape), 2, 2))


def test_cupy_ops_trace_with_fake_cuda_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=False):
        x = torch.empty(4, 2, 3, 8, 8, device="cuda", dtype=torch.float16)
        s, v, h = ops.neuron_forward(
            x,
            x.new_zeros(x.shape[1:], dtype=torch.float32),
            torch.tensor(0.5, device="cuda"),
            1.0,
            0.0,
            2.0,
            0,
            True,
            True,
            True,
            False,
            True,
        )
        y, arg = ops.pool_forward(x, 2, 2)
    assert s.shape == x.shape and s.dtype == torch.float16 and s.device.type == "cuda"
    assert v.shape == x.shape[1:] and v.dtype == torch.float32 and h.shape == x.shape
    assert y.shape == (4, 2, 3, 4, 4) and arg.dtype == torch.uint8


# ---- the device run cannot pass without running a kernel -----------------------------------


def _load_benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_neurons", Path(__file__).resolve().parents[1] / "benchmarks" / "neurons.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_neuron_benchmark_fails_when_the_cupy_rows_failed():
    bench = _load_benchmark()
    row = dict(kind="neuron", dtype="float32", steps=8, log2=20)
    ok = {**row, "impl": "plif-zoo cupy", "ms": 1.0}
    bad = {**row, "impl": "plif-zoo cupy", "error": "ValueError: backend='cupy' is not available"}
    peer = {**row, "impl": "SJ 2.0.0", "ms": 2.0}
    assert bench.cupy_failures([ok, peer]) == ""
    assert "every plif-zoo cupy row failed" in bench.cupy_failures([bad, bad, peer])
    assert "1 of 2" in bench.cupy_failures([ok, bad, peer])
    assert "no plif-zoo cupy row" in bench.cupy_failures([peer])


def test_neuron_benchmark_report_names_its_timing_and_compares_with_ours(capsys, monkeypatch):
    bench = _load_benchmark()
    monkeypatch.setattr(bench.torch.cuda, "get_device_name", lambda: "stand-in GPU")
    row = dict(kind="neuron", dtype="float32", steps=8, log2=20)
    rows = [{**row, "impl": "plif-zoo cupy", "ms": 0.5}, {**row, "impl": "SJ 2.0.0", "ms": 1.0}]
    bench.report(rows, bandwidth=4000.0, title="one CUDA graph replay (kernels alone)")
    out = capsys.readouterr().out
    assert "stand-in GPU" in out and "neuron: one CUDA graph replay (kernels alone)" in out
    # 2^20 neurons x 8 steps x 24 B (float32) in 0.5 ms: 403 GB/s, 10.1% of 4,000 GB/s
    ours = next(ln for ln in out.splitlines() if "plif-zoo cupy" in ln)
    assert ours.split()[-4:] == ["0.500", "403", "10.1%", "1.00"]
    assert next(ln for ln in out.splitlines() if "SJ 2.0.0" in ln).split()[-1] == "2.00"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_fails_fast_and_clearly_without_a_gpu(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    done = subprocess.run(
        ["bash", str(script)],
        env=dict(os.environ, OUT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "gpu_check: FAILED" in done.stdout and "GPU" in done.stdout
    assert "gpu_check: FAILED" in (tmp_path / "gpu_check.log").read_text()
    assert not (tmp_path / "gpu_tests.xml").exists()  # no test ran
