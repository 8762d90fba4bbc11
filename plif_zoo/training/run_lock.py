"""One training per run folder: a lock file held for the whole run, and disk errors as one line.

The lock is ``fcntl.flock`` on ``{out}/train.lock``: the kernel drops it when its process
dies, so a killed run never leaves the folder stuck. The file names the holder (pid, host,
start time) for the message a second training prints.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._io import atomic_write
from ..errors import RunFolderError, RunLockedError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not guarded there
    fcntl = None

__all__ = ["LOCK_FILE", "RunLock", "check_writable", "disk_errors", "remove_stale_temps"]

LOCK_FILE = "train.lock"


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


@contextmanager
def disk_errors(what: str, path: Path, after: str = "") -> Iterator[None]:
    """Turn an OSError while writing ``path`` into a one-line RunFolderError (same errno).

    ``what``: the thing written ("checkpoint", "best/"); ``after``: what still holds, e.g.
    "the previous checkpoint is intact".
    """
    try:
        yield
    except RunFolderError:
        raise
    except OSError as err:
        hint = (
            "free some space"
            if err.errno == errno.ENOSPC
            else "make it writable or choose another --out"
        )
        tail = f"; {after}" if after else ""
        raise RunFolderError(
            err.errno, f"cannot write {what} {path}: {_reason(err)}{tail}; {hint}"
        ) from err


def check_writable(folder: Path, role: str = "run folder") -> None:
    """Create ``folder`` if needed and prove a file can be written there (atomically, then removed).

    Raises RunFolderError before any data is read or any training starts.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(
            errno.ENOTDIR, f"{role} {folder} is a file, not a folder; choose another path"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = atomic_write(folder / ".plif-zoo-write-test", b"")
        probe.unlink()
    except OSError as err:
        raise RunFolderError(
            err.errno,
            f"{role} {folder} is not writable ({_reason(err)}); "
            f"make it writable or choose another folder",
        ) from err


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (``.NAME.*.tmp`` of
    ``atomic_write``, ``checkpoint.pt.tmp`` of older releases). Call only while holding the lock."""
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    stale += [p for p in folder.glob("*.pt.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


class RunLock:
    """``flock`` on ``{folder}/train.lock`` until :meth:`release` (or the process ends).

    Raises RunLockedError naming the folder and the holder when another process has it.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.fd = -1
        self.created = False  # the folder is new: a run that fails at once leaves no trace

    def acquire(self) -> RunLock:
        self.created = not self.folder.exists()
        check_writable(self.folder)
        if fcntl is None:
            return self
        try:
            # Opened in place, never replaced: the lock lives on this inode, so atomic_write
            # (a new inode per write) cannot be used for this one file.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunFolderError(
                err.errno, f"cannot create the lock file {self.path}: {_reason(err)}"
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise RunLockedError(
                errno.EBUSY,
                f"{self.folder} is in use by another training ({holder}); wait for it to finish, "
                f"stop it, or choose another --out",
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        note = f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Unlock. The file stays (removing it would race with a process about to lock it),
        except in a folder this lock created that holds nothing else: both go."""
        if self.fd >= 0:
            if self.created and [p.name for p in self.folder.iterdir()] == [LOCK_FILE]:
                self.path.unlink(missing_ok=True)
                self.folder.rmdir()
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
