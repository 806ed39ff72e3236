"""Trace events (ztcore.tracing): the real core's remote-trace dictionary form, decoding
of hostile input, the controller's JSON record, rule logs, and a node's tracer.

Expected bytes are written out by hand from Trace.cpp's field order and the
Dictionary rules (16-hex-digit integers, ``\\0 \\r \\n \\\\ \\e`` escapes), not
produced by the code under test.
"""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

import pytest

from ztcore.errors import InvalidFormatError
from ztcore.tracing import (
    EVENT_CLASSES,
    MAX_REMOTE_TRACE_SIZE,
    CredentialRejected,
    IncomingNetworkAccessDenied,
    IncomingNetworkFrameDropped,
    NetworkConfigRequestSent,
    NetworkFilterTrace,
    NodeNote,
    OutgoingNetworkFrameDropped,
    PacketInvalid,
    PacketMacFailure,
    PeerConfirmingUnknownPath,
    PeerLearnedNewPath,
    PeerRedirected,
    ResettingPathsInScope,
    TraceEvent,
    TraceLevel,
    Tracer,
    UnknownTraceEvent,
    controller_record,
    decode,
    encode,
    encode_payload,
    rule_log_entries,
    split_payload,
)

NWID = 0x8056C2E21C000001
A = 0x1122334455
B = 0xAABBCCDDEE


def _samples() -> list[TraceEvent]:
    log = bytearray(512)
    log[0] = 0x9A  # rule 0: rule true / set true (0xa); rule 1: rule true / set false (0x9)
    return [
        ResettingPathsInScope(0, reporter=A, reporter_physical="192.0.2.1/9993", my_physical="198.51.100.7/4242", ip_scope=4),
        PeerConfirmingUnknownPath(0, packet_id=0x1234, packet_verb=8, network=NWID, peer=A, remote_physical="192.0.2.9/9993", local_socket=3),
        PeerConfirmingUnknownPath(0, packet_id=1, packet_verb=1, network=None, peer=A, remote_physical="[2001:db8::1]/9993", local_socket=-1),
        PeerLearnedNewPath(0, packet_id=0xFFFFFFFFFFFFFFFF, network=NWID, peer=B, remote_physical="10.0.0.1/1", local_socket=0),
        PeerRedirected(0, network=None, peer=B, remote_physical="10.0.0.2/2", local_socket=7),
        PacketMacFailure(0, packet_id=9, hops=2, source=A, remote_physical="192.0.2.1/9993", local_socket=1, reason="invalid MAC"),
        PacketMacFailure(0, packet_id=9, hops=0, source=A),
        PacketInvalid(0, packet_id=5, packet_verb=0x17, source=B, hops=1, reason="destination not multicast"),
        OutgoingNetworkFrameDropped(0, network=NWID, source_mac=0x02AA, dest_mac=0xFFFFFFFFFFFF, ethertype=0x0806, vlan_id=0, frame_length=28, reason="filter blocked"),
        IncomingNetworkAccessDenied(0, packet_id=77, packet_verb=0x0E, source=A, remote_physical="192.0.2.1/9993", local_socket=2, network=NWID),
        IncomingNetworkFrameDropped(0, packet_id=78, packet_verb=0x0F, source=A, network=NWID, source_mac=1, dest_mac=2, reason="bridging not allowed (remote)"),
        CredentialRejected(0, network=NWID, credential_type=1, credential_id=0, credential_timestamp=1_700_000_000_000, issued_to=A, reason="invalid"),
        CredentialRejected(0, network=NWID, credential_type=3, credential_id=100, credential_timestamp=5, issued_to=B, info=7, reason="old"),
        CredentialRejected(0, network=NWID, credential_type=6, credential_id=3, target=A, reason="invalid"),
        NetworkConfigRequestSent(0, network=NWID, controller=0x8056C2E21C),
        NetworkFilterTrace(
            0, network=NWID, source=A, dest=B, source_mac=0x02AA, dest_mac=0x02BB, ethertype=0x0800, vlan_id=0,
            no_tee=False, inbound=True, result=0, base_rule_log=bytes(log), cap_rule_log=None,
            matching_cap_id=None, frame_length=300, frame_data=bytes(range(256)),
        ),
        NetworkFilterTrace(
            0, network=NWID, source=A, dest=B, source_mac=1, dest_mac=2, ethertype=0x86DD, vlan_id=5,
            no_tee=True, inbound=False, result=2, base_rule_log=bytes(512), cap_rule_log=bytes(log),
            matching_cap_id=1000, frame_length=0, frame_data=None,
        ),
    ]


