"""Evaluation with spike statistics: top-1, loss, firing rate per layer, spikes and synaptic
operations (SynOps) per sample, images/s; in inference mode and fp32 unless ``amp``."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import monitor, neuron
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import data as data_mod
from ..factory import load, model_card
from .config import dataset_of
from .datasets import eval_loader, eval_slice, model_input_shape, subset
from .runtime import Dist, autocast, reset, resolve_device
from .state import Tally

__all__ = ["SpikeCounter", "run_eval", "evaluate"]


def _spike_count(spikes: torch.Tensor) -> tuple[float, int]:
    return spikes.detach().float().sum().item(), spikes.numel()


class SpikeCounter:
    """Counts spikes per neuron layer and synaptic operations per synapse layer while attached.

    A synaptic operation (SynOp) is one spike arriving at one synapse: for a Linear layer
    fed with spikes, (non-zero inputs) x out_features; for a Conv2d, each non-zero input
    times the number of outputs its kernel reaches. Layers fed with real values (the
    encoder's first convolution) are counted as dense multiply-accumulates (MACs).
    """

    def __init__(self, model: nn.Module):
        # Neuron outputs: SpikingJelly's OutputMonitor, recording (spikes, neurons) per call.
        self._monitor = monitor.OutputMonitor(model, neuron.BaseNode, _spike_count)
        # Synapses stay on our own hooks: OutputMonitor / InputMonitor hand the function only
        # the output or only the input, but a SynOp count needs the input (which entries are
        # spikes), the output size and the layer's geometry together.
        self.synops = 0.0
        self.macs = 0.0
        self._handles = [
            m.register_forward_hook(self._synapse_hook)
            for m in model.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))
        ]

    def _totals(self, i: int) -> dict[str, float]:
        layers = self._monitor.monitored_layers
        return {
            name: float(sum(r[i] for r in self._monitor[name]))
            for name in layers
            if self._monitor[name]
        }

    @property
    def spikes(self) -> dict[str, float]:
        """Spikes emitted per neuron layer (by module name)."""
        return self._totals(0)

    @property
    def neurons(self) -> dict[str, float]:
        """Neuron-steps per layer (neurons x T x samples): the denominator of a firing rate."""
        return self._totals(1)

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
        if x.dim() == 5:  # [T, N, C, H, W] multi-step input
            x = x.flatten(0, 1)
        if not binary:
            self.macs += (
                out.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
            )
            return
        mask = (x != 0).float().sum(1, keepdim=True)
        ones = torch.ones(1, 1, *module.kernel_size, dtype=mask.dtype, device=mask.device)
        reach = F.conv2d(
            mask, ones, stride=module.stride, padding=module.padding, dilation=module.dilation
        )
        self.synops += reach.sum().item() * module.out_channels // module.groups

    def close(self) -> None:
        self._monitor.close()
        for h in self._handles:
            h.remove()


def run_eval(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    amp: bool,
    dist_info: Dist,
    counter: SpikeCounter | None = None,
) -> dict[str, Any]:
    """Top-1, loss (MSE per class, as in training), samples and images/s over every rank's shard."""
    model.eval()
    tally = Tally()
    start = time.perf_counter()
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast(device, amp):
                rates = model(x)
            rates = rates.float()
            loss = (
                F.mse_loss(rates, F.one_hot(y, num_classes).float(), reduction="sum").item()
                / num_classes
            )
            tally.add(loss, (rates.argmax(1) == y).sum().item(), len(y))
            reset(model)
    elapsed = time.perf_counter() - start
    tally = tally.all_reduce(dist_info, device)
    seen = tally.seen
    if seen == 0:
        raise ValueError("the evaluation set is empty")
    result = {
        "top1": tally.correct / seen,
        "loss": tally.loss_sum / seen,
        "samples": int(seen),
        "images_per_s": seen / elapsed,
    }
    if counter is not None:
        spikes, neurons = counter.spikes, counter.neurons
        result["firing_rates"] = {k: spikes[k] / max(neurons[k], 1) for k in spikes}
        result["spikes_per_sample"] = sum(spikes.values()) / seen
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
    val_fraction: float | None = None,
) -> dict[str, Any]:
    """Top-1, loss, per-layer firing rates, spikes and SynOps per sample, images/s (inference mode).

    model: a zoo model, a registry id, ``local-dir:PATH`` / a model folder, or ``hf-hub:ORG/NAME``
    (loaded with ``pretrained``).
    dataset: a Dataset of (input, label), or a dataset name (default: the model's) whose
    ``split`` (``test`` or ``val``, the accuracy-B hold-out) is read from ``data_dir``.
    val_fraction: the hold-out per class; default: the one a model folder's recipe records,
    else the recipe's 0.15.
    """
    model_id = None
    if isinstance(model, (str, Path)):
        model_id = str(model)
        if Path(model_id).is_dir():
            model_id = f"local-dir:{model_id}"
        kw = {} if T is None else {"T": T}
        model = load(model_id, pretrained=pretrained, backend=backend, **kw)
    elif T is not None:
        model.T = T
    if dataset is None or isinstance(dataset, str):
        name = dataset or _dataset_name_of_model(model_id)
        if split not in ("test", "val"):
            raise ValueError(f"split must be 'test' or 'val', got {split!r}")
        if val_fraction is None:
            val_fraction = _val_fraction_of_model(model_id)
        if split == "val" and val_fraction == 0:
            raise ValueError(
                f"{model_id or 'this model'} was trained on the whole training set "
                f"(val_fraction 0): it has no validation hold-out; evaluate the test split, or "
                f"pass the hold-out to use (val_fraction / --val-fraction)"
            )
        image_shape = model_input_shape(model_id, model) if name == "imagefolder" else None
        dataset = data_mod.get_dataset(
            name,
            split,
            data_dir,
            T=getattr(model, "T", None),
            val_fraction=val_fraction,
            image_shape=image_shape,
        )
    if max_samples is not None and max_samples < len(dataset):
        dataset = subset(dataset, eval_slice(len(dataset), max_samples))
    num_classes = _output_classes(model, dataset)
    dist_info = Dist()
    dev = resolve_device(device, dist_info)
    model.to(dev)
    counter = SpikeCounter(model)
    try:
        loader = eval_loader(dataset, batch_size, dist_info, num_workers, dev.type == "cuda")
        result = run_eval(model, loader, num_classes, dev, amp, dist_info, counter)
    finally:
        counter.close()
    if model_id is not None:
        result = {"model": model_id, "pretrained": pretrained, **result}
    result["split"] = split
    result["device"] = str(dev)
    return result


