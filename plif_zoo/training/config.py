"""TrainConfig (the paper's recipe as defaults), reading it from an id or a YAML file, checks.

Recipe defaults (authors' ``train.py``): Adam lr 1e-3, CosineAnnealingLR(T_max=64) stepped
per epoch, MSE between the voted firing rates and the one-hot label, batch 16, seed 2020.
``configs/{model-id}.yaml`` holds only what differs for a model; every value can be overridden.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import data as data_mod
from ..registry import model_info

__all__ = [
    "TrainConfig",
    "load_config",
    "check_config",
    "resolve_config",
    "dataset_of",
    "CONFIG_DIR",
]

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs"


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the paper's recipe."""

    model: str  # registry id, e.g. "fashion-mnist-plif"
    dataset: str | None = (
        None  # a key of plif_zoo.data.DATASETS or "imagefolder"; None: from the model id
    )
    data_dir: str | None = None
    download: bool = (
        False  # MNIST / Fashion-MNIST / CIFAR-10: torchvision's downloader into data_dir
    )
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
    checkpoint_every: int = (
        0  # also checkpoint every N training steps inside an epoch (0: per epoch only)
    )
    device: str = "auto"  # auto: cuda when available
    amp: bool = (
        False  # autocast: bfloat16 on CPU, float16 + GradScaler on CUDA (evaluation stays fp32)
    )
    compile: bool = False  # torch.compile(fullgraph=True) of the training step, fused Adam
    threads: int | None = None  # torch.set_num_threads
    num_workers: int = 0  # DataLoader workers
    backend: str = "auto"  # neuron / pooling backend
    image_shape: list[int] | None = None  # [C, H, W] for imagefolder data; None: the model's input

    def __post_init__(self) -> None:
        check_config(self)  # a TrainConfig built in Python is checked like one read from a file


# Values that may change when a run is resumed; the rest must match the checkpoint.
RUNTIME_KEYS = {
    "epochs",
    "data_dir",
    "download",
    "out",
    "device",
    "threads",
    "compile",
    "num_workers",
    "checkpoint_every",
    "eval_batch_size",
    "backend",
    "pretrained",
}


def load_config(model_or_config: str, **overrides: Any) -> TrainConfig:
    """A TrainConfig from a registry id (plus ``configs/{id}.yaml`` if present) or a YAML file.

    ``overrides`` whose value is None are ignored, so CLI defaults pass straight through.
    """
    import yaml  # only a config read needs it

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
    return TrainConfig(**values)  # checked in __post_init__


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# (name, smallest allowed value, may be None): integers of the recipe and of the runtime
_INTS = (
    ("epochs", 1, False),
    ("batch_size", 1, False),
    ("t_max", 1, False),
    ("eval_batch_size", 1, False),
    ("checkpoint_every", 0, False),
    ("num_workers", 0, False),
    ("T", 1, True),
    ("num_classes", 1, True),
    ("max_train_samples", 1, True),
    ("max_eval_samples", 1, True),
    ("threads", 1, True),
)


def check_config(cfg: TrainConfig) -> None:
    """Raise ValueError naming the first value outside its range (every numeric field: non-finite
    numbers, wrong types and out-of-range values are refused, whether from a YAML file, the CLI
    or Python)."""
    for name, low, optional in _INTS:
        v = getattr(cfg, name)
        if v is None and optional:
            continue
        if not _is_int(v) or v < low:
            what = "a positive integer" if low == 1 else "an integer >= 0"
            raise ValueError(f"{name} must be {what}{' or None' if optional else ''}, got {v!r}")
    if not _is_number(cfg.lr) or cfg.lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {cfg.lr!r}")
    if not _is_number(cfg.weight_decay) or cfg.weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {cfg.weight_decay!r}")
    if not _is_number(cfg.val_fraction) or not 0 <= cfg.val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {cfg.val_fraction!r}")
    if not _is_int(cfg.seed) or not -(2**63) <= cfg.seed < 2**63:
        raise ValueError(f"seed must be an integer (64-bit), got {cfg.seed!r}")
    if cfg.image_shape is not None and (
        len(cfg.image_shape) != 3 or not all(_is_int(d) and d >= 1 for d in cfg.image_shape)
    ):
        raise ValueError(
            f"image_shape must be [C, H, W] of positive integers, got {cfg.image_shape!r}"
        )
    if not isinstance(cfg.model_kwargs, dict):
        raise ValueError(f"model_kwargs must be a mapping, got {cfg.model_kwargs!r}")


def resolve_config(config: TrainConfig | str | None, overrides: dict[str, Any]) -> TrainConfig:
    """``train``'s arguments as one checked TrainConfig with its dataset and run folder filled
    in."""
    if isinstance(config, TrainConfig):
        # (replace runs __post_init__, which checks the values)
        cfg = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    else:
        if config is None:
            if overrides.get("model") is None:
                raise TypeError(
                    "train() needs a config: a registry id, a YAML file or a TrainConfig, "
                    "e.g. train('fashion-mnist-plif', data_dir=...)"
                )
            config = overrides.pop("model")
        cfg = load_config(config, **overrides)
    if cfg.dataset is None:
        cfg.dataset = dataset_of(cfg.model)
    cfg.out = str(Path(cfg.out or f"runs/{cfg.model}"))
    return cfg


def dataset_of(model_id: str) -> str:
    """The dataset a registry id was built for (the registry's, else the longest matching
    prefix)."""
    try:
        return model_info(model_id).dataset
    except (KeyError, ValueError, TypeError):
        pass
    matches = [
        name for name in data_mod.DATASETS if model_id == name or model_id.startswith(name + "-")
    ]
    if not matches:
        raise ValueError(
            f"cannot tell which dataset model {model_id!r} belongs to; "
            f"set `dataset:` in its config "
            f"or pass --dataset (one of {', '.join(data_mod.DATASETS)}, imagefolder)"
        )
    return max(matches, key=len)
