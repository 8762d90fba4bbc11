"""Build, load, save and push zoo models: the top of the zoo layers (timm's ``_factory``).

``load(name)`` goes down only: the registry says what an id is and where its weights are,
the hub fetches a folder, ``model_folder`` verifies and reads it, ``networks`` builds the model.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from . import hub, registry
from .backends import check_device
from .errors import NoPretrainedWeightsError
from .model_folder import CONFIG_NAME, load_folder, read_config, write_folder
from .networks import NetworkConfig, SpikingConvNet

__all__ = ["load", "create_model", "save_pretrained", "push_to_hub"]


def _no_weights_error(model_id: str) -> NoPretrainedWeightsError:
    available = registry.list_models(pretrained=True)
    listing = (
        f"models with weights: {', '.join(available)}"
        if available
        else "no model has published weights yet"
    )
    return NoPretrainedWeightsError(
        f"{model_id!r} has no published weights ({listing}). Build it untrained with "
        f"plif_zoo.load({model_id!r}, pretrained=False) or plif_zoo.create_model({model_id!r}), "
        f"or put a model folder at {registry.weights_dirs()[0] / model_id} ($PLIF_ZOO_WEIGHTS)"
    )


def local_dir(name: str) -> Path | None:
    """The folder a ``local-dir:PATH`` name points to (``~`` expanded); None for other names."""
    return Path(name[len("local-dir:") :]).expanduser() if name.startswith("local-dir:") else None


def model_card(name: str) -> dict:
    """The card of a ``local-dir:PATH`` or ``hf-hub:ORG/NAME[@REV]`` model folder (config.json's
    ``card``; the Hub's from the HF cache, so after ``load``); {} for a registry id."""
    folder = local_dir(name)
    if folder is None and name.startswith("hf-hub:"):
        repo_id, rev = hub.parse_hub_name(name[len("hf-hub:") :])
        folder = hub.download(repo_id, (CONFIG_NAME,), revision=rev, local_files_only=True)
    return read_config(folder).get("card", {}) if folder is not None else {}


def _load_named_folder(
    name: str, revision: str | None, cache_dir, local_files_only: bool, backend: str
) -> tuple[SpikingConvNet, dict]:
    """``local-dir:PATH`` or ``hf-hub:ORG/NAME[@REV]``: checked against the config it ships."""
    folder = local_dir(name)
    if folder is not None:
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} does not apply to {name!r}: a local folder has no "
                f"revisions; drop it, or load the Hub repo as 'hf-hub:ORG/NAME@REV'"
            )
        if not folder.is_dir():
            raise FileNotFoundError(f"local-dir: {folder} is not a folder")
        return load_folder(folder, backend=backend)
    repo_id, rev = hub.parse_hub_name(name[len("hf-hub:") :])
    if revision is not None and rev is not None and revision != rev:
        raise ValueError(f"two revisions given: {name!r} and revision={revision!r}; pass one")
    folder = hub.download(
        repo_id, revision=revision or rev, cache_dir=cache_dir, local_files_only=local_files_only
    )
    return load_folder(folder, backend=backend, remove_on_mismatch=True)


def _resolve_pretrained(
    name: str, revision: str | None, cache_dir, local_files_only: bool, backend: str
) -> tuple[SpikingConvNet, dict]:
    """Weights for a name: a local weights folder, then the Hub at the registry's pinned commit."""
    if name.startswith(("local-dir:", "hf-hub:")):
        return _load_named_folder(name, revision, cache_dir, local_files_only, backend)
    info = registry.model_info(name)
    local = registry.local_folder(name)
    if local is not None and revision is None:
        expected = info.weights.sha256 if info.weights else None
        return load_folder(
            local,
            expected_sha256=expected,
            expected_architecture=info.architecture,
            backend=backend,
        )
    if info.weights is None:
        raise _no_weights_error(name)
    if info.weights.revision is None and revision is None:
        raise FileNotFoundError(
            f"the weights of {name!r} are not on the Hub yet: they ship in the plif-zoo "
            f"repository's weights/{name}/ folder. Clone the repository (git lfs pull if needed) "
            f"or set PLIF_ZOO_WEIGHTS to a folder holding {name}/ (searched: "
            f"{', '.join(str(d) for d in registry.weights_dirs())})"
        )
    folder = hub.download(
        info.weights.hf_repo,
        revision=revision or info.weights.revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
    )
    # Another commit has its own config (and sha256); the registry's pin keeps the registry's.
    expected = info.weights.sha256 if revision in (None, info.weights.revision) else None
    return load_folder(
        folder,
        expected_sha256=expected,
        expected_architecture=info.architecture,
        backend=backend,
        remove_on_mismatch=True,
    )


def _load_pretrained(
    name: str,
    num_classes: int | None,
    revision,
    cache_dir,
    local_files_only,
    backend: str,
    config_changes: dict,
) -> SpikingConvNet:
    if config_changes:
        raise TypeError(
            f"architecture changes {sorted(config_changes)} need pretrained=False; a pretrained "
            f"model keeps its architecture (only num_classes and T can change)"
        )
    model, _ = _resolve_pretrained(name, revision, cache_dir, local_files_only, backend)
    if num_classes is not None and num_classes != model.num_classes:
        old = model.num_classes
        skipped = model.reset_classifier(num_classes)
        warnings.warn(
            f"{name}: output layer rebuilt for {num_classes} classes (weights had {old}); "
            f"not loaded, freshly initialised: {', '.join(skipped)}",
            stacklevel=3,
        )
    return model


