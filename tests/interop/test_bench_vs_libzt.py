"""bench/bench_vs_libzt.py stays honest: a tiny run (one 1 s transfer each, 5 echoes) prints every row
with a number, the load it was taken under and the command that reproduces it.

Only the shape is checked, never a speed (speed goals live in the bench's own output).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import HarnessPaths
from .harness.netns import list_namespaces, python_env

pytestmark = pytest.mark.interop

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_vs_libzt.py"
ROW = re.compile(r"^(libzt|ztcore)\s+(\w+)\s+(\S+)\s+(.*?)\s+load\s+(\d+\.\d\d)\s")
RATIO = re.compile(r"^ratio\s+(\w+)\s+(\S+)\s+ztcore / real core\s+(target [<>]= [\d.]+|no target)\s")
NUMBER = re.compile(r"^\d[\d,]*\.\d+$")
TIMEOUT = 150.0


def run_bench(*args: str) -> tuple[int, str, str, int]:
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the bench tears its namespaces down on SIGTERM
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"bench_vs_libzt ran over {TIMEOUT:.0f}s\n{out}\n{err[-3000:]}")
    return proc.returncode, out, err, proc.pid


def ztcore_has_tcp() -> bool:
    """The bench's own test for TCP in this tree (see bench_vs_libzt.ztcore_has_tcp)."""
    import ztcore.runtime
    from ztcore.runtime.service import NodeService

    return hasattr(ztcore.runtime, "open_connection") or hasattr(NodeService, "open_connection")


def test_tiny_run_prints_every_row_with_a_number(harness: HarnessPaths) -> None:
    rc, out, err, pid = run_bench("--seconds", "1", "--runs", "1", "--pings", "5", "--max-seconds", "120")
    report = f"\n--- stdout\n{out}\n--- stderr (tail)\n{err[-3000:]}"
    assert rc == 0, f"exit {rc}{report}"
    assert "command: python bench/bench_vs_libzt.py --seconds 1 --runs 1 --size 1400 --pings 5 --ping-gap 20 --udp-rate 0" in out, report
    assert re.search(r"load average \d+\.\d\d \d+\.\d\d \d+\.\d\d at start", out), report
    assert re.search(r"load average \d+\.\d\d \d+\.\d\d \d+\.\d\d at end; \d+ s in all; command: ", out), report

    rows = {(m[1], m[2]): (m[3], m[4]) for m in map(ROW.match, out.splitlines()) if m}
    tcp = ztcore_has_tcp()
    for pair in ("libzt", "ztcore"):
        for figure in ("rtt", "udp", "udp_cpu", "tcp", "tcp_cpu"):
            assert (pair, figure) in rows, f"no {pair} {figure} row{report}"
            value, unit = rows[pair, figure]
            if pair == "ztcore" and figure.startswith("tcp") and not tcp:
                assert (value, unit) == ("n/a", "(no TCP in this tree)"), report
                continue
            assert NUMBER.match(value) and float(value.replace(",", "")) > 0, f"{pair} {figure}: {value!r}{report}"
    assert rows["libzt", "udp"][1] == "Mbit/s" and rows["libzt", "udp_cpu"][1] == "CPU ms/Mbit", report
    assert rows["libzt", "rtt"][1] == "ms (median)", report

    ratios = {m[1]: (m[2], m[3]) for m in map(RATIO.match, out.splitlines()) if m}
    assert ratios.get("udp", ("", ""))[1] == "target >= 0.5", report
    assert ratios.get("rtt", ("", ""))[1] == "target <= 2", report
    assert ratios.get("udp_cpu", ("", ""))[1] == "target <= 3", report
    for figure in ("udp", "rtt", "udp_cpu") + (("tcp", "tcp_cpu") if tcp else ()):
        assert NUMBER.match(ratios[figure][0]), f"ratio {figure}: {ratios[figure]}{report}"
    # It cleaned up after itself (namespace names carry their creator's pid; other sessions'
    # interop runs may have theirs up at the same time).
    assert not [n for n in list_namespaces() if n.startswith(f"zci-{pid}-")], list_namespaces()
