"""Rank 0's outputs in the run folder: ``metrics.csv``, ``tau.csv`` (tau of every PLIF layer,
epoch 0 = init), TensorBoard events in ``tb/``, ``summary.json``, ``config.json`` and ``best/``,
a zoo model folder of the epoch with the best validation accuracy. Every file is written
atomically (``plif_zoo._io.atomic_write``)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from spikingjelly.activation_based import neuron
from torch import nn

from .._io import atomic_write, cpu_name
from ..factory import save_pretrained
from ..model_folder import CONFIG_NAME, WEIGHTS_NAME, read_config
from ..registry import list_models
from .config import TrainConfig, dataset_of
from .run_lock import disk_errors
from .state import RunState

__all__ = [
    "RunWriter",
    "plif_taus",
    "hardware_name",
    "write_summary",
    "save_best",
    "recover_best",
    "drop_previous_best",
]


def plif_taus(model: nn.Module) -> dict[str, float]:
    """tau = 1 / sigmoid(w) of every layer with a learnable decay (PLIF), by module name."""
    taus = {}
    for name, m in model.named_modules():
        w = getattr(m, "w", None)
        if isinstance(m, neuron.BaseNode) and isinstance(w, nn.Parameter) and w.numel() == 1:
            taus[name] = 1.0 / torch.sigmoid(w.detach().float()).item()
    return taus


class RunWriter:
    """metrics.csv, tau.csv and TensorBoard events; does nothing unless ``enabled`` (rank 0)."""

    def __init__(self, out: Path, enabled: bool, purge_step: int | None):
        self.out = out
        self.enabled = enabled
        self.tb = None
        if enabled:
            out.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"), purge_step=purge_step)
            except ImportError:
                print(
                    "tensorboard is not installed: no TensorBoard events (pip install tensorboard)",
                    file=sys.stderr,
                )

    def write_config(self, cfg: TrainConfig) -> None:
        if self.enabled:
            with disk_errors("the run's config", self.out / "config.json"):
                atomic_write(
                    self.out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2)
                )

    def write_tables(self, history: list[dict], taus: list[dict]) -> None:
        if not self.enabled:
            return
        _write_csv(self.out / "metrics.csv", history)
        _write_csv(self.out / "tau.csv", taus)

    def scalars(self, row: dict, tau_row: dict) -> None:
        if self.tb is None:
            return
        step = row["epoch"]
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)) and v == v:
                self.tb.add_scalar(
                    k.replace("_", "/", 1) if k.startswith(("train_", "val_", "test_")) else k,
                    v,
                    step,
                )
        for k, v in tau_row.items():
            if k != "epoch":
                self.tb.add_scalar(f"tau/{k}", v, step)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _write_csv(path: Path, rows: list[dict]) -> None:
    """All rows with the union of their keys as header (a column may start mid-run)."""
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    with disk_errors("the table", path):
        atomic_write(path, text.getvalue())


def hardware_name(device: torch.device, threads: int, world: int) -> str:
    """The GPU's name, or the CPU's with cores and threads; ``N x`` under torchrun."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{cpu_name()} CPU ({os.cpu_count()} cores), {threads} threads"
    return what if world == 1 else f"{world} x {what}"


def write_summary(out: Path, cfg: TrainConfig, state: RunState, hardware: str) -> None:
    """summary.json: both protocols over the run so far (the best/ card is frozen at its epoch)."""
    history = state.history
    best = next((r for r in history if r["epoch"] == state.best_epoch), None)
    summary = {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "epochs_done": len(history),
        "accuracy_a": max(r["test_top1"] for r in history),
        "accuracy_a_epoch": max(history, key=lambda r: r["test_top1"])["epoch"],
        "accuracy_b": best["test_top1"] if best else None,
        "accuracy_b_epoch": state.best_epoch or None,
        "val_top1_at_b": best["val_top1"] if best else None,
        "val_samples": history[-1].get("val_samples"),
        "test_samples": history[-1]["test_samples"],
        "taus_at_b": next((t for t in state.taus if t["epoch"] == state.best_epoch), None),
        "train_wall_s": state.wall_s,
        "hardware": hardware,
        "recipe": {
            k: getattr(cfg, k)
            for k in ("batch_size", "lr", "t_max", "seed", "T", "amp", "val_fraction", "epochs")
        },
    }
    with disk_errors("the summary", out / "summary.json"):
        atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")


