"""Broad exception handlers: none swallows an error silently (issue: fresh machine)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import ztcore
from ztcore.errors import UNEXPECTED, report_unexpected

PACKAGE = Path(ztcore.__file__).parent


def _is_broad(handler: ast.ExceptHandler) -> bool:
    t = handler.type
    names = [t] if not isinstance(t, ast.Tuple) else list(t.elts) if t is not None else []
    return t is None or any(isinstance(n, ast.Name) and n.id in ("Exception", "BaseException") for n in names)


def _accounts_for_it(handler: ast.ExceptHandler) -> bool:
    """Re-raises, hands the exception to a waiting caller, or reports it (logged + counted)."""
    for node in ast.walk(ast.Module(body=handler.body, type_ignores=[])):
        if isinstance(node, ast.Raise):
            return True
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            # _fatal: runtime.sockets' report-and-abort for a protocol callback that raised.
            if name in ("report_unexpected", "set_exception", "_fatal"):
                return True
    return False


def test_no_broad_except_in_the_package_swallows_silently() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and _is_broad(node) and not _accounts_for_it(node):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == [], "broad except without report_unexpected/raise: " + ", ".join(offenders)


def test_the_scan_sees_a_silent_handler() -> None:
    silent = ast.parse("try:\n    f()\nexcept Exception:\n    pass\n").body[0].handlers[0]  # type: ignore[attr-defined]
    reported = ast.parse(
        "try:\n    f()\nexcept Exception as e:\n    report_unexpected(log, 'x', e)\n"
    ).body[0].handlers[0]  # type: ignore[attr-defined]
    assert _is_broad(silent) and not _accounts_for_it(silent)
    assert _accounts_for_it(reported)


def test_report_unexpected_counts_every_time_and_logs_sparingly(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("ztcore.test")
    where = "test: a place that breaks"
    before = UNEXPECTED[where]
    with caplog.at_level(logging.DEBUG, logger="ztcore.test"):
        for _ in range(100):
            try:
                raise KeyError("boom")
            except KeyError as e:
                report_unexpected(log, where, e)
    assert UNEXPECTED[where] == before + 100
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(warnings) == 3  # the 1st, 10th and 100th
    assert "KeyError" in warnings[0].getMessage() and "boom" in warnings[0].getMessage()
    assert len(debug) == 100 and all(r.exc_info for r in debug)  # the traceback, every time


def test_a_failing_state_store_is_counted_not_hidden() -> None:
    from ztcore.identity import Identity
    from ztcore.vl1.peer import Peer
    from ztcore.vl1.topology import Topology

    me, other = Identity.generate(), Identity.generate()

    def broken_save(address: int, data: bytes) -> None:
        raise OSError("disk on fire")

    topo = Topology.__new__(Topology)
    topo.cache_save = broken_save
    before = UNEXPECTED["topology: saving a peer"]
    topo.save_peer(Peer.create(me, other))
    assert UNEXPECTED["topology: saving a peer"] == before + 1
