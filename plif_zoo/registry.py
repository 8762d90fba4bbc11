"""Model ids -> architecture, metadata and where the weights are: ids and metadata only.

Ids are ``{dataset}-{neuron}[-tau16][-avgpool]``. Everything known about one id lives in
one ``ModelInfo`` (like timm's PretrainedCfg). To publish weights for an id, add one line to
``PUBLISHED_WEIGHTS``. Building and loading models is ``plif_zoo.factory``'s job.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from .data import LABEL_NAMES
from .errors import NoPretrainedWeightsError, UnknownModelError
from .model_folder import CONFIG_NAME, WEIGHTS_NAME, read_config
from .networks import PAPER_NETWORKS, NetworkConfig, count_parameters

__all__ = [
    "ModelInfo",
    "WeightSource",
    "UnknownModelError",
    "NoPretrainedWeightsError",
    "PUBLISHED_WEIGHTS",
    "list_models",
    "model_info",
    "check_model_id",
    "weights_dirs",
    "local_folder",
    "markdown_table",
    "published_entry",
]

# Weights that exist, one entry per id. ``revision`` is the pinned Hub commit (40 hex), or
# None for weights shipped only in the repository's weights/<id>/ folder (not on the Hub
# yet); ``sha256`` that of model.safetensors; ``accuracy`` (percent) with its ``protocol``.
# `plif-zoo push MODEL_DIR` prints the line; for weights/ only:
#   python -c "from plif_zoo.registry import published_entry as e; print(e('weights/ID', None))"
# Example:
#   "fashion-mnist-plif": dict(revision="0123...", sha256="abcd...", accuracy=93.1,
#                              protocol="accuracy-B: ..., 1 x H200, `plif-zoo train ...`"),
PUBLISHED_WEIGHTS: dict[str, dict] = {
    "fashion-mnist-plif": dict(
        revision=None,
        sha256="d26a881cbad55aacc441c4067dacdb5e8854afa2331f6872e552a493b1d07886",
        accuracy=93.86,
        protocol="accuracy-B, 64 epochs at batch 16 on a 2-core CPU (paper: 1024 epochs); "
        "see weights/fashion-mnist-plif/README.md",
    ),
    "fashion-mnist-lif": dict(
        revision=None,
        sha256="4c22257102f62e17f530404776e457679effc71bc9f9cddaefa5c5aa301cb013",
        accuracy=91.46,
        protocol="accuracy-B, 3 epochs on a 2-core CPU (paper: 1024 epochs); "
        "see weights/fashion-mnist-lif/README.md",
    ),
    "fashion-mnist-plif-avgpool": dict(
        revision=None,
        sha256="b29dc660d1ae818738c868662cce1ad706066fb9019aa6e793d0b55dcb9e5ab1",
        accuracy=91.77,
        protocol="accuracy-B, 3 epochs on a 2-core CPU (paper: 1024 epochs); "
        "see weights/fashion-mnist-plif-avgpool/README.md",
    ),
    "fashion-mnist-plif-tau16": dict(
        revision=None,
        sha256="39f6598d957fae75f5137fc635ef2d2d214311f8b614ca9f38a6885543c08306",
        accuracy=90.15,
        protocol="accuracy-B, 3 epochs on a 2-core CPU (paper: 1024 epochs); "
        "see weights/fashion-mnist-plif-tau16/README.md",
    ),
    "fashion-mnist-lif-tau16": dict(
        revision=None,
        sha256="4591c80cefabfaaf5cbb9f23d0abb56cfddb61bacef690040b86066de2504789",
        accuracy=87.77,
        protocol="accuracy-B, 3 epochs on a 2-core CPU (paper: 1024 epochs); "
        "see weights/fashion-mnist-lif-tau16/README.md",
    ),
}

HUB_ORG = "plif-zoo"

# Paper accuracy (percent). A = best test accuracy during training; B = test accuracy at
# the epoch of best validation accuracy (15% of train held out). Table 2 gives both for
# PLIF tau0=2 max-pool; Tables 4 and 5 give A for the ablations.
_PAPER_A = {
    "mnist": 99.72,
    "fashion-mnist": 94.38,
    "cifar10": 93.50,
    "nmnist": 99.61,
    "cifar10-dvs": 74.80,
    "dvs128-gesture": 97.57,
}
_PAPER_B = {
    "mnist": 99.63,
    "fashion-mnist": 93.85,
    "cifar10": 92.58,
    "nmnist": 99.57,
    "cifar10-dvs": 69.00,
    "dvs128-gesture": 96.53,
}
_ABLATION_DATASETS = ("fashion-mnist", "cifar10", "cifar10-dvs", "dvs128-gesture")
_ABLATION_A = {  # variant -> dataset -> accuracy-A
    variant: dict(zip(_ABLATION_DATASETS, row, strict=True))
    for variant, row in {
        "lif": (94.17, 93.03, 73.60, 96.88),  # Table 4
        "plif-tau16": (94.65, 93.23, 70.50, 92.01),  # Table 4
        "lif-tau16": (94.47, 47.50, 62.40, 76.74),  # Table 4
        "plif-avgpool": (94.74, 93.30, 72.70, 97.22),  # Table 5
    }.items()
}
# variant suffix -> (neuron, init_tau, pooling)
_VARIANTS = {
    "plif": ("plif", 2.0, "max"),
    "lif": ("lif", 2.0, "max"),
    "plif-tau16": ("plif", 16.0, "max"),
    "lif-tau16": ("lif", 16.0, "max"),
    "plif-avgpool": ("plif", 2.0, "avg"),
    "lif-avgpool": ("lif", 2.0, "avg"),
}

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass(frozen=True)
class WeightSource:
    """Where a model's weights live and how to check them."""

    hf_repo: str  # Hub repo id, e.g. "plif-zoo/fashion-mnist-plif"
    revision: str | None  # pinned Hub commit (40 hex); None = only in weights/ folders so far
    sha256: str  # sha256 of the weight file, checked before loading
    filename: str = WEIGHTS_NAME  # the weight file in the repo
    license: str = "MIT"  # license of the weights


