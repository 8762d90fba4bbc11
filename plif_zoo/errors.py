"""The zoo's exceptions, in one leaf module (it imports nothing from plif_zoo).

Each subclasses the builtin a caller would catch anyway (``KeyError`` for an unknown id,
``OSError`` for a failed download, ...), and every message says what was wrong and what to do.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = [
    "UnknownModelError",
    "NoPretrainedWeightsError",
    "ChecksumError",
    "HubDownloadError",
    "HubUploadError",
    "DatasetNotFoundError",
    "ModelFolderError",
    "DataFileError",
    "RunFolderError",
    "RunLockedError",
    "CheckpointError",
    "NonFiniteError",
    "MissingExtraError",
    "import_extra",
]


class UnknownModelError(KeyError):
    """No model with this id; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class NoPretrainedWeightsError(ValueError):
    """The id is known but no weights were published for it."""


class ChecksumError(ValueError):
    """A weight file's sha256 differs from the expected one."""


class HubDownloadError(OSError):
    """A Hub download failed: missing repo / revision / file, or no connection."""


class HubUploadError(OSError):
    """A Hub upload failed: no connection, no permission, or the server refused it."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they were looked for."""


class ModelFolderError(ValueError):
    """A model folder's files are malformed, or its config.json does not fit its weights or the
    registry's architecture for its id."""


class DataFileError(ValueError):
    """A dataset file is there but cannot be used: not gzip, truncated, a failed CRC, a label
    outside the classes. The message names the file."""


class RunFolderError(OSError, ValueError):
    """A run folder cannot be written: read-only, not a folder, or the disk is full. An OSError
    (with ``errno`` when one is known) that is also a ValueError, like the zoo's other one-line
    errors."""

    def __str__(self) -> str:  # OSError would print "[Errno 28] ..." before the message
        return str(self.args[-1]) if self.args else ""


class RunLockedError(RunFolderError):
    """Another training holds the run folder (its lock file names the process and host)."""


class CheckpointError(ChecksumError):
    """``checkpoint.pt`` is damaged: its sha256 differs from the recorded one, or it is
    truncated."""


class NonFiniteError(FloatingPointError, ValueError):
    """The training loss or the weights became NaN / inf; nothing of that step was saved."""


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the pip extra that brings it."""


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or MissingExtraError: "{purpose} needs {module}: pip install ..."."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{purpose} needs {module}: pip install 'plif-zoo[{extra}]' (or pip install {module})"
        ) from err
