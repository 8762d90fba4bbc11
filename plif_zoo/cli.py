"""The ``plif-zoo`` command line: thin commands over the package modules.

Each command is a ``cmd_<name>(args)`` function registered in ``_build_parser``.
"""

from __future__ import annotations

import argparse
import sys


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plif-zoo", description="PLIF spiking neural networks: model zoo, evaluation, training"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    del sub  # commands are added below this line, one block each
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