@pytest.mark.parametrize("event", _samples(), ids=lambda e: type(e).__name__)
def test_every_event_round_trips(event: TraceEvent) -> None:
    data = encode(event)
    assert b"\x00" not in data and len(data) < MAX_REMOTE_TRACE_SIZE
    assert data.startswith(b"event=%04x\n" % event.EVENT_ID)
    assert decode(data) == event
    # A payload is the dictionary as a C string.
    assert split_payload(encode_payload(event)) == [data]


def test_every_known_event_class_is_covered() -> None:
    assert {type(e) for e in _samples()} == set(EVENT_CLASSES.values())
    assert sorted(EVENT_CLASSES) == [0x1000, 0x1001, 0x1002, 0x1003, 0x1004, 0x1005, 0x2000, 0x2001, 0x2002, 0x2003, 0x2005, 0x2006]


def test_levels_are_the_real_cores() -> None:
    assert [int(x) for x in TraceLevel] == [0, 10, 15, 20, 30]
    assert NetworkFilterTrace.LEVEL == TraceLevel.RULES
    for cls in (OutgoingNetworkFrameDropped, IncomingNetworkAccessDenied, IncomingNetworkFrameDropped):
        assert cls.LEVEL == TraceLevel.VERBOSE
    for cls in (ResettingPathsInScope, PeerLearnedNewPath, PeerConfirmingUnknownPath, CredentialRejected):
        assert cls.LEVEL == TraceLevel.NORMAL
    assert PacketInvalid.GLOBAL_ONLY and PacketMacFailure.GLOBAL_ONLY and NetworkConfigRequestSent.GLOBAL_ONLY


def test_outgoing_frame_dropped_bytes_match_trace_cpp() -> None:
    ev = OutgoingNetworkFrameDropped(0, network=NWID, source_mac=0x32AABBCCDDEE, dest_mac=0xFFFFFFFFFFFF, ethertype=0x800, vlan_id=0, frame_length=42, reason="filter blocked")
    expected = (
        b"event=2000\n"
        b"networkId=8056c2e21c000001\n"
        b"sourceMac=000032aabbccddee\n"
        b"destMac=0000ffffffffffff\n"
        b"etherType=0000000000000800\n"
        b"vlanId=0000000000000000\n"
        b"frameLength=000000000000002a\n"
        b"reason=filter blocked"
    )
    assert encode(ev) == expected


def test_filter_trace_escapes_binary_like_the_dictionary() -> None:
    ev = NetworkFilterTrace(
        0, network=NWID, source=A, dest=B, source_mac=1, dest_mac=2, ethertype=0x800, vlan_id=0, no_tee=False,
        inbound=False, result=-1, base_rule_log=b"\x00\x0a\x0d\x5c\x3d", frame_length=2, frame_data=b"=\x00",
    )
    data = encode(ev)
    assert b"\nfilterNoTee=0\nfilterInbound=0\n" in data
    assert b"\nfilterResult=-0000000000000001\n" in data  # int64 as '-' + magnitude
    assert b"\nfilterBaseRuleLog=\\0\\n\\r\\\\\\e\n" in data
    assert data.endswith(b"\nframeLength=0000000000000002\nframeData=\\e\\0")
    assert decode(data).result == -1


def test_long_frames_are_cut_to_256_bytes() -> None:
    ev = NetworkFilterTrace(0, network=NWID, base_rule_log=bytes(512), frame_length=1500, frame_data=bytes(1500))
    back = decode(encode(ev))
    assert isinstance(back, NetworkFilterTrace) and back.frame_data == bytes(256) and back.frame_length == 1500


