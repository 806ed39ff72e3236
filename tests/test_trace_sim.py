"""Remote tracing end to end in the simulator: a network whose config names the
controller as its remote trace target (``remoteTraceTarget`` / ``remoteTraceLevel``,
per network or per member), members that drop frames, VERB_REMOTE_TRACE on the
wire, and the controller's trace table holding the members' traces."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from test_node_vl2 import World as VL2World  # noqa: E402
from ztcore.api import EventType
from ztcore.controller.store import ControllerStore
from ztcore.controller.traces import TraceStore
from ztcore.identity import Identity
from ztcore.runtime.http_api import StoreControllerBackend
from ztcore.simulation import SimHost
from ztcore.tracing import (
    NetworkFilterTrace,
    OutgoingNetworkFrameDropped,
    RemoteTrace,
    TraceEvent,
    TraceLevel,
    encode_payload,
)
from ztcore.vl1.packet import Verb

DROP_UDP_6000 = [
    {"type": "MATCH_IP_PROTOCOL", "not": False, "or": False, "ipProtocol": 17},
    {"type": "MATCH_IP_DEST_PORT_RANGE", "not": False, "or": False, "start": 6000, "end": 6000},
    {"type": "ACTION_DROP"},
    {"type": "ACTION_ACCEPT"},
]


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return [Identity.generate() for _ in range(5)]


class World(VL2World):
    """The VL2 tests' world with an outsider, a drop rule and no IPv6 assignment."""

    def __init__(self, ids: list[Identity], tmp: Path, **network: Any) -> None:
        super().__init__(
            ids, tmp, rules=DROP_UDP_6000, **{"name": "traced", "v6AssignMode": {"rfc4193": False}, **network}
        )

    def join(self, *hosts: SimHost, **member: Any) -> None:
        for h in hosts:
            h.node.join(self.nwid)
            self.backend.post_member(self.nw["id"], str(h.node.address), {"authorized": True, **member})
        assert self.net.run_until(
            lambda: all((h.node.network(self.nwid) or {}).get("status") == "OK" for h in hosts), 70_000
        )

    def udp(self, src: SimHost, dst: SimHost, port: int) -> bytes:
        payload = b"hello"
        udp = struct.pack(">HHHH", 5000, port, 8 + len(payload), 0) + payload
        ip = struct.pack(
            ">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, self.ipv4(src).packed, self.ipv4(dst).packed
        )
        return ip + udp

    def send(self, src: SimHost, dst: SimHost, port: int) -> bool:
        frame = self.udp(src, dst, port)
        return src.node.process_virtual_network_frame(
            self.net.now, self.nwid, self.mac(src), self.mac(dst), 0x0800, 0, frame
        )

    def stored(self, **q: Any) -> list[dict[str, Any]]:
        return [rec for _, rec in TraceStore(self.store).query(nwid=f"{self.nwid:016x}", **q)]


def _remote_traces(h: SimHost) -> list[RemoteTrace]:
    return [e.data for e in h.events if e.type == EventType.REMOTE_TRACE]


