"""Named state of a run: running totals (Tally), what a checkpoint restores (RunState), and
what ``train`` returns (TrainResult)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .runtime import Dist, all_sum

__all__ = ["Tally", "RunState", "TrainResult"]


@dataclass
class Tally:
    """Running sums over the samples seen: loss x samples, correct predictions, samples."""

    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0.0

    def add(self, loss_sum: float, correct: float, seen: float) -> None:
        self.loss_sum += loss_sum
        self.correct += correct
        self.seen += seen

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.loss_sum + other.loss_sum, self.correct + other.correct, self.seen + other.seen
        )

    def all_reduce(self, dist_info: Dist, device: torch.device) -> Tally:
        """The sums over every rank (self, single process)."""
        return Tally(*all_sum(self.as_list(), dist_info, device))

    def as_list(self) -> list[float]:
        """``[loss_sum, correct, seen]``: the checkpoint's ``running`` entry."""
        return [self.loss_sum, self.correct, self.seen]

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def top1(self) -> float:
        return self.correct / max(self.seen, 1)


@dataclass
class RunState:
    """Where a run stands: the position (epoch, step in it, totals of the steps before it), the
    per-epoch history, the best validation epoch (accuracy-B) and the training time so far.

    ``state_dict()`` keys are those of the checkpoint format 1, so checkpoints written before
    this class existed still resume.
    """

    epoch: int = 0  # finished epochs
    step: int = 0  # finished steps of epoch ``epoch`` (mid-epoch checkpoints)
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv rows
    taus: list[dict[str, Any]] = field(default_factory=list)  # tau.csv rows, epoch 0 = init
    best_val: float = -1.0
    best_test: float = -1.0  # test top-1 at the best validation epoch: accuracy-B
    best_epoch: int = 0
    wall_s: float = 0.0  # training time, without evaluation and checkpoints
    running: Tally = field(default_factory=Tally)  # all ranks' totals of the first ``step`` steps

    def state_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["running"] = self.running.as_list()
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, d[f.name])
        self.running = Tally(*d["running"])

    def next_epoch(self) -> None:
        self.epoch, self.step, self.running = self.epoch + 1, 0, Tally()

    def best_model_epoch(self, before: int | None = None) -> int | None:
        """The epoch whose weights best/ holds: the best validation epoch, or without
        validation the first epoch of the best test top-1 (None before the first epoch).
        ``before``: as it was before epoch ``before`` was added."""
        rows = [h for h in self.history if before is None or h["epoch"] < before]
        if not rows:
            return None
        key = "val_top1" if "val_top1" in rows[0] else "test_top1"
        return max(rows, key=lambda h: h[key])["epoch"]  # max keeps the first of ties

    @property
    def accuracy_a(self) -> float:
        """Best test top-1 over the finished epochs (0 before the first)."""
        return max([h["accuracy_a"] for h in self.history], default=0.0)


@dataclass
class TrainResult:
    """What ``train`` returns. ``stopped``: a signal ended it early (resume with ``--resume``)."""

    out: str
    epochs: int  # finished epochs
    accuracy_a: float | None = None
    accuracy_b: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    taus: list[dict[str, Any]] = field(default_factory=list)
    model: nn.Module | None = None
    stopped: bool = False
    step: int = 0  # with ``stopped``: finished steps of epoch ``epochs + 1``

    def __getitem__(self, key: str) -> Any:
        """``result["accuracy_b"]`` as when ``train`` returned a dict."""
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)