def test_unknown_event_ids_decode_as_unknown() -> None:
    ev = decode(b"event=2004\nnetworkId=8056c2e21c000001\nfoo=bar")
    assert isinstance(ev, UnknownTraceEvent)
    assert ev.event_id == 0x2004 and ev.network_id == NWID and ev.fields_raw["foo"] == b"bar"
    with pytest.raises(ValueError):
        encode(ev)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"networkId=1",  # no event
        b"event=zz",
        b"event=2006",  # required fields missing
        b"event=2000\nnetworkId=xyz\nsourceMac=1\ndestMac=1\netherType=1\nvlanId=0\nframeLength=1",
        b"event=2000\nnetworkId=11111111111111111\nsourceMac=1\ndestMac=1\netherType=1\nvlanId=0\nframeLength=1",
        b"event=1002\npacketId=1\nremoteZtAddr=ffffffffffff\nremotePhyAddr=x\nlocalSocket=0",  # address > 40 bits
        b"event=1002\npacketId=1\nremoteZtAddr=1\nremotePhyAddr=x\nlocalSocket=--1",
        b"event=1001\x00more",
        b"x" * (MAX_REMOTE_TRACE_SIZE + 1),
    ],
)
def test_hostile_dictionaries_raise_invalid_format(data: bytes) -> None:
    with pytest.raises(InvalidFormatError):
        decode(data)


def test_filter_trace_with_bad_flags_or_oversized_logs_is_refused() -> None:
    good = encode(_samples()[-2])
    with pytest.raises(InvalidFormatError):
        decode(good.replace(b"filterInbound=1", b"filterInbound=2"))
    with pytest.raises(InvalidFormatError):
        decode(good.replace(b"frameLength=", b"frameData=" + b"a" * 300 + b"\nframeLength="))


def test_random_and_mutated_input_only_ever_raises_invalid_format() -> None:
    rng = random.Random(1234)
    seeds = [encode(e) for e in _samples()]
    for i in range(3000):
        if i % 3 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        else:
            b = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 8)):
                op = rng.randrange(3)
                pos = rng.randrange(len(b)) if b else 0
                if op == 0 and b:
                    b[pos] = rng.randrange(256)
                elif op == 1:
                    b.insert(pos, rng.choice(b"=\n\\0e-x"))
                elif b:
                    del b[pos : pos + rng.randrange(1, 20)]
            data = bytes(b)
        try:
            ev = decode(data)
        except InvalidFormatError:
            continue
        assert isinstance(ev, TraceEvent)
        try:
            controller_record(data, origin=A, controller=B, now=1, counter=i)
        except InvalidFormatError:
            pass


def test_split_payload_follows_do_remote_trace() -> None:
    big = b"e" * MAX_REMOTE_TRACE_SIZE
    payload = b"a=1\x00\x00b=2\x00" + big + b"\x00" + big + b"x\x00tail-without-nul"
    assert split_payload(payload) == [b"a=1", b"b=2", big]


def test_controller_record_has_zerotier_ones_shape() -> None:
    data = encode(_samples()[-2])
    rec = controller_record(data, origin=A, controller=0x8056C2E21C, now=1_700_000_000_123, counter=0x10005)
    assert rec["objtype"] == "trace"
    assert rec["nodeId"] == "1122334455"
    assert rec["ts"] == 1_700_000_000_123
    assert rec["id"] == "8056c2e21c-0000018bcfe5687b-1122334455-0005"
    assert rec["event"] == "2006"
    assert rec["networkId"] == "8056c2e21c000001"
    assert rec["sourceZtAddr"] == "0000001122334455"
    assert rec["filterInbound"] == "1" and rec["filterResult"] == "0000000000000000"
    assert bytes.fromhex(rec["frameData"]) == bytes(range(256))
    assert bytes.fromhex(rec["filterBaseRuleLog"])[0] == 0x9A
    # Empty values are left out, as handleRemoteTrace leaves them out.
    assert "reason" not in controller_record(b"event=2000\nreason=", origin=A, controller=B, now=0, counter=0)


