"""The splits a run reads: train / val (accuracy-B hold-out) / test, subsets and loaders.

Validation is the first ``val_fraction`` of each training class (see ``plif_zoo.data``).
``max_train_samples`` draws a seeded random subset; ``max_eval_samples`` takes evenly spaced
samples (:func:`eval_slice`), so a class-sorted split still shows every class.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, get_worker_info

from .. import data as data_mod
from .config import TrainConfig, dataset_of
from .runtime import Dist

__all__ = [
    "training_datasets",
    "eval_slice",
    "subset",
    "model_input_shape",
    "eval_loader",
    "train_loader",
    "num_classes_of",
    "check_num_classes",
]


def training_datasets(cfg: TrainConfig, model: nn.Module | None = None) -> dict[str, Dataset]:
    """``{"train", "val" (when val_fraction > 0), "test"}`` with the run's subsets applied."""
    image_shape = tuple(cfg.image_shape) if cfg.image_shape else None
    if cfg.dataset == "imagefolder" and image_shape is None:
        image_shape = model_input_shape(cfg.model, model)
    kw = dict(
        data_dir=cfg.data_dir, T=_frames(cfg, model), image_shape=image_shape, download=cfg.download
    )
    if cfg.val_fraction > 0:
        sets = {
            "train": data_mod.get_dataset(
                cfg.dataset, "train", val_fraction=cfg.val_fraction, **kw
            ),
            "val": data_mod.get_dataset(cfg.dataset, "val", val_fraction=cfg.val_fraction, **kw),
        }
        if len(sets["val"]) == 0:  # before an epoch is spent: accuracy-B needs a hold-out
            raise ValueError(
                f"val_fraction {cfg.val_fraction} holds out no sample of {cfg.dataset}: each "
                f"class keeps floor(n * {cfg.val_fraction}) of its n samples; give more "
                f"samples per class, a larger val_fraction, or val_fraction 0 (--val-fraction 0: "
                f"no hold-out, no accuracy-B)"
            )
    else:
        sets = {"train": data_mod.get_dataset(cfg.dataset, "train-full", **kw)}
    sets["test"] = data_mod.get_dataset(cfg.dataset, "test", **kw)
    if cfg.max_train_samples is not None and cfg.max_train_samples < len(sets["train"]):
        g = torch.Generator().manual_seed(cfg.seed)
        keep = (
            torch.randperm(len(sets["train"]), generator=g)[: cfg.max_train_samples].sort().values
        )
        sets["train"] = subset(sets["train"], keep.tolist())
    for name in ("val", "test"):
        if (
            name in sets
            and cfg.max_eval_samples is not None
            and cfg.max_eval_samples < len(sets[name])
        ):
            sets[name] = subset(sets[name], eval_slice(len(sets[name]), cfg.max_eval_samples))
    return sets


