"""The live controller's repeat-request cache (ztcore.controller.live `_Issued`).

A repeat request from an authorized member is answered from the member's last
config with fresh credentials. These tests check that the answer is the one the
records give, byte for byte, and that every kind of change is seen by the very
next request: the JSON API (the path `ztnode controller ...` takes), another
process writing the same controller.db, another connection in this process,
deauthorization, deletion, an impostor identity, a new version, a request
without a rules engine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.test_controller_live import T0, Env, _env

from ztcore.controller.live import EmbeddedController
from ztcore.controller.model import update_member
from ztcore.controller.store import ControllerStore
from ztcore.identity import Identity
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl2.controller_api import ControllerError
from ztcore.vl2.credentials import VerifyResult
from ztcore.vl2.dictionary import Dictionary
from ztcore.vl2.netconf_request import build_request_metadata
from ztcore.vl2.rules import Rule, RuleType

SRC = str(Path(__file__).resolve().parents[1] / "src")
STEP = 61_000  # members re-request every 60 s; always past the 1 s rate limit

NETWORK: dict[str, Any] = {
    "name": "repeat",
    "private": True,
    "mtu": 2000,
    "routes": [{"target": "10.9.0.0/24"}],
    "ipAssignmentPools": [{"ipRangeStart": "10.9.0.7", "ipRangeEnd": "10.9.0.7"}],
    "v4AssignMode": {"zt": True},
    "rules": [{"type": "ACTION_ACCEPT"}],
    "tags": [{"id": 5, "default": 1}],
    "capabilities": [{"id": 9, "rules": [{"type": "ACTION_ACCEPT"}]}],
}

# Writes the same controller.db from another process, as a second tool would.
_WRITER = """
import json, sys
from ztcore.controller.model import update_member, update_network
from ztcore.controller.store import ControllerStore
path, kind, nwid, address, body = sys.argv[1:6]
with ControllerStore(path) as s:
    if kind == "member":
        old = s.get_member(nwid, address)
        s.put_member(update_member(old, json.loads(body), int(nwid, 16), int(address, 16), 0))
    elif kind == "network":
        s.put_network(update_network(s.get_network(nwid), json.loads(body), int(nwid, 16), 0))
    elif kind == "delete-member":
        assert s.delete_member(nwid, address) is not None
    elif kind == "delete-network":
        assert s.delete_network(nwid) is not None
