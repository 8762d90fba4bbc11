"""``checkpoint.pt``: weights, optimizer, scheduler, scaler, every rank's RNG state and the
RunState, written atomically and loadable with ``weights_only=True``.

Format 1 (unchanged since the first release): ``format``, ``config``, ``model``, ``optimizer``,
``scheduler``, ``scaler``, ``rng`` (one entry per rank) and the keys of ``RunState.state_dict``.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write
from .config import RUNTIME_KEYS, TrainConfig
from .state import RunState

__all__ = ["CHECKPOINT", "load_checkpoint", "check_resume", "save_checkpoint", "restore_checkpoint", "rng_state"]

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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A run's checkpoint, loaded safely (``weights_only=True``)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; start the run without --resume")
    return torch.load(path, map_location="cpu", weights_only=True)


def check_resume(cfg: TrainConfig, out: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from (None for a new run).

    Refuses a resume whose recipe differs from the checkpoint's, and a new run in a folder
    that already holds one.
    """
    if not resume:
        if (out / CHECKPOINT).exists():
            raise ValueError(f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it or choose another --out")
        return None
    ckpt = load_checkpoint(out / CHECKPOINT)
    stored = ckpt["config"]
    changed = {k for k, v in dataclasses.asdict(cfg).items() if k not in RUNTIME_KEYS and stored.get(k) != v}
    if changed:
        diffs = ", ".join(f"{k}: checkpoint {stored.get(k)!r} vs now {getattr(cfg, k)!r}" for k in sorted(changed))
        raise ValueError(f"--resume with a different recipe ({diffs}); resume with the same settings or start a new --out")
    return ckpt


def save_checkpoint(path: Path, cfg: TrainConfig, state: RunState, parts: dict[str, Any], rng: list[dict]) -> None:
    """Write ``path`` atomically. ``parts``: model, optimizer, scheduler, scaler (their
    ``state_dict()`` is stored); ``rng``: every rank's :func:`rng_state`, in rank order."""
    ckpt = {
        "format": FORMAT,
        "config": dataclasses.asdict(cfg),
        **{name: part.state_dict() for name, part in parts.items()},
        "rng": rng,
        **state.state_dict(),
    }
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


def restore_checkpoint(ckpt: dict[str, Any], parts: dict[str, Any], rank: int, device: torch.device) -> RunState:
    """Load ``parts`` and this rank's RNG state from ``ckpt``; its RunState."""
    for name, part in parts.items():
        if name == "scaler" and name not in ckpt:  # written before the GradScaler was stored
            continue
        part.load_state_dict(ckpt[name])
    state = RunState()
    state.load_state_dict(ckpt)
    _set_rng_state(ckpt["rng"][rank], device)
    return state
