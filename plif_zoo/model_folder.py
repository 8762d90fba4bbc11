"""The model-folder format: write, read, verify and load one folder.

A model folder is the Hub layout: ``config.json`` (the network config that rebuilds the
model, the sha256 of each weight file, and the model-card fields), ``model.safetensors``
and a ``README.md`` model card with the metrics in ``model-index`` form. No pickle.
Every file goes through :func:`plif_zoo._io.atomic_write`, so nothing half-written is left.
This module knows neither the registry nor the Hub: it is the format both of them use.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._io import LIBRARY_NAME, atomic_write, library_version, sha256_file
from .errors import ChecksumError, ModelFolderError
from .networks import NetworkConfig, SpikingConvNet

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CARD_NAME",
    "FORMAT_VERSION",
    "write_folder",
    "model_card",
    "read_config",
    "check_architecture",
    "verify_file",
    "model_from_config",
    "load_folder",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------------------- writing


def _json_ready(name: str, value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"save_pretrained: card field {name!r} must be JSON-serialisable (numbers, strings, "
            f"lists, dicts), got {type(value).__name__}: {err}"
        ) from None
    return value


def check_card(card: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``card`` after checking every field is JSON and ``metrics`` maps names to
    numbers."""
    card = {k: _json_ready(k, v) for k, v in card.items()}
    metrics = card.get("metrics")
    if metrics is not None and not (
        isinstance(metrics, dict) and all(isinstance(v, (int, float)) for v in metrics.values())
    ):
        raise TypeError(
            f"save_pretrained: metrics must be a dict of name -> number (percent), got {metrics!r}"
        )
    return card


