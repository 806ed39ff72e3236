"""The main job, `ztnode demo`, end to end on loopback (real sockets, real timers)."""

from __future__ import annotations

import asyncio
import io

from click.testing import CliRunner
from rich.console import Console

from ztcore.cli.demo import demo, run_demo


def test_demo_runs_all_pairs_direct() -> None:
    out = io.StringIO()
    code = asyncio.run(run_demo(3, Console(file=out, width=120), timeout=20))
    text = out.getvalue()
    assert code == 0, text
    assert "all 3 nodes online" in text
    assert "round 1: 6 ping/pongs answered" in text
    assert "round 2: 6 ping/pongs answered (direct; root relayed 0 packets)" in text
    assert "all leaf pairs direct" in text
    assert text.count("PLANET") == 3  # each leaf lists the root
    # The virtual network part: a controller, authorization, addresses, ICMP between every pair.
    assert "3 members denied until authorized" in text
    assert "VL2: 12/12 pings answered" in text
    assert text.count("10.147.17.") == 3


def test_demo_rejects_bad_arguments() -> None:
    result = CliRunner().invoke(demo, ["-n", "1"])
    assert result.exit_code == 2
    assert "1 is not in the range" in result.output
