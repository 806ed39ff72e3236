"""The controller's durable store: networks and members in SQLite.

Owns ``controller.db`` in the node's home directory. Each network and member
is kept as its JSON object (the same object the HTTP API serves) next to a few
indexed columns (network id, member address, revision, authorized).

Durability: the database runs in WAL mode with ``synchronous=FULL``, and every
write is its own committed transaction unless grouped with `transaction()`, so
a change a caller has seen acknowledged survives ``kill -9`` and power loss.

Revisions follow zerotier-one's controller: a save bumps a record's
``revision`` by one only if some other field changed; saving an identical
record is a no-op. Several processes (or threads) may open the same file;
writers serialize on SQLite's lock (``BEGIN IMMEDIATE`` with a busy timeout).

`generation()` changes whenever a network or member may have changed, through
this store or through any other connection to the file (another process
included): callers that cache what they derive from records (the live
controller's repeat configs) compare it before trusting their cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ztcore.controller.model import ApiError, format_nwid, records_equal
from ztcore.errors import ZTError

__all__ = ["DB_FILENAME", "ControllerStore", "StoreError"]

DB_FILENAME = "controller.db"
_SCHEMA_VERSION = 2  # 2: derived member_ip / member_bridge tables
_FREE_ID_TRIALS = 100000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS network (
    nwid TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS member (
    nwid TEXT NOT NULL REFERENCES network(nwid) ON DELETE CASCADE,
    address TEXT NOT NULL,
    revision INTEGER NOT NULL,
    authorized INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (nwid, address)
);
CREATE INDEX IF NOT EXISTS member_by_authorized ON member (nwid, authorized);
-- Derived from the member records so that config requests need not scan them all.
CREATE TABLE IF NOT EXISTS member_ip (
    nwid TEXT NOT NULL,
    address TEXT NOT NULL,
    ip TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS member_ip_by_member ON member_ip (nwid, address);
CREATE TABLE IF NOT EXISTS member_bridge (
    nwid TEXT NOT NULL,
    address TEXT NOT NULL,
    PRIMARY KEY (nwid, address)
);
"""


class StoreError(ZTError):
    """The store is unusable (wrong schema, failed nested transaction, ...)."""


