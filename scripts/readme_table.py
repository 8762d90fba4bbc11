"""Generate the README's model-zoo table from the registry (the one source of truth).

    python scripts/readme_table.py              # print the table
    python scripts/readme_table.py --write      # replace it in README.md between the markers
    python scripts/readme_table.py --check      # exit 1 when README.md's table is stale

README.md holds the table between `<!-- zoo-table:start -->` and `<!-- zoo-table:end -->`.
Published weights appear only in the table written here, so `--check` in CI catches a
PUBLISHED_WEIGHTS edit without a README update.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plif_zoo._io import atomic_write
from plif_zoo.registry import markdown_table

START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def replace_table(text: str, table: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"README has no {START} ... {END} markers; add them where the table goes")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="update README.md in place")
    group.add_argument("--check", action="store_true", help="exit 1 if README.md's table is stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    table = markdown_table()
    if not (args.write or args.check):
        print(table, end="")
        return 0
    text = args.readme.read_text()
    new = replace_table(text, table)
    if args.check:
        if new != text:
            print(
                f"{args.readme}: the zoo table is stale; "
                "run python scripts/readme_table.py --write",
                file=sys.stderr,
            )
            return 1
        return 0
    atomic_write(args.readme, new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
