"""The paper's training recipe (Sec. 4), evaluation with spike statistics, and fine-tuning.

Recipe defaults (authors' ``train.py``): Adam lr 1e-3, CosineAnnealingLR(T_max=64) stepped
per epoch, MSE between the voted firing rates and the one-hot label, batch 16, seed 2020.
``configs/{model-id}.yaml`` holds only what differs for a model; every value can be
overridden. Each epoch tracks both accuracy protocols:

* accuracy-A: the best test accuracy seen so far;
* accuracy-B: the test accuracy of the epoch with the best validation accuracy
  (validation = the first 15% of each training class, see ``plif_zoo.data``).

A run folder holds ``metrics.csv``, ``tau.csv`` (tau of every PLIF layer, epoch 0 = init),
TensorBoard events in ``tb/``, ``checkpoint.pt`` (weights, optimizer, scheduler, RNG
state, position in the epoch; written to a temporary name then renamed, loadable with
``weights_only=True``) and ``best/``, a zoo model folder of the epoch with the best
validation accuracy. ``resume=True`` continues exactly where ``checkpoint.pt`` ended,
also in the middle of an epoch (``checkpoint_every`` steps).

Distributed: started by ``torchrun`` (``WORLD_SIZE`` > 1), gloo on CPU, NCCL on GPU; each
rank sees its ``DistributedSampler`` shard and only rank 0 writes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import random
import shutil
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from . import data as data_mod

__all__ = [
    "TrainConfig",
    "load_config",
    "train",
    "evaluate",
    "finetune",
    "plif_taus",
    "plot_run",
    "load_checkpoint",
    "CONFIG_DIR",
]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CHECKPOINT = "checkpoint.pt"
LOG_EVERY_S = 300  # without a progress bar, a line at most this often (and at each checkpoint)


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the paper's recipe."""

    model: str  # registry id, e.g. "fashion-mnist-plif"
    dataset: str | None = None  # a key of plif_zoo.data.DATASETS or "imagefolder"; None: from the model id
    data_dir: str | None = None
    download: bool = False  # MNIST / Fashion-MNIST / CIFAR-10: torchvision's downloader into data_dir
    out: str | None = None  # run folder; None: runs/{model}
    epochs: int = 1024  # the authors' runs
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    t_max: int = 64  # CosineAnnealingLR period, in epochs
    seed: int = 2020
    val_fraction: float = 0.15  # accuracy-B hold-out; 0 trains on the full training set (no B)
    T: int | None = None  # time steps; None: the model's default
    num_classes: int | None = None  # None: the dataset's
    model_kwargs: dict = field(default_factory=dict)  # extra create_model arguments
    pretrained: bool = False  # start from the zoo's weights (fine-tuning)
    freeze_features: bool = False  # train only the classifier (BN of the features stays frozen)
    max_train_samples: int | None = None  # a seeded random subset of the training split
    max_eval_samples: int | None = None  # N evenly spaced samples of validation and of test
    eval_batch_size: int = 64
    checkpoint_every: int = 0  # also checkpoint every N training steps inside an epoch (0: per epoch only)
    device: str = "auto"  # auto: cuda when available
    amp: bool = False  # training under autocast: bfloat16 on CPU, float16 + GradScaler on CUDA (evaluation stays fp32)
    threads: int | None = None  # torch.set_num_threads
    num_workers: int = 0  # DataLoader workers
    backend: str = "auto"  # neuron / pooling backend
    image_shape: list[int] | None = None  # [C, H, W] for imagefolder data; None: the model's input


# Values that may change when a run is resumed; the rest must match the checkpoint.
_RUNTIME_KEYS = {"epochs", "data_dir", "download", "out", "device", "threads", "num_workers", "checkpoint_every", "eval_batch_size", "backend", "pretrained"}


def load_config(model_or_config: str, **overrides: Any) -> TrainConfig:
    """A TrainConfig from a registry id (plus ``configs/{id}.yaml`` if present) or a YAML file.

    ``overrides`` whose value is None are ignored, so CLI defaults pass straight through.
    """
    import yaml

    path = Path(model_or_config)
    values: dict[str, Any] = {}
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        values = yaml.safe_load(path.read_text()) or {}
        if "model" not in values:
            raise ValueError(f"{path}: a config must name its model (`model: fashion-mnist-plif`)")
    else:
        values = {"model": model_or_config}
        default = CONFIG_DIR / f"{model_or_config}.yaml"
        if default.is_file():
            values.update(yaml.safe_load(default.read_text()) or {})
            values["model"] = model_or_config
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys: {', '.join(sorted(known))}")
    cfg = TrainConfig(**values)
    _check_config(cfg)
    return cfg