def test_rule_log_entries_decode_four_bit_entries() -> None:
    log = bytes([0x9A, 0x05, 0x00, 0x20])
    # rule 0: 0xa = rule true, set true; rule 1: 0x9 = rule true, set false
    # rule 2: 0x5 = rule false, set false; rule 7: 0x2 = skipped (rule 00), set true
    assert rule_log_entries(log) == [(0, True, True), (1, True, False), (2, False, False), (7, None, True)]


def test_to_json_is_plain_json() -> None:
    import json

    for ev in _samples():
        j = ev.to_json()
        json.dumps(j)
        assert j["event"] == f"{ev.EVENT_ID:04x}" and j["type"] == ev.NAME
    note = NodeNote(kind="rendezvous", reason="", timestamp=5, details=(("peer", "aa"),))
    assert note.to_json()["kind"] == "rendezvous" and note.to_json()["peer"] == "aa"


# ------------------------------------------------------------------------------ tracer


class FakeHost:
    def __init__(self) -> None:
        self.targets: dict[int, tuple[int, int]] = {}
        self.sent: list[tuple[int, int, bytes]] = []

    def post_event(self, kind: object, data: object = None) -> None:
        pass

    def remote_trace_targets(self, network_id: int | None) -> list[tuple[int, int]]:
        if network_id is None:
            return list(self.targets.values())
        t = self.targets.get(network_id)
        return [t] if t else []

    def send_remote_trace(self, now: int, destination: int, payload: bytes) -> None:
        self.sent.append((now, destination, payload))


def _tracer() -> tuple[Tracer, FakeHost, list[TraceEvent]]:
    host = FakeHost()
    posted: list[TraceEvent] = []
    return Tracer(host, posted.append, ring_size=8), host, posted


def test_events_go_to_targets_at_or_above_their_level() -> None:
    tracer, host, posted = _tracer()
    host.targets[NWID] = (B, int(TraceLevel.VERBOSE))
    other = NWID + 1
    host.targets[other] = (A, int(TraceLevel.NORMAL))
    drop = OutgoingNetworkFrameDropped(1, network=NWID, reason="filter blocked")
    rules = NetworkFilterTrace(2, network=NWID, base_rule_log=bytes(512))
    cred = CredentialRejected(3, network=other, credential_type=1)
    drop_other = OutgoingNetworkFrameDropped(4, network=other)
    reset = ResettingPathsInScope(5, reporter=A)
    bad = PacketInvalid(6, source=A)
    for ev in (drop, rules, cred, drop_other, reset, bad):
        tracer.record(ev.timestamp, ev)
    assert posted == [drop, rules, cred, drop_other, reset, bad]  # every event reaches the callback
    sent = [(dest, decode(p[:-1], timestamp=now)) for now, dest, p in host.sent]
    assert sent == [(B, drop), (A, cred), (A, reset), (B, reset)] or sent == [(B, drop), (A, cred), (B, reset), (A, reset)]
    # Only a global target at DEBUG gets bad-packet events.
    tracer.set_global_target(0x0102030405, int(TraceLevel.DEBUG))
    tracer.record(6, bad)
    assert host.sent[-1][1] == 0x0102030405 and decode(host.sent[-1][2][:-1], timestamp=6) == bad


def test_ring_buffer_keeps_the_last_n() -> None:
    tracer, _, _ = _tracer()
    for i in range(20):
        tracer.record(i, NodeNote(kind="x", timestamp=i))
    got = tracer.since(0)
    assert [s for s, _ in got] == list(range(13, 21))
    assert [s for s, _ in tracer.since(18)] == [19, 20]
    assert tracer.since(0, limit=2)[-1][0] == 14


def test_remote_sending_is_rate_bounded_per_target() -> None:
    from ztcore.tracing.tracer import REMOTE_BURST, REMOTE_RATE

    tracer, host, posted = _tracer()
    host.targets[NWID] = (B, int(TraceLevel.RULES))
    ev = OutgoingNetworkFrameDropped(0, network=NWID)
    for _ in range(REMOTE_BURST + 50):
        tracer.record(1000, ev)
    assert len(host.sent) == REMOTE_BURST
    assert tracer.stats["remote_rate_limited"] == 50
    assert len(posted) == REMOTE_BURST + 50  # locally nothing is lost
    tracer.record(2000, ev)  # a second later the bucket has refilled
    assert len(host.sent) == REMOTE_BURST + 1
    assert REMOTE_RATE >= 1


