"""Model folders on disk and on the Hugging Face Hub: save, verify, read, download, push.

A model folder is the Hub layout: ``config.json`` (the network config that rebuilds the
model, the sha256 of each weight file, and the model-card fields), ``model.safetensors``
and a ``README.md`` model card with the metrics in ``model-index`` form. No pickle.
Every file is written to a temporary name and renamed, so nothing half-written is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .networks import NetworkConfig, SpikingConvNet

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CARD_NAME",
    "ChecksumError",
    "HubDownloadError",
    "save_pretrained",
    "read_config",
    "load_folder",
    "sha256_file",
    "download",
    "push_to_hub",
    "parse_hub_name",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


class ChecksumError(ValueError):
    """A weight file's sha256 differs from the expected one."""


class HubDownloadError(OSError):
    """A Hub download failed: missing repo / revision / file, or no connection."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_repo_id(repo_id: str) -> str:
    """Validate ``ORG/NAME`` (letters, digits, ``._-``; no path traversal)."""
    if not isinstance(repo_id, str) or not _REPO_RE.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise ValueError(
            f"invalid Hub repo id {repo_id!r}: expected ORG/NAME made of letters, digits, '.', '_' "
            f"and '-' (no '..' or '--'), e.g. 'plif-zoo/fashion-mnist-plif'"
        )
    return repo_id


def check_revision(revision: str | None) -> str | None:
    """Validate a branch, tag or commit name (no '..', no leading '/')."""
    if revision is None:
        return None
    if not isinstance(revision, str) or not _REVISION_RE.match(revision) or ".." in revision:
        raise ValueError(
            f"invalid revision {revision!r}: expected a branch, tag or 40-hex commit such as 'main'"
        )
    return revision


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """``ORG/NAME[@REV]`` (the part after ``hf-hub:``) -> (repo_id, revision)."""
    repo_id, _, revision = name.partition("@")
    return check_repo_id(repo_id), check_revision(revision or None)


# ---------------------------------------------------------------------------- writing


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_ready(name: str, value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"save_pretrained: card field {name!r} must be JSON-serialisable (numbers, strings, "
            f"lists, dicts), got {type(value).__name__}: {err}"
        ) from None
    return value


def save_pretrained(model: SpikingConvNet, directory: str | os.PathLike, **card_fields: Any) -> Path:
    """Write ``model`` as a Hub model folder: config.json, model.safetensors, README.md.

    ``card_fields`` (all JSON-serialisable) go into config.json under ``"card"`` and into
    the model card. Known ones: ``model_id``, ``dataset``, ``label_names``, ``metrics``
    (``{"accuracy_b": 93.9, ...}`` in percent), ``protocol``, ``recipe``, ``hardware``,
    ``command``, ``license``. The per-layer ``taus`` are added from the model.
    Returns the folder path.
    """
    if not isinstance(model, SpikingConvNet):
        raise TypeError(
            f"save_pretrained needs a plif_zoo model (SpikingConvNet), got {type(model).__name__}"
        )
    card = {k: _json_ready(k, v) for k, v in card_fields.items()}
    metrics = card.get("metrics")
    if metrics is not None and not (
        isinstance(metrics, dict) and all(isinstance(v, (int, float)) for v in metrics.values())
    ):
        raise TypeError(
            f"save_pretrained: metrics must be a dict of name -> number (percent), got {metrics!r}"
        )
    card.setdefault("taus", model.taus())
    _fill_from_registry(card)

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{WEIGHTS_NAME}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": "pt", "library": "plif-zoo"})
        digest = sha256_file(tmp)
        size = os.path.getsize(tmp)
        os.replace(tmp, folder / WEIGHTS_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

    from . import __version__

    config = {
        "library": "plif-zoo",
        "format_version": FORMAT_VERSION,
        "plif_zoo_version": __version__,
        "architecture": model.config.to_dict(),
        "files": {WEIGHTS_NAME: {"sha256": digest, "size": size}},
        "card": card,
    }
    _atomic_write_bytes(folder / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    _atomic_write_bytes(folder / CARD_NAME, model_card(config).encode())
    return folder


def _fill_from_registry(card: dict) -> None:
    model_id = card.get("model_id")
    if not model_id:
        return
    from . import registry

    try:
        info = registry.model_info(model_id)
    except KeyError:
        return
    card.setdefault("dataset", info.dataset)
    card.setdefault("label_names", list(info.label_names))
    paper = {k: v for k, v in (("accuracy_a", info.paper_accuracy_a),
                               ("accuracy_b", info.paper_accuracy_b)) if v is not None}
    if paper:
        card.setdefault("paper_metrics", paper)


def model_card(config: dict) -> str:
    """README.md text: YAML front matter with ``model-index`` metrics, then a short description."""
    card = config.get("card", {})
    arch = config["architecture"]
    model_id = card.get("model_id", "plif-zoo-model")
    dataset = card.get("dataset", "unknown")
    lines = [
        "---",
        "library_name: plif-zoo",
        f"license: {card.get('license', 'mit')}",
        "tags:",
        "- spiking-neural-network",
        "- plif",
        "- spikingjelly",
        "- image-classification",
        f"datasets:\n- {dataset}",
        "model-index:",
        f"- name: {model_id}",
        "  results:",
    ]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += [
            "  - task:",
            "      type: image-classification",
            "    dataset:",
            f"      name: {dataset}",
            f"      type: {dataset}",
            "      split: test",
            "    metrics:",
        ]
        for name, value in metrics.items():
            lines += ["    - type: accuracy", f"      name: {name}", f"      value: {float(value)}"]
    else:
        lines[-1] = "  results: []"
    lines.append("---")
    lines += [
        "",
        f"# {model_id}",
        "",
        "A spiking convolutional network of Fang et al., *Incorporating Learnable Membrane Time "
        "Constant to Enhance Learning of Spiking Neural Networks* (ICCV 2021), for the "
        "[plif-zoo](https://pypi.org/project/plif-zoo/) package.",
        "",
        "```python",
        "import plif_zoo",
        f'model = plif_zoo.load("{model_id}")  # or "local-dir:PATH" / "hf-hub:ORG/NAME"',
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
    for name, value in metrics.items():
        lines.append(f"| {name} | {float(value):.2f}% |")
    for key in ("protocol", "recipe", "hardware", "command"):
        if key in card:
            lines.append(f"| {key} | {json.dumps(card[key]) if not isinstance(card[key], str) else card[key]} |")
    for name, value in (card.get("paper_metrics") or {}).items():
        lines.append(f"| paper {name} | {float(value):.2f}% |")
    taus = card.get("taus") or {}
    if taus:
        lines.append("| tau per layer | " + ", ".join(f"{k}: {v:.3g}" for k, v in taus.items()) + " |")
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
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or "architecture" not in config or WEIGHTS_NAME not in config.get("files", {}):
        raise ValueError(
            f"{path} is not a plif-zoo config: it needs 'architecture' and "
            f"'files' -> '{WEIGHTS_NAME}' -> 'sha256' (write it with plif_zoo.save_pretrained)"
        )
    return config


def verify_file(path: str | os.PathLike, expected_sha256: str, *, remove_on_mismatch: bool = False) -> None:
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


def model_from_config(config: dict, backend: str = "auto") -> SpikingConvNet:
    return SpikingConvNet(NetworkConfig.from_dict(config["architecture"]), backend=backend)


def load_folder(
    folder: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    backend: str = "auto",
    remove_on_mismatch: bool = False,
) -> tuple[SpikingConvNet, dict]:
    """Build the model of a model folder and load its verified weights -> (model, config)."""
    folder = Path(folder)
    config = read_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"no {WEIGHTS_NAME} in {folder}")
    recorded = config["files"][WEIGHTS_NAME].get("sha256")
    if expected_sha256 is not None and recorded is not None and recorded != expected_sha256:
        raise ChecksumError(
            f"{folder / CONFIG_NAME} records sha256 {recorded} for {WEIGHTS_NAME} but the registry "
            f"expects {expected_sha256}: this folder holds other weights than the registered ones"
        )
    expected = expected_sha256 or recorded
    if not expected:
        raise ValueError(f"{folder / CONFIG_NAME} gives no sha256 for {WEIGHTS_NAME}; cannot verify it")
    verify_file(weights, expected, remove_on_mismatch=remove_on_mismatch)
    model = model_from_config(config, backend=backend)
    state = load_file(weights)
    model.load_state_dict(state, strict=True)
    return model, config


# ---------------------------------------------------------------------------- the Hub


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> str | None:
    """``cache_dir``, else $HF_HUB_CACHE, else $HF_HOME/hub (read now, not at import)."""
    if cache_dir is not None:
        return str(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def hub_endpoint(endpoint: str | None = None) -> str | None:
    return endpoint or os.environ.get("HF_ENDPOINT") or None


def download(
    repo_id: str,
    filenames: tuple[str, ...] = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME),
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
) -> Path:
    """Fetch files of a Hub model repo into the HF cache -> the snapshot folder holding them.

    A pinned commit is served from the cache when there; a branch or tag is checked with
    the server (falling back to the cache when it cannot be reached). No request is made
    with ``local_files_only=True`` or $HF_HUB_OFFLINE set. ``README.md`` is optional. Errors name the repo and say
    what to do.
    """
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    check_repo_id(repo_id)
    check_revision(revision)
    cache = hub_cache_dir(cache_dir)
    endpoint = hub_endpoint(endpoint)
    offline = local_files_only or _env_flag("HF_HUB_OFFLINE")
    pinned = revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision) is not None
    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    server = endpoint or "https://huggingface.co"
    folder: Path | None = None
    for filename in filenames:
        kw = dict(repo_id=repo_id, filename=filename, revision=revision, cache_dir=cache)
        try:
            if offline or pinned:
                try:  # a commit never changes: a cached copy needs no request
                    path = hf_hub_download(**kw, local_files_only=True)
                except hf_errors.LocalEntryNotFoundError:
                    if offline:
                        raise
                    path = hf_hub_download(**kw, endpoint=endpoint)
            else:  # a branch or tag may move: ask the server (the client falls back to the cache)
                path = hf_hub_download(**kw, endpoint=endpoint)
        except hf_errors.RepositoryNotFoundError:
            raise HubDownloadError(
                f"Hub repo {repo_id!r} was not found on {server} (or it is private: log in with "
                f"`hf auth login`); check the name"
            ) from None
        except hf_errors.RevisionNotFoundError:
            raise HubDownloadError(
                f"revision {revision!r} of Hub repo {repo_id!r} was not found on {server}; "
                f"check the branch, tag or commit"
            ) from None
        except hf_errors.LocalEntryNotFoundError:
            if filename == CARD_NAME:
                continue
            if offline:
                raise HubDownloadError(
                    f"{filename} of {where} is not in the Hugging Face cache "
                    f"({cache or 'default cache'}) and downloads are off (HF_HUB_OFFLINE=1 or "
                    f"local_files_only=True); run once with network access or unset HF_HUB_OFFLINE"
                ) from None
            raise HubDownloadError(
                f"could not download {filename} of Hub repo {where} from {server}: no connection "
                f"and no cached copy. Retry with network access, set HF_ENDPOINT to a reachable "
                f"mirror, or use HF_HUB_OFFLINE=1 with a warm cache"
            ) from None
        except hf_errors.EntryNotFoundError:
            if filename == CARD_NAME:
                continue
            raise HubDownloadError(
                f"Hub repo {where} has no file {filename!r}; it is not a plif-zoo model folder "
                f"(expected {CONFIG_NAME} and {WEIGHTS_NAME})"
            ) from None
        except (hf_errors.HfHubHTTPError, OSError) as err:
            if isinstance(err, HubDownloadError):
                raise
            raise HubDownloadError(
                f"downloading {filename} of Hub repo {where} from {server} failed: {err}. Retry, "
                f"set HF_ENDPOINT to a reachable mirror, or use HF_HUB_OFFLINE=1 with a warm cache"
            ) from None
        folder = Path(path).parent
    assert folder is not None
    return folder


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
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    check_revision(revision)
    api = HfApi(endpoint=hub_endpoint(endpoint), token=token)
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model_or_dir, torch.nn.Module):
            card_fields.setdefault("model_id", repo_id.split("/", 1)[1])
            folder = save_pretrained(model_or_dir, tmp, **card_fields)
        else:
            if card_fields:
                raise TypeError("card fields can only be given with a model, not with a folder")
            folder = Path(model_or_dir)
            read_config(folder)
            verify_file(folder / WEIGHTS_NAME, read_config(folder)["files"][WEIGHTS_NAME]["sha256"])
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message,
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME],
        )