def _check_config(cfg: TrainConfig) -> None:
    for name in ("epochs", "batch_size", "t_max", "eval_batch_size"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be a positive integer, got {getattr(cfg, name)!r}")
    if not cfg.lr > 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if not 0 <= cfg.val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {cfg.val_fraction}")
    for name in ("max_train_samples", "max_eval_samples"):
        v = getattr(cfg, name)
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")


def dataset_of(model_id: str) -> str:
    """The dataset a registry id was built for (the registry's, else the longest matching prefix)."""
    import plif_zoo

    try:
        return plif_zoo.model_info(model_id).dataset
    except (KeyError, ValueError, TypeError):
        pass
    matches = [name for name in data_mod.DATASETS if model_id == name or model_id.startswith(name + "-")]
    if not matches:
        raise ValueError(
            f"cannot tell which dataset model {model_id!r} belongs to; set `dataset:` in its config "
            f"or pass --dataset (one of {', '.join(data_mod.DATASETS)}, imagefolder)"
        )
    return max(matches, key=len)


# --------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def _setup_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return _Dist(rank, world, local_rank)


def _all_sum(values: Sequence[float], dist_info: _Dist, device: torch.device) -> list[float]:
    if not dist_info.enabled:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _resolve_device(device: str, dist_info: _Dist) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and dist_info.enabled:
        device = f"cuda:{dist_info.local_rank}"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu")
    return dev


# --------------------------------------------------------------------------- model helpers


def plif_taus(model: nn.Module) -> dict[str, float]:
    """tau = 1 / sigmoid(w) of every layer with a learnable decay (PLIF), by module name."""
    from spikingjelly.activation_based import neuron

    taus = {}
    for name, m in model.named_modules():
        w = getattr(m, "w", None)
        if isinstance(m, neuron.BaseNode) and isinstance(w, nn.Parameter) and w.numel() == 1:
            taus[name] = 1.0 / torch.sigmoid(w.detach().float()).item()
    return taus


def _build_model(cfg: TrainConfig, num_classes: int, pretrained: bool) -> nn.Module:
    import plif_zoo

    kw = dict(cfg.model_kwargs)
    if cfg.T is not None:
        kw["T"] = cfg.T
    if pretrained:
        return plif_zoo.load(cfg.model, pretrained=True, num_classes=num_classes, backend=cfg.backend, **kw)
    return plif_zoo.create_model(cfg.model, num_classes=num_classes, backend=cfg.backend, **kw)


def _set_train_mode(model: nn.Module, cfg: TrainConfig) -> None:
    model.train()
    if cfg.freeze_features:
        model.features.eval()  # frozen features keep their BatchNorm statistics


def _freeze_features(model: nn.Module) -> None:
    if not hasattr(model, "features"):
        raise ValueError(f"{type(model).__name__} has no `features` part to freeze")
    for p in model.features.parameters():
        p.requires_grad_(False)


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def _reset(model: nn.Module) -> None:
    from spikingjelly.activation_based import functional

    functional.reset_net(model)


# --------------------------------------------------------------------------- data helpers


def _datasets(cfg: TrainConfig, model: nn.Module | None = None) -> dict[str, Dataset]:
    image_shape = tuple(cfg.image_shape) if cfg.image_shape else None
    if cfg.dataset == "imagefolder" and image_shape is None:
        image_shape = _model_input_shape(cfg, model)
    kw = dict(data_dir=cfg.data_dir, T=_frames(cfg, model), image_shape=image_shape, download=cfg.download)
    if cfg.val_fraction > 0:
        sets = {
            "train": data_mod.get_dataset(cfg.dataset, "train", val_fraction=cfg.val_fraction, **kw),
            "val": data_mod.get_dataset(cfg.dataset, "val", val_fraction=cfg.val_fraction, **kw),
        }
    else:
        sets = {"train": data_mod.get_dataset(cfg.dataset, "train-full", **kw)}
    sets["test"] = data_mod.get_dataset(cfg.dataset, "test", **kw)
    if cfg.max_train_samples is not None and cfg.max_train_samples < len(sets["train"]):
        g = torch.Generator().manual_seed(cfg.seed)
        keep = torch.randperm(len(sets["train"]), generator=g)[: cfg.max_train_samples].sort().values
        sets["train"] = _subset(sets["train"], keep.tolist())
    for name in ("val", "test"):
        if name in sets and cfg.max_eval_samples is not None and cfg.max_eval_samples < len(sets[name]):
            sets[name] = _subset(sets[name], eval_slice(len(sets[name]), cfg.max_eval_samples))
    return sets


def eval_slice(size: int, n: int) -> list[int]:
    """``n`` evenly spaced indices of a split of ``size``: a fixed slice that, unlike the first
    ``n``, covers every class when a split is ordered by class (the event datasets)."""
    if n >= size:
        return list(range(size))
    return [i * size // n for i in range(n)]


def _subset(ds: Dataset, indices: Iterable[int]) -> Dataset:
    sub = data_mod.SubsetWithTargets(ds, list(indices))
    sub.num_classes = ds.num_classes
    return sub


def _frames(cfg: TrainConfig, model: nn.Module | None) -> int | None:
    """Frames per event sample: the run's T, else the model's."""
    return cfg.T if cfg.T is not None else getattr(model, "T", None)


def _model_input_shape(cfg: TrainConfig, model: nn.Module | None) -> tuple[int, int, int]:
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "static", False):
        return (config.in_channels, *config.input_size)
    try:
        return data_mod.DATASETS[dataset_of(cfg.model)].shape
    except ValueError as err:
        raise ValueError(f"{err}; for imagefolder data also pass image_shape [C, H, W]") from None


def _eval_loader(ds: Dataset, batch_size: int, dist_info: _Dist, num_workers: int, pin: bool) -> DataLoader:
    indices = list(range(dist_info.rank, len(ds), dist_info.world))  # a strided shard per rank, no padding
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    return DataLoader(ds, batch_sampler=batches, num_workers=num_workers, pin_memory=pin,
                      generator=torch.Generator().manual_seed(0))  # leaves the global RNG alone


# --------------------------------------------------------------------------- evaluation


class _SpikeCounter:
    """Forward hooks that count spikes per neuron layer and synaptic operations per synapse layer.

    A synaptic operation (SynOp) is one spike arriving at one synapse: for a Linear layer
    fed with spikes, (non-zero inputs) x out_features; for a Conv2d, each non-zero input
    times the number of outputs its kernel reaches. Layers fed with real values (the
    encoder's first convolution) are counted as dense multiply-accumulates (MACs).
    """

    def __init__(self, model: nn.Module):
        from spikingjelly.activation_based import neuron

        self.spikes: dict[str, float] = {}
        self.neurons: dict[str, float] = {}
        self.synops = 0.0
        self.macs = 0.0
        self.handles = []
        for name, m in model.named_modules():
            if isinstance(m, neuron.BaseNode):
                self.handles.append(m.register_forward_hook(self._neuron_hook(name)))
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                self.handles.append(m.register_forward_hook(self._synapse_hook))

    def _neuron_hook(self, name: str):
        def hook(module, inputs, out):
            self.spikes[name] = self.spikes.get(name, 0.0) + out.detach().float().sum().item()
            self.neurons[name] = self.neurons.get(name, 0.0) + out.numel()

        return hook

    def _synapse_hook(self, module, inputs, out):
        x = inputs[0].detach()
        binary = bool(((x == 0) | (x == 1)).all())
        if isinstance(module, nn.Linear):
            fan = module.out_features
            if binary:
                self.synops += (x != 0).sum().item() * fan
            else:
                self.macs += x.numel() / x.shape[-1] * module.in_features * fan
            return
        if x.dim() == 5:
            x = x.flatten(0, 1)
        if not binary:
            self.macs += out.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
            return
        mask = (x != 0).float().sum(1, keepdim=True)
        ones = torch.ones(1, 1, *module.kernel_size, dtype=mask.dtype, device=mask.device)
        reach = F.conv2d(mask, ones, stride=module.stride, padding=module.padding, dilation=module.dilation)
        self.synops += reach.sum().item() * module.out_channels // module.groups

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _run_eval(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    amp: bool,
    dist_info: _Dist,
    counter: _SpikeCounter | None = None,
) -> dict[str, float]:
    model.eval()
    loss_sum = correct = seen = 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with _autocast(device, amp):
                rates = model(x)
            rates = rates.float()
            loss_sum += F.mse_loss(rates, F.one_hot(y, num_classes).float(), reduction="sum").item() / num_classes
            correct += (rates.argmax(1) == y).sum().item()
            seen += len(y)
            _reset(model)
    elapsed = time.perf_counter() - start
    loss_sum, correct, seen = _all_sum([loss_sum, correct, seen], dist_info, device)
    if seen == 0:
        raise ValueError("the evaluation set is empty")
    result = {"top1": correct / seen, "loss": loss_sum / seen, "samples": int(seen), "images_per_s": seen / elapsed}
    if counter is not None:
        result["firing_rates"] = {k: counter.spikes[k] / max(counter.neurons[k], 1) for k in counter.spikes}
        result["spikes_per_sample"] = sum(counter.spikes.values()) / seen
        result["synops_per_sample"] = counter.synops / seen
        result["dense_macs_per_sample"] = counter.macs / seen
    return result


def evaluate(
    model: nn.Module | str,
    dataset: Dataset | str | None = None,
    *,
    data_dir: str | Path | None = None,
    split: str = "test",
    pretrained: bool = True,
    max_samples: int | None = None,  # N evenly spaced samples (eval_slice)
    batch_size: int = 64,
    device: str = "auto",
    amp: bool = False,
    num_workers: int = 0,
    T: int | None = None,
    backend: str = "auto",
    val_fraction: float = 0.15,
) -> dict[str, Any]:
    """Top-1, loss, per-layer firing rates, spikes and SynOps per sample, images/s (inference mode).

    model: a zoo model, a registry id, ``local-dir:PATH`` / a model folder, or ``hf-hub:ORG/NAME``
    (loaded with ``pretrained``).
    dataset: a Dataset of (input, label), or a dataset name (default: the model's) whose
    ``split`` (``test`` or ``val``, the accuracy-B hold-out) is read from ``data_dir``.
    """
    import plif_zoo

    model_id = None
    if isinstance(model, (str, Path)):
        model_id = str(model)
        if Path(model_id).is_dir():
            model_id = f"local-dir:{model_id}"
        kw = {} if T is None else {"T": T}
        model = plif_zoo.load(model_id, pretrained=pretrained, backend=backend, **kw)
    elif T is not None:
        model.T = T
    if dataset is None or isinstance(dataset, str):
        name = dataset or _dataset_name_of_model(model_id)
        if split not in ("test", "val"):
            raise ValueError(f"split must be 'test' or 'val', got {split!r}")
        image_shape = _model_input_shape(TrainConfig(model=model_id or ""), model) if name == "imagefolder" else None
        dataset = data_mod.get_dataset(name, split, data_dir, T=getattr(model, "T", None),
                                       val_fraction=val_fraction, image_shape=image_shape)
    if max_samples is not None and max_samples < len(dataset):
        dataset = _subset(dataset, eval_slice(len(dataset), max_samples))
    num_classes = getattr(dataset, "num_classes", None) or int(torch.as_tensor(dataset.targets).max()) + 1
    dist_info = _Dist()
    dev = _resolve_device(device, dist_info)
    model.to(dev)
    counter = _SpikeCounter(model)
    try:
        loader = _eval_loader(dataset, batch_size, dist_info, num_workers, dev.type == "cuda")
        result = _run_eval(model, loader, num_classes, dev, amp, dist_info, counter)
    finally:
        counter.close()
    if model_id is not None:
        result = {"model": model_id, "pretrained": pretrained, **result}
    result["split"] = split
    result["device"] = str(dev)
    return result


def _dataset_name_of_model(model_id: str | None) -> str:
    if model_id is None:
        raise ValueError("cannot tell which dataset this model belongs to; pass dataset=...")
    if model_id.startswith("local-dir:"):
        from . import hub

        dataset = hub.read_config(model_id[len("local-dir:"):]).get("card", {}).get("dataset")
        if dataset:
            return dataset
        raise ValueError(f"{model_id}: its config.json names no dataset; pass dataset=...")
    return dataset_of(model_id)


# --------------------------------------------------------------------------- checkpoints


def _rng_state(device: torch.device) -> dict[str, Any]:
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
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A run's checkpoint, loaded safely (``weights_only=True``)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; start the run without --resume")
    return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- run folder


class _RunWriter:
    """Rank 0's outputs: metrics.csv, tau.csv, TensorBoard, best/ model folder."""

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
                print("tensorboard is not installed: no TensorBoard events (pip install tensorboard)", file=sys.stderr)

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
                self.tb.add_scalar(k.replace("_", "/", 1) if k.startswith(("train_", "val_", "test_")) else k, v, step)
        for k, v in tau_row.items():
            if k != "epoch":
                self.tb.add_scalar(f"tau/{k}", v, step)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _hardware(device: torch.device, threads: int, world: int) -> str:
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{_cpu_name()} CPU ({os.cpu_count()} cores), {threads} threads"
    return what if world == 1 else f"{world} x {what}"


def _write_summary(out: Path, cfg: TrainConfig, state: dict, hardware: str) -> None:
    """summary.json: both protocols over the run so far (the best/ card is frozen at its epoch)."""
    history = state["history"]
    best = next((r for r in history if r["epoch"] == state["best_epoch"]), None)
    summary = {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "epochs_done": len(history),
        "accuracy_a": max(r["test_top1"] for r in history),
        "accuracy_a_epoch": max(history, key=lambda r: r["test_top1"])["epoch"],
        "accuracy_b": best["test_top1"] if best else None,
        "accuracy_b_epoch": state["best_epoch"] or None,
        "val_top1_at_b": best["val_top1"] if best else None,
        "val_samples": history[-1].get("val_samples"),
        "test_samples": history[-1]["test_samples"],
        "taus_at_b": next((t for t in state["taus"] if t["epoch"] == state["best_epoch"]), None),
        "train_wall_s": state["wall_s"],
        "hardware": hardware,
        "recipe": {k: getattr(cfg, k) for k in ("batch_size", "lr", "t_max", "seed", "T", "amp", "val_fraction", "epochs")},
    }
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / "summary.json")


