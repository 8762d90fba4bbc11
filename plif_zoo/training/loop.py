"""The training loop: train an epoch, evaluate it, keep accuracy-A/B, write.

``train`` reads top to bottom like nanoGPT's loop; the pieces that do not change while a run
goes (model, optimizer, data, outputs) are held in :class:`~plif_zoo.training.build.Run`, what
a checkpoint restores in :class:`~plif_zoo.training.state.RunState`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NonFiniteError, RunFolderError
from .build import Run, build_run, set_train_mode, start_run
from .checkpoint import (
    CHECKPOINT,
    check_resume,
    load_checkpoint,
    restore_checkpoint,
    rng_state,
    save_checkpoint,
)
from .config import TrainConfig, resolve_config
from .datasets import eval_loader, train_loader
from .evaluation import run_eval
from .run_dir import drop_previous_best, plif_taus, recover_best, save_best, write_summary
from .run_lock import RunLock, remove_stale_temps
from .runtime import (
    Dist,
    all_sum,
    any_rank,
    autocast,
    gather,
    reset,
    resolve_device,
    setup_distributed,
)
from .state import RunState, Tally, TrainResult

__all__ = ["Run", "train", "train_one_epoch", "finetune"]

LOG_EVERY_S = 300  # without a progress bar, a line at most this often (and at each checkpoint)


def _check_finite(run: Run, state: RunState) -> None:
    """NonFiniteError when a weight or BatchNorm statistic is NaN / inf: such a model is never
    saved (every rank holds the same weights, so every rank raises)."""
    bad = [
        k
        for k, v in run.model.state_dict().items()
        if v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise NonFiniteError(
            f"the weights became non-finite in epoch {state.epoch + 1} ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); not saved: {run.out / CHECKPOINT} and best/ "
            f"keep the last finite state. "
            f"Lower the learning rate (now {run.cfg.lr}) and start a new --out"
        )


def _save(run: Run, state: RunState) -> None:
    """checkpoint.pt with every rank's RNG state (all ranks take part, rank 0 writes)."""
    _check_finite(run, state)
    rng = gather(rng_state(run.device), run.dist)
    if run.dist.main:
        save_checkpoint(run.out / CHECKPOINT, run.cfg, state, run.parts(), rng)


