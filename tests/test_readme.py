"""The README's Python example must run as printed."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path


def _run_block(index: int) -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) > index, "README lacks its python examples"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[index], "README.md", "exec"), {"__name__": "readme"})
    return out.getvalue()


def test_readme_app_example_runs() -> None:
    """The app example: an offline world, a user message, TCP between two members."""
    lines = _run_block(0).splitlines()
    assert re.fullmatch(r"b'hello' from [0-9a-f]{10}", lines[0]), lines
    assert lines[1] == "b'HELLO OVER TCP\\n'"


def test_readme_simulator_example_runs() -> None:
    assert _run_block(1).strip() == "b'hello'"
