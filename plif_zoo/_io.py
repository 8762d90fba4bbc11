"""Small helpers shared by every layer: atomic writes, sha256, the cache folder, the CPU name,
the installed version.

A leaf module: it imports nothing from plif_zoo. Every file the package writes (weights,
configs, checkpoints, CSVs, figures, compiled kernels) goes through :func:`atomic_write`, so a
kill or a full disk leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "atomic_write",
    "sha256_file",
    "digest_path",
    "intact",
    "cache_dir",
    "cpu_name",
    "cpu_fingerprint",
    "library_version",
    "LIBRARY_NAME",
]

LIBRARY_NAME = "plif-zoo"  # the distribution name: pip, Hub library_name, safetensors metadata


def library_version() -> str:
    """The installed plif-zoo version (set once, in pyproject.toml); ``0+unknown`` for a source
    tree on sys.path that was never pip-installed."""
    try:
        return importlib.metadata.version(LIBRARY_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[Path], None]) -> Path:
    """Write ``path`` through a unique temporary name in its folder, fsync, then rename.

    ``data`` is the content (``str`` is written as UTF-8) or a writer ``f(tmp_path)`` that
    creates the file itself (``torch.save``, ``safetensors.torch.save_file``, ``fig.savefig``).
    On any failure the temporary file is removed and the old ``path`` is left untouched.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        if callable(data):
            os.close(fd)
            fd = -1
            data(tmp)
            fd = os.open(tmp, os.O_RDONLY)
        else:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data.encode() if isinstance(data, str) else data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process umask, read from /proc on Linux: setting it (the portable way to read it)
    would give files that other threads (TensorBoard, DataLoader) create meanwhile mode 0666."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_path(path: Path) -> Path:
    """Where the sha256 of a file is recorded: ``<name>.sha256`` beside it (cached builds,
    training checkpoints)."""
    return path.with_name(path.name + ".sha256")


def intact(path: Path) -> bool:
    """Whether the cached build ``path`` exists and hashes to the sha256 recorded beside it.

    A build is cached as the file, then its record (both through :func:`atomic_write`); a kill
    between the two leaves a file without a record, which counts as damaged and is rebuilt.
    """
    try:
        return digest_path(path).read_text().strip() == sha256_file(path)
    except OSError:  # no build, or no record (a build from before records were kept)
        return False


def cache_dir(kind: str) -> Path:
    """Folder of compiled artefacts of one ``kind`` (``"cpu"`` or ``"cuda"``).

    ``$PLIF_ZOO_CACHE/<kind>`` when set, else ``$XDG_CACHE_HOME/plif_zoo/<kind>``
    (``~/.cache/plif_zoo/<kind>``). Not created here.
    """
    root = os.environ.get("PLIF_ZOO_CACHE")
    if root:
        return Path(root).expanduser() / kind
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "plif_zoo" / kind


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.readlines()
    except OSError:
        return []


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_fingerprint() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags."""
    keys = ("model name", "flags", "Features", "CPU part")
    lines = sorted({line for line in _cpuinfo() if line.startswith(keys)})
    return "".join(lines) or platform.processor()