def _card(
    cfg: TrainConfig, row: dict, hardware: str, wall_s: float, taus: dict[str, float]
) -> dict[str, Any]:
    """The model-card fields of ``best/`` for the epoch of ``row``."""
    percent = {
        "test_top1": row["test_top1"],
        "val_top1": row.get("val_top1"),
        "accuracy_a": row["accuracy_a"],
        "accuracy_b": row.get("accuracy_b"),
    }
    protocol = (
        f"accuracy-B: model of the epoch with the best validation top-1 "
        f"({row.get('val_samples')} images held out from the training set, "
        f"first {cfg.val_fraction:.0%} of each class); "
        f"test top-1 on {row['test_samples']} test images"
        if cfg.val_fraction > 0
        else f"accuracy-A: best test top-1 during training ({row['test_samples']} test images)"
    )
    card: dict[str, Any] = {
        "dataset": cfg.dataset,
        "metrics": {k: round(100.0 * v, 4) for k, v in percent.items() if v is not None},
        "protocol": protocol,
        "recipe": {
            k: v
            for k, v in dataclasses.asdict(cfg).items()
            if k not in ("out", "data_dir", "device", "threads", "num_workers")
        },
        "hardware": hardware,
        "train_wall_time_s": round(wall_s, 1),
        "best_epoch": row["epoch"],
        "test_samples": row["test_samples"],
        "val_samples": row.get("val_samples"),
        "learned_taus": taus,
    }
    if cfg.model in list_models() and cfg.dataset == dataset_of(cfg.model) and not cfg.pretrained:
        card["model_id"] = cfg.model
    else:  # fine-tuned or custom: not the registry's model
        card["base_model"] = cfg.model
    if Path(sys.argv[0]).name == "plif-zoo":
        card["command"] = " ".join(["plif-zoo", *sys.argv[1:]])
    return card


def recover_best(out: Path, best_epoch: int | None = None) -> None:
    """Bring ``best/`` back to one complete folder after a kill during :func:`save_best` or
    before the checkpoint that follows it.

    The swap runs best.tmp (built) -> best -> best.old -> best.tmp -> best; ``best.old`` goes
    only once the epoch's checkpoint is written (:func:`drop_previous_best`). So ``best.old``
    without ``best`` is complete and matches the checkpoint; ``best.tmp`` is unfinished or not
    yet published. ``best`` beside a complete ``best.old`` is newer than the checkpoint when
    the kill came before it: with ``best_epoch`` (the checkpoint's, see
    :meth:`RunState.best_model_epoch`) the folder of that epoch stays; without it ``best``
    does. Call only while holding the run's lock.
    """
    best, old, tmp = out / "best", out / "best.old", out / "best.tmp"
    if not best.exists() and _complete(old):
        os.replace(old, best)
    elif best_epoch is not None and _complete(old) and _epoch_of(best) != best_epoch:
        if _epoch_of(old) == best_epoch:  # best/ is of an epoch the checkpoint never saw
            shutil.rmtree(best)
            os.replace(old, best)
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)


def _complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in (CONFIG_NAME, WEIGHTS_NAME))


def _epoch_of(folder: Path) -> int | None:
    """The epoch whose weights a best/ folder holds (its card's ``best_epoch``)."""
    try:
        return read_config(folder).get("card", {}).get("best_epoch")
    except (OSError, ValueError):  # missing, damaged or not a model folder's config
        return None


def drop_previous_best(out: Path) -> None:
    """Remove ``best.old`` once the checkpoint of the epoch that replaced it is written."""
    shutil.rmtree(out / "best.old", ignore_errors=True)


def save_best(
    model: nn.Module, out: Path, cfg: TrainConfig, row: dict, hardware: str, wall_s: float
) -> None:
    """Replace ``out/best`` with a zoo model folder of ``model``: built in ``best.tmp``, then
    swapped in (the previous one is kept as ``best.old`` until the epoch's checkpoint is written).

    A kill at any point leaves a state :func:`recover_best` repairs; a full disk leaves the
    previous ``best/`` and no ``best.tmp``."""
    recover_best(out)
    tmp = out / "best.tmp"
    try:
        with disk_errors("best/", tmp, "the previous best/ is intact"):
            save_pretrained(model, tmp, **_card(cfg, row, hardware, wall_s, plif_taus(model)))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    best = out / "best"
    old = out / "best.old"
    if best.exists():
        os.replace(best, old)
    os.replace(tmp, best)  # best.old stays until the checkpoint: drop_previous_best
