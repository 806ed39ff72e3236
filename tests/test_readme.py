"""The README's Python example must run as printed."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path


def test_readme_python_example_runs() -> None:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    assert "'data': b'hello'" in out.getvalue()
