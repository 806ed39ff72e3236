"""Controller SQLite store: CRUD, revisions, transactions, persistence, crash safety, concurrency."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from ztcore.controller import store as store_mod
from ztcore.controller.model import ApiError, update_member, update_network
from ztcore.controller.store import DB_FILENAME, ControllerStore, StoreError

CTL = 0xABCDEF0123
NWID = (CTL << 24) | 0x000001
NWID_S = f"{NWID:016x}"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def network(body: dict | None = None, old: dict | None = None, nwid: int = NWID) -> dict:
    return update_network(old, body or {}, nwid, 1000)


def member(address: int, body: dict | None = None, old: dict | None = None, nwid: int = NWID) -> dict:
    return update_member(old, body or {}, nwid, address, 1000)


@pytest.fixture
def st(tmp_path: Path):
    s = ControllerStore(tmp_path)
    yield s
    s.close()


def test_file_is_in_home_dir_private_wal_and_full_sync(tmp_path: Path, st: ControllerStore) -> None:
    assert st.path == tmp_path / DB_FILENAME and st.path.exists()
    assert stat.S_IMODE(os.stat(st.path).st_mode) == 0o600
    assert st._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert st._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_network_crud_and_revisions(st: ControllerStore) -> None:
    assert st.list_networks() == [] and st.get_network(NWID_S) is None
    stored, changed = st.put_network(network({"name": "a"}))
    assert changed and stored["revision"] == 1 and stored["name"] == "a"
    assert st.get_network(NWID_S) == stored and st.has_network(NWID_S.upper())
    # Saving an identical record changes nothing, not even the revision.
    again, changed = st.put_network(network({"name": "a"}, stored))
    assert not changed and again["revision"] == 1
    stored2, changed = st.put_network(network({"name": "b"}, stored))
    assert changed and stored2["revision"] == 2
    other = network(nwid=NWID + 1)
    st.put_network(other)
    assert st.list_networks() == [NWID_S, f"{NWID + 1:016x}"]
    assert st.delete_network(NWID_S) == stored2
    assert st.delete_network(NWID_S) is None
    assert st.list_networks() == [f"{NWID + 1:016x}"]


def test_member_crud_counts_and_allocated_ips(st: ControllerStore) -> None:
    st.put_network(network())
    a, b = 0x1111111111, 0x2222222222
    ma, _ = st.put_member(member(a, {"authorized": True, "ipAssignments": ["10.0.0.1"]}))
    mb, _ = st.put_member(member(b, {"ipAssignments": ["10.0.0.2", "fd00::2"]}))
    assert ma["revision"] == 1 and mb["revision"] == 1
    mb2, changed = st.put_member(member(b, {"name": "x"}, mb))
    assert changed and mb2["revision"] == 2
    assert st.member_revisions(NWID_S) == {"1111111111": 1, "2222222222": 2}
    assert st.member_counts(NWID_S) == (2, 1)
    assert [m["id"] for m in st.list_members(NWID_S)] == ["1111111111", "2222222222"]
    assert sorted(st.allocated_ips(NWID_S)) == ["10.0.0.1", "10.0.0.2", "fd00::2"]
    assert sorted(st.allocated_ips(NWID_S, exclude_address="2222222222")) == ["10.0.0.1"]
    assert st.get_member(NWID_S, "2222222222") == mb2
    assert st.delete_member(NWID_S, "2222222222") == mb2
    assert st.get_member(NWID_S, "2222222222") is None and st.delete_member(NWID_S, "2222222222") is None
    # Deleting a network removes its members.
    st.delete_network(NWID_S)
    assert st.list_members(NWID_S) == [] and st.integrity_check()


def test_member_needs_its_network(st: ControllerStore) -> None:
    with pytest.raises(StoreError):
        st.put_member(member(0x1111111111))
    with pytest.raises(StoreError):
        st.put_member({"id": "1", "nwid": NWID_S})


def test_transaction_rolls_back_everything(st: ControllerStore) -> None:
    with pytest.raises(RuntimeError), st.transaction():
        st.put_network(network({"name": "tx"}))
        st.put_member(member(0x1111111111))
        raise RuntimeError("abort")
    assert st.list_networks() == [] and st.integrity_check()
    # A failed nested block poisons the outer transaction even if the error is caught.
    with pytest.raises(StoreError), st.transaction():
        st.put_network(network({"name": "outer"}))
        try:
            with st.transaction():
                st.put_member(member(0x1111111111))
                raise ValueError("inner")
        except ValueError:
            pass
    assert st.list_networks() == []
    # And a committed one is visible from another connection.
    with st.transaction():
        st.put_network(network({"name": "ok"}))
        st.put_member(member(0x1111111111))
    with ControllerStore(st.path) as other:
        assert other.get_network(NWID_S)["name"] == "ok" and other.member_revisions(NWID_S) == {
            "1111111111": 1
        }


def test_reopen_persists(tmp_path: Path) -> None:
    with ControllerStore(tmp_path) as s:
        n, _ = s.put_network(network({"name": "persist", "routes": [{"target": "10.0.0.0/8"}]}))
        m, _ = s.put_member(member(0x1111111111, {"authorized": True}))
    with ControllerStore(tmp_path / DB_FILENAME) as s:
        assert s.get_network(NWID_S) == n and s.get_member(NWID_S, "1111111111") == m
        n2, changed = s.put_network(network({"name": "again"}, s.get_network(NWID_S)))
        assert changed and n2["revision"] == 2


def test_refuses_unknown_schema(tmp_path: Path) -> None:
    ControllerStore(tmp_path).close()
    con = sqlite3.connect(tmp_path / DB_FILENAME)
    con.execute("UPDATE meta SET value='999' WHERE key='schema'")
    con.commit()
    con.close()
    with pytest.raises(StoreError):
        ControllerStore(tmp_path)


def test_free_network_id(st: ControllerStore, monkeypatch: pytest.MonkeyPatch) -> None:
    st.put_network(network(nwid=(CTL << 24) | 0x000005))
    draws = iter([0, 5, 7])  # 0 is never a network number (becomes 1); 5 is taken
    monkeypatch.setattr(store_mod.secrets, "randbits", lambda bits: next(draws))
    assert st.free_network_id(CTL) == f"{(CTL << 24) | 1:016x}"
    assert st.free_network_id(CTL) == f"{(CTL << 24) | 7:016x}"
    monkeypatch.undo()
    ids = {st.free_network_id(CTL) for _ in range(20)}
    assert all(i.startswith("abcdef0123") and int(i[10:], 16) != 0 for i in ids)
    monkeypatch.setattr(store_mod.secrets, "randbits", lambda bits: 5)
    monkeypatch.setattr(store_mod, "_FREE_ID_TRIALS", 10)
    with pytest.raises(ApiError) as e:
        st.free_network_id(CTL)
    assert e.value.status == 503


def test_two_connections_serialize_read_modify_write(tmp_path: Path) -> None:
    ControllerStore(tmp_path).close()
    with ControllerStore(tmp_path) as s:
        s.put_network(network({"multicastLimit": 0}))
    rounds = 25
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with ControllerStore(tmp_path) as s:
                for _ in range(rounds):
                    with s.transaction():
                        n = s.get_network(NWID_S)
                        s.put_network(network({"multicastLimit": n["multicastLimit"] + 1}, n))
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    with ControllerStore(tmp_path) as s:
        n = s.get_network(NWID_S)
        assert n["multicastLimit"] == 2 * rounds  # no lost update
        assert n["revision"] == 1 + 2 * rounds


_WRITER = textwrap.dedent(
    """
    import sys
    from ztcore.controller.model import update_member, update_network
    from ztcore.controller.store import ControllerStore

    nwid = int(sys.argv[2], 16)
    s = ControllerStore(sys.argv[1])
    s.put_network(update_network(None, {}, nwid, 0))
    print("ready", flush=True)
    for i in range(3000):  # bounded: stops by itself if never killed
        address = 0x1000000000 + i % 40
        old = s.get_member(sys.argv[2], f"{address:010x}")
        stored, _ = s.put_member(update_member(old, {"name": f"w{i}"}, nwid, address, 0))
        # Printed only after the commit returned: this is the acknowledgement.
        print(f"{address:010x} {stored['revision']} w{i}", flush=True)
    """
)


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), NWID_S],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acked: dict[str, tuple[int, str]] = {}
    kill_after = random.randint(30, 300)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(kill_after):
            line = proc.stdout.readline()
            if not line:
                break
            address, revision, name = line.split()
            acked[address] = (int(revision), name)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert acked
    with ControllerStore(tmp_path) as s:
        assert s.integrity_check()
        for address, (revision, name) in acked.items():
            m = s.get_member(NWID_S, address)
            assert m is not None, address
            # The writer may have committed more after our last read, never less.
            assert m["revision"] >= revision
            if m["revision"] == revision:
                assert m["name"] == name
        # Revisions in the index columns agree with the JSON records.
        for m in s.list_members(NWID_S):
            assert s.member_revisions(NWID_S)[m["id"]] == m["revision"]


def test_derived_lookups_follow_member_records(st: ControllerStore) -> None:
    st.put_network(network({"name": "n"}))

    def put(addr: int, body: dict) -> None:
        old = st.get_member(NWID_S, f"{addr:010x}")
        st.put_member(update_member(old, body, NWID, addr, 1000))

    put(0x1111111111, {"ipAssignments": ["10.0.0.1", "fd00::1"], "activeBridge": True})
    put(0x2222222222, {"ipAssignments": ["10.0.0.2"]})
    assert sorted(st.allocated_ips(NWID_S)) == ["10.0.0.1", "10.0.0.2", "fd00::1"]
    assert sorted(st.allocated_ips(NWID_S, exclude_address="1111111111")) == ["10.0.0.2"]
    assert st.active_bridges(NWID_S) == ["1111111111"]
    put(0x1111111111, {"ipAssignments": ["10.0.0.9"], "activeBridge": False})
    assert sorted(st.allocated_ips(NWID_S)) == ["10.0.0.2", "10.0.0.9"]
    assert st.active_bridges(NWID_S) == []
    st.delete_member(NWID_S, "2222222222")
    assert st.allocated_ips(NWID_S) == ["10.0.0.9"]
    st.delete_network(NWID_S)
    assert st.allocated_ips(NWID_S) == []


def test_schema_1_database_is_migrated(tmp_path: Path) -> None:
    s = ControllerStore(tmp_path)
    s.put_network(network({"name": "n"}))
    s.put_member(
        update_member(None, {"ipAssignments": ["10.0.0.5"], "activeBridge": True}, NWID, 0x3333333333, 1)
    )
    s.close()
    # Make it look like a version-1 database: no derived rows, schema 1.
    con = sqlite3.connect(tmp_path / DB_FILENAME)
    con.execute("DELETE FROM member_ip")
    con.execute("DELETE FROM member_bridge")
    con.execute("UPDATE meta SET value='1' WHERE key='schema'")
    con.commit()
    con.close()
    s = ControllerStore(tmp_path)
    assert s.allocated_ips(NWID_S) == ["10.0.0.5"]
    assert s.active_bridges(NWID_S) == ["3333333333"]
    s.close()