def _build_untrained(
    name: str, num_classes: int | None, T: int | None, backend: str, config_changes: dict
) -> SpikingConvNet:
    if name.startswith(("local-dir:", "hf-hub:")):
        raise ValueError(
            f"{name!r} names weights; use pretrained=True, or a registry id for an untrained model"
        )
    config = registry.model_info(name).architecture
    if num_classes is not None:
        config_changes["num_classes"] = num_classes
    if T is not None:
        config_changes["T"] = T
    known = sorted(NetworkConfig.__dataclass_fields__)
    unknown = sorted(set(config_changes) - set(known))
    if unknown:
        raise TypeError(
            f"unknown arguments {unknown}; architecture changes must be NetworkConfig fields: "
            f"{known}"
        )
    config = config.replace(**config_changes)  # a wrong value: NetworkConfig says which
    return SpikingConvNet(config, backend=backend)


def load(
    name: str,
    pretrained: bool = True,
    *,
    num_classes: int | None = None,
    T: int | None = None,
    backend: str = "auto",
    device: str | torch.device | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    **config_changes,
) -> SpikingConvNet:
    """A zoo model by registry id, ``local-dir:PATH`` or ``hf-hub:ORG/NAME[@REV]``.

    ``pretrained=True`` loads verified weights (local $PLIF_ZOO_WEIGHTS / weights/ folder,
    then the HF cache, then the Hub). ``num_classes`` different from the weights replaces
    only the output layer (a warning lists it). ``T`` sets the default time steps.
    ``config_changes`` (untrained models only) change NetworkConfig fields, e.g. init_tau.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if pretrained:
        model = _load_pretrained(
            name, num_classes, revision, cache_dir, local_files_only, backend, config_changes
        )
    else:
        model = _build_untrained(name, num_classes, T, backend, config_changes)
    if T is not None:
        model.T = T
    model.set_backend(backend)
    if device is not None:
        model.to(check_device(device))
    return model


def create_model(name: str, **kwargs) -> SpikingConvNet:
    """An untrained zoo model: ``load(name, pretrained=False, **kwargs)``."""
    return load(name, pretrained=False, **kwargs)


def _fill_from_registry(card: dict, config: NetworkConfig) -> bool:
    """Add what the registry knows about ``card["model_id"]`` (dataset, labels, paper numbers)
    when the model is that registry network (T aside); False for any other model, e.g. one
    fine-tuned to other classes, whose card must not claim the registry's labels or numbers."""
    try:
        info = registry.model_info(card.get("model_id") or "")
    except (KeyError, ValueError):  # not a registry id: a user's own model
        return False
    if info.architecture.replace(T=config.T) != config:
        return False
    card.setdefault("dataset", info.dataset)
    card.setdefault("label_names", list(info.label_names))
    paper = {
        k: v
        for k, v in (("accuracy_a", info.paper_accuracy_a), ("accuracy_b", info.paper_accuracy_b))
        if v is not None
    }
    if paper:
        card.setdefault("paper_metrics", paper)
    return True


def save_pretrained(
    model: SpikingConvNet, directory: str | os.PathLike, **card_fields: Any
) -> Path:
    """Write ``model`` as a Hub model folder: config.json, model.safetensors, README.md.

    ``card_fields`` (all JSON-serialisable) go into config.json under ``"card"`` and into
    the model card. Known ones: ``model_id``, ``dataset``, ``label_names``, ``metrics``
    (``{"accuracy_b": 93.9, ...}`` in percent), ``protocol``, ``recipe``, ``hardware``,
    ``command``, ``license``, ``load_name`` (what the card's snippet loads; default the
    ``model_id`` of a registry network). The per-layer ``taus`` are added from the model, and
    what the registry knows about ``model_id`` when the model is that network. Returns the
    folder path.
    """
    if not isinstance(model, SpikingConvNet):
        raise TypeError(
            f"save_pretrained needs a plif_zoo model (SpikingConvNet), got {type(model).__name__}"
        )
    card = dict(card_fields)
    card.setdefault("taus", model.taus())
    if not _fill_from_registry(card, model.config):
        card.setdefault("load_name", "local-dir:PATH")  # the card's snippet: not a registry id
    return write_folder(model, directory, card)


def push_to_hub(
    model_or_dir: SpikingConvNet | str | os.PathLike,
    repo_id: str,
    revision: str | None = None,
    private: bool = False,
    *,
    commit_message: str = "Upload plif-zoo model",
    endpoint: str | None = None,
    token: str | None = None,
    **card_fields: Any,
):
    """Upload a model (saved to a temporary folder first) or a model folder to a Hub repo.

    Creates the repo when missing. Returns huggingface_hub's CommitInfo (``.oid`` is the
    commit to pin).
    """
    hub.check_repo_id(repo_id)
    hub.check_revision(revision)
    kw = dict(
        revision=revision,
        private=private,
        commit_message=commit_message,
        endpoint=endpoint,
        token=token,
    )
    if not isinstance(model_or_dir, torch.nn.Module):
        if card_fields:
            raise TypeError("card fields can only be given with a model, not with a folder")
        return hub.upload_folder(model_or_dir, repo_id, **kw)
    card_fields.setdefault("model_id", repo_id.split("/", 1)[1])
    card_fields.setdefault("load_name", f"hf-hub:{repo_id}")  # a registry id would load ours
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model_or_dir, tmp, **card_fields)
        return hub.upload_folder(folder, repo_id, **kw)
