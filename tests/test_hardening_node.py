"""Issue 8, node side: hostile but authenticated VL2 payloads are counted drops with a
specific reason (never an exception out of a handler), and traces cannot collide with
the trace call's own parameters."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from hardening_world import VL2World, internal_errors, send_as
from ztcore.api import EventType
from ztcore.identity import Identity
from ztcore.vl1.packet import Verb
from ztcore.vl2.credentials import NetworkCredentials


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return [Identity.generate() for _ in range(5)]


@pytest.fixture()
def world(identities: list[Identity], tmp_path: Path) -> VL2World:
    w = VL2World(identities, tmp_path, members=2)
    w.join_all()
    return w


def _bad_com(w: VL2World) -> bytes:
    config = w.members[0].node.network_config(w.nwid)
    assert config is not None and config.com
    raw = bytearray(config.com.to_bytes())
    raw[-1] ^= 0x55  # last byte of the signature
    return bytes(raw)


def _traces(host, name: str) -> list[Any]:  # type: ignore[no-untyped-def]
    """Typed trace events (ztcore.tracing) by event name, or by kind for local-only notes."""
    return [
        e.data
        for e in host.events_of(EventType.TRACE)
        if e.data.NAME == name or getattr(e.data, "kind", None) == name
    ]


def test_bad_com_in_gather_frame_and_credentials_is_a_counted_rejection(world: VL2World) -> None:
    """Defect 1: a COM with a bad signature made Network.add_com raise TypeError (its trace
    passed kind= twice), which escaped as internal_error and cut the packet short."""
    w, a = world, world.members[0]
    bad = _bad_com(w)
    group = bytes.fromhex("ffffffffffff") + struct.pack(">I", 0x0A000001)
    gather = struct.pack(">QB", w.nwid, 0x01) + group + struct.pack(">I", 8) + bad
    send_as(w.ctl, a, Verb.MULTICAST_GATHER, gather)
    ext = struct.pack(">QB", w.nwid, 0x01) + bad + bytes(6) + bytes(6) + b"\x08\x00" + b"x"
    send_as(w.ctl, a, Verb.EXT_FRAME, ext)
    good = w.members[0].node.network_config(w.nwid).com.to_bytes()  # type: ignore[union-attr]
    creds = bad + good + b"\x00"
    send_as(w.ctl, a, Verb.NETWORK_CREDENTIALS, creds)
    assert internal_errors(a) == 0, a.node.drops
    rejected = _traces(a, "credentialRejected")
    assert len(rejected) >= 3  # the refused EXT_FRAME is re-run when credentials arrive
    assert all(t.credential_type == 1 for t in rejected)  # 1: a COM


def test_trace_fields_never_collide_with_the_trace_kind(world: VL2World) -> None:
    a = world.members[0]
    a.node.trace("something", kind="field", reason="x")
    (t,) = _traces(a, "something")
    assert t.reason == "x" and ("kind", "field") in t.details
    a.node.switch._drop("a_reason", reason="other")  # noqa: SLF001 - the drop helper itself
    assert a.node.drops["a_reason"] == 1


@pytest.mark.parametrize(
    ("verb", "fixed", "reason"),
    [
        (Verb.FRAME, 8, "frame_too_short"),
        (Verb.EXT_FRAME, 9, "ext_frame_too_short"),
        (Verb.MULTICAST_FRAME, 9, "multicast_frame_too_short"),
        (Verb.MULTICAST_GATHER, 23, "multicast_gather_too_short"),
        (Verb.NETWORK_CONFIG, 8, "network_config_too_short"),
    ],
)
def test_short_vl2_payloads_are_drops_with_a_specific_reason(
    world: VL2World, verb: Verb, fixed: int, reason: str
) -> None:
    """Defect 2: every prefix of a payload shorter than the verb's fixed part is a drop
    named after the verb (it was struct.error, lumped into one 'malformed_vl2')."""
    w, a = world, world.members[0]
    full = struct.pack(">Q", w.nwid) + bytes(64)
    for n in range(fixed):
        send_as(w.ctl, a, verb, full[:n])
    assert a.node.vl2.drops[reason] == fixed, dict(a.node.vl2.drops)
    assert internal_errors(a) == 0


def test_multicast_frame_shorter_than_its_flags_announce_is_dropped(world: VL2World) -> None:
    # From another member, so that the frame passes the access check first.
    w, a, b = world, world.members[0], world.members[1]
    network = b.node.get_network(w.nwid)
    assert network is not None
    b.node.vl2.push_credentials(w.net.now, network, int(a.node.address), force=True)
    w.net.run_for(1_000)
    # gather (4) + source MAC (6) + group (10) + ethertype (2) announced, 5 bytes given
    send_as(b, a, Verb.MULTICAST_FRAME, struct.pack(">QB", w.nwid, 0x06) + bytes(5))
    assert a.node.vl2.drops["multicast_frame_too_short"] == 1
    assert internal_errors(a) == 0


def test_short_config_requests_to_a_controller_are_dropped(world: VL2World) -> None:
    w, a = world, world.members[0]
    for n in range(8):
        send_as(a, w.ctl, Verb.NETWORK_CONFIG_REQUEST, struct.pack(">Q", w.nwid)[:n])
    # metadata length says 200, 3 bytes follow
    send_as(a, w.ctl, Verb.NETWORK_CONFIG_REQUEST, struct.pack(">QH", w.nwid, 200) + b"abc")
    drops = w.ctl.node.vl2.drops
    assert drops["network_config_request_too_short"] == 8
    assert drops["network_config_request_truncated_metadata"] == 1
    assert internal_errors(w.ctl) == 0


def test_malformed_credentials_are_a_counted_drop(world: VL2World) -> None:
    w, a = world, world.members[0]
    send_as(w.ctl, a, Verb.NETWORK_CREDENTIALS, b"\x01\x00\x05" + bytes(10))
    assert a.node.vl2.drops["malformed_network_credentials"] == 1
    assert internal_errors(a) == 0
    assert NetworkCredentials  # the type the payload claims to be


def test_internal_errors_are_counted_and_logged_at_a_bounded_rate(
    world: VL2World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 1's log flood: a bug hit by every packet logged a traceback per packet."""
    a = world.members[0]

    def broken(*args: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(a.node.switch, "_on_remote_packet", broken)
    with caplog.at_level("WARNING", logger="ztcore.vl1.switch"):
        for i in range(1000):
            a.node.process_wire_packet(world.net.now + i, 0, ("10.9.9.9", 9993), b"x" * 40)
    assert a.node.drops["internal_error"] == 1000
    lines = [r for r in caplog.records if "simulated bug" in r.getMessage()]
    assert 1 <= len(lines) <= 4  # the 1st, 10th, 100th and 1000th (errors.report_unexpected)
    assert all(r.exc_info is None for r in lines)
