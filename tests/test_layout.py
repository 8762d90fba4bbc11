"""Size limits of the package source (issue 13): modules of at most 500 lines, functions of at
most 80, so that each file stays one idea and each function fits on a screen."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "plif_zoo"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
MODULES = sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def test_the_package_has_modules():
    assert len(MODULES) > 10, f"found only {len(MODULES)} modules under {PACKAGE}"


def test_no_module_is_longer_than_500_lines():
    long = {
        _name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by idea): " + ", ".join(
        f"{name} ({n})" for name, n in sorted(long.items())
    )


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (
                    node.end_lineno - node.lineno + 1
                )  # from `def` to the last line, docstring included
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{_name(path)}:{node.lineno} {node.name} ({n})")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: " + ", ".join(long)