@dataclass(frozen=True)
class ModelInfo:
    """Everything known about one zoo model (like timm's PretrainedCfg)."""

    id: str  # registry id, "{dataset}-{neuron}[-tau16][-avgpool]"
    dataset: str  # mnist, fashion-mnist, cifar10, nmnist, cifar10-dvs, dvs128-gesture
    architecture: NetworkConfig  # rebuilds the network (Table 1 + this variant)
    label_names: tuple[str, ...]  # class names in output order
    paper_accuracy_a: (
        float | None
    )  # percent, paper's accuracy-A (Table 2, 4 or 5); None if not reported
    paper_accuracy_b: float | None  # percent, paper's accuracy-B (Table 2); None if not reported
    paper_source: str | None  # which table of the paper the numbers come from
    accuracy: float | None = None  # percent, our measured test accuracy; None until weights exist
    accuracy_protocol: str | None = (
        None  # how `accuracy` was measured (A/B, split, hardware, command)
    )
    weights: WeightSource | None = None  # published weights; None = architecture only

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample: (C, H, W) images or (T, C, H, W) event frames."""
        return self.architecture.input_shape

    @property
    def T(self) -> int:
        return self.architecture.T

    @property
    def num_classes(self) -> int:
        return self.architecture.num_classes

    @property
    def neuron(self) -> str:
        return self.architecture.neuron

    @property
    def init_tau(self) -> float:
        return self.architecture.init_tau

    @property
    def pooling(self) -> str:
        return self.architecture.pooling

    @property
    def input_kind(self) -> str:
        return "static image" if self.architecture.static else "event frames"

    @property
    def num_params(self) -> int:
        return _num_params(self.id)

    @property
    def has_weights(self) -> bool:
        """Loadable weights: on the Hub, or a local folder in $PLIF_ZOO_WEIGHTS / the repo's
        weights/."""
        on_hub = self.weights is not None and self.weights.revision is not None
        return on_hub or local_folder(self.id) is not None

    def as_dict(self) -> dict:
        """Flat dict of every field, for tables and JSON."""
        w = self.weights
        return {
            "id": self.id,
            "dataset": self.dataset,
            "input": self.input_kind,
            "input_shape": list(self.input_shape),
            "T": self.T,
            "num_classes": self.num_classes,
            "label_names": list(self.label_names),
            "neuron": self.neuron,
            "init_tau": self.init_tau,
            "pooling": self.pooling,
            "num_params": self.num_params,
            "paper_accuracy_a": self.paper_accuracy_a,
            "paper_accuracy_b": self.paper_accuracy_b,
            "paper_source": self.paper_source,
            "accuracy": self.accuracy,
            "accuracy_protocol": self.accuracy_protocol,
            "hf_repo": w.hf_repo if w else None,
            "revision": w.revision if w else None,
            "filename": w.filename if w else None,
            "sha256": w.sha256 if w else None,
            "license": w.license if w else None,
        }


def _build_registry() -> dict[str, ModelInfo]:
    models: dict[str, ModelInfo] = {}
    for dataset, base in PAPER_NETWORKS.items():
        for suffix, (neuron, init_tau, pooling) in _VARIANTS.items():
            model_id = f"{dataset}-{suffix}"
            a = b = source = None
            if suffix == "plif":
                a, b, source = _PAPER_A[dataset], _PAPER_B[dataset], "Table 2"
            elif dataset in _ABLATION_A.get(suffix, {}):
                a = _ABLATION_A[suffix][dataset]
                source = "Table 5" if suffix.endswith("avgpool") else "Table 4"
            published = PUBLISHED_WEIGHTS.get(model_id)
            weights = None
            if published:
                weights = WeightSource(
                    hf_repo=published.get("hf_repo", f"{HUB_ORG}/{model_id}"),
                    revision=published.get("revision"),
                    sha256=published["sha256"],
                    license=published.get("license", "MIT"),
                )
            models[model_id] = ModelInfo(
                id=model_id,
                dataset=dataset,
                architecture=base.replace(neuron=neuron, init_tau=init_tau, pooling=pooling),
                label_names=LABEL_NAMES[dataset],
                paper_accuracy_a=a,
                paper_accuracy_b=b,
                paper_source=source,
                accuracy=published.get("accuracy") if published else None,
                accuracy_protocol=published.get("protocol") if published else None,
                weights=weights,
            )
    return models


_REGISTRY = _build_registry()


@functools.cache
def _num_params(model_id: str) -> int:
    return count_parameters(_REGISTRY[model_id].architecture)


def check_model_id(model_id: str) -> str:
    """Validate an id's characters (lowercase, digits, '-'; no path parts)."""
    if not isinstance(model_id, str):
        raise TypeError(f"a model id must be a string, got {type(model_id).__name__}")
    if not _ID_RE.match(model_id):
        raise ValueError(
            f"invalid model id {model_id!r}: ids are lowercase letters, digits and '-', such as "
            f"'fashion-mnist-plif'; see plif_zoo.list_models()"
        )
    return model_id


