"""``checkpoint.pt``: weights, optimizer, scheduler, scaler, every rank's RNG state and the
RunState, written atomically and loadable with ``weights_only=True``.

Format 1 (unchanged since the first release): ``format``, ``config``, ``model``, ``optimizer``,
``scheduler``, ``scaler``, ``rng`` (one entry per rank) and the keys of ``RunState.state_dict``.

Verification: ``checkpoint.pt.sha256`` (``sha256sum`` lines) records the file's sha256 when it is
written; loading checks it and names the file when a byte flipped or a copy was cut short.
While a new checkpoint replaces the old one the record lists both, so a kill at any moment
leaves a file that matches it. Checkpoints written before the record existed are checked by
the CRC32 that ``torch.save``'s zip container stores for every entry.
"""

from __future__ import annotations

import dataclasses
import os
import random
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .._io import atomic_write, digest_path, sha256_file
from ..errors import CheckpointError
from .config import RUNTIME_KEYS, TrainConfig
from .run_lock import disk_errors
from .state import RunState

__all__ = [
    "CHECKPOINT",
    "load_checkpoint",
    "check_resume",
    "save_checkpoint",
    "restore_checkpoint",
    "rng_state",
]

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's torch, Python (and CUDA) RNG states."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuplify(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _tuplify(x):
    # weights_only loading turns the tuples of random.getstate() into lists
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def _recorded(sums: Path) -> list[str] | None:
    """The sha256 values in a checksum file (None when there is none)."""
    try:
        text = sums.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{sums} cannot be read ({err}); delete it to resume without the check"
        ) from err
    digests = [line.split()[0].lower() for line in text.splitlines() if line.strip()]
    if not digests or any(len(d) != 64 or set(d) - set("0123456789abcdef") for d in digests):
        raise CheckpointError(
            f"{sums} is not a sha256 record of {CHECKPOINT}; delete it to resume without the check"
        )
    return digests


def _sha256_fd(f: BinaryIO) -> str:
    import hashlib

    f.seek(0)
    digest = hashlib.file_digest(f, "sha256").hexdigest()
    f.seek(0)
    return digest


def _check_zip_crc(f: BinaryIO, path: Path) -> None:
    """A checkpoint without a recorded sha256: the zip container's CRC32 of every entry."""
    try:
        with zipfile.ZipFile(f) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is damaged or truncated ({err}); restore it or start a new --out"
        ) from err
    if bad is not None:
        raise CheckpointError(
            f"{path} is damaged: entry {bad} fails its CRC; restore it or start a new --out"
        )
    f.seek(0)


def _verify(f: BinaryIO, path: Path) -> bool:
    """Check the open file ``f`` of ``path`` against its record (or its zip CRCs when it has none).

    False when a training replaced the file or its record meanwhile (open it again); a
    CheckpointError when the bytes do not match a record that stayed put."""
    sums = digest_path(path)  # sha256sum lines of the accepted contents
    before = _recorded(sums)
    if before is None:
        _check_zip_crc(f, path)
        return True
    digest = _sha256_fd(f)
    if digest in before:
        return True
    if _recorded(sums) != before or os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
        return False
    raise CheckpointError(
        f"{path} is damaged: its sha256 {digest[:16]}... differs from the one recorded in "
        f"{sums.name} "
        f"when it was written (a changed byte or a copy cut short); restore it or start a new --out"
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A run's checkpoint, verified (see the module's docstring) and loaded with
    ``weights_only=True``."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    for _ in range(5):  # a training writing a new checkpoint meanwhile: read it again
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}; start the run without --resume")
        with open(path, "rb") as f:  # one descriptor: the bytes checked are the bytes loaded
            if not _verify(f, path):
                continue
            try:
                return torch.load(f, map_location="cpu", weights_only=True)
            except (
                Exception
            ) as err:  # torch raises RuntimeError, UnpicklingError, EOFError ... on bad bytes
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise CheckpointError(
                    f"{path} cannot be loaded as a checkpoint ({first}); "
                    f"restore it or start a new --out"
                ) from err
    raise CheckpointError(
        f"{path} kept changing while it was read; stop the training that writes it first"
    )


