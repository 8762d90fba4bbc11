"""Build a run: model (created, or loaded pretrained for fine-tuning, features frozen on
request), data, optimizer, scheduler and scaler, held in :class:`Run`; then the DDP wrapper,
the outputs and the stop signals once the checkpoint's state is restored.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from ..factory import create_model, load
from .config import TrainConfig
from .datasets import check_num_classes, training_datasets
from .run_dir import RunWriter, hardware_name
from .runtime import Dist, Stop, barrier
from .state import RunState

__all__ = ["Run", "build_run", "compile_network", "set_train_mode", "start_run"]


@dataclass
class Run:
    """What stays fixed while a run goes. ``net`` is ``model`` or its DDP wrapper."""

    cfg: TrainConfig
    out: Path
    dist: Dist
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    sets: dict[str, Dataset]
    num_classes: int
    net: nn.Module | None = None
    sampler: DistributedSampler | None = None
    writer: RunWriter | None = None
    stop: Stop | None = None
    hardware: str = ""
    show: bool = False  # tqdm bar

    def parts(self) -> dict[str, Any]:
        """What a checkpoint stores by ``state_dict()``, under its key."""
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
        }


def _build_model(cfg: TrainConfig, num_classes: int, pretrained: bool) -> nn.Module:
    kw = dict(cfg.model_kwargs)
    if cfg.T is not None:
        kw["T"] = cfg.T
    if pretrained:
        return load(cfg.model, pretrained=True, num_classes=num_classes, backend=cfg.backend, **kw)
    return create_model(cfg.model, num_classes=num_classes, backend=cfg.backend, **kw)


def _freeze_features(model: nn.Module) -> None:
    if not hasattr(model, "features"):
        raise ValueError(f"{type(model).__name__} has no `features` part to freeze")
    for p in model.features.parameters():
        p.requires_grad_(False)


def compile_network(model: nn.Module) -> nn.Module:
    """``--compile``: one graph per mode (train / eval), static shapes (training batches all
    have one size)."""
    return torch.compile(model, fullgraph=True, dynamic=False)


def set_train_mode(model: nn.Module, cfg: TrainConfig) -> None:
    model.train()
    if cfg.freeze_features:
        model.features.eval()  # frozen features keep their BatchNorm statistics


def build_run(
    cfg: TrainConfig, model: nn.Module | None, ckpt: dict | None, dist: Dist, device: torch.device
) -> Run:
    """Model, data, optimizer, scheduler, scaler; every RNG draw in the order of format-1 runs."""
    # Same initial weights on every rank; dropout masks differ per rank.
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    num_classes = check_num_classes(cfg)  # before any weights are loaded or data read
    if model is None:
        # A resumed run overwrites the weights, but a model known only by its folder must still
        # be loaded.
        pretrained = cfg.pretrained and (ckpt is None or ":" in cfg.model)
        model = _build_model(cfg, num_classes, pretrained=pretrained)
    # Rank 0 converts event data to frames (SpikingJelly's cache) before the others read it.
    barrier(dist, first=True)
    sets = training_datasets(cfg, model)
    barrier(dist, first=False)
    if cfg.freeze_features:
        _freeze_features(model)
    model.to(device)
    torch.manual_seed(cfg.seed + dist.rank)
    fused = cfg.compile or None
    if ckpt is not None:  # a resumed run keeps the Adam it started with (--compile may change):
        # loading the state restores its `fused` flag, which must match how Adam was built
        fused = ckpt["optimizer"]["param_groups"][0].get("fused", fused)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        fused=fused,
    )
    return Run(
        cfg=cfg,
        out=Path(cfg.out),
        dist=dist,
        device=device,
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.t_max),
        scaler=torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda"),
        sets=sets,
        num_classes=cfg.num_classes or sets["test"].num_classes,
    )


def start_run(run: Run, state: RunState, resumed: bool, progress: bool | None) -> None:
    """DDP wrapper (after the restore: it broadcasts rank 0's weights), outputs, stop signals."""
    cfg, dist, sets = run.cfg, run.dist, run.sets
    run.net = run.model
    if cfg.compile:  # the training step only: evaluation runs the eager run.model in fp32
        # The network, inside DDP: dynamo cannot trace DDP's forward in one graph.
        run.net = compile_network(run.model)
    if dist.enabled:
        device_ids = [run.device.index] if run.device.type == "cuda" else None
        run.net = nn.parallel.DistributedDataParallel(run.net, device_ids=device_ids)
    run.writer = RunWriter(run.out, dist.main, purge_step=state.epoch + 1 if resumed else None)
    try:
        run.writer.write_config(cfg)
    except BaseException:  # e.g. a full disk: no TensorBoard thread left behind
        run.writer.close()
        raise
    run.hardware = hardware_name(run.device, torch.get_num_threads(), dist.world)
    run.show = (sys.stderr.isatty() if progress is None else progress) and dist.main
    if dist.main:
        print(
            f"training {cfg.model} on {cfg.dataset}: {len(sets['train'])} train / "
            f"{len(sets['val']) if 'val' in sets else 0} val / {len(sets['test'])} test images, "
            f"{cfg.epochs} epochs, batch {cfg.batch_size} x {dist.world}, lr {cfg.lr}, "
            f"{run.hardware}",
            flush=True,
        )
    run.sampler = DistributedSampler(
        sets["train"], num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=cfg.seed
    )
    # Last: from here on the caller's try/finally restores the signal handlers (Ctrl-C).
    run.stop = Stop()
