"""The README's workbench section: its Python examples run as printed and print what it shows."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## The workbench: ZeroTier in Scapy")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _run(block: str) -> str:
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)  # the example reads tests/data/ relative to the repository
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    return out.getvalue()


def test_workbench_section_examples_run_as_printed() -> None:
    section = _section()
    script, dissection = re.findall(r"```python\n(.*?)```", section, re.S)
    out = _run(script)
    assert re.fullmatch(r"\[b'pong from [0-9a-f]{10}', b'pong from [0-9a-f]{10}'\]\n", out), out
    shown = re.findall(r"```text\n(.*?)```", section, re.S)[1]
    assert _run(dissection) == shown
    assert "ztnode shell -n 3" in section and "n2.received" in section and "ztnode capture" in section
