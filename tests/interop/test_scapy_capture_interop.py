"""A fresh capture of real libzt traffic passes the same known-answer checks as the
committed one (tests/test_scapy_kat.py), so the committed file is reproducible and the
checks are not tuned to one recording. Also: tcpdump reads the pcap where installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from .capture_libzt import capture

pytestmark = pytest.mark.interop

TESTS = Path(__file__).resolve().parent.parent


def test_fresh_libzt_capture_passes_the_known_answer_tests(harness: object, tmp_path: Path) -> None:
    out = tmp_path / "capture"
    meta = capture(out, tmp_path / "work")
    assert meta["udp"]["received"] == meta["udp"]["payload_hex"], meta
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "test_scapy_kat.py")],
        env={**os.environ, "ZTCORE_KAT_CAPTURE": str(out)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "skipped" not in r.stdout
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        warnings.warn("tcpdump not installed: the pcap was not checked with tcpdump -r", stacklevel=1)
        return
    t = subprocess.run([tcpdump, "-nr", str(out / "libzt.pcap")], capture_output=True, text=True, timeout=30)
    assert t.returncode == 0, t.stderr
    lines = [x for x in t.stdout.splitlines() if ".9993" in x]
    assert len(lines) >= 30 and all("UDP" in x for x in lines), t.stdout[:2000]
