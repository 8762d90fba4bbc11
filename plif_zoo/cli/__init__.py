"""The ``plif-zoo`` command line: thin commands over the package modules.

Each command is a ``cmd_<name>(args)`` function in a module of this package (zoo, train, nir),
registered by that module's ``add_command(s)``; ``options`` holds the argparse value types.
"""

from __future__ import annotations

import os
import sys

from . import nir, train, zoo
from .options import BACKENDS, Parser

__all__ = ["BACKENDS", "main"]


def _build_parser() -> Parser:
    parser = Parser(
        prog="plif-zoo", description="PLIF spiking neural networks: model zoo, evaluation, training"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    zoo.add_commands(sub)
    train.add_commands(sub)
    nir.add_command(sub)
    return parser


def _quiet_broken_pipe() -> int:
    """stdout's reader went away (``plif-zoo list | head -2``): stop without a traceback. Python's
    recipe: point stdout at devnull so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from ..errors import (
        ChecksumError,
        HubDownloadError,
        MissingExtraError,
        NoPretrainedWeightsError,
        UnknownModelError,
    )

    try:
        code = args.func(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (
        UnknownModelError,
        NoPretrainedWeightsError,
        HubDownloadError,
        ChecksumError,
        MissingExtraError,
        OSError,
        ValueError,
    ) as err:
        # the zoo's errors say what to do; PLIF_ZOO_DEBUG=1 shows the traceback
        if os.environ.get("PLIF_ZOO_DEBUG"):
            raise
        print(f"plif-zoo {args.command}: error: {err}", file=sys.stderr)
        return 1