def eval_slice(size: int, n: int) -> list[int]:
    """``n`` evenly spaced indices of a split of ``size``: a fixed slice that, unlike the first
    ``n``, covers every class when a split is ordered by class (the event datasets)."""
    if n >= size:
        return list(range(size))
    return [i * size // n for i in range(n)]


def subset(ds: Dataset, indices: Iterable[int]) -> Dataset:
    """``ds`` restricted to ``indices``, keeping ``targets`` and ``num_classes``."""
    sub = data_mod.SubsetWithTargets(ds, list(indices))
    sub.num_classes = ds.num_classes
    return sub


def _frames(cfg: TrainConfig, model: nn.Module | None) -> int | None:
    """Frames per event sample: the run's T, else the model's."""
    return cfg.T if cfg.T is not None else getattr(model, "T", None)


def model_input_shape(model_id: str | None, model: nn.Module | None) -> tuple[int, int, int]:
    """[C, H, W] that images of an imagefolder are resized to: the model's, else its dataset's."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "static", False):
        return (config.in_channels, *config.input_size)
    try:
        return data_mod.DATASETS[dataset_of(model_id or "")].shape
    except ValueError as err:
        raise ValueError(f"{err}; for imagefolder data also pass image_shape [C, H, W]") from None


def eval_loader(
    ds: Dataset, batch_size: int, dist_info: Dist, num_workers: int, pin: bool
) -> DataLoader:
    """This rank's strided shard of ``ds`` in order, no padding (shards add up to ``ds``)."""
    indices = list(range(dist_info.rank, len(ds), dist_info.world))
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    return DataLoader(
        ds,
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(0),
    )  # leaves the global RNG alone


class _Batch(list):
    """A batch's sample indices, and its step in the epoch."""

    def __init__(self, indices: Sequence[int], step: int):
        super().__init__(indices)
        self.step = step


class _SeedEachBatch(Dataset):
    """``base``, read by DataLoader workers with torch's and Python's RNG seeded from (seed,
    epoch, rank, step) before each batch: a batch's random augmentation does not depend on
    which worker reads it, so a run resumed mid-epoch sees the same images. (Without workers
    the checkpointed global RNG already continues exactly; nothing is reseeded there.)"""

    def __init__(self, base: Dataset, seed: int, epoch: int, rank: int):
        self.base, self.key = base, (seed, epoch, rank)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        return self.base[i]

    def __getitems__(self, batch: Sequence[int]) -> list:
        if get_worker_info() is not None and isinstance(batch, _Batch):
            seed = 0
            for part in (*self.key, batch.step):
                seed = (seed * 1_000_003 + part) % 2**63
            torch.manual_seed(seed)
            random.seed(seed)
        return [self.base[i] for i in batch]


def train_loader(
    ds: Dataset,
    batches: list[list[int]],
    start_step: int,
    *,
    seed: int,
    epoch: int,
    rank: int,
    num_workers: int,
    pin: bool,
) -> DataLoader:
    """The epoch's ``batches`` of ``ds`` from ``start_step`` on, the same images (augmentation
    included) whether the epoch runs through or resumes at ``start_step``."""
    if num_workers:
        ds = _SeedEachBatch(ds, seed, epoch, rank)
    return DataLoader(
        ds,
        batch_sampler=[_Batch(b, step) for step, b in enumerate(batches)][start_step:],
        num_workers=num_workers,
        pin_memory=pin,
        # Its own generator: a loader drawing its base seed from the global RNG would shift
        # the dropout masks of a run resumed mid-epoch.
        generator=torch.Generator().manual_seed(seed + epoch),
    )


def num_classes_of(cfg: TrainConfig) -> int:
    """Classes of the run's dataset (for imagefolder: the folders in ``data_dir/train``)."""
    if cfg.dataset == "imagefolder":
        root = Path(cfg.data_dir or ".") / "train"
        if not root.is_dir():
            raise data_mod.DatasetNotFoundError(
                f"imagefolder: {root} not found; data_dir must hold train/ and test/"
            )
        return len(data_mod.imagefolder_classes(root.parent))
    if cfg.dataset not in data_mod.DATASETS:
        raise ValueError(
            f"unknown dataset {cfg.dataset!r}; "
            f"choose one of {', '.join(data_mod.DATASETS)} or imagefolder"
        )
    return data_mod.DATASETS[cfg.dataset].num_classes


def check_num_classes(cfg: TrainConfig) -> int:
    """The run's class count: ``cfg.num_classes`` when it matches the data, else a ValueError."""
    found = num_classes_of(cfg)
    if cfg.num_classes is not None and cfg.num_classes != found:
        if cfg.dataset == "imagefolder":
            root = Path(cfg.data_dir or ".") / "train"
            names = ", ".join(data_mod.imagefolder_classes(root.parent))
            where = f"{root} has {found} class folders ({names})"
        else:
            where = f"{cfg.dataset} has {found} classes"
        raise ValueError(
            f"num_classes is {cfg.num_classes} but {where}; pass --num-classes {found}"
        )
    return found
