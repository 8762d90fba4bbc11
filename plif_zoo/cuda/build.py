"""Compiling the .cu sources with NVRTC (through ``cuda-bindings``) and loading them into CuPy.

The same :func:`compile_cubin` serves two callers: ``python -m plif_zoo.cuda
--compile-only`` (CI, no GPU or driver needed) and the runtime, which compiles once per
device architecture, caches the cubin on disk and loads it with ``cupy.RawModule``.
Every kernel is an ``extern "C"`` entry named ``{kind}_{dtype}_{variant}``; the lists
below are the single source of the names the launchers use.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .._io import atomic_write, cache_dir, digest_path, intact
from .._kernel_spec import c_defines

KERNEL_DIR = Path(__file__).resolve().parent
CSRC_DIR = KERNEL_DIR.parent / "csrc"  # neuron_math.h, shared with the CPU backend
SYSTEM_INCLUDE_DIRS = ("/usr/local/cuda/include",)  # the toolkit's usual place, tried last
# the storage dtypes the kernels are instantiated for, and their names in entry names
DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
}

# source file -> (kind, variant) pairs; each pair exists once per dtype.
_ENTRIES: dict[str, tuple[tuple[str, str], ...]] = {
    "max_pool.cu": tuple(
        (kind, variant)
        for kind in ("max_pool_forward", "max_pool_backward")
        for variant in ("any", "k2")
    ),
    "neuron.cu": tuple(
        (kind, variant)
        for kind in ("neuron_forward", "neuron_backward")
        for variant in ("v1", "v4")
    ),
}
# dtype-independent entries
_PLAIN_ENTRIES: dict[str, tuple[str, ...]] = {"neuron.cu": ("sum_partials",)}


def sources() -> tuple[str, ...]:
    """The .cu files that hold kernels."""
    return tuple(_ENTRIES)


def entry_name(kind: str, dtype: str, variant: str) -> str:
    return f"{kind}_{dtype}_{variant}"


def entry_names(source: str) -> list[str]:
    """Every kernel entry that ``source`` must define."""
    names = [
        entry_name(kind, dtype, variant)
        for kind, variant in _ENTRIES[source]
        for dtype in DTYPE_NAMES.values()
    ]
    return names + list(_PLAIN_ENTRIES.get(source, ()))


def cuda_include_dir() -> str:
    """The folder holding cuda_fp16.h / cuda_bf16.h: $CUDA_PATH or $CUDA_HOME when set (the
    user's choice wins, e.g. CUDA 12 headers for NVRTC 12), else the pip wheel, else
    SYSTEM_INCLUDE_DIRS."""
    candidates = [
        os.path.join(os.environ[var], "include")
        for var in ("CUDA_PATH", "CUDA_HOME")
        if os.environ.get(var)
    ]
    try:
        from cuda.pathfinder import find_nvidia_header_directory

        candidates.append(find_nvidia_header_directory("cudart"))
    except Exception:  # old or missing cuda-pathfinder: try the usual place below
        pass
    candidates.extend(SYSTEM_INCLUDE_DIRS)
    for folder in candidates:
        if folder and os.path.isfile(os.path.join(folder, "cuda_fp16.h")):
            return folder
    raise RuntimeError(
        f"cannot find the CUDA headers (cuda_fp16.h); install them with "
        f"`pip install {_wheel('nvidia-cuda-runtime')}` or set CUDA_PATH to a CUDA toolkit"
    )


def _bindings_major() -> int:
    """The CUDA major version of the installed cuda-bindings (12 or 13), 0 when unknown."""
    try:
        from cuda.bindings import __version__
    except ImportError:
        return 0
    return int(__version__.split(".")[0])


def _wheel(name: str) -> str:
    """The pip package of a CUDA component for the installed cuda-bindings: CUDA 12's carry a
    -cu12 suffix, CUDA 13's none."""
    return f"{name}-cu12" if _bindings_major() == 12 else name


def compile_options(arch: str) -> list[str]:
    """NVRTC options; ``arch`` like ``sm_90``. No fast math: results must match torch's."""
    check_arch(arch)
    return [
        f"--gpu-architecture={arch}",
        "-std=c++17",
        "--fmad=false",  # neuron_math.h follows torch's operation order: no contraction
        "--ptxas-options=-v",
        f"-I{KERNEL_DIR}",
        f"-I{CSRC_DIR}",
        f"-I{cuda_include_dir()}",
        *c_defines(),
    ]


def source_digest() -> str:
    """Hash of every kernel source and header: a changed header invalidates cached cubins."""
    h = hashlib.sha256()
    for path in sorted([*KERNEL_DIR.iterdir(), *CSRC_DIR.iterdir()]):
        if path.suffix in (".cu", ".cuh", ".h"):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


class CompileError(RuntimeError):
    """NVRTC rejected a source; the message holds its log."""


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as err:
        raise RuntimeError(
            "compiling the CUDA kernels needs NVRTC through cuda-bindings: "
            "`pip install cuda-bindings nvidia-cuda-nvrtc`"
        ) from err
    return nvrtc


def _check(result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise CompileError(f"NVRTC {what} failed: {err!r}")
    return rest[0] if len(rest) == 1 else rest


def nvrtc_version() -> str:
    """ "13.0" and so on; a RuntimeError naming the package when libnvrtc cannot be loaded."""
    nvrtc = _nvrtc()
    try:
        major, minor = _check(nvrtc.nvrtcVersion(), "nvrtcVersion")
    except CompileError:
        raise
    except Exception as err:  # cuda.pathfinder's DynamicLibNotFoundError: the module imports
        # without libnvrtc and fails at its first call
        raise RuntimeError(
            f"the NVRTC library cannot be loaded ({type(err).__name__}: {err}); install it with "
            f"`pip install {_wheel('nvidia-cuda-nvrtc')}`"
        ) from err
    return f"{major}.{minor}"


def supported_archs() -> list[int]:
    """The SM numbers (80, 90, ...) this NVRTC compiles for."""
    nvrtc_version()  # a clear error when the library is missing
    count = _check(_nvrtc().nvrtcGetNumSupportedArchs(), "nvrtcGetNumSupportedArchs")
    return list(_check(_nvrtc().nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs"))[:count]


def check_toolchain(arch: str) -> None:
    """Raise RuntimeError naming what compiling for ``arch`` lacks: the NVRTC library, NVRTC
    support for this arch (NVRTC 13 dropped sm_70/72; NVRTC 12 lacks the newest), the headers."""
    number = int(re.sub(r"\D", "", check_arch(arch)))
    archs = supported_archs()
    if number not in archs:
        raise RuntimeError(
            f"NVRTC {nvrtc_version()} cannot compile for {arch} (it supports sm_{min(archs)} to "
            f"sm_{max(archs)}); install an NVRTC for this GPU: `pip install plif-zoo[cuda12]` "
            f"for sm_70/72, `pip install plif-zoo[cuda]` (CUDA 13) for the newest GPUs"
        )
    cuda_include_dir()


def check_arch(arch: str) -> str:
    """``arch`` checked to look like sm_80 / compute_90 / sm_90a."""
    if not re.fullmatch(r"(sm|compute)_\d{2,3}[af]?", arch):
        raise ValueError(f"arch must look like 'sm_80' or 'sm_90', got {arch!r}")
    return arch


def compile_cubin(source: str, arch: str) -> tuple[bytes, str]:
    """Compile ``source`` (a file name in this folder) for ``arch``; returns (cubin, log)."""
    return _compile(source, arch, ptx=False)


def kernel_params(source: str) -> dict[str, list[str]]:
    """Entry name -> PTX parameter types (``u64``, ``u32``, ``f32``...), from the compiled PTX.

    The launchers' argument tuples are checked against these (tests), since a wrong scalar
    width would silently shift every later kernel argument on the GPU.
    """
    entries = re.findall(r"\.entry\s+(\w+)\s*\((.*?)\)", compile_ptx(source), flags=re.S)
    return {name: re.findall(r"\.param\s+\.(\w+)", params) for name, params in entries}


def compile_ptx(source: str, arch: str = "compute_80") -> str:
    """The PTX of ``source`` (for reading what the compiler made of it)."""
    return _compile(source, arch, ptx=True)[0].rstrip(b"\0 ").decode()


def _compile(source: str, arch: str, ptx: bool) -> tuple[bytes, str]:
    # NVRTC writes its log / PTX / cubin into the buffer it is given: always a fresh, mutable
    # bytearray. Never a bytes object: `b" " * 1` (the 1-byte log of a compile that printed
    # nothing, e.g. every PTX compile) is CPython's shared singleton b" ", and NVRTC's NUL
    # terminator would turn every b" " in the process into b"\0".
    nvrtc = _nvrtc()
    text = (KERNEL_DIR / source).read_bytes()
    prog = _check(nvrtc.nvrtcCreateProgram(text, source.encode(), 0, [], []), "create")
    try:
        opts = [o.encode() for o in compile_options(arch)]
        (status,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        size = _check(nvrtc.nvrtcGetProgramLogSize(prog), "log size")
        log = bytearray(size)
        _check(nvrtc.nvrtcGetProgramLog(prog, log), "log")
        log_text = bytes(log).rstrip(b"\0 ").decode(errors="replace")
        if int(status) != 0:
            raise CompileError(f"{source} does not compile for {arch}:\n{log_text}")
        if ptx:
            size = _check(nvrtc.nvrtcGetPTXSize(prog), "ptx size")
            code = bytearray(size)
            _check(nvrtc.nvrtcGetPTX(prog, code), "ptx")
        else:
            size = _check(nvrtc.nvrtcGetCUBINSize(prog), "cubin size")
            code = bytearray(size)
            _check(nvrtc.nvrtcGetCUBIN(prog, code), "cubin")
        return bytes(code), log_text
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


@dataclass(frozen=True)
class Usage:
    """ptxas's resource report for one kernel entry."""

    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int


def parse_ptxas_log(log: str) -> dict[str, Usage]:
    """Kernel name -> Usage, from the ``--ptxas-options=-v`` part of an NVRTC log."""
    usages: dict[str, Usage] = {}
    current = None
    frame = (0, 0, 0)
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            current, frame = m.group(1), (0, 0, 0)
            continue
        m = re.search(
            r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line
        )
        if m and current:
            frame = tuple(int(g) for g in m.groups())
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and current:
            usages[current] = Usage(int(m.group(1)), frame[1], frame[2], frame[0])
            current = None
    return usages


def cached_cubin(source: str, arch: str) -> Path:
    """The cubin of ``source`` for ``arch``, compiled on first use and cached on disk
    (``_io.cache_dir("cuda")``) with its sha256 beside it (``.sha256``). A cached cubin whose
    hash does not match (a full disk, a copy cut short) is rebuilt, never loaded; concurrent
    writers race harmlessly to identical files."""
    key = hashlib.sha256(
        "\0".join([source_digest(), arch, nvrtc_version(), *compile_options(arch)]).encode()
    ).hexdigest()[:24]
    path = cache_dir("cuda") / f"{Path(source).stem}-{arch}-{key}.cubin"
    if not intact(path):
        check_toolchain(arch)
        cubin, _ = compile_cubin(source, arch)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, cubin)
            atomic_write(digest_path(path), hashlib.sha256(cubin).hexdigest() + "\n")
        except OSError as err:
            raise RuntimeError(
                f"cannot write the compiled kernels to {path.parent} ({err}); set PLIF_ZOO_CACHE "
                f"to a writable folder"
            ) from err
    return path