def test_filter_trace_pads_rule_logs_and_cuts_the_frame() -> None:
    tracer, host, _ = _tracer()
    host.targets[NWID] = (B, int(TraceLevel.RULES))
    ev = tracer.network_filter(
        5, NWID, source=A, dest=B, source_mac=1, dest_mac=2, ethertype=0x800, vlan_id=0, no_tee=False,
        inbound=True, result=0, base_rule_log=b"\x0a", frame=bytes(600),
    )
    assert len(ev.base_rule_log) == 512 and ev.base_rule_log[0] == 0x0A
    assert ev.frame_length == 600 and ev.frame_data == bytes(256)
    assert decode(host.sent[0][2][:-1], timestamp=5) == ev


def _kind(kind: str, /, **f: Any) -> TraceEvent:
    tracer, _, _ = _tracer()
    return tracer.event_for(9, kind, f)


def test_vl1_and_vl2_trace_kinds_map_to_the_real_events() -> None:
    ev = _kind("frame_dropped", reason="filter_blocked_outbound", network=f"{NWID:016x}", source_mac=1, dest_mac=2, ethertype=0x800, vlan_id=0, frame_len=60, rule=2, why="drop rule")
    assert ev == OutgoingNetworkFrameDropped(9, network=NWID, source_mac=1, dest_mac=2, ethertype=0x800, vlan_id=0, frame_length=60, reason="filter blocked")
    ev = _kind("frame_dropped", reason="filter_blocked_inbound", network=f"{NWID:016x}", peer=f"{A:010x}", source_mac=3, dest_mac=4, ethertype=0x800)
    assert isinstance(ev, IncomingNetworkFrameDropped) and ev.source == A and ev.reason == "filter blocked"
    ev = _kind("frame_dropped", reason="access_denied", network=f"{NWID:016x}", peer=f"{A:010x}")
    assert isinstance(ev, IncomingNetworkAccessDenied) and ev.network == NWID and ev.source == A
    ev = _kind("credential_rejected", network=f"{NWID:016x}", credential="COM", reason="bad signature", credential_timestamp=77, issued_to=A)
    assert ev == CredentialRejected(9, network=NWID, credential_type=1, credential_timestamp=77, issued_to=A, reason="bad signature")
    ev = _kind("packet_dropped", reason="bad_mac", source=f"{A:010x}")
    assert isinstance(ev, PacketMacFailure) and ev.source == A
    ev = _kind("packet_dropped", reason="hello_rate_limited")
    assert isinstance(ev, PacketInvalid) and ev.reason == "rate limit exceeded"
    ev = _kind("peer_learned_new_path", peer=f"{B:010x}", path="192.0.2.1/9993", local_socket=3)
    assert ev == PeerLearnedNewPath(9, peer=B, remote_physical="192.0.2.1/9993", local_socket=3)
    ev = _kind("rendezvous", peer=f"{B:010x}", at="192.0.2.1/9993")
    assert isinstance(ev, NodeNote) and ev.kind == "rendezvous"
    # A drop without the fields the real event needs stays a local note.
    assert isinstance(_kind("frame_dropped", reason="multicast_disabled"), NodeNote)


def test_notes_are_never_sent() -> None:
    tracer, host, posted = _tracer()
    host.targets[NWID] = (B, int(TraceLevel.INSANE))
    tracer.record_kind(1, "network_config_rejected", {"network": f"{NWID:016x}", "reason": "not for us"})
    assert posted and isinstance(posted[0], NodeNote) and posted[0].network == NWID
    assert host.sent == []


def test_event_dataclasses_are_frozen() -> None:
    ev = _samples()[0]
    with pytest.raises(AttributeError):
        ev.reporter = 1  # type: ignore[misc]
    assert all(f.name != "EVENT_ID" for f in fields(ev))