def model_info(model_id: str) -> ModelInfo:
    """Everything known about a registry id. Unknown ids raise UnknownModelError with close
    matches."""
    check_model_id(model_id)
    if model_id not in _REGISTRY:
        close = difflib.get_close_matches(model_id, list(_REGISTRY), n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownModelError(
            f"unknown model {model_id!r}; {hint}see plif_zoo.list_models() for all "
            f"{len(_REGISTRY)} ids"
        )
    return _REGISTRY[model_id]


def list_models(pattern: str | list[str] = "*", pretrained: bool = False) -> list[str]:
    """Sorted ids matching shell wildcards (``"cifar10*"``); ``pretrained=True``: only ids with
    weights."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    ids = [i for i in _REGISTRY if any(fnmatch.fnmatchcase(i, p) for p in patterns)]
    if pretrained:
        ids = [i for i in ids if _REGISTRY[i].has_weights]
    return sorted(ids)


def weights_dirs() -> list[Path]:
    """Folders searched for local weights: $PLIF_ZOO_WEIGHTS (os.pathsep-separated), then the
    repository's ``weights/`` folder (a source checkout)."""
    dirs = [Path(p) for p in os.environ.get("PLIF_ZOO_WEIGHTS", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parent.parent / "weights")
    return dirs


def local_folder(model_id: str) -> Path | None:
    """The first model folder named ``model_id`` in :func:`weights_dirs`, or None.

    A folder of that name lacking a file is skipped with a warning naming it, so that a
    later copy is never used without a word.
    """
    for base in weights_dirs():
        folder = base / model_id
        missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
        if not missing:
            return folder
        if folder.is_dir():
            warnings.warn(
                f"skipped {folder}: it has no {' and no '.join(missing)}, so it is not a model "
                f"folder (write one with plif_zoo.save_pretrained); looking further",
                stacklevel=2,
            )
    return None


def markdown_table(pattern: str = "*") -> str:
    """The README's registry table: id, dataset, T, params, paper accuracy, ours, weights."""
    rows = [
        "| id | dataset | input | T | params | paper A | paper B | ours | weights |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]

    def pct(value: float | None) -> str:
        return f"{value:.2f}%" if value is not None else "-"

    for model_id in (i for i in _REGISTRY if fnmatch.fnmatchcase(i, pattern)):  # paper order
        info = model_info(model_id)
        shape = "x".join(map(str, info.input_shape))
        ours = pct(info.accuracy) + (
            f" ({info.accuracy_protocol})" if info.accuracy_protocol else ""
        )
        if info.weights is None:
            weights = "no"
        elif info.weights.revision is None:
            weights = f"yes (`weights/{model_id}/`)"
        else:
            weights = (
                f"[yes](https://huggingface.co/{info.weights.hf_repo}/tree/{info.weights.revision})"
            )
        rows.append(
            f"| `{model_id}` | {info.dataset} | {shape} | {info.T} | "
            f"{info.num_params / 1e6:.2f}M | "
            f"{pct(info.paper_accuracy_a)} | {pct(info.paper_accuracy_b)} | {ours} | {weights} |"
        )
    return "\n".join(rows) + "\n"


def published_entry(
    folder: str | os.PathLike, revision: str | None, hf_repo: str | None = None
) -> str:
    """The ``PUBLISHED_WEIGHTS`` line that registers a model folder pushed to the Hub at
    ``revision`` (None: shipped in the repository's weights/ folder only).

    Reads the id, sha256, accuracy (``accuracy_b`` first) and protocol from its config.json.
    """
    config = read_config(folder)
    card = config.get("card", {})
    model_id = card.get("model_id") or Path(folder).name
    model_info(model_id)  # must be a registry id
    metrics = card.get("metrics") or {}
    accuracy = metrics.get("accuracy_b", next(iter(metrics.values()), None))
    fields = [f"revision={revision!r}", f"sha256={config['files'][WEIGHTS_NAME]['sha256']!r}"]
    if hf_repo and hf_repo != f"{HUB_ORG}/{model_id}":
        fields.insert(0, f"hf_repo={hf_repo!r}")
    if accuracy is not None:
        fields.append(f"accuracy={float(accuracy)!r}")
    if card.get("protocol"):
        fields.append(f"protocol={card['protocol']!r}")
    return f"    {model_id!r}: dict({', '.join(fields)}),"
