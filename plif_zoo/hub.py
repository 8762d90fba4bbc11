"""Hugging Face Hub transfer only: check names, download a model folder, upload one.

What a model folder holds is ``plif_zoo.model_folder``'s business and which weights an id has
is the registry's; this module moves files and turns the client's errors into ones that name
the repo and say what to do. It knows neither the registry nor the networks.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

from ._io import LIBRARY_NAME, library_version
from .errors import HubDownloadError, HubUploadError
from .model_folder import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, read_config, verify_file

__all__ = [
    "HubDownloadError",
    "HubUploadError",
    "check_repo_id",
    "check_revision",
    "parse_hub_name",
    "hub_timeouts",
    "download",
    "upload_folder",
]

_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


def check_repo_id(repo_id: str) -> str:
    """Validate ``ORG/NAME`` (ASCII letters, digits, ``._-``; no ``..`` / ``--``; no path parts).

    ``validate_repo_id`` does the character rules; beyond it we need the ``ORG/`` part (zoo
    repos are always namespaced) and ASCII only (its regex's ``\\w`` admits any letter).
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    bad = not isinstance(repo_id, str) or repo_id.count("/") != 1 or not repo_id.isascii()
    if not bad:
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            bad = True
    if bad:
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


# huggingface_hub.constants reads HF_HUB_CACHE / HF_HOME / HF_ENDPOINT / HF_HUB_OFFLINE once, at
# import. We read them at call time instead, so a setting made after `import plif_zoo` (a
# notebook cell, a test's monkeypatch) takes effect, and pass the values explicitly.


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
    """``endpoint``, else $HF_ENDPOINT (read now), else None (the client's default)."""
    return endpoint or os.environ.get("HF_ENDPOINT") or None


# A silent server held a load for 217-397 s with the client's own settings: 10 s for the first
# HEAD, then (nothing cached) 6 tries of 60 s with backoff. We ask once, bounded by the etag
# timeout, before the client does (see _unreachable); a user's $HF_HUB_* setting wins.
ETAG_TIMEOUT = 5.0  # seconds for the server to answer a metadata (HEAD) request
DOWNLOAD_TIMEOUT = 10.0  # seconds without a byte while a file downloads (the client's default)


def _env_seconds(name: str, default: float) -> float:
    """A whole number of seconds > 0: huggingface_hub reads these two with ``int()`` when it is
    imported, so checking them here, before that import, is what gives a clear error."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit() and int(value) > 0):
        raise ValueError(
            f"${name}={value!r} must be a whole number of seconds > 0 (huggingface_hub reads it "
            f"with int()); unset it for plif-zoo's default ({default:g} s)"
        )
    return float(value)


def hub_timeouts() -> tuple[float, float]:
    """(etag, download) timeouts in seconds: $HF_HUB_ETAG_TIMEOUT / $HF_HUB_DOWNLOAD_TIMEOUT
    read now, else ETAG_TIMEOUT / DOWNLOAD_TIMEOUT."""
    return (
        _env_seconds("HF_HUB_ETAG_TIMEOUT", ETAG_TIMEOUT),
        _env_seconds("HF_HUB_DOWNLOAD_TIMEOUT", DOWNLOAD_TIMEOUT),
    )


_timeout_lock = threading.Lock()
_timeout_users = 0  # downloads inside _download_timeout now, in all threads
_timeout_saved: float | None = None  # the client's own value, put back by the last one out


@contextlib.contextmanager
def _download_timeout(seconds: float):
    """The client reads constants.HF_HUB_DOWNLOAD_TIMEOUT (fixed at its import) for every GET and
    takes no argument for it: set it while downloads run. Thread-safe: the client's value is
    saved by the first download in and restored by the last one out, whatever their order."""
    from huggingface_hub import constants

    global _timeout_users, _timeout_saved
    with _timeout_lock:
        if _timeout_users == 0:
            _timeout_saved = constants.HF_HUB_DOWNLOAD_TIMEOUT
        _timeout_users += 1
        constants.HF_HUB_DOWNLOAD_TIMEOUT = seconds
    try:
        yield
    finally:
        with _timeout_lock:
            _timeout_users -= 1
            if _timeout_users == 0:
                constants.HF_HUB_DOWNLOAD_TIMEOUT = _timeout_saved


def _unreachable(
    repo_id: str, filename: str, revision: str | None, endpoint: str | None, timeout: float
) -> Exception | None:
    """One metadata request without retries: the network error when the server cannot be
    reached or does not answer within ``timeout``, None when it answers (even with an error,
    which the download then reports)."""
    from huggingface_hub import errors as hf
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    try:
        get_hf_file_metadata(
            url,
            timeout=timeout,
            library_name=LIBRARY_NAME,
            library_version=library_version(),
            endpoint=endpoint,
        )
    except (hf.HfHubHTTPError, hf.EntryNotFoundError):
        return None
    except Exception as err:  # httpx's connect / timeout errors: not a public type of the client
        return err
    return None


def _translate(
    err: Exception,
    filename: str,
    repo_id: str,
    revision: str | None,
    server: str,
    cache: str | None,
    offline: bool,
) -> HubDownloadError | None:
    """The client's error as a HubDownloadError naming the repo and the next step.

    None: a missing optional model card, which the caller skips.
    """
    from huggingface_hub import errors as hf

    where = repo_id + (f"@{revision}" if revision else "")
    if isinstance(err, HubDownloadError):
        return err
    if isinstance(err, hf.RepositoryNotFoundError):
        return HubDownloadError(
            f"Hub repo {repo_id!r} was not found on {server} (or it is private: log in with "
            f"`hf auth login`); check the name"
        )
    if isinstance(err, hf.RevisionNotFoundError):
        return HubDownloadError(
            f"revision {revision!r} of Hub repo {repo_id!r} was not found on {server}; "
            f"check the branch, tag or commit"
        )
    missing = isinstance(err, (hf.LocalEntryNotFoundError, hf.EntryNotFoundError))
    if missing and filename == CARD_NAME:
        return None
    if isinstance(err, hf.LocalEntryNotFoundError) and offline:
        return HubDownloadError(
            f"{filename} of {where} is not in the Hugging Face cache ({cache or 'default cache'}) "
            f"and downloads are off (HF_HUB_OFFLINE=1 or local_files_only=True); run once with "
            f"network access or unset HF_HUB_OFFLINE"
        )
    if isinstance(err, hf.LocalEntryNotFoundError):
        return HubDownloadError(
            f"could not download {filename} of Hub repo {where} from {server}: no connection "
            f"and no cached copy. Retry with network access, set HF_ENDPOINT to a reachable "
            f"mirror, or use HF_HUB_OFFLINE=1 with a warm cache"
        )
    if isinstance(err, hf.EntryNotFoundError):
        return HubDownloadError(
            f"Hub repo {where} has no file {filename!r}; it is not a plif-zoo model folder "
            f"(expected {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    return HubDownloadError(
        f"downloading {filename} of Hub repo {where} from {server} failed "
        f"({type(err).__name__}: {err}). Retry, "
        f"set HF_ENDPOINT to a reachable mirror, or use HF_HUB_OFFLINE=1 with a warm cache"
    )


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
    with ``local_files_only=True`` or $HF_HUB_OFFLINE set. ``README.md`` is optional. A server
    that cannot be reached or does not answer fails within the etag timeout of
    :func:`hub_timeouts`, without the client's retries. Errors name the repo and say what to do.
    """
    etag_timeout, download_timeout = hub_timeouts()  # before the client's import reads them
    from huggingface_hub import errors as hf  # the transfer client loads slowly: only when used
    from huggingface_hub import hf_hub_download

    check_repo_id(repo_id)
    check_revision(revision)
    cache = hub_cache_dir(cache_dir)
    endpoint = hub_endpoint(endpoint)
    server = endpoint or "https://huggingface.co"
    offline = local_files_only or _env_flag("HF_HUB_OFFLINE")
    # A commit never changes: a cached copy needs no request (offline: never ask at all).
    cache_first = offline or (revision is not None and _COMMIT_RE.fullmatch(revision) is not None)
    probed, down = False, None
    folder: Path | None = None
    commit = revision  # once the first file is here: its commit, so that a push between two
    # files cannot split them over two snapshots
    for filename in filenames:
        kw = dict(
            repo_id=repo_id,
            filename=filename,
            revision=commit,
            cache_dir=cache,
            library_name=LIBRARY_NAME,
            library_version=library_version(),
        )
        try:
            path = None
            if cache_first:
                try:
                    path = hf_hub_download(**kw, local_files_only=True)
                except hf.LocalEntryNotFoundError:
                    if filename == CARD_NAME and _known_missing(repo_id, filename, cache, commit):
                        continue  # a repo without a card: the cache remembers, no request
                    if offline:
                        raise
            if path is None and not probed:  # ask once, bounded, before the client retries
                probed = True
                down = _unreachable(repo_id, filename, commit, endpoint, etag_timeout)
            if path is None and down is not None:  # what the client would do: the cache or fail
                path = None if cache_first else _cached(kw)
                if path is None and filename == CARD_NAME:
                    continue
                if path is None:
                    raise _no_answer(down, filename, repo_id, revision, server, etag_timeout)
            if path is None:  # a branch or tag may move: ask the server (cache as fallback)
                with _download_timeout(download_timeout):
                    path = hf_hub_download(**kw, endpoint=endpoint, etag_timeout=etag_timeout)
        except Exception as err:  # also the transport's own (httpx2) and hf_xet's errors
            translated = _translate(err, filename, repo_id, revision, server, cache, offline)
            if translated is None:
                continue
            if translated is err:
                raise
            raise translated from err
        folder = Path(path).parent
        if folder.name != commit and _COMMIT_RE.fullmatch(folder.name):
            commit, cache_first = folder.name, True  # snapshots/<commit>/: a commit never moves
    assert folder is not None
    return folder


def _no_answer(
    err: Exception, filename: str, repo_id: str, revision: str | None, server: str, timeout: float
) -> HubDownloadError:
    where = repo_id + (f"@{revision}" if revision else "")
    return HubDownloadError(
        f"could not download {filename} of Hub repo {where} from {server}: no connection or no "
        f"answer within {timeout:g} s ({type(err).__name__}) and no cached copy. Retry with "
        f"network access, set HF_ENDPOINT to a reachable mirror, raise HF_HUB_ETAG_TIMEOUT for a "
        f"slow one, or use HF_HUB_OFFLINE=1 with a warm cache"
    )


def _known_missing(repo_id: str, filename: str, cache: str | None, revision: str | None) -> bool:
    """The cache records that ``filename`` does not exist at ``revision`` (the client's
    ``.no_exist`` marker, written when the server said so)."""
    from huggingface_hub import _CACHED_NO_EXIST, try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision)
    return found is _CACHED_NO_EXIST