def _save_best(model: nn.Module, out: Path, cfg: TrainConfig, row: dict, hardware: str, wall_s: float) -> None:
    import plif_zoo

    tmp = out / "best.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    percent = {
        "test_top1": row["test_top1"],
        "val_top1": row.get("val_top1"),
        "accuracy_a": row["accuracy_a"],
        "accuracy_b": row.get("accuracy_b"),
    }
    metrics = {k: round(100.0 * v, 4) for k, v in percent.items() if v is not None}
    recipe = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "data_dir", "device", "threads", "num_workers")}
    protocol = (
        f"accuracy-B: model of the epoch with the best validation top-1 ({row.get('val_samples')} images held out "
        f"from the training set, first {cfg.val_fraction:.0%} of each class); test top-1 on {row['test_samples']} test images"
        if cfg.val_fraction > 0 else
        f"accuracy-A: best test top-1 during training ({row['test_samples']} test images)"
    )
    extra: dict[str, Any] = {}
    if cfg.model in plif_zoo.list_models() and cfg.dataset == dataset_of(cfg.model) and not cfg.pretrained:
        extra["model_id"] = cfg.model
    else:  # fine-tuned or custom: not the registry's model
        extra["base_model"] = cfg.model
    if Path(sys.argv[0]).name == "plif-zoo":
        extra["command"] = " ".join(["plif-zoo", *sys.argv[1:]])
    plif_zoo.save_pretrained(
        model, tmp, dataset=cfg.dataset, metrics=metrics, protocol=protocol,
        recipe=recipe, hardware=hardware, train_wall_time_s=round(wall_s, 1), best_epoch=row["epoch"],
        test_samples=row["test_samples"], val_samples=row.get("val_samples"), learned_taus=plif_taus(model),
        **extra,
    )
    best = out / "best"
    old = out / "best.old"
    if best.exists():
        os.replace(best, old)
    os.replace(tmp, best)
    if old.exists():
        shutil.rmtree(old)