"""


def _other_process(env: Env, kind: str, who: str = "", body: dict[str, Any] | None = None) -> None:
    address = f"{int(env.ids[who].address):010x}" if who else "-"
    pp = SRC + os.pathsep + os.environ.get("PYTHONPATH", "")
    subprocess.run(
        [
            sys.executable,
            "-c",
            _WRITER,
            str(env.store.path),
            kind,
            env.nwids,
            address,
            json.dumps(body or {}),
        ],
        check=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=pp),
    )


@pytest.fixture(scope="module")
def ids() -> dict[str, Identity]:
    return {name: Identity.generate() for name in ("ctrl", "a", "b", "other")}


@pytest.fixture
def env(ids: dict[str, Identity], tmp_path: Any) -> Any:
    e = _env(ids, tmp_path, NETWORK)
    e.authorize("a", capabilities=[9])
    yield e
    e.store.close()


def _warm(env: Env) -> int:
    """Two requests from "a": the second is served from the cache. Returns the next time to ask."""
    env.req("a", T0)
    env.req("a", T0 + STEP)
    assert env.ctl.stats["repeat_configs"] == 1, env.ctl.stats
    return T0 + 2 * STEP


def _from_records(env: Env) -> int:
    """How many configs were made from the records (not from the repeat cache)."""
    return env.ctl.stats["configs_sent"] - env.ctl.stats["repeat_configs"]


def _ask(env: Env, now: int) -> Any:
    """A request from "a"; its decoded config, or None if none was sent."""
    before = len(env.sender.configs)
    env.req("a", now)
    if len(env.sender.configs) == before:
        return None
    pid, nc = env.last_config("a")
    assert pid == env.pid
    return nc


def test_repeat_answer_is_the_fresh_answer_byte_for_byte(env: Env) -> None:
    now = _warm(env)
    nc = _ask(env, now)
    assert env.ctl.stats["repeat_configs"] == 2
    cached = env.sender.configs[-1][3]
    # A controller without a cache, same identity and store, asked at the same time.
    fresh_ctl = EmbeddedController(env.store, clock=env.clock)
    fresh_ctl.init(env.ids["ctrl"], env.sender)
    fresh_ctl.request(now, env.nwid, None, 7, env.ids["a"].public(), build_request_metadata())
    assert fresh_ctl.stats["repeat_configs"] == 0
    assert env.sender.configs[-1][3].to_bytes() == cached.to_bytes()
    # And it carries fresh, valid credentials stamped with the request's time.
    assert nc.timestamp == now and nc.com.timestamp == now
    ctrl = env.ids["ctrl"].public()
    assert [(t.id, t.value, t.timestamp) for t in nc.tags] == [(5, 1, now)]
    assert [(c.id, c.timestamp) for c in nc.capabilities] == [(9, now)]
    assert nc.static_ips == [InetAddress(ipaddress.ip_address("10.9.0.7"), 24)]
    coo = nc.certificates_of_ownership[0]
    assert coo.timestamp == now and coo.verify(ctrl) == VerifyResult.OK
    assert all(t.verify(ctrl) == VerifyResult.OK for t in nc.tags)


def test_cached_config_is_not_shared_with_receivers(env: Env) -> None:
    now = _warm(env)
    env.sender.configs[-1][3].static_ips.clear()
    env.sender.configs[-1][3].rules.clear()
    nc = _ask(env, now)
    assert env.ctl.stats["repeat_configs"] == 2
    assert nc.static_ips and nc.rules == [Rule(RuleType.ACTION_ACCEPT)]
    assert len(nc.tags) == 1 and len(nc.capabilities) == 1 and len(nc.certificates_of_ownership) == 1


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ({"ipAssignments": ["10.9.0.8"]}, lambda nc: [str(a.ip) for a in nc.static_ips] == ["10.9.0.8"]),
        ({"tags": [[5, 77]]}, lambda nc: [(t.id, t.value) for t in nc.tags] == [(5, 77)]),
        ({"capabilities": []}, lambda nc: nc.capabilities == []),
        ({"activeBridge": True}, lambda nc: nc.is_active_bridge(int(nc.issued_to))),
        ({"remoteTraceTarget": "0123456789"}, lambda nc: int(nc.remote_trace_target) == 0x0123456789),
    ],
)
@pytest.mark.parametrize("via", ["api", "process"])
def test_member_change_is_seen_by_the_next_request(
    env: Env, via: str, body: dict[str, Any], check: Any
) -> None:
    now = _warm(env)
    built = _from_records(env)
    if via == "api":
        env.backend.post_member(env.nwids, f"{int(env.ids['a'].address):010x}", body)
    else:
        _other_process(env, "member", "a", body)
    if via == "api":  # the member is online: the API change pushed its new config at once
        assert env.sender.configs[-1][1] == 0 and check(env.decode(env.sender.configs[-1][3]))
    nc = _ask(env, now)
    assert nc is not None and check(nc), nc
    assert _from_records(env) == built + 1  # the push or this request, not the cache
    repeats = env.ctl.stats["repeat_configs"]
    assert check(_ask(env, now + STEP)) and env.ctl.stats["repeat_configs"] == repeats + 1  # cached again


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ({"mtu": 1500}, lambda nc: nc.mtu == 1500),
        ({"name": "renamed"}, lambda nc: nc.name == "renamed"),
        (
            {"routes": [{"target": "10.9.0.0/16"}]},
            lambda nc: [str(r.target) for r in nc.routes] == ["10.9.0.0/16"],
        ),
        ({"rules": [{"type": "ACTION_DROP"}]}, lambda nc: nc.rules == [Rule(RuleType.ACTION_DROP)]),
        (
            {"tags": [{"id": 6, "default": 2}]},
            lambda nc: [(t.id, t.value) for t in nc.tags] == [(5, 1), (6, 2)],
        ),
        (
            {"dns": {"domain": "lab.example", "servers": ["10.9.0.1"]}},
            lambda nc: nc.dns.domain == "lab.example",
        ),
    ],
)
@pytest.mark.parametrize("via", ["api", "process"])
def test_network_change_is_seen_by_the_next_request(
    env: Env, via: str, body: dict[str, Any], check: Any
) -> None:
    now = _warm(env)
    built = _from_records(env)
    if via == "api":
        env.backend.post_network(env.nwids, body)
    else:
        _other_process(env, "network", body=body)
    nc = _ask(env, now)
    assert nc is not None and check(nc), nc
    assert nc.revision == env.store.get_network(env.nwids)["revision"]
    assert _from_records(env) == built + 1


def test_change_through_another_connection_in_this_process(env: Env) -> None:
    now = _warm(env)
    with ControllerStore(env.store.path) as other:
        old = other.get_member(env.nwids, f"{int(env.ids['a'].address):010x}")
        other.put_member(
            update_member(old, {"ipAssignments": ["10.9.0.9"]}, env.nwid, int(env.ids["a"].address))
        )
    nc = _ask(env, now)
    assert [str(a.ip) for a in nc.static_ips] == ["10.9.0.9"]


@pytest.mark.parametrize("via", ["api", "process"])
def test_deauthorized_member_gets_no_config_at_once(env: Env, via: str) -> None:
    now = _warm(env)
    if via == "api":
        env.backend.post_member(env.nwids, f"{int(env.ids['a'].address):010x}", {"authorized": False})
        assert env.sender.revocations  # the API path also revokes its COM
    else:
        _other_process(env, "member", "a", {"authorized": False})
    configs = len(env.sender.configs)
    assert _ask(env, now) is None
    assert len(env.sender.configs) == configs
    assert env.sender.errors[-1][3] == ControllerError.ACCESS_DENIED
    assert not env.ctl.authorized_recently(now, env.nwid, env.ids["a"].address)
    # Still refused later, and served again (from the records) once re-authorized.
    assert _ask(env, now + STEP) is None
    env.authorize("a")
    assert _ask(env, now + 2 * STEP) is not None


@pytest.mark.parametrize("kind", ["delete-member", "delete-network"])
def test_deletion_by_another_process_is_seen(env: Env, kind: str) -> None:
    now = _warm(env)
    _other_process(env, kind, "a" if kind == "delete-member" else "")
    assert _ask(env, now) is None
    expected = ControllerError.ACCESS_DENIED if kind == "delete-member" else ControllerError.OBJECT_NOT_FOUND
    assert env.sender.errors[-1][3] == expected


def test_impostor_under_a_cached_address_is_refused(env: Env) -> None:
    now = _warm(env)
    impostor = Identity(int(env.ids["a"].address), env.ids["b"].public_key)
    configs = len(env.sender.configs)
    env.req("a", now, identity=impostor)
    assert len(env.sender.configs) == configs
    assert env.sender.errors[-1][3] == ControllerError.ACCESS_DENIED
    assert env.ctl.stats["identity_collisions"] == 1
    assert _ask(env, now + STEP) is not None  # the real member still is served


def test_new_version_is_recorded(env: Env) -> None:
    now = _warm(env)
    env.req("a", now, build_request_metadata(minor=16, revision=0, protocol_version=13))
    m = env.member("a")
    assert (m["vMajor"], m["vMinor"], m["vRev"], m["vProto"]) == (1, 16, 0, 13)


def test_request_without_rules_engine_gets_allow_all(env: Env) -> None:
    now = _warm(env)
    legacy = Dictionary(1024)
    for key, value in build_request_metadata().items():
        if key != b"revr":  # no rules engine (pre-1.2 nodes)
            legacy.add(key, value)
    env.req("a", now, legacy)
    _, nc = env.last_config("a")
    assert nc.rules == [Rule(RuleType.ACTION_ACCEPT)] and nc.tags == [] and nc.capabilities == []


def test_write_elsewhere_is_rechecked_not_rebuilt(env: Env) -> None:
    """A write that leaves this member's inputs alone (another member's first request)
    costs one fingerprint check, not a rebuild; the answer is still the fresh one."""
    now = _warm(env)
    env.authorize("b")
    env.req("b", now)  # b's first request writes b's record
    built = _from_records(env)
    nc = _ask(env, now + 1)
    assert _from_records(env) == built and env.ctl.stats["repeat_rechecked"] == 1
    assert [str(a.ip) for a in nc.static_ips] == ["10.9.0.7"] and nc.timestamp == now + 1


def test_bridge_elsewhere_is_seen(env: Env) -> None:
    """Another member turned into an active bridge (by another process) changes every
    member's specialists: the check sees it."""
    now = _warm(env)
    env.authorize("b")
    _other_process(env, "member", "b", {"activeBridge": True})
    nc = _ask(env, now)
    assert nc.is_active_bridge(int(env.ids["b"].address))
    assert env.ctl.stats["repeat_rechecked"] == 0


