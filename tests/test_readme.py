"""The README's Python examples run as written (in a scratch folder)."""

import re
from pathlib import Path

import pytest

import plif_zoo

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, tmp_path, monkeypatch):
    if "# weights_required" in code and not plif_zoo.model_info("fashion-mnist-plif").has_weights:
        pytest.skip("the example loads published fashion-mnist-plif weights; none are registered")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
