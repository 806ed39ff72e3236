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


def test_demo_in_80_columns_never_cuts_addresses_or_ips() -> None:
    """Piped output (rich's 80 columns) keeps every node address and IP whole."""
    import re

    out = io.StringIO()
    code = asyncio.run(run_demo(3, Console(file=out, width=80), timeout=20))
    text = out.getvalue()
    assert code == 0, text
    assert "…" not in text
    m = re.search(r"(\d+) node identities generated in [\d.]+ s", text)
    assert m and m.group(1) == "3"
    assert re.search(r"all 3 nodes online [\d.]+ s after starting", text)
    members = text[text.index("members of") : text.index("ping over")]
    # Three full IPv4 addresses with their prefix and three full RFC4193 addresses with /88.
    assert len(re.findall(r"\b10\.147\.17\.\d{1,3}/24\b", members)) == 3
    assert len(re.findall(r"\bfd[0-9a-f:]+/88\b", members)) == 3
    assert len(re.findall(r"\b[0-9a-f]{10}\b", members)) >= 3


def test_fit_table_drops_the_least_useful_column_then_widens() -> None:
    from ztcore.cli.tables import Col, fit_table

    console = Console(file=io.StringIO(), width=40)
    cols = [Col("address"), Col("note", 1), Col("ip")]
    rows = [["89e92ceee5", "x" * 20, "fd00:1111:2222:3333:4444:5555:6666:7777/88"]]
    table, width = fit_table(console, "t", cols, rows)
    assert [c.header for c in table.columns] == ["address", "ip"]  # "note" dropped first
    assert width is not None and width > 40  # still too wide: printed wider, never cut
    table, width = fit_table(Console(file=io.StringIO(), width=200), "t", cols, rows)
    assert [c.header for c in table.columns] == ["address", "note", "ip"] and width is None