def _epoch_batches(run: Run, epoch: int) -> list[list[int]]:
    """This rank's shuffled batches of the epoch; the last partial batch is dropped."""
    run.sampler.set_epoch(epoch)
    indices = list(run.sampler)
    bs = run.cfg.batch_size
    batches = [indices[i * bs : (i + 1) * bs] for i in range(len(indices) // bs)]
    return batches or [indices]  # fewer samples than one batch: train on what there is


class _Meter:
    """Progress bar (or a log line every LOG_EVERY_S), throughput, and the training time
    (``state.wall_s``) without the time spent checkpointing."""

    def __init__(self, run: Run, n_steps: int, start_step: int, base: Tally, epoch: int):
        self.world, self.main, self.n_steps, self.base, self.epoch = (
            run.dist.world,
            run.dist.main,
            n_steps,
            base,
            epoch,
        )
        self.bar = None
        if run.show:
            from tqdm import tqdm

            self.bar = tqdm(
                total=n_steps,
                initial=start_step,
                desc=f"epoch {epoch + 1}/{run.cfg.epochs}",
                dynamic_ncols=True,
            )
        self.t0 = self.t_mark = self.t_log = time.perf_counter()

    def _img_s(self, local: Tally, now: float) -> float:
        return local.seen * self.world / (now - self.t0)

    def update(self, step: int, local: Tally) -> None:
        if self.bar is not None:
            seen = (
                self.base.seen + local.seen * self.world
            )  # other ranks' counts estimated from ours
            self.bar.update(1)
            self.bar.set_postfix(
                loss=f"{(self.base.loss_sum + local.loss_sum * self.world) / seen:.4f}",
                acc=f"{(self.base.correct + local.correct * self.world) / seen:.3f}",
                img_s=f"{self._img_s(local, time.perf_counter()):.1f}",
            )
        elif self.main and time.perf_counter() - self.t_log > LOG_EVERY_S:
            self.t_log = time.perf_counter()
            print(
                f"epoch {self.epoch + 1} step {step}/{self.n_steps}: loss {local.loss:.4f} "
                f"acc {local.top1:.4f} {self._img_s(local, self.t_log):.1f} img/s",
                flush=True,
            )

    def stop_clock(self, state: RunState) -> None:
        state.wall_s += time.perf_counter() - self.t_mark

    def start_clock(self) -> None:
        self.t_mark = time.perf_counter()

    def checkpointed(self, step: int, totals: Tally, local: Tally) -> None:
        if self.main and self.bar is None:
            print(
                f"epoch {self.epoch + 1} step {step}/{self.n_steps}: "
                f"loss {totals.loss:.4f} acc {totals.top1:.4f} "
                f"{self._img_s(local, time.perf_counter()):.1f} img/s (checkpoint)",
                flush=True,
            )

    def close(self, state: RunState, local: Tally) -> float:
        """Ends the epoch's clock; its images/s over every rank."""
        if self.bar is not None:
            self.bar.close()
        train_time = time.perf_counter() - self.t0
        self.stop_clock(state)
        return local.seen * self.world / max(train_time, 1e-9)


def _train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """One optimizer step on a batch ``x`` [N, ...], ``y`` [N]; (mean loss, correct predictions)."""
    x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
    with autocast(run.device, run.cfg.amp):
        rates = run.net(x)  # [N, classes] voted firing rates
        loss = F.mse_loss(rates.float(), F.one_hot(y, run.num_classes).float())
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    reset(run.model)
    return loss.item(), (rates.detach().argmax(1) == y).sum().item()


def train_one_epoch(run: Run, state: RunState) -> dict[str, float] | None:
    """Train epoch ``state.epoch`` from step ``state.step`` on, checkpointing every
    ``checkpoint_every`` steps. Returns its train_* metrics over every rank, or None when a stop
    signal ended it (after a checkpoint)."""
    cfg, dist, device = run.cfg, run.dist, run.device
    epoch, start_step, base = state.epoch, state.step, state.running
    batches = _epoch_batches(run, epoch)
    loader = train_loader(
        run.sets["train"],
        batches,
        start_step,
        seed=cfg.seed,
        epoch=epoch,
        rank=dist.rank,
        num_workers=cfg.num_workers,
        pin=device.type == "cuda",
    )
    local = Tally()  # this rank's steps since start_step
    set_train_mode(run.model, cfg)
    meter = _Meter(run, len(batches), start_step, base, epoch)
    step = start_step
    for x, y in loader:
        loss, correct = _train_step(run, x, y)
        step += 1
        # One collective for both flags: a stop request, and a loss gone NaN / inf on some rank.
        interrupt, diverged = (
            v > 0 for v in all_sum([run.stop.requested, not math.isfinite(loss)], dist, device)
        )
        if diverged:
            what = loss if not math.isfinite(loss) else "non-finite on another rank"
            raise NonFiniteError(
                f"the training loss became {what} "
                f"at epoch {epoch + 1} step {step}; nothing of it was saved: "
                f"{run.out / CHECKPOINT} and best/ keep the last finite state. "
                f"Lower the learning rate (now {cfg.lr}) and start a new --out"
            )
        local.add(loss * len(y), correct, len(y))
        meter.update(step, local)
        if step < len(batches) and (
            interrupt or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
        ):
            meter.stop_clock(state)
            state.step, state.running = step, base + local.all_reduce(dist, device)
            _save(run, state)
            meter.start_clock()  # checkpointing is not training time
            meter.checkpointed(step, state.running, local)
            if interrupt:
                if dist.main:
                    print(
                        f"stopped at epoch {epoch + 1} step {step}; continue with --resume",
                        flush=True,
                    )
                return None
    images_per_s = meter.close(state, local)
    totals = base + local.all_reduce(dist, device)
    return {
        "train_loss": totals.loss,
        "train_top1": totals.top1,
        "train_images_per_s": images_per_s,
    }


def _evaluate_epoch(run: Run) -> dict[str, float]:
    """val_* and test_* loss, top-1 and samples of the current weights."""
    row: dict[str, float] = {}
    for split in ("val", "test"):
        if split in run.sets:
            loader = eval_loader(
                run.sets[split],
                run.cfg.eval_batch_size,
                run.dist,
                run.cfg.num_workers,
                run.device.type == "cuda",
            )
            # fp32 even with --amp: the card's accuracy must be what `plif-zoo eval` of the
            # stored fp32 weights measures.
            r = run_eval(run.model, loader, run.num_classes, run.device, False, run.dist)
            row.update(
                {
                    f"{split}_loss": r["loss"],
                    f"{split}_top1": r["top1"],
                    f"{split}_samples": r["samples"],
                }
            )
    return row


def _update_best(state: RunState, row: dict[str, Any]) -> bool:
    """Add accuracy-A/B to ``row`` and track the best validation epoch; True when ``row``'s
    model is the new best/ (best validation top-1, or best test top-1 without validation)."""
    has_val = "val_top1" in row
    improved = has_val and row["val_top1"] > state.best_val
    if improved:
        state.best_val, state.best_test, state.best_epoch = (
            row["val_top1"],
            row["test_top1"],
            row["epoch"],
        )
    prev_a = state.accuracy_a
    row["accuracy_a"] = max(prev_a, row["test_top1"])
    if has_val:
        row["accuracy_b"] = state.best_test
        row["best_epoch"] = state.best_epoch
    # without validation: best test top-1, the first of tied epochs (as summary.json's)
    return improved if has_val else (not state.history or row["test_top1"] > prev_a)


def _finish_epoch(run: Run, state: RunState, row: dict[str, Any], new_best: bool) -> None:
    """Record the epoch, write rank 0's outputs and the checkpoint at the epoch's end."""
    _check_finite(run, state)
    row["train_wall_s"] = state.wall_s
    tau_row = {"epoch": row["epoch"], **plif_taus(run.model)}
    state.history.append(row)
    state.taus.append(tau_row)
    state.next_epoch()
    if run.dist.main:
        run.writer.write_tables(state.history, state.taus)
        run.writer.scalars(row, tau_row)
        if new_best:
            save_best(run.model, run.out, run.cfg, row, run.hardware, state.wall_s)
        write_summary(run.out, run.cfg, state, run.hardware)
        msg = " ".join(
            f"{k} {v:.4f}"
            for k, v in row.items()
            if k.endswith(("loss", "top1", "accuracy_a", "accuracy_b"))
        )
        print(
            f"epoch {row['epoch']}/{run.cfg.epochs}: {msg} ({row['train_images_per_s']:.1f} img/s)",
            flush=True,
        )
    try:
        _save(run, state)
    except BaseException:
        if run.dist.main and new_best:  # the checkpoint on disk never saw this best/
            recover_best(run.out, state.best_model_epoch(before=state.epoch))
        raise
    if run.dist.main:
        drop_previous_best(run.out)  # the checkpoint now knows the new best/


def _fresh_state(run: Run) -> RunState:
    state = RunState()
    if run.dist.main:
        state.taus = [{"epoch": 0, **plif_taus(run.model)}]
    return state


def train(
    config: TrainConfig | str | None = None,
    *,
    model: nn.Module | None = None,
    resume: bool = False,
    progress: bool | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train with the paper's recipe; returns the final summary (accuracy-A/B, best epoch, paths).

    config: a TrainConfig, a registry id or a YAML path; ``overrides`` replace its values.
    model: an already built model (e.g. for fine-tuning); default: built from the config.
    resume: continue from ``{out}/checkpoint.pt`` exactly where it ended.
    progress: tqdm bar; default: only when stderr is a terminal.
    """
    cfg = resolve_config(config, overrides)
    dist = setup_distributed(cfg.device)
    device = resolve_device(cfg.device, dist)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if (
        resume and not (Path(cfg.out) / CHECKPOINT).is_file()
    ):  # before the folder is created or locked
        raise FileNotFoundError(
            f"no checkpoint at {Path(cfg.out) / CHECKPOINT}; start the run without --resume"
        )
    lock = _take_run_folder(Path(cfg.out), dist, device)  # before any data is read
    try:
        return _train_locked(cfg, model, resume, progress, dist, device)
    finally:
        if lock is not None:
            lock.release()


def _take_run_folder(out: Path, dist: Dist, device: torch.device) -> RunLock | None:
    """Rank 0 locks the run folder (one training per folder) and repairs what a kill left
    (best/ mid-swap, temporary files); every rank raises when that fails."""
    lock, error = None, None
    if dist.main:
        try:
            lock = RunLock(out).acquire()
            recover_best(out, _checkpoint_best_epoch(out))
            remove_stale_temps(out)
        except RunFolderError as err:
            error = err
        except OSError as err:
            error = RunFolderError(err.errno, f"cannot prepare the run folder {out}: {err}")
            if lock is not None:
                lock.release()
    if any_rank(error is not None, dist, device):
        raise error or RunFolderError(
            f"rank 0 could not take the run folder {out}; see its message"
        )
    return lock


def _checkpoint_best_epoch(out: Path) -> int | None:
    """The epoch the checkpoint expects in best/, read only when a kill left best/ beside a
    best.old (best/ may then be newer than the checkpoint); None otherwise or unreadable."""
    if not ((out / "best").is_dir() and (out / "best.old").is_dir()):
        return None
    try:
        state = RunState()
        state.load_state_dict(load_checkpoint(out / CHECKPOINT))
    except Exception:  # no or a broken checkpoint: --resume reports it; keep best/
        return None
    return state.best_model_epoch()


def _train_locked(
    cfg: TrainConfig,
    model: nn.Module | None,
    resume: bool,
    progress: bool | None,
    dist: Dist,
    device: torch.device,
) -> TrainResult:
    """:func:`train` once the run folder is held."""
    ckpt = check_resume(cfg, Path(cfg.out), resume, dist.world)

    # Model, data and optimizer; then the checkpoint's state, or the initial taus (epoch 0).
    run = build_run(cfg, model, ckpt, dist, device)
    state = (
        _fresh_state(run)
        if ckpt is None
        else restore_checkpoint(ckpt, run.parts(), dist.rank, device)
    )
    start_run(run, state, resumed=ckpt is not None, progress=progress)
    try:
        while state.epoch < cfg.epochs:
            lr = run.optimizer.param_groups[0]["lr"]
            # Train one epoch; a stop signal ends the run after a mid-epoch checkpoint.
            train_row = train_one_epoch(run, state)
            if train_row is None:
                return TrainResult(
                    out=str(run.out), epochs=state.epoch, step=state.step, stopped=True
                )
            run.scheduler.step()
            # Evaluate, keep accuracy-A/B, write the outputs and the checkpoint.
            row = {"epoch": state.epoch + 1, "lr": lr, **train_row, **_evaluate_epoch(run)}
            new_best = _update_best(state, row)
            _finish_epoch(run, state, row, new_best)
            # A stop during the last step or the evaluation: the epoch's checkpoint is written.
            if state.epoch < cfg.epochs and any_rank(run.stop.requested, dist, device):
                if dist.main:
                    print(f"stopped after epoch {state.epoch}; continue with --resume", flush=True)
                return TrainResult(out=str(run.out), epochs=state.epoch, step=0, stopped=True)
    finally:
        run.stop.close()
        run.writer.close()
    last = state.history[-1] if state.history else {}
    return TrainResult(
        out=str(run.out),
        epochs=state.epoch,
        accuracy_a=last.get("accuracy_a"),
        accuracy_b=last.get("accuracy_b"),
        best_epoch=last.get("best_epoch"),
        history=state.history,
        taus=state.taus,
        model=run.model,
    )


def finetune(
    model: str,
    data_dir: str | Path,
    num_classes: int,
    *,
    dataset: str = "imagefolder",
    freeze_features: bool = False,
    resume: bool = False,
    progress: bool | None = None,
    **overrides: Any,
) -> TrainResult:
    """Fine-tune a zoo model on new data with ``num_classes`` outputs (the output layer is
    replaced).

    dataset: ``imagefolder`` (data_dir holds train/ and test/ with one folder per class,
    images resized to the model's input) or a key of ``plif_zoo.data.DATASETS``.
    Remaining keyword arguments override the training recipe (epochs, lr, batch_size, out, ...).
    """
    overrides.setdefault("pretrained", True)
    return train(
        model,
        dataset=dataset,
        data_dir=str(data_dir),
        num_classes=num_classes,
        freeze_features=freeze_features,
        resume=resume,
        progress=progress,
        **overrides,
    )