def check_resume(
    cfg: TrainConfig, out: Path, resume: bool, world: int = 1
) -> dict[str, Any] | None:
    """The checkpoint to resume from (None for a new run).

    Refuses a resume whose recipe or number of processes (``world``) differs from the
    checkpoint's, and a new run in a folder that already holds one.
    """
    if not resume:
        if (out / CHECKPOINT).exists():
            raise ValueError(
                f"{out} already holds a run ({CHECKPOINT}); "
                f"pass --resume to continue it or choose another --out"
            )
        return None
    ckpt = load_checkpoint(out / CHECKPOINT)
    stored = ckpt["config"]
    changed = {
        k
        for k, v in dataclasses.asdict(cfg).items()
        if k not in RUNTIME_KEYS and stored.get(k) != v
    }
    if changed:
        diffs = ", ".join(
            f"{k}: checkpoint {stored.get(k)!r} vs now {getattr(cfg, k)!r}" for k in sorted(changed)
        )
        raise ValueError(
            f"--resume with a different recipe ({diffs}); "
            f"resume with the same settings or start a new --out"
        )
    if len(ckpt["rng"]) != world:  # one RNG state per rank; each rank has its own data shard
        raise ValueError(
            f"{out} was trained by {len(ckpt['rng'])} process(es), not {world}: resume it with "
            f"the same torchrun --nproc-per-node (or without torchrun for 1), or start a new --out"
        )
    return ckpt


def save_checkpoint(
    path: Path, cfg: TrainConfig, state: RunState, parts: dict[str, Any], rng: list[dict]
) -> None:
    """Write ``path`` atomically with its sha256 record. ``parts``: model, optimizer, scheduler,
    scaler (their ``state_dict()`` is stored); ``rng``: every rank's :func:`rng_state`, in rank
    order.

    On a full disk the previous checkpoint stays, matching its record, and no temporary file is
    left.
    """
    ckpt = {
        "format": FORMAT,
        "config": dataclasses.asdict(cfg),
        **{name: part.state_dict() for name, part in parts.items()},
        "rng": rng,
        **state.state_dict(),
    }
    sums = digest_path(path)
    try:
        previous = _recorded(sums)
    except CheckpointError:  # an unreadable record is rewritten, not a reason to stop training
        previous = None
    if previous is None:  # first checkpoint, or one written before the records: hash what is there
        previous = [sha256_file(path)] if path.is_file() else []
    written: list[str] = []

    def write(tmp: Path) -> None:
        torch.save(ckpt, tmp)
        written.append(sha256_file(tmp))
        # Before the rename: both the old and the new file match the record.
        atomic_write(sums, _sha256_lines([written[0], *previous]))

    with disk_errors("checkpoint", path, "the previous checkpoint is intact"):
        atomic_write(path, write)
        atomic_write(sums, _sha256_lines(written))


def _sha256_lines(digests: list[str]) -> str:
    return "".join(f"{d}  {CHECKPOINT}\n" for d in dict.fromkeys(digests))


def restore_checkpoint(
    ckpt: dict[str, Any], parts: dict[str, Any], rank: int, device: torch.device
) -> RunState:
    """Load ``parts`` and this rank's RNG state from ``ckpt``; its RunState."""
    for name, part in parts.items():
        if name == "scaler" and not ckpt.get(name):
            # stored before the GradScaler was, or stored disabled (a CPU run resumed on CUDA
            # with --amp): a fresh scaler
            continue
        part.load_state_dict(ckpt[name])
    state = RunState()
    state.load_state_dict(ckpt)
    _set_rng_state(ckpt["rng"][rank], device)
    return state
