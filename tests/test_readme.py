"""The Python examples of the README and the reference run as written, so the documentation stays true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: the README's examples, then the reference's, which build on them
BLOCKS = [
    (path.name, block)
    for path in (README, ROOT / "docs" / "reference.md")
    for block in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)
]


def test_readme_python_examples_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Later examples use what earlier ones made, as a reader following the README would."""
    assert BLOCKS
    monkeypatch.chdir(tmp_path)
    for index, (name, block) in enumerate(BLOCKS):
        exec(compile(block, f"{name} python block {index}", "exec"), {"__name__": "readme"})


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.read_text().split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
