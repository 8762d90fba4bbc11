"""``plif-zoo demo``: classify the sample images shipped in the package with the best model that
has weights, print the predictions, and draw images, spike rasters and per-layer tau to a PNG.

Needs no dataset and no network once the weights are local ($PLIF_ZOO_WEIGHTS, the
repository's weights/ folder, or the Hugging Face cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import registry
from ._io import atomic_write
from .errors import import_extra
from .factory import load

__all__ = ["SAMPLES", "DemoUnavailable", "choose_model", "load_samples", "run_demo"]

ASSETS = Path(__file__).resolve().parent / "assets"
# dataset -> the sample file shipped for it (uint8 images [N, H, W] or [N, C, H, W], int64 labels)
SAMPLES = {"fashion-mnist": ASSETS / "fashion-mnist-samples.safetensors"}
DEFAULT_MODEL = "fashion-mnist-plif"


class DemoUnavailable(RuntimeError):
    """No model with weights can run the demo; the message says which one it would use and why
    not."""


@dataclass
class DemoResult:
    model_id: str
    labels: list[str]  # true label per image
    predictions: list[str]  # predicted label per image
    confidence: list[float]  # vote share of the prediction: rate / sum of class rates
    rates: torch.Tensor  # [N, num_classes] firing rates
    taus: dict[str, float]
    png: Path | None


def _score(model_id: str) -> float:
    info = registry.model_info(model_id)
    return info.accuracy if info.accuracy is not None else (info.paper_accuracy_a or 0.0) - 100.0


def choose_model() -> str:
    """The model with weights and shipped samples, best measured accuracy first; else
    DemoUnavailable."""
    candidates = [
        m
        for m in registry.list_models(pretrained=True)
        if registry.model_info(m).dataset in SAMPLES
    ]
    if candidates:
        return max(candidates, key=_score)
    info = registry.model_info(DEFAULT_MODEL)
    raise DemoUnavailable(
        f"plif-zoo demo would use {DEFAULT_MODEL} (the paper's {info.dataset} network, accuracy-B "
        f"{info.paper_accuracy_b}% in the paper; the package ships {info.dataset} sample images), "
        f"but no model with sample images has weights yet: none is published on the Hub and no "
        f"model folder is in {', '.join(str(d) for d in registry.weights_dirs())}. Train one with "
        f"`plif-zoo train {DEFAULT_MODEL}` and put its folder at weights/{DEFAULT_MODEL}/ or point "
        f"$PLIF_ZOO_WEIGHTS at its parent folder"
    )


def load_samples(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Shipped sample images as float [N, C, H, W] in [0, 1] and int64 labels [N]."""
    if dataset not in SAMPLES:
        raise KeyError(
            f"no sample images shipped for {dataset!r}; samples exist for {sorted(SAMPLES)}"
        )
    data = load_file(SAMPLES[dataset])
    images = data["images"].float() / 255.0
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return images, data["labels"]


def run_demo(
    model_id: str | None = None,
    out: str | Path | None = "plif-zoo-demo.png",
    device: str | None = None,
    T: int | None = None,
    backend: str = "auto",
) -> DemoResult:
    """Classify the samples; write the figure to ``out`` (None: no figure)."""
    if out is not None:  # before any work
        import_extra("matplotlib", "train", "the demo's figure")
    model_id = model_id or choose_model()
    info = registry.model_info(model_id)
    if info.dataset not in SAMPLES:
        raise DemoUnavailable(
            f"{model_id} is a {info.dataset} model; the package ships sample images "
            f"only for {sorted(SAMPLES)}"
        )
    if not info.has_weights:
        raise DemoUnavailable(f"{model_id} has no weights yet; the demo needs trained weights")
    model = load(model_id, T=T, device=device, backend=backend).eval()
    images, labels = load_samples(info.dataset)
    images = images.to(next(model.parameters()).device)

    layers = model.spiking_layers()
    spikes: dict[str, torch.Tensor] = {}
    hooks = [
        node.register_forward_hook(
            lambda m, i, o, name=name: spikes.__setitem__(name, o.detach().cpu())
        )
        for name, node in layers
    ]
    try:
        with torch.no_grad():
            rates = model(images).cpu()
    finally:
        for h in hooks:
            h.remove()
    names = info.label_names
    pred = rates.argmax(1)
    share = rates.gather(1, pred[:, None])[:, 0] / rates.sum(1).clamp_min(1e-12)
    result = DemoResult(
        model_id=model_id,
        labels=[names[i] for i in labels.tolist()],
        predictions=[names[i] for i in pred.tolist()],
        confidence=share.tolist(),
        rates=rates,
        taus=model.taus(),
        png=None,
    )
    if out is not None:
        result.png = _draw(result, images.cpu(), spikes[layers[-1][0]], Path(out))
    return result


def _draw(result: DemoResult, images: torch.Tensor, out_spikes: torch.Tensor, out: Path) -> Path:
    """Row 1: images with prediction; row 2: output-population spike raster per image;
    row 3: tau."""
    from matplotlib.figure import Figure  # not pyplot: the caller's backend stays as it is

    n = images.shape[0]
    fig = Figure(figsize=(1.6 * n, 6.4), layout="constrained")
    grid = fig.add_gridspec(3, n, height_ratios=(1.0, 1.4, 1.0))
    for i in range(n):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(images[i].permute(1, 2, 0).squeeze(-1), cmap="gray", vmin=0, vmax=1)
        ok = result.predictions[i] == result.labels[i]
        ax.set_title(
            f"{result.predictions[i]} {100 * result.confidence[i]:.0f}%\n"
            f"(true: {result.labels[i]})",
            fontsize=7,
            color="green" if ok else "red",
        )
        ax.axis("off")
        ax = fig.add_subplot(grid[1, i])
        t_idx, n_idx = out_spikes[:, i].nonzero(as_tuple=True)  # [T, N, K*P] -> this image
        for edge in range(0, out_spikes.shape[-1], out_spikes.shape[-1] // len(result.rates[i])):
            ax.axhline(edge - 0.5, color="0.85", linewidth=0.5)  # one band per class population
        ax.scatter(t_idx, n_idx, s=2, marker="|", color="black")
        ax.set_xlim(-0.5, out_spikes.shape[0] - 0.5)
        ax.set_ylim(-0.5, out_spikes.shape[-1] - 0.5)
        ax.set_xlabel("t", fontsize=7)
        if i == 0:
            ax.set_ylabel("output neuron", fontsize=7)
        ax.tick_params(labelsize=6)
    ax = fig.add_subplot(grid[2, :])
    names = list(result.taus)
    ax.bar(range(len(names)), [result.taus[k] for k in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, fontsize=7)
    ax.set_ylabel("tau")
    ax.set_title(f"{result.model_id}: membrane time constant per spiking layer", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return out