def _cached(kw: dict) -> str | None:
    """The cached copy of a file, or None."""
    from huggingface_hub import errors as hf
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(**kw, local_files_only=True)
    except hf.LocalEntryNotFoundError:
        return None


def upload_folder(
    folder: str | os.PathLike,
    repo_id: str,
    revision: str | None = None,
    private: bool = False,
    *,
    commit_message: str = "Upload plif-zoo model",
    endpoint: str | None = None,
    token: str | None = None,
):
    """Upload a model folder (its weights verified first) to a Hub repo, created when missing;
    ``private=True`` makes the repo private, also one that exists already (never the reverse).

    ``revision`` names a branch, created from main when missing. Returns huggingface_hub's
    CommitInfo (``.oid`` is the commit to pin).
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    check_revision(revision)
    folder = Path(folder)
    verify_file(folder / WEIGHTS_NAME, read_config(folder)["files"][WEIGHTS_NAME]["sha256"])
    endpoint = hub_endpoint(endpoint)
    server = endpoint or "https://huggingface.co"
    api = HfApi(
        endpoint=endpoint,
        token=token,
        library_name=LIBRARY_NAME,
        library_version=library_version(),
    )
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if private:  # create_repo leaves an existing repo's visibility as it was
            api.update_repo_settings(repo_id, private=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message,
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME],
        )
    except Exception as err:  # the client's HTTP errors and the transport's (httpx2)
        raise HubUploadError(
            f"uploading {folder} to Hub repo {repo_id} on {server} failed "
            f"({type(err).__name__}: {err}). Check the connection, HF_ENDPOINT and your token "
            f"(`hf auth login`), then retry"
        ) from err