def write_folder(model: SpikingConvNet, directory: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``model`` and ``card`` as a model folder: model.safetensors, config.json, README.md.

    ``card`` is written as given (checked by :func:`check_card`); the caller fills it.
    Returns the folder path.
    """
    if not isinstance(model, SpikingConvNet):
        raise TypeError(
            f"save_pretrained needs a plif_zoo model (SpikingConvNet), got {type(model).__name__}"
        )
    card = check_card(card)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    weights = atomic_write(
        folder / WEIGHTS_NAME,
        lambda tmp: save_file(state, tmp, metadata={"format": "pt", "library": LIBRARY_NAME}),
    )
    config = {
        "library": LIBRARY_NAME,
        "format_version": FORMAT_VERSION,
        "plif_zoo_version": library_version(),
        "architecture": model.config.to_dict(),
        "files": {WEIGHTS_NAME: {"sha256": sha256_file(weights), "size": weights.stat().st_size}},
        "card": card,
    }
    atomic_write(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    atomic_write(folder / CARD_NAME, model_card(config))
    return folder


def _card_metadata(card: dict[str, Any]) -> str:
    """The README's YAML front matter, built by huggingface_hub (escaping, model-index schema)."""
    from huggingface_hub import EvalResult, ModelCardData  # slow to import: only when writing

    dataset = card.get("dataset", "unknown")
    results = [
        EvalResult(
            task_type="image-classification",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="test",
            metric_type="accuracy",
            metric_name=name,
            metric_value=float(value),
        )
        for name, value in (card.get("metrics") or {}).items()
    ]
    data = ModelCardData(
        library_name=LIBRARY_NAME,
        license=card.get("license", "mit"),
        tags=["spiking-neural-network", "plif", "spikingjelly", "image-classification"],
        datasets=[dataset],
        model_name=card.get("model_id", "plif-zoo-model"),
        eval_results=results,  # [] still writes `model-index: [{name, results: []}]`
    )
    return data.to_yaml()


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _load_line(load_name: str) -> str:
    """The card's ``plif_zoo.load(...)`` line: a registry id, ``hf-hub:`` or ``local-dir:``."""
    hint = {
        "local-dir": "PATH: this folder",
        "hf-hub": 'or "local-dir:PATH" for a copy on disk',
    }.get(load_name.split(":")[0], 'or "local-dir:PATH" / "hf-hub:ORG/NAME"')
    return f'model = plif_zoo.load("{load_name}")  # {hint}'


def model_card(config: dict) -> str:
    """README.md text: YAML front matter with ``model-index`` metrics, then a short description."""
    card = config.get("card", {})
    arch = config["architecture"]
    model_id = card.get("model_id", "plif-zoo-model")
    load_name = card.get("load_name", model_id)
    metrics = card.get("metrics") or {}
    lines = [
        "---",
        _card_metadata(card),
        "---",
        "",
        f"# {model_id}",
        "",
        "A spiking convolutional network of Fang et al., *Incorporating Learnable Membrane Time "
        "Constant to Enhance Learning of Spiking Neural Networks* (ICCV 2021), for the "
        "[plif-zoo](https://pypi.org/project/plif-zoo/) package.",
        "",
        "```python",
        "import plif_zoo",
        _load_line(load_name),
        "rates = model(x)  # [N, num_classes] firing rates in [0, 1]",
        "```",
        "",
        "| field | value |",
        "| --- | --- |",
        f"| neuron | {arch['neuron']} (init tau {arch['init_tau']}) |",
        f"| pooling | {arch['pooling']} |",
        f"| T | {arch['T']} |",
        f"| classes | {arch['num_classes']} |",
    ]
    lines += [f"| {name} | {float(value):.2f}% |" for name, value in metrics.items()]
    lines += [
        f"| {key} | {_cell(card[key])} |"
        for key in ("protocol", "recipe", "hardware", "command")
        if key in card
    ]
    lines += [
        f"| paper {name} | {float(value):.2f}% |"
        for name, value in (card.get("paper_metrics") or {}).items()
    ]
    taus = card.get("taus") or {}
    if taus:
        lines.append(
            "| tau per layer | " + ", ".join(f"{k}: {v:.3g}" for k, v in taus.items()) + " |"
        )
    for figure in card.get("figures") or []:
        lines += ["", f"![{Path(figure).stem}]({figure})"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- reading


def read_config(folder: str | os.PathLike) -> dict:
    """The parsed config.json of a model folder, checked for the fields loading needs."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {CONFIG_NAME} in {folder}: a plif-zoo model folder holds {CONFIG_NAME}, "
            f"{WEIGHTS_NAME} and {CARD_NAME} (write one with plif_zoo.save_pretrained)"
        )
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ModelFolderError(
            f"{path} is not UTF-8 text (byte {err.start}); it is damaged "
            f"or not a config.json: write it with plif_zoo.save_pretrained"
        ) from None
    except json.JSONDecodeError as err:
        raise ModelFolderError(f"{path} is not valid JSON: {err}") from None
    files = config.get("files") if isinstance(config, dict) else None
    entry = files.get(WEIGHTS_NAME) if isinstance(files, dict) else None
    sha256 = entry.get("sha256") if isinstance(entry, dict) else None
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("architecture"), dict)
        or not isinstance(sha256, str)
        or not _SHA256_RE.fullmatch(sha256)
    ):
        raise ModelFolderError(
            f"{path} is not a plif-zoo config: it needs 'architecture' (an object) and "
            f"'files' -> '{WEIGHTS_NAME}' -> 'sha256' (64 hex digits), without which the weights "
            f"cannot be verified (write it with plif_zoo.save_pretrained)"
        )
    return config


def check_architecture(config: dict, expected: NetworkConfig, where: str | os.PathLike) -> None:
    """ModelFolderError naming every field in which ``config``'s architecture differs from
    ``expected`` (the registry's for the id being loaded).

    ``T`` may differ: it is the default number of time steps, which a training may change and
    ``load(T=...)`` overrides; every other field changes what the weights compute.
    """
    got = _network_config(config, where).to_dict()
    want = expected.to_dict()
    differ = [
        f"{k}: {got[k]!r} (registry: {want[k]!r})" for k in want if k != "T" and got[k] != want[k]
    ]
    if differ:
        raise ModelFolderError(
            f"{Path(where) / CONFIG_NAME} does not describe the registry's architecture for "
            f"this id: {'; '.join(differ)}. The file was edited or belongs to another model; "
            f"restore it, or load the folder as local-dir:{where}"
        )


def verify_file(
    path: str | os.PathLike, expected_sha256: str, *, remove_on_mismatch: bool = False
) -> None:
    """Raise ChecksumError when ``path``'s sha256 differs; optionally delete the bad file first."""
    actual = sha256_file(path)
    if actual == expected_sha256:
        return
    removed = ""
    if remove_on_mismatch:
        _remove_cached(Path(path))
        removed = " It was removed from the cache; load again to download a fresh copy."
    raise ChecksumError(
        f"checksum mismatch for {path}: sha256 {actual}, expected {expected_sha256}. The file is "
        f"corrupt or was changed.{removed}"
    )


def _remove_cached(path: Path) -> None:
    """Delete a file from the HF cache: the snapshot link and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def _network_config(config: dict, where: str | os.PathLike) -> NetworkConfig:
    try:
        return NetworkConfig.from_dict(config["architecture"])
    except (TypeError, ValueError) as err:
        raise ModelFolderError(f"{Path(where) / CONFIG_NAME}: bad 'architecture': {err}") from None


def model_from_config(
    config: dict, backend: str = "auto", where: str | os.PathLike = "."
) -> SpikingConvNet:
    """An untrained network with the architecture a config.json records."""
    return SpikingConvNet(_network_config(config, where), backend=backend)


def _load_weights(model: SpikingConvNet, weights: Path) -> None:
    """Load a safetensors file strictly; a damaged file or one that does not fit the config
    becomes a ModelFolderError naming the file."""
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFolderError(
            f"{weights} cannot be read as safetensors ({err}); it is truncated or damaged: "
            f"download or copy it again"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise ModelFolderError(
            f"{weights.parent / CONFIG_NAME} does not fit {weights}: {detail[:600]}. Both files "
            f"must come from one save_pretrained call"
        ) from None


def load_folder(
    folder: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    expected_architecture: NetworkConfig | None = None,
    backend: str = "auto",
    remove_on_mismatch: bool = False,
) -> tuple[SpikingConvNet, dict]:
    """Build the model of a model folder and load its verified weights -> (model, config).

    ``expected_sha256`` / ``expected_architecture``: the registry's pin for model.safetensors
    and its network for the id; config.json must agree with both (see check_architecture).
    """
    folder = Path(folder)
    config = read_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"no {WEIGHTS_NAME} in {folder}")
    recorded = config["files"][WEIGHTS_NAME]["sha256"]  # read_config checked it
    if expected_sha256 is not None and recorded != expected_sha256:
        raise ChecksumError(
            f"{folder / CONFIG_NAME} records sha256 {recorded} for {WEIGHTS_NAME} but the registry "
            f"expects {expected_sha256}: this folder holds other weights than the registered ones"
        )
    if expected_architecture is not None:
        check_architecture(config, expected_architecture, folder)
    verify_file(weights, recorded, remove_on_mismatch=remove_on_mismatch)  # = the registry's
    model = model_from_config(config, backend=backend, where=folder)
    _load_weights(model, weights)
    return model, config
