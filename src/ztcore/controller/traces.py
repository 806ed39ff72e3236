"""Remote traces the controller collects from its members, kept in its SQLite store.

zerotier-one's controller turns each received VERB_REMOTE_TRACE dictionary into a
JSON object (``objtype: "trace"``, ``id``, ``ts``, ``nodeId`` and the dictionary's
fields, see `ztcore.tracing.controller_record`) and hands it to its database.
`TraceStore` keeps those objects in the ``trace`` table of ``controller.db``,
bounded (the oldest go first) and queryable by network, node and time.

Only traces that concern this controller are kept: the sender must be a member
of the network the trace names (or, for a trace naming no network, of any of our
networks), so that an arbitrary peer cannot fill the table, and at most `INTAKE_RATE` a
second from each (after a burst of `INTAKE_BURST`), since each is a durable write.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from typing import Any

from ztcore.controller.model import now_ms
from ztcore.controller.store import ControllerStore
from ztcore.errors import InvalidFormatError
from ztcore.tracing import RemoteTrace, controller_record

__all__ = ["DEFAULT_MAX_TRACES", "INTAKE_BURST", "INTAKE_RATE", "TraceStore"]

log = logging.getLogger(__name__)

DEFAULT_MAX_TRACES = 10000
MAX_QUERY = 10000
# Each stored trace is a durable SQLite write: a member may not make more than this
# many a second (after a burst), whatever it sends.
INTAKE_BURST = 200
INTAKE_RATE = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trace (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    nwid TEXT NOT NULL,
    node TEXT NOT NULL,
    ts INTEGER NOT NULL,
    event TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trace_by_network ON trace (nwid, seq);
CREATE INDEX IF NOT EXISTS trace_by_node ON trace (node, seq)
"""


class TraceStore:
    """The controller's collected remote traces (one table in the controller's store)."""

    def __init__(self, store: ControllerStore, *, max_traces: int = DEFAULT_MAX_TRACES) -> None:
        self.store = store
        self.max_traces = max(1, int(max_traces))
        self.stats: Counter[str] = Counter()
        self._counter = itertools.count()
        self._buckets: dict[int, tuple[float, int]] = {}
        with store.transaction():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    store.execute(stmt)

    # ------------------------------------------------------------------------- intake
    def accepts(self, origin: int, nwid: str | None) -> bool:
        """Is `origin` a member of network `nwid` (or, if None, of any of our networks)?"""
        node = f"{origin & 0xFFFFFFFFFF:010x}"
        if nwid is not None:
            return self.store.get_member(nwid, node) is not None
        rows = self.store.execute("SELECT 1 FROM member WHERE address=? LIMIT 1", (node,))
        return bool(rows)

    def _allow(self, origin: int, now: int) -> bool:
        tokens, last = self._buckets.get(origin, (float(INTAKE_BURST), now))
        tokens = min(float(INTAKE_BURST), tokens + max(0, now - last) * INTAKE_RATE / 1000.0)
        ok = tokens >= 1.0
        self._buckets[origin] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > 4096:
            self._buckets.clear()
        return ok

    def add(self, controller: int, trace: RemoteTrace, now: int | None = None) -> dict[str, Any] | None:
        """Keep one received trace; returns its JSON record, or None if it was refused
        (malformed, not from a member, or over the member's rate)."""
        now = now_ms() if now is None else now
        if not self._allow(trace.origin, now):
            self.stats["rate_limited"] += 1
            return None
        try:
            rec = controller_record(
                trace.data, origin=trace.origin, controller=controller, now=now, counter=next(self._counter)
            )
        except InvalidFormatError as e:
            self.stats["malformed"] += 1
            log.debug("remote trace from %010x refused: %s", trace.origin, e)
            return None
        raw_nwid = rec.get("networkId")
        nwid: str | None = None
        if isinstance(raw_nwid, str):
            try:
                nwid = f"{int(raw_nwid, 16) & 0xFFFFFFFFFFFFFFFF:016x}"
            except ValueError:
                self.stats["malformed"] += 1
                return None
        if not self.accepts(trace.origin, nwid):
            self.stats["not_a_member"] += 1
            return None
        with self.store.transaction():
            self.store.execute(
                "INSERT INTO trace (nwid, node, ts, event, record) VALUES (?, ?, ?, ?, ?)",
                (nwid or "", rec["nodeId"], now, str(rec.get("event", "")), json.dumps(rec, sort_keys=True)),
            )
            self.store.execute(
                "DELETE FROM trace WHERE seq <= (SELECT MAX(seq) FROM trace) - ?", (self.max_traces,)
            )
        self.stats["stored"] += 1
        return rec

    # ------------------------------------------------------------------------ queries
    def query(
        self,
        *,
        nwid: str | None = None,
        node: str | None = None,
        since_ts: int | None = None,
        until_ts: int | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[tuple[int, dict[str, Any]]]:
        """(sequence number, record) of stored traces, oldest first, filtered."""
        where = ["seq > ?"]
        args: list[Any] = [int(after_seq)]
        if nwid is not None:
            where.append("nwid = ?")
            args.append(nwid.lower())
        if node is not None:
            where.append("node = ?")
            args.append(node.lower())
        if since_ts is not None:
            where.append("ts >= ?")
            args.append(int(since_ts))
        if until_ts is not None:
            where.append("ts <= ?")
            args.append(int(until_ts))
        args.append(max(0, min(int(limit), MAX_QUERY)))
        rows = self.store.execute(
            f"SELECT seq, record FROM trace WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", tuple(args)
        )
        return [(int(seq), json.loads(rec)) for seq, rec in rows]

    def count(self) -> int:
        return int(self.store.execute("SELECT COUNT(*) FROM trace")[0][0])