def _output_classes(model: nn.Module, dataset: Dataset) -> int:
    """The model's output width, checked to cover the dataset's classes (fewer is fine)."""
    data_classes = (
        getattr(dataset, "num_classes", None) or int(torch.as_tensor(dataset.targets).max()) + 1
    )
    num_classes = getattr(model, "num_classes", data_classes)
    if data_classes > num_classes:
        raise ValueError(
            f"the dataset has {data_classes} classes but the model outputs {num_classes}; "
            f"fine-tune it on this dataset first (plif-zoo finetune, or "
            f"load(..., num_classes={data_classes}) and train)"
        )
    return num_classes


def _val_fraction_of_model(model_id: str | None) -> float:
    """The hold-out a model folder's training recipe used (its best/ card), else 0.15."""
    recipe = model_card(model_id).get("recipe") if model_id is not None else None
    if isinstance(recipe, dict) and isinstance(recipe.get("val_fraction"), (int, float)):
        return float(recipe["val_fraction"])
    return 0.15


def _dataset_name_of_model(model_id: str | None) -> str:
    if model_id is None:
        raise ValueError("cannot tell which dataset this model belongs to; pass dataset=...")
    if not model_id.startswith(("local-dir:", "hf-hub:")):
        return dataset_of(model_id)
    dataset = model_card(model_id).get("dataset")
    if not dataset:
        raise ValueError(f"{model_id}: its config.json names no dataset; pass dataset=...")
    return dataset