def test_dropped_frames_reach_the_controllers_store(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    ctl_addr = f"{int(w.ctl.node.address):010x}"
    w.backend.post_network(w.nw["id"], {"remoteTraceTarget": ctl_addr, "remoteTraceLevel": int(TraceLevel.RULES)})
    w.join(w.a, w.b)
    cfg = w.a.node.network_config(w.nwid)
    assert cfg is not None and int(cfg.remote_trace_target) == int(w.ctl.node.address)
    assert cfg.remote_trace_level == 15

    assert not w.send(w.a, w.b, 6000)  # dropped by the rule
    assert w.send(w.a, w.b, 7000)
    a_addr = f"{int(w.a.node.address):010x}"
    assert w.net.run_until(lambda: len(w.stored(node=a_addr)) >= 3, 5_000)
    recs = w.stored(node=a_addr)
    # At level RULES every evaluated frame is traced (2006: one drop, one accept, with
    # their rule logs), and the drop itself once more (2000), as the real core does.
    filters = [r for r in recs if r["event"] == "2006"]
    assert len(recs) == 3 and len(filters) == 2
    assert sorted(int(r["filterResult"], 16) for r in filters) == [0, 1]
    (rec,) = [r for r in recs if r["event"] == "2000"]
    assert rec["objtype"] == "trace" and rec["nodeId"] == a_addr
    assert rec["event"] == "2000" and rec["reason"] == "filter blocked"
    assert rec["networkId"] == f"{w.nwid:016x}"
    assert int(rec["sourceMac"], 16) == int(w.mac(w.a)) and int(rec["destMac"], 16) == int(w.mac(w.b))
    assert int(rec["etherType"], 16) == 0x0800 and int(rec["frameLength"], 16) == 33
    assert rec["id"].startswith(f"{ctl_addr}-") and rec["id"].split("-")[2] == a_addr
    # The controller's node posted it as a typed REMOTE_TRACE event.
    rts = _remote_traces(w.ctl)
    assert any(isinstance(r.event, OutgoingNetworkFrameDropped) and r.origin == int(w.a.node.address) for r in rts)
    # Locally, the member got the typed event in its callback and ring buffer.
    local = [e.data for e in w.a.events if e.type == EventType.TRACE]
    assert any(isinstance(e, OutgoingNetworkFrameDropped) and e.network == w.nwid for e in local)
    assert any(isinstance(e, OutgoingNetworkFrameDropped) for _, e in w.a.node.traces())
    assert w.controller.stats["traces_stored"] >= 1


def test_filter_traces_carry_the_rule_log_to_the_controller(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path, remoteTraceLevel=int(TraceLevel.RULES))
    w.backend.post_network(w.nw["id"], {"remoteTraceTarget": f"{int(w.ctl.node.address):010x}"})
    w.join(w.a, w.b)
    assert w.a.node.filter_trace_wanted(w.nwid) and not w.outsider.node.filter_trace_wanted(w.nwid)
    frame = w.udp(w.a, w.b, 6000)
    rule_log = bytes([0xAA, 0x00])  # rules 0 and 1 matched, their set matched
    ev = w.a.node.trace_network_filter(
        w.net.now, w.nwid, source=int(w.a.node.address), dest=int(w.b.node.address),
        source_mac=w.mac(w.a), dest_mac=w.mac(w.b), ethertype=0x0800, vlan_id=0, no_tee=False,
        inbound=False, result=0, base_rule_log=rule_log, frame=frame,
    )
    assert isinstance(ev, NetworkFilterTrace)
    assert w.net.run_until(lambda: any(r["event"] == "2006" for r in w.stored()), 5_000)
    rec = next(r for r in w.stored() if r["event"] == "2006")
    assert bytes.fromhex(rec["filterBaseRuleLog"])[:2] == rule_log
    assert len(bytes.fromhex(rec["filterBaseRuleLog"])) == 512
    assert bytes.fromhex(rec["frameData"]) == frame
    assert rec["filterResult"] == "0000000000000000" and rec["filterInbound"] == "0"
    got = next(r.event for r in _remote_traces(w.ctl) if isinstance(r.event, NetworkFilterTrace))
    assert got.base_rule_log[:2] == rule_log and got.frame_data == frame


def test_level_verbose_gets_drops_but_not_rule_traces(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    w.join(w.a, w.b)
    ctl = f"{int(w.ctl.node.address):010x}"
    # Per-member settings win over the network's (the network names no target at all).
    w.backend.post_member(w.nw["id"], str(w.a.node.address), {"remoteTraceTarget": ctl, "remoteTraceLevel": 10})
    assert w.net.run_until(lambda: int(w.a.node.network_config(w.nwid).remote_trace_target) != 0, 70_000)  # type: ignore[union-attr]
    assert int(w.b.node.network_config(w.nwid).remote_trace_target) == 0  # type: ignore[union-attr]
    w.a.node.trace_network_filter(
        w.net.now, w.nwid, source=1, dest=2, source_mac=1, dest_mac=2, ethertype=0x800, vlan_id=0,
        no_tee=False, inbound=True, result=1, base_rule_log=b"",
    )
    assert not w.send(w.a, w.b, 6000)
    assert not w.send(w.b, w.a, 6000)  # b has no target: its drop stays local
    w.net.run_for(2_000)
    events = {r["event"] for r in w.stored()}
    assert events == {"2000"}
    assert {r["nodeId"] for r in w.stored()} == {str(w.a.node.address)}
    # The rules trace still reached a's own callback and ring buffer.
    assert any(isinstance(e, NetworkFilterTrace) for _, e in w.a.node.traces())


def test_level_normal_sends_no_frame_drops(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path, remoteTraceLevel=0)
    w.backend.post_network(w.nw["id"], {"remoteTraceTarget": f"{int(w.ctl.node.address):010x}"})
    w.join(w.a, w.b)
    assert not w.send(w.a, w.b, 6000)
    w.net.run_for(2_000)
    assert w.stored() == []
    assert any(isinstance(e.data, OutgoingNetworkFrameDropped) for e in w.a.events if e.type == EventType.TRACE)


def test_traces_from_non_members_and_garbage_are_not_stored(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    w.join(w.a)
    fake = OutgoingNetworkFrameDropped(0, network=w.nwid, reason="filter blocked")
    # An outsider (not a member) sends a well-formed trace, then garbage; a member sends garbage too.
    w.outsider.node.switch.send(w.net.now, int(w.ctl.node.address), Verb.REMOTE_TRACE, encode_payload(fake))
    w.outsider.node.switch.send(w.net.now, int(w.ctl.node.address), Verb.REMOTE_TRACE, b"\xff\xfe=\n\x00junk")
    w.a.node.switch.send(w.net.now, int(w.ctl.node.address), Verb.REMOTE_TRACE, b"event=2006\nnetworkId=zz\x00")
    w.net.run_for(3_000)
    assert w.stored() == []
    assert TraceStore(w.store).count() == 0
    assert w.controller.stats["traces_refused"] == 3
    rts = _remote_traces(w.ctl)
    assert len(rts) == 3 and sum(r.event is None for r in rts) == 2
    assert w.ctl.node.drops["remote_trace_malformed"] == 2
    # The member's well-formed trace is kept.
    w.a.node.switch.send(w.net.now, int(w.ctl.node.address), Verb.REMOTE_TRACE, encode_payload(fake))
    assert w.net.run_until(lambda: len(w.stored()) == 1, 3_000)


def test_trace_store_is_bounded_and_queryable(identities: list[Identity], tmp_path: Path) -> None:
    store = ControllerStore(tmp_path)
    backend = StoreControllerBackend(store, 0x1234567890)
    nw = backend.create_network({"name": "n"})
    backend.post_member(nw["id"], "aaaaaaaaaa", {"authorized": True})
    backend.post_member(nw["id"], "bbbbbbbbbb", {"authorized": True})
    traces = TraceStore(store, max_traces=5)
    nwid = int(nw["id"], 16)

    def add(origin: int, ts: int, ev: TraceEvent) -> dict[str, Any] | None:
        return traces.add(0x1234567890, RemoteTrace(origin, encode_payload(ev)[:-1], None), now=ts)

    for i in range(8):
        assert add(0xAAAAAAAAAA if i % 2 else 0xBBBBBBBBBB, 1000 + i, OutgoingNetworkFrameDropped(0, network=nwid)) is not None
    assert traces.count() == 5
    all_ = [r for _, r in traces.query(nwid=nw["id"])]
    assert [r["ts"] for r in all_] == [1003, 1004, 1005, 1006, 1007]
    assert [r["ts"] for _, r in traces.query(node="aaaaaaaaaa")] == [1003, 1005, 1007]
    assert [r["ts"] for _, r in traces.query(since_ts=1005, until_ts=1006)] == [1005, 1006]
    seqs = [s for s, _ in traces.query()]
    assert [s for s, _ in traces.query(after_seq=seqs[2])] == seqs[3:]
    assert traces.query(nwid="ffffffffffffffff") == []
    # Reopening the store keeps them (it is the controller's SQLite file).
    store.close()
    again = TraceStore(ControllerStore(tmp_path))
    assert again.count() == 5


def test_trace_intake_is_rate_bounded_per_member(tmp_path: Path) -> None:
    from ztcore.controller.traces import INTAKE_BURST, INTAKE_RATE

    store = ControllerStore(tmp_path)
    backend = StoreControllerBackend(store, 0x1234567890)
    nw = backend.create_network({"name": "n"})
    backend.post_member(nw["id"], "aaaaaaaaaa", {"authorized": True})
    backend.post_member(nw["id"], "bbbbbbbbbb", {"authorized": True})
    traces = TraceStore(store, max_traces=100_000)
    data = encode_payload(OutgoingNetworkFrameDropped(0, network=int(nw["id"], 16)))[:-1]
    kept = sum(traces.add(1, RemoteTrace(0xAAAAAAAAAA, data, None), now=5000) is not None for _ in range(INTAKE_BURST + 30))
    assert kept == INTAKE_BURST and traces.stats["rate_limited"] == 30
    # Another member has its own allowance; a second later the first has INTAKE_RATE more.
    assert traces.add(1, RemoteTrace(0xBBBBBBBBBB, data, None), now=5000) is not None
    kept = sum(traces.add(1, RemoteTrace(0xAAAAAAAAAA, data, None), now=6000) is not None for _ in range(INTAKE_RATE + 10))
    assert kept == INTAKE_RATE


def test_one_packet_may_carry_several_traces_and_a_broken_controller_is_contained(
    identities: list[Identity], tmp_path: Path
) -> None:
    from ztcore.errors import UNEXPECTED

    w = World(identities, tmp_path)
    w.join(w.a)
    one = encode_payload(OutgoingNetworkFrameDropped(0, network=w.nwid, reason="one"))
    two = encode_payload(OutgoingNetworkFrameDropped(0, network=w.nwid, reason="two"))
    w.a.node.switch.send(w.net.now, int(w.ctl.node.address), Verb.REMOTE_TRACE, one + two)
    assert w.net.run_until(lambda: len(w.stored()) == 2, 3_000)
    assert [r["reason"] for r in w.stored()] == ["one", "two"]

    def broken(now: int, trace: RemoteTrace) -> None:
        raise RuntimeError("controller bug")

    w.controller.handle_remote_trace = broken  # type: ignore[method-assign]
    before = UNEXPECTED["node: controller remote trace"]
    w.a.node.switch.send(w.net.now, int(w.ctl.node.address), Verb.REMOTE_TRACE, one)
    assert w.net.run_until(lambda: UNEXPECTED["node: controller remote trace"] == before + 1, 3_000)
    # The node goes on: the event was still posted, and packets still flow.
    assert len(_remote_traces(w.ctl)) == 3
    assert w.ctl.node.echo(w.net.now, int(w.a.node.address))


def test_a_node_that_is_its_own_target_traces_into_its_own_controller(
    identities: list[Identity], tmp_path: Path
) -> None:
    w = World(identities, tmp_path, remoteTraceLevel=int(TraceLevel.VERBOSE))
    ctl = f"{int(w.ctl.node.address):010x}"
    w.backend.post_network(w.nw["id"], {"remoteTraceTarget": ctl})
    w.join(w.ctl, w.a)
    assert not w.send(w.ctl, w.a, 6000)
    recs = w.stored(node=ctl)
    assert len(recs) == 1 and recs[0]["event"] == "2000" and recs[0]["reason"] == "filter blocked"