def _dump(record: Mapping[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def _revision(record: Mapping[str, Any] | None) -> int:
    v = record.get("revision") if record else None
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


class ControllerStore:
    """Networks and members of one controller, in a SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        p = Path(path)
        if p.is_dir():
            p = p / DB_FILENAME
        self.path = p
        existed = p.exists()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so every write is explicit.
        try:
            self._conn = sqlite3.connect(
                str(p), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StoreError(f"{p}: cannot open the controller database ({e})") from None
        if not existed:
            with contextlib.suppress(OSError):
                os.chmod(p, 0o600)
        self._lock = threading.RLock()
        self._depth = 0
        # Network and member writes made through this connection (rolled-back ones too).
        self._writes = 0
        self._rollback_only = False
        try:
            self._open(p, busy_timeout_s, existed)
        except sqlite3.DatabaseError as e:
            # Corrupt, truncated or not SQLite at all: say so in one sentence and leave the
            # file as it is (the operator may want to recover it).
            self._conn.close()
            raise StoreError(
                f"{p}: not a usable controller database ({e}); the file was left untouched"
            ) from None
        except BaseException:
            self._conn.close()
            raise

    def _open(self, p: Path, busy_timeout_s: float, existed: bool) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        if existed:
            # Reads every page: a truncated or damaged file fails here, before anything starts.
            problems = [r[0] for r in c.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(str(x) for x in problems[:3]))
        mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"could not put {p} in WAL mode (got {mode})")
        c.execute("PRAGMA synchronous=FULL")
        c.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            row = c.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))
            elif row[0] == "1":
                # Version 1 had no derived tables: build them from the member records.
                for nwid, address, record in c.execute("SELECT nwid, address, record FROM member").fetchall():
                    self._index_member(nwid, address, json.loads(record))
                c.execute("UPDATE meta SET value=? WHERE key='schema'", (str(_SCHEMA_VERSION),))
            elif row[0] != str(_SCHEMA_VERSION):
                raise StoreError(f"{p}: unsupported controller schema version {row[0]}")

    # ---------------------------------------------------------------------------------------
    # Lifecycle and transactions

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ControllerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[ControllerStore]:
        """Group reads and writes atomically; nests (inner blocks join the outer one).

        The write lock is taken at the start (``BEGIN IMMEDIATE``), so a read-modify-write
        inside one block cannot interleave with another writer. If a nested block raises,
        the whole outer transaction is rolled back even if the exception is caught.
        """
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
                self._rollback_only = False
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                else:
                    self._rollback_only = True
                raise
            self._depth -= 1
            if outer:
                if self._rollback_only:
                    self._conn.execute("ROLLBACK")
                    raise StoreError("a nested transaction failed; all of its changes were rolled back")
                self._conn.execute("COMMIT")

    def generation(self) -> tuple[int, int]:
        """A value that differs from any earlier one if a network or member may have changed
        since: SQLite's ``data_version`` (moves when another connection, in this process or
        another, commits) and this store's own count of network and member writes (which
        ``data_version`` does not see). Writes that were rolled back count as changes too."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0]), self._writes

    def fingerprint(self, nwid: str, address: str) -> bytes:
        """A digest of what a member's config is made of in the store: the network's and the
        member's records as stored and the network's active bridges. Equal fingerprints mean
        equal inputs (BLAKE2b, 128 bits), whatever happened in between."""
        nwid, address = nwid.lower(), address.lower()
        with self._lock:
            rows = self._conn.execute(
                "SELECT (SELECT record FROM network WHERE nwid=?), "
                "(SELECT record FROM member WHERE nwid=? AND address=?), "
                "(SELECT group_concat(address) FROM "
                "(SELECT address FROM member_bridge WHERE nwid=? ORDER BY address))",
                (nwid, nwid, address, nwid),
            ).fetchone()
        h = hashlib.blake2b(digest_size=16)
        for part in rows:
            text = b"\xff" if part is None else str(part).encode()
            h.update(len(text).to_bytes(8, "big"))
            h.update(text)
        return h.digest()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement under the store's lock, for tables other modules own (the
        ``trace`` table of `ztcore.controller.traces`); wrap writes in `transaction()`."""
        return self._query(sql, args)

    # ---------------------------------------------------------------------------------------
    # Networks

    def list_networks(self) -> list[str]:
        """Network ids (16 hex digits), sorted."""
        return [r[0] for r in self._query("SELECT nwid FROM network ORDER BY nwid")]

    def has_network(self, nwid: str) -> bool:
        return bool(self._query("SELECT 1 FROM network WHERE nwid=?", (nwid.lower(),)))

    def get_network(self, nwid: str) -> dict[str, Any] | None:
        rows = self._query("SELECT record FROM network WHERE nwid=?", (nwid.lower(),))
        return json.loads(rows[0][0]) if rows else None

    def put_network(self, record: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Save a network record (keyed by its ``id``); returns (stored record, changed)."""
        nwid = record.get("id")
        if not isinstance(nwid, str) or len(nwid) != 16:
            raise StoreError("network record needs a 16-digit 'id'")
        nwid = nwid.lower()
        with self.transaction():
            old = self.get_network(nwid)
            if old is not None and records_equal(old, record):
                return old, False
            new = dict(record)
            new["revision"] = (_revision(old) if old is not None else _revision(record)) + 1
            self._writes += 1
            self._conn.execute(
                "INSERT INTO network (nwid, revision, record) VALUES (?, ?, ?) "
                "ON CONFLICT(nwid) DO UPDATE SET revision=excluded.revision, record=excluded.record",
                (nwid, new["revision"], _dump(new)),
            )
            return new, True

    def delete_network(self, nwid: str) -> dict[str, Any] | None:
        """Remove a network and all its members; returns the removed network or None."""
        with self.transaction():
            old = self.get_network(nwid)
            if old is not None:
                self._writes += 1
                self._conn.execute("DELETE FROM member WHERE nwid=?", (nwid.lower(),))
                self._conn.execute("DELETE FROM member_ip WHERE nwid=?", (nwid.lower(),))
                self._conn.execute("DELETE FROM member_bridge WHERE nwid=?", (nwid.lower(),))
                self._conn.execute("DELETE FROM network WHERE nwid=?", (nwid.lower(),))
            return old

    def free_network_id(self, controller_address: int) -> str:
        """A random unused network id under this controller's address (never number 0).

        Call inside the `transaction()` that creates the network so no other writer can
        take the same id in between.
        """
        prefix = (controller_address & 0xFFFFFFFFFF) << 24
        for _ in range(_FREE_ID_TRIALS):
            number = secrets.randbits(24) or 1
            candidate = format_nwid(prefix | number)
            if not self.has_network(candidate):
                return candidate
        raise ApiError(503, "no free network number left under this controller's address")

    # ---------------------------------------------------------------------------------------
    # Members

    def list_members(self, nwid: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT record FROM member WHERE nwid=? ORDER BY address", (nwid.lower(),))
        return [json.loads(r[0]) for r in rows]

    def member_revisions(self, nwid: str) -> dict[str, int]:
        """``{address: revision}`` for every member of the network (the member-list API shape)."""
        rows = self._query(
            "SELECT address, revision FROM member WHERE nwid=? ORDER BY address", (nwid.lower(),)
        )
        return {a: r for a, r in rows}

    def member_counts(self, nwid: str) -> tuple[int, int]:
        """(total members, authorized members) of the network."""
        rows = self._query(
            "SELECT COUNT(*), COALESCE(SUM(authorized), 0) FROM member WHERE nwid=?", (nwid.lower(),)
        )
        return int(rows[0][0]), int(rows[0][1])

    def get_member(self, nwid: str, address: str) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT record FROM member WHERE nwid=? AND address=?", (nwid.lower(), address.lower())
        )
        return json.loads(rows[0][0]) if rows else None

    def put_member(self, record: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Save a member record (keyed by ``nwid`` and ``id``); returns (stored record, changed).

        The network must exist (StoreError otherwise).
        """
        nwid, address = record.get("nwid"), record.get("id")
        if not isinstance(nwid, str) or len(nwid) != 16 or not isinstance(address, str) or len(address) != 10:
            raise StoreError("member record needs a 16-digit 'nwid' and a 10-digit 'id'")
        nwid, address = nwid.lower(), address.lower()
        with self.transaction():
            if not self.has_network(nwid):
                raise StoreError(f"network {nwid} does not exist")
            old = self.get_member(nwid, address)
            if old is not None and records_equal(old, record):
                return old, False
            new = dict(record)
            new["revision"] = (_revision(old) if old is not None else _revision(record)) + 1
            self._writes += 1
            self._conn.execute(
                "INSERT INTO member (nwid, address, revision, authorized, record) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(nwid, address) DO UPDATE SET revision=excluded.revision, "
                "authorized=excluded.authorized, record=excluded.record",
                (nwid, address, new["revision"], 1 if new.get("authorized") is True else 0, _dump(new)),
            )
            self._index_member(nwid, address, new)
            return new, True

    def _index_member(self, nwid: str, address: str, record: Mapping[str, Any] | None) -> None:
        """Keep the derived lookup tables (assigned IPs, active bridges) in step with a record."""
        c = self._conn
        c.execute("DELETE FROM member_ip WHERE nwid=? AND address=?", (nwid, address))
        c.execute("DELETE FROM member_bridge WHERE nwid=? AND address=?", (nwid, address))
        if record is None:
            return
        ips = record.get("ipAssignments")
        if isinstance(ips, list):
            c.executemany(
                "INSERT INTO member_ip (nwid, address, ip) VALUES (?, ?, ?)",
                [(nwid, address, ip) for ip in ips if isinstance(ip, str)],
            )
        if record.get("activeBridge") is True:
            c.execute("INSERT INTO member_bridge (nwid, address) VALUES (?, ?)", (nwid, address))

    def active_bridges(self, nwid: str) -> list[str]:
        """Addresses of the network's members marked ``activeBridge``, sorted."""
        rows = self._query("SELECT address FROM member_bridge WHERE nwid=? ORDER BY address", (nwid.lower(),))
        return [r[0] for r in rows]

    def delete_member(self, nwid: str, address: str) -> dict[str, Any] | None:
        """Remove a member; returns the removed record or None."""
        with self.transaction():
            old = self.get_member(nwid, address)
            if old is not None:
                self._writes += 1
                self._conn.execute(
                    "DELETE FROM member WHERE nwid=? AND address=?", (nwid.lower(), address.lower())
                )
                self._index_member(nwid.lower(), address.lower(), None)
            return old

    def allocated_ips(self, nwid: str, exclude_address: str | None = None) -> list[str]:
        """Every ``ipAssignments`` entry of the network's members (except `exclude_address`)."""
        rows = self._query(
            "SELECT ip FROM member_ip WHERE nwid=? AND address != ?",
            (nwid.lower(), (exclude_address or "").lower()),
        )
        return [r[0] for r in rows]

    def integrity_check(self) -> bool:
        """SQLite's own consistency check plus: every member belongs to an existing network."""
        ok = self._query("PRAGMA integrity_check")[0][0] == "ok"
        orphans = self._query("SELECT COUNT(*) FROM member WHERE nwid NOT IN (SELECT nwid FROM network)")[0][
            0
        ]
        return ok and orphans == 0