def test_member_waiting_for_a_pool_address_is_not_rechecked(ids: dict[str, Identity], tmp_path: Any) -> None:
    """A member still without an address depends on every other member's addresses (the
    pool): after any write its answer is made from the records again."""
    e = _env(
        ids,
        tmp_path,
        {**NETWORK, "ipAssignmentPools": [{"ipRangeStart": "10.9.0.7", "ipRangeEnd": "10.9.0.7"}]},
    )
    try:
        e.authorize("b")  # takes the pool's only address
        e.backend.post_member(
            e.nwids, f"{int(ids['a'].address):010x}", {"authorized": True, "ipAssignments": []}
        )
        e.req("a", T0)
        assert e.last_config("a")[1].static_ips == []  # nothing left to pick
        e.req("a", T0 + STEP)
        assert e.ctl.stats["repeat_configs"] == 1
        # b gives its address back (another process): a gets it at its next request.
        _other_process(e, "member", "b", {"ipAssignments": []})
        e.req("a", T0 + 2 * STEP)
        assert [str(x.ip) for x in e.last_config("a")[1].static_ips] == ["10.9.0.7"]
        assert e.ctl.stats["repeat_rechecked"] == 0
    finally:
        e.store.close()


def test_address_just_picked_is_rechecked(ids: dict[str, Identity], tmp_path: Any) -> None:
    """Once its address is picked and recorded, a member's answer no longer depends on the
    pool: a write elsewhere costs a fingerprint check."""
    e = _env(ids, tmp_path, NETWORK)
    try:
        e.store.put_member(update_member(None, {"authorized": True}, e.nwid, int(ids["a"].address)))
        e.req("a", T0)  # picks 10.9.0.7 from the pool and records it
        assert e.member("a")["ipAssignments"] == ["10.9.0.7"]
        e.authorize("b")
        e.req("a", T0 + STEP)
        assert e.ctl.stats["repeat_rechecked"] == 1 and e.ctl.stats["repeat_configs"] == 1
        assert [str(x.ip) for x in e.last_config("a")[1].static_ips] == ["10.9.0.7"]
    finally:
        e.store.close()
