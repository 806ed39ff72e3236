"""The runnable apps in examples/ do what they say, each on an offline network."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_group_chat_reaches_every_other_member() -> None:
    import group_chat

    heard = asyncio.run(asyncio.wait_for(group_chat.demo(3), 60))
    assert len(heard) == 3
    for name, lines in heard.items():
        others = sorted(f"<{o}> hello from {o}" for o in heard if o != name)
        assert lines == others


def test_request_response_key_value_service() -> None:
    import request_response

    replies = asyncio.run(asyncio.wait_for(request_response.demo(), 60))
    assert replies == [
        {"ok": True},
        {"ok": True},
        {"ok": True, "value": "hello from alice"},
        {"ok": True, "value": 42},
        {"ok": True, "value": ["answer", "greeting"]},
        {"ok": False, "error": "unknown op 'frobnicate'"},
    ]


def test_http_over_h11_with_keep_alive() -> None:
    import http_h11

    results = asyncio.run(asyncio.wait_for(http_h11.demo(), 60))
    assert results == [(200, b"hello over ZeroTier\n"), (200, b"SHOUT THIS"), (404, b"not found\n")]


def test_examples_run_as_scripts() -> None:
    import subprocess

    for script in ("request_response.py",):
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=120, check=True
        )
        assert "hello from alice" in out.stdout
