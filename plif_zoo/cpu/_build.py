"""Compile the CPU kernels once per machine with a C++ compiler and load them with ctypes.

The shared library is cached in ``_io.cache_dir("cpu")`` (``$PLIF_ZOO_CACHE/cpu``, default
``~/.cache/plif_zoo/cpu``), named by a hash of the sources, the flags, the compiler's version and
the CPU, and written through ``_io.atomic_write``, so concurrent processes never load a
half-written file. Its sha256 is recorded beside it (``.sha256``) and checked before every load:
a damaged cached library is rebuilt, never loaded.
``$PLIF_ZOO_CXX`` picks the compiler (default ``g++``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
from pathlib import Path

import torch

from .._io import atomic_write, cache_dir, cpu_fingerprint, digest_path, intact, sha256_file
from .._kernel_spec import c_defines

_HERE = Path(__file__).resolve().parent
SOURCES = (_HERE / "neuron.cpp", _HERE / "pool.cpp")
CSRC_DIR = _HERE.parent / "csrc"  # neuron_math.h, shared with the CUDA backend
HEADERS = (CSRC_DIR / "neuron_math.h",)
# No -ffast-math and no fp contraction: the kernels must round exactly like torch does.
# -fno-trapping-math changes no result; it lets gcc vectorise the selects of the reset.
FLAGS = (
    "-O3",
    "-std=c++17",
    "-fopenmp",
    "-shared",
    "-fPIC",
    "-ffp-contract=off",
    "-fno-trapping-math",
    *c_defines(),
)
# Tried first: code for this CPU's vector units (30% faster here). The cache key then includes
# the CPU's model and feature flags, so a home folder shared by different machines is safe.
NATIVE_FLAGS = ("-march=native",)

# the dtypes the library is compiled for, and their suffix in the exported names
SUFFIX = {torch.float32: "f32", torch.float64: "f64"}

_lock = threading.Lock()
_state: dict[str, object] = {}  # "lib" (ctypes.CDLL) or "error" (str), set once


class BuildError(RuntimeError):
    """The CPU kernels could not be compiled or loaded."""


def compiler() -> str:
    return os.environ.get("PLIF_ZOO_CXX", "g++")


def library() -> ctypes.CDLL | None:
    """The loaded kernels, compiling them on first use; None if that failed (see ``error``)."""
    with _lock:
        if not _state:
            try:
                _state["lib"] = _declare(ctypes.CDLL(str(_build())))
            except (BuildError, OSError) as err:
                _state["error"] = str(err)
        return _state.get("lib")


def require() -> ctypes.CDLL:
    """The loaded kernels, or a RuntimeError that says why there are none."""
    lib = library()
    if lib is None:
        raise RuntimeError(
            f"the compiled CPU backend is unavailable ({error()}); use backend='torch' or 'auto'"
        )
    return lib


def error() -> str:
    """Why ``library()`` returned None ('' when it did not)."""
    library()
    return str(_state.get("error", ""))


def _build() -> Path:
    cxx = shutil.which(compiler())
    if cxx is None:
        raise BuildError(
            f"C++ compiler {compiler()!r} not found; install g++ (e.g. apt-get install g++) "
            f"or point PLIF_ZOO_CXX at one"
        )
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256()
    for part in (
        cxx,
        version,
        platform.machine(),
        cpu_fingerprint(),
        " ".join(FLAGS + NATIVE_FLAGS),
    ):
        digest.update(part.encode() + b"\0")
    for path in SOURCES + HEADERS:
        digest.update(path.read_bytes() + b"\0")
    out_dir = cache_dir("cpu")
    target = out_dir / f"plif_zoo_cpu_{digest.hexdigest()[:20]}.so"
    if intact(target):
        return target
    # Absent, or damaged (a full disk, a copy cut short): loading a truncated library kills the
    # process with SIGBUS, so rebuild. The record is written after the library: a kill between
    # the two leaves a library without one, which the next process rebuilds.
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: _compile(cxx, tmp))
        atomic_write(digest_path(target), sha256_file(target) + "\n")
    except OSError as err:
        raise BuildError(
            f"cannot write the compiled kernels to {out_dir} ({err}); set PLIF_ZOO_CACHE "
            f"to a writable folder"
        ) from err
    return target


def _compile(cxx: str, out: Path) -> None:
    """Compile SOURCES into the shared library ``out``: native code first, portable if that
    fails."""
    for extra in (NATIVE_FLAGS, ()):
        cmd = [cxx, *FLAGS, *extra, "-I", str(CSRC_DIR), *map(str, SOURCES), "-o", str(out)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as err:
            raise BuildError(f"{Path(cxx).name} took over 10 minutes; gave up") from err
        if done.returncode == 0:
            return
    tail = " | ".join(done.stderr.strip().splitlines()[-3:])
    raise BuildError(f"{Path(cxx).name} failed to compile the CPU kernels: {tail}")


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Set the C signatures of the exported functions (see neuron.cpp and pool.cpp)."""
    ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        fwd = getattr(lib, f"plif_forward_{suffix}")
        # x, x_step, v_init, k, s, v_seq, v_last, steps, n, v_th, v_reset, hard, decay_input,
        # threads
        fwd.argtypes = [ptr, i64, ptr, real, ptr, ptr, ptr, i64, i64, real, real, i32, i32, i32]
        fwd.restype = None
        bwd = getattr(lib, f"plif_backward_{suffix}")
        # x, x_step, v_init, k, grad_s, grad_v_seq, grad_v_last, grad_x, grad_v_init, grad_k,
        # steps, n, v_th, v_reset, alpha, sg_id, hard, decay_input, detach, threads
        bwd.argtypes = [ptr, i64, ptr, real, *[ptr] * 6, i64, i64, real, real, real, *[i32] * 5]
        bwd.restype = i32
        pool_fwd = getattr(lib, f"plif_pool_forward_{suffix}")
        pool_fwd.argtypes = [ptr, ptr, ptr, *[i64] * 7, i32]
        pool_fwd.restype = None
        pool_bwd = getattr(lib, f"plif_pool_backward_{suffix}")
        pool_bwd.argtypes = [ptr, ptr, ptr, *[i64] * 7, i32]
        pool_bwd.restype = None
        for name in (f"plif_pool_forward_nhwc_{suffix}", f"plif_pool_backward_nhwc_{suffix}"):
            getattr(lib, name).argtypes = [ptr, ptr, ptr, *[i64] * 8, i32]  # as above, plus C
            getattr(lib, name).restype = None
    return lib