# --------------------------------------------------------------------------- training


class _Stop:
    """SIGTERM / SIGINT ask the loop to checkpoint at the next step and exit (single process)."""

    def __init__(self, active: bool):
        self.requested = False
        self.previous = {}
        if active:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    self.previous[sig] = signal.signal(sig, self._handle)
                except ValueError:  # not the main thread
                    pass

    def _handle(self, signum, frame):
        self.requested = True

    def close(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def train(
    config: TrainConfig | str | None = None,
    *,
    model: nn.Module | None = None,
    resume: bool = False,
    progress: bool | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train with the paper's recipe; returns the final summary (accuracy-A/B, best epoch, paths).

    config: a TrainConfig, a registry id or a YAML path; ``overrides`` replace its values.
    model: an already built model (e.g. for fine-tuning); default: built from the config.
    resume: continue from ``{out}/checkpoint.pt`` exactly where it ended.
    progress: tqdm bar; default: only when stderr is a terminal.
    """
    if isinstance(config, TrainConfig):
        cfg = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
        _check_config(cfg)
    else:
        if config is None:
            config = overrides.pop("model")
        cfg = load_config(config, **overrides)
    if cfg.dataset is None:
        cfg.dataset = dataset_of(cfg.model)
    out = Path(cfg.out or f"runs/{cfg.model}")
    cfg.out = str(out)

    dist_info = _setup_distributed(cfg.device)
    device = _resolve_device(cfg.device, dist_info)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    threads = torch.get_num_threads()

    ckpt = None
    if resume:
        ckpt = load_checkpoint(out / CHECKPOINT)
        stored = ckpt["config"]
        changed = {k for k, v in dataclasses.asdict(cfg).items() if k not in _RUNTIME_KEYS and stored.get(k) != v}
        if changed:
            diffs = ", ".join(f"{k}: checkpoint {stored.get(k)!r} vs now {getattr(cfg, k)!r}" for k in sorted(changed))
            raise ValueError(f"--resume with a different recipe ({diffs}); resume with the same settings or start a new --out")
    elif (out / CHECKPOINT).exists():
        raise ValueError(f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it or choose another --out")

    # Same initial weights on every rank; dropout masks differ per rank.
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    if model is None:
        num_classes = cfg.num_classes or _num_classes(cfg)
        # A resumed run overwrites the weights, but a model known only by its folder must still be loaded.
        pretrained = cfg.pretrained and (ckpt is None or ":" in cfg.model)
        model = _build_model(cfg, num_classes, pretrained=pretrained)
    # Rank 0 converts event data to frames (SpikingJelly's cache) before the others read it.
    _barrier(dist_info, first=True)
    sets = _datasets(cfg, model)
    _barrier(dist_info, first=False)
    num_classes = cfg.num_classes or sets["test"].num_classes
    if cfg.freeze_features:
        _freeze_features(model)
    model.to(device)
    torch.manual_seed(cfg.seed + dist_info.rank)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.t_max)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")

    state = {"epoch": 0, "step": 0, "history": [], "taus": [], "best_val": -1.0, "best_test": -1.0,
             "best_epoch": 0, "wall_s": 0.0, "running": [0.0, 0.0, 0.0]}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        for k in state:
            state[k] = ckpt[k]
        _set_rng_state(ckpt["rng"][dist_info.rank], device)
    elif dist_info.main:
        state["taus"] = [{"epoch": 0, **plif_taus(model)}]

    net = model
    if dist_info.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    writer = _RunWriter(out, dist_info.main, purge_step=state["epoch"] + 1 if ckpt is not None else None)
    hardware = _hardware(device, threads, dist_info.world)
    stop = _Stop(active=not dist_info.enabled)
    show = (sys.stderr.isatty() if progress is None else progress) and dist_info.main
    if dist_info.main:
        with open(out / "config.json", "w") as f:
            json.dump(dataclasses.asdict(cfg), f, indent=2)
        print(
            f"training {cfg.model} on {cfg.dataset}: {len(sets['train'])} train / "
            f"{len(sets['val']) if 'val' in sets else 0} val / {len(sets['test'])} test images, "
            f"{cfg.epochs} epochs, batch {cfg.batch_size} x {dist_info.world}, lr {cfg.lr}, {hardware}",
            flush=True,
        )

    sampler = DistributedSampler(sets["train"], num_replicas=dist_info.world, rank=dist_info.rank, shuffle=True, seed=cfg.seed)
    pin = device.type == "cuda"

    def save_checkpoint(epoch: int, step: int, running: list[float]) -> None:
        rng = _gather(_rng_state(device), dist_info)
        if not dist_info.main:
            return
        _atomic_save({
            "format": 1,
            "config": dataclasses.asdict(cfg),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng,
            **{k: v for k, v in state.items() if k not in ("epoch", "step", "running")},
            "epoch": epoch,
            "step": step,
            "running": list(running),
        }, out / CHECKPOINT)

    try:
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            sampler.set_epoch(epoch)
            indices = list(sampler)
            n_full = len(indices) // cfg.batch_size
            batches = [indices[i * cfg.batch_size : (i + 1) * cfg.batch_size] for i in range(n_full)]
            if not batches:  # fewer samples than one batch: train on what there is
                batches = [indices]
            start_step = state["step"]
            # Its own generator: a loader drawing its base seed from the global RNG would shift the
            # dropout masks of a run resumed mid-epoch.
            loader = DataLoader(sets["train"], batch_sampler=batches[start_step:], num_workers=cfg.num_workers,
                                pin_memory=pin, generator=torch.Generator().manual_seed(cfg.seed + epoch))
            running = list(state["running"])  # loss_sum, correct, seen (all ranks, before start_step)
            local = [0.0, 0.0, 0.0]
            lr = optimizer.param_groups[0]["lr"]
            _set_train_mode(model, cfg)
            bar = None
            if show:
                from tqdm import tqdm

                bar = tqdm(total=len(batches), initial=start_step, desc=f"epoch {epoch + 1}/{cfg.epochs}", dynamic_ncols=True)
            t0 = t_mark = t_log = time.perf_counter()
            step = start_step
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with _autocast(device, cfg.amp):
                    rates = net(x)
                    loss = F.mse_loss(rates.float(), F.one_hot(y, num_classes).float())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                _reset(model)
                step += 1
                local[0] += loss.item() * len(y)
                local[1] += (rates.detach().argmax(1) == y).sum().item()
                local[2] += len(y)
                if bar is not None:
                    seen = running[2] + local[2] * dist_info.world
                    bar.update(1)
                    bar.set_postfix(loss=f"{(running[0] + local[0] * dist_info.world) / seen:.4f}",
                                    acc=f"{(running[1] + local[1] * dist_info.world) / seen:.3f}",
                                    img_s=f"{local[2] * dist_info.world / (time.perf_counter() - t0):.1f}")
                if bar is None and dist_info.main and time.perf_counter() - t_log > LOG_EVERY_S:
                    t_log = time.perf_counter()
                    print(f"epoch {epoch + 1} step {step}/{len(batches)}: loss {local[0] / local[2]:.4f} "
                          f"acc {local[1] / local[2]:.4f} {local[2] * dist_info.world / (t_log - t0):.1f} img/s", flush=True)
                interrupt = _any(stop.requested, dist_info, device)
                if step < len(batches) and (interrupt or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
                    totals = [a + b for a, b in zip(running, _all_sum(local, dist_info, device), strict=True)]
                    state["wall_s"] += time.perf_counter() - t_mark
                    save_checkpoint(epoch, step, totals)
                    t_mark = time.perf_counter()  # checkpointing is not training time
                    if dist_info.main and bar is None:
                        print(f"epoch {epoch + 1} step {step}/{len(batches)}: loss {totals[0] / totals[2]:.4f} "
                              f"acc {totals[1] / totals[2]:.4f} {local[2] * dist_info.world / (time.perf_counter() - t0):.1f} img/s (checkpoint)", flush=True)
                    if interrupt:
                        if dist_info.main:
                            print(f"stopped at epoch {epoch + 1} step {step}; continue with --resume", flush=True)
                        return {"stopped": True, "epoch": epoch, "step": step, "out": str(out)}
            if bar is not None:
                bar.close()
            train_time = time.perf_counter() - t0
            state["wall_s"] += time.perf_counter() - t_mark
            totals = [a + b for a, b in zip(running, _all_sum(local, dist_info, device), strict=True)]
            scheduler.step()

            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": totals[0] / max(totals[2], 1),
                "train_top1": totals[1] / max(totals[2], 1),
                "train_images_per_s": local[2] * dist_info.world / max(train_time, 1e-9),
            }
            for split in ("val", "test"):
                if split in sets:
                    loader = _eval_loader(sets[split], cfg.eval_batch_size, dist_info, cfg.num_workers, pin)
                    # fp32 even with --amp: the card's accuracy must be what `plif-zoo eval` of the
                    # stored fp32 weights measures.
                    r = _run_eval(model, loader, num_classes, device, False, dist_info)
                    row.update({f"{split}_loss": r["loss"], f"{split}_top1": r["top1"], f"{split}_samples": r["samples"]})
            improved = "val_top1" in row and row["val_top1"] > state["best_val"]
            if improved:
                state["best_val"] = row["val_top1"]
                state["best_test"] = row["test_top1"]
                state["best_epoch"] = epoch + 1
            prev_a = max([h["accuracy_a"] for h in state["history"]], default=0.0)
            row["accuracy_a"] = max(prev_a, row["test_top1"])
            if "val_top1" in row:
                row["accuracy_b"] = state["best_test"]
                row["best_epoch"] = state["best_epoch"]
            row["train_wall_s"] = state["wall_s"]
            taus = plif_taus(model)
            tau_row = {"epoch": epoch + 1, **taus}
            state["history"].append(row)
            state["taus"].append(tau_row)
            state["epoch"], state["step"], state["running"] = epoch + 1, 0, [0.0, 0.0, 0.0]
            if dist_info.main:
                writer.write_tables(state["history"], state["taus"])
                writer.scalars(row, tau_row)
                if improved or (cfg.val_fraction == 0 and row["test_top1"] >= prev_a):
                    _save_best(model, out, cfg, row, hardware, state["wall_s"])
                _write_summary(out, cfg, state, hardware)
                msg = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k.endswith(("loss", "top1", "accuracy_a", "accuracy_b")))
                print(f"epoch {epoch + 1}/{cfg.epochs}: {msg} ({row['train_images_per_s']:.1f} img/s)", flush=True)
            save_checkpoint(epoch + 1, 0, [0.0, 0.0, 0.0])
    finally:
        stop.close()
        writer.close()
    last = state["history"][-1] if state["history"] else {}
    return {
        "out": str(out),
        "epochs": state["epoch"],
        "accuracy_a": last.get("accuracy_a"),
        "accuracy_b": last.get("accuracy_b"),
        "best_epoch": last.get("best_epoch"),
        "history": state["history"],
        "taus": state["taus"],
        "model": model,
    }


def _num_classes(cfg: TrainConfig) -> int:
    if cfg.dataset == "imagefolder":
        root = Path(cfg.data_dir or ".") / "train"
        if not root.is_dir():
            raise data_mod.DatasetNotFoundError(f"imagefolder: {root} not found; data_dir must hold train/ and test/")
        return sum(1 for p in root.iterdir() if p.is_dir())
    return data_mod.DATASETS[cfg.dataset].num_classes


def _gather(obj: Any, dist_info: _Dist) -> list[Any]:
    if not dist_info.enabled:
        return [obj]
    import torch.distributed as dist

    objs: list[Any] = [None] * dist_info.world
    dist.all_gather_object(objs, obj)
    return objs


def _barrier(dist_info: _Dist, first: bool) -> None:
    """Called before (first=True) and after a step that rank 0 must do alone first."""
    if dist_info.enabled and (dist_info.main != first):
        import torch.distributed as dist

        dist.barrier()


def _any(flag: bool, dist_info: _Dist, device: torch.device) -> bool:
    if not dist_info.enabled:
        return flag
    return _all_sum([float(flag)], dist_info, device)[0] > 0


# --------------------------------------------------------------------------- fine-tuning


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
) -> dict[str, Any]:
    """Fine-tune a zoo model on new data with ``num_classes`` outputs (the output layer is replaced).

    dataset: ``imagefolder`` (data_dir holds train/ and test/ with one folder per class,
    images resized to the model's input) or a key of ``plif_zoo.data.DATASETS``.
    Remaining keyword arguments override the training recipe (epochs, lr, batch_size, out, ...).
    """
    overrides.setdefault("pretrained", True)
    return train(
        model, dataset=dataset, data_dir=str(data_dir), num_classes=num_classes,
        freeze_features=freeze_features, resume=resume, progress=progress, **overrides,
    )


# --------------------------------------------------------------------------- plots


def _read_csv(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """PNG plots of a run: ``accuracy.png`` (train / val / test top-1 and accuracy-A/B per epoch)
    and ``tau.png`` (tau of every PLIF layer per epoch, the paper's Fig. 7). Returns the paths."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .hub import _atomic_write_bytes

    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.csv"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file} not found; pass the --out folder of a `plif-zoo train` run with at least one finished epoch")
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = _read_csv(metrics_file)
    epochs = [r["epoch"] for r in rows]
    written = []

    def save(fig, ax, ylabel: str, title: str, name: str) -> Path:
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, dpi=120, format="png")
        plt.close(fig)
        path = out_dir / name
        _atomic_write_bytes(path, png.getvalue())
        return path

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("train_top1", "train"), ("val_top1", "validation"), ("test_top1", "test"),
                       ("accuracy_a", "accuracy-A (best test)"), ("accuracy_b", "accuracy-B (test at best val)")):
        if any(key in r for r in rows):
            ax.plot(epochs, [100 * r.get(key, float("nan")) for r in rows], label=label,
                    linestyle="--" if key.startswith("accuracy") else "-", marker="." if len(rows) < 30 else None)
    written.append(save(fig, ax, "top-1 accuracy (%)", f"{run_dir.name}: accuracy", "accuracy.png"))

    tau_file = run_dir / "tau.csv"
    if tau_file.is_file():
        taus = _read_csv(tau_file)
        layers = [k for k in taus[0] if k != "epoch"] if taus else []
        if layers:
            fig, ax = plt.subplots(figsize=(6, 4))
            for name in layers:
                ax.plot([r["epoch"] for r in taus], [r.get(name, float("nan")) for r in taus], label=name,
                        marker="." if len(taus) < 30 else None)
            written.append(save(fig, ax, "membrane time constant tau",
                                f"{run_dir.name}: tau per PLIF layer (paper Fig. 7)", "tau.png"))
    return written
