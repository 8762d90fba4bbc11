"""The zoo's exceptions, in one leaf module (it imports nothing from plif_zoo).

Each subclasses the builtin a caller would catch anyway (``KeyError`` for an unknown id,
``OSError`` for a failed download, ...), and every message says what was wrong and what to do.
"""

from __future__ import annotations

__all__ = [
    "UnknownModelError",
    "NoPretrainedWeightsError",
    "ChecksumError",
    "HubDownloadError",
    "DatasetNotFoundError",
    "ModelFolderError",
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


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they were looked for."""


class ModelFolderError(ValueError):
    """A model folder's files are malformed, or its config.json does not fit its weights or the
    registry's architecture for its id."""
