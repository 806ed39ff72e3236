"""The node's established-session fast lane (ztcore.lane, ztcore._lane): it takes
exactly the packets it was given sessions for, gives the same results as the general
path (the reference), does the general path's bookkeeping, answers ICMP echo only as
the userspace responder would, and is emptied whenever what it caches may change."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import struct
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ztcore import lane as lane_mod
from ztcore.identity import Identity
from ztcore.netstack import frames as f
from ztcore.netstack.responder import Responder
from ztcore.tracing.events import NetworkFilterTrace
from ztcore.vl1.fragment import Reassembler, make_fragments
from ztcore.vl1.packet import Verb, armor, dearmor, derive_aes_keys, set_hops

sys.path.insert(0, str(Path(__file__).parent))
from test_node_vl2 import World, _udp_frame  # noqa: E402
from vnet import start_vnet, until  # noqa: E402

pytestmark = pytest.mark.skipif(
    not lane_mod.AVAILABLE,
    reason="LOUD SKIP: the C fast lane is not built or is switched off (ZTCORE_NO_LANE / pure-Python armor)",
)

ME, PEER = 0x1122334455, 0x66778899AA
NWID = 0x1122334455000001
MAC_ME, MAC_PEER = 0x32AABBCCDDEE, 0x32112233445F
IP_ME, IP_PEER = ipaddress.ip_address("10.9.0.2"), ipaddress.ip_address("10.9.0.1")
REMOTE = ("192.0.2.7", 9993)


def _echo_request(src: bytes, dst: bytes, ident: int = 7, seq: int = 1, data: bytes = b"x" * 56) -> bytes:
    icmp = f.build_icmp_echo(f.ICMP_ECHO_REQUEST, ident, seq, data)
    return f.build_ipv4(src, dst, f.IPPROTO_ICMP, icmp, ident=0x1234, dont_fragment=True)


class Bare:
    """A Lane with one session (fake peer/path objects: the lane only sets attributes)."""

    def __init__(self, suite: int = 1) -> None:
        self.key = os.urandom(48)
        self.aes = derive_aes_keys(self.key)
        self.vl1: dict[str, int] = {}
        self.vl2: dict[str, int] = {}
        self.lane = lane_mod._lane.Lane(ME, self.vl1, self.vl2)
        self.peer = SimpleNamespace(last_receive=0, last_nontrivial_receive=0, last_trust=0)
        self.path = SimpleNamespace(last_in=0)
        self.peer_path = SimpleNamespace(last_receive=0)
        siv = self.aes.siv.kernel
        assert siv is not None
        assert self.lane.add_session(
            PEER, 1, REMOTE, self.key, siv, suite, self.peer, self.path, self.peer_path
        )
        assert self.lane.add_member(NWID, PEER, MAC_ME, MAC_PEER >> 40, (MAC_PEER ^ PEER) & 0xFFFFFFFFFF)

    def packet(self, payload: bytes, *, verb: int = Verb.FRAME, suite: int = 1, **kw: Any) -> bytes:
        return armor(
            destination=kw.pop("destination", ME),
            source=PEER,
            verb=verb,
            payload=payload,
            key=self.key,
            encrypt=True,
            aes_keys=self.aes if suite == 3 else None,
            **kw,
        )

    def frame(self, ethertype: int, data: bytes, **kw: Any) -> bytes:
        return self.packet(struct.pack(">QH", NWID, ethertype) + data, **kw)


@pytest.mark.parametrize("suite", [1, 3])
def test_a_frame_of_a_session_is_delivered_with_the_general_paths_bookkeeping(suite: int) -> None:
    b = Bare()
    data = b"\x45" + bytes(40)
    taken = b.lane.receive(12345, 1, REMOTE, b.frame(0x0800, data, suite=suite))
    assert taken == (NWID, MAC_PEER, MAC_ME, 0x0800, data)
    assert (b.peer.last_receive, b.peer.last_nontrivial_receive, b.peer.last_trust) == (12345,) * 3
    assert (b.path.last_in, b.peer_path.last_receive) == (12345, 12345)
    assert b.vl1 == {"packets_in": 1, "in_FRAME": 1} and b.vl2 == {"frames_in": 1}


def test_everything_else_is_left_to_the_general_path_untouched() -> None:
    b = Bare()
    good = b.frame(0x0800, b"hello")
    assert b.lane.receive(1, 1, REMOTE, good) is not None
    tampered = bytearray(good)
    tampered[-1] ^= 1
    others = {
        "tampered": bytes(tampered),
        "hops 1": set_hops(good, 1),
        "other local socket": None,
        "other remote": None,
        "not bytes": bytearray(good),
        "ECHO verb": b.packet(b"ping", verb=Verb.ECHO),
        "MULTICAST_FRAME verb": b.packet(struct.pack(">QB", NWID, 0) + bytes(20), verb=Verb.MULTICAST_FRAME),
        "compressed": b.frame(0x0800, bytes(400), compress=True),
        "other network": b.packet(struct.pack(">QH", NWID + 1, 0x0800) + b"x"),
        "not for me": b.frame(0x0800, b"x", destination=ME + 1),
        "a fragment of nothing the lane holds": bytes(8) + ME.to_bytes(5, "big") + b"\xff\x21" + bytes(30),
        "too short": good[:30],
    }
    assert dearmor(others["compressed"], b.key).compressed
    for what, packet in others.items():
        local, remote = 1, REMOTE
        if what == "other local socket":
            packet, local = good, 2
        elif what == "other remote":
            packet, remote = good, ("192.0.2.7", 9994)
        assert b.lane.receive(2, local, remote, packet) is None, what
    assert b.peer.last_receive == 1 and b.vl1["packets_in"] == 1  # nothing above was accounted
    b.lane.clear()
    assert b.lane.sessions == 0 and b.lane.receive(3, 1, REMOTE, good) is None


@pytest.mark.parametrize("suite", [1, 3])
def test_send_armors_a_frame_to_a_session_peer_as_the_general_path_would(suite: int) -> None:
    b = Bare(suite)
    data = bytes(range(100))
    out = b.lane.send(77, NWID, MAC_ME, MAC_PEER, 0x0800, data)
    assert out is not None
    local_socket, remote, wire = out
    assert (local_socket, remote) == (1, REMOTE) and (wire[18] >> 3) == suite
    pkt = dearmor(wire, b.key, b.aes)
    assert (pkt.header.source, pkt.header.destination, pkt.verb) == (ME, PEER, Verb.FRAME)
    assert pkt.payload == struct.pack(">QH", NWID, 0x0800) + data
    assert b.path.last_out == 77
    assert b.vl1 == {"out_FRAME": 1, "packets_out": 1} and b.vl2 == {"frames_out": 1}
    # Not the lane's: the general path decides (and counts) these.
    for what, args in {
        "bridged (not our MAC)": (NWID, MAC_ME ^ 1, MAC_PEER, 0x0800, data),
        "broadcast": (NWID, MAC_ME, 0xFFFFFFFFFFFF, 0x0806, data),
        "to ourselves": (NWID, MAC_ME, MAC_ME, 0x0800, data),
        "a member without a session": (NWID, MAC_ME, MAC_PEER ^ 1, 0x0800, data),
        "another network": (NWID + 1, MAC_ME, MAC_PEER, 0x0800, data),
        "not a MAC": (NWID, MAC_ME, -1, 0x0800, data),
        "not bytes": (NWID, MAC_ME, MAC_PEER, 0x0800, bytearray(data)),
    }.items():
        assert b.lane.send(78, *args) is None, what
    assert b.path.last_out == 77 and b.vl2 == {"frames_out": 1}


@pytest.mark.parametrize("suite", [1, 3])
def test_a_frame_in_pieces_is_put_back_together_and_taken(suite: int) -> None:
    b = Bare()
    data = bytes(range(256)) * 12  # 3,072 bytes: a head and two fragments
    pieces = make_fragments(b.frame(0x0800, data, suite=suite))
    assert len(pieces) == 3
    results = [b.lane.receive(9, 1, REMOTE, p) for p in (pieces[0], pieces[2], pieces[2], pieces[1])]
    # Kept, kept, a duplicate dropped, then the packet.
    assert results == [True, True, True, (NWID, MAC_PEER, MAC_ME, 0x0800, data)]
    assert b.vl1 == {"packets_in": 4, "in_FRAME": 1} and b.peer.last_receive == 9  # each datagram counted


@pytest.mark.parametrize("tail", [1, 2, 11, 12, 13, 100])
def test_a_last_fragment_shorter_than_any_head_is_taken_too(tail: int) -> None:
    b = Bare()
    data = bytes(1432 - 28 - 10 + tail)  # the fragment carries `tail` bytes: 16 + tail on the wire
    pieces = make_fragments(b.frame(0x0800, data))
    assert [len(p) for p in pieces] == [1432, 16 + tail]
    assert [b.lane.receive(1, 1, REMOTE, p) for p in pieces] == [True, (NWID, MAC_PEER, MAC_ME, 0x0800, data)]


def test_pieces_the_lane_does_not_hold_or_cannot_take_go_to_the_general_path() -> None:
    b = Bare()
    data = bytes(3000)
    # A fragment before its head: the general path's, and so is that head afterwards.
    pieces = make_fragments(b.frame(0x0800, data))
    assert b.lane.receive(1, 1, REMOTE, pieces[1]) is None
    assert b.lane.receive(1, 1, REMOTE, pieces[0]) is None
    assert b.lane.receive(1, 1, REMOTE, pieces[2]) is None
    # Put together but compressed (or another verb, or a bad MAC): handed over whole.
    compressed = b.frame(0x0800, os.urandom(1500) + bytes(3000), compress=True)
    assert dearmor(compressed, b.key).compressed
    pieces = make_fragments(compressed)
    assert len(pieces) == 2
    assert [b.lane.receive(2, 1, REMOTE, p) for p in pieces[:-1]] == [True] * (len(pieces) - 1)
    assert b.lane.receive(2, 1, REMOTE, pieces[-1]) == (compressed,)
    tampered = make_fragments(b.frame(0x0800, data))
    tampered[1] = tampered[1][:-1] + bytes([tampered[1][-1] ^ 1])
    results = [b.lane.receive(3, 1, REMOTE, p) for p in tampered]
    assert results[:2] == [True, True] and type(results[2]) is tuple and len(results[2]) == 1
    assert b.peer.last_receive == 0 and "in_FRAME" not in b.vl1  # nothing taken
    # The session gone meanwhile: handed over whole too.
    pieces = make_fragments(b.frame(0x0800, data))
    assert b.lane.receive(4, 1, REMOTE, pieces[0]) is True
    b.lane.clear()
    assert b.lane.receive(4, 1, REMOTE, pieces[1]) is True
    whole = b.lane.receive(4, 1, REMOTE, pieces[2])
    assert type(whole) is tuple and len(whole) == 1 and dearmor(whole[0], b.key).payload[10:] == data


def test_send_splits_a_long_frame_as_the_general_path_does() -> None:
    b = Bare(3)
    data = bytes(range(256)) * 20  # 5,120 bytes: four datagrams
    out = b.lane.send(5, NWID, MAC_ME, MAC_PEER, 0x0800, data)
    assert out is not None and out[:2] == (1, REMOTE)
    pieces = out[2]
    assert type(pieces) is tuple and len(pieces) == 4 and all(len(p) <= 1432 for p in pieces)
    r = Reassembler()
    results = [r.add(p, 5) for p in pieces]
    assert results[:3] == [None] * 3 and results[3] is not None
    assert make_fragments(results[3]) == list(pieces)  # the general path's layout, byte for byte
    pkt = dearmor(results[3], b.key, b.aes)
    assert pkt.verb == Verb.FRAME and pkt.payload == struct.pack(">QH", NWID, 0x0800) + data
    assert b.lane.send(5, NWID, MAC_ME, MAC_PEER, 0x0800, bytes(9900)) is None  # more than 7 pieces


def test_bad_arguments_raise() -> None:
    b = Bare()
    with pytest.raises(ValueError):
        b.lane.add_session(0, 1, REMOTE, b.key, None, 1, b.peer, b.path, b.peer_path)
    with pytest.raises(ValueError):
        b.lane.add_session(PEER, 1, REMOTE, b"short", None, 1, b.peer, b.path, b.peer_path)
    with pytest.raises(ValueError):
        b.lane.add_session(PEER, 1, REMOTE, b.key, None, 3, b.peer, b.path, b.peer_path)  # suite 3, no Siv
    with pytest.raises(TypeError):
        b.lane.add_session(PEER, 1, REMOTE, b.key, object(), 1, b.peer, b.path, b.peer_path)
    with pytest.raises(ValueError):
        b.lane.set_echo(NWID, (b"\x01\x02\x03",), 2800)
    assert not b.lane.add_member(NWID, PEER + 1, MAC_ME, 0x32, 0)  # no such session


@pytest.mark.parametrize("suite", [1, 3])
def test_echo_offload_answers_as_the_responder_does(suite: int) -> None:
    b = Bare(suite)
    b.lane.set_echo(NWID, (IP_ME.packed,), 2800)
    request = _echo_request(IP_PEER.packed, IP_ME.packed, data=bytes(range(200)))
    reply = b.lane.receive(5, 1, REMOTE, b.frame(0x0800, request))
    assert (
        type(reply) is bytes
        and (reply[18] >> 3) == suite
        and reply[8:18] == PEER.to_bytes(5, "big") + ME.to_bytes(5, "big")
    )
    pkt = dearmor(reply, b.key, b.aes)
    assert pkt.verb == Verb.FRAME and not pkt.compressed
    nwid, ethertype = struct.unpack_from(">QH", pkt.payload)
    ours = pkt.payload[10:]
    # The reference: the userspace responder's answer to the same request.
    sent: list[tuple[int, int, int, bytes]] = []
    r = Responder(MAC_ME, lambda *a: sent.append(a))
    r.set_addresses([ipaddress.ip_interface(f"{IP_ME}/24")])
    assert r.handle_frame(MAC_PEER, MAC_ME, 0x0800, request, 5)
    ((dest_mac, _src, their_type, theirs),) = sent
    assert (nwid, ethertype, dest_mac, their_type) == (NWID, 0x0800, MAC_PEER, 0x0800)
    # The same packet but for the IP identification (each keeps its own counter) and so
    # the header checksum, which is valid in ours.
    assert (
        len(ours) == len(theirs)
        and ours[:4] + ours[6:10] + ours[12:] == theirs[:4] + theirs[6:10] + theirs[12:]
    )
    assert f.checksum_valid(ours[:20])
    assert b.vl2 == {"frames_in": 1, "echo_offloaded": 1, "frames_out": 1}
    assert b.vl1 == {"packets_in": 1, "in_FRAME": 1, "packets_out": 1, "out_FRAME": 1} and b.path.last_out == 5


def test_echo_offload_declines_what_the_responder_would_treat_otherwise() -> None:
    b = Bare()
    b.lane.set_echo(NWID, (IP_ME.packed,), 2800)
    good = _echo_request(IP_PEER.packed, IP_ME.packed)
    bad_icmp = bytearray(good)
    bad_icmp[-1] ^= 1
    bad_header = bytearray(good)
    bad_header[8] = 1  # TTL changed, checksum not
    cases = {
        "bad ICMP checksum": bytes(bad_icmp),
        "bad header checksum": bytes(bad_header),
        "not our address": _echo_request(IP_PEER.packed, bytes([10, 9, 0, 3])),
        "multicast source": _echo_request(bytes([224, 0, 0, 1]), IP_ME.packed),
        "an echo reply": f.build_ipv4(
            IP_PEER.packed, IP_ME.packed, 1, f.build_icmp_echo(f.ICMP_ECHO_REPLY, 1, 1, b"r")
        ),
        "over the MTU": _echo_request(IP_PEER.packed, IP_ME.packed, data=bytes(1300)),
    }
    b.lane.set_echo(NWID, (IP_ME.packed,), 1000)
    for what, ip in cases.items():
        taken = b.lane.receive(1, 1, REMOTE, b.frame(0x0800, ip))
        assert taken == (NWID, MAC_PEER, MAC_ME, 0x0800, ip), what  # delivered, for the responder
    b.lane.set_echo(NWID, (IP_ME.packed,), 2800)
    assert type(b.lane.receive(1, 1, REMOTE, b.frame(0x0800, good))) is bytes
    b.lane.clear_echo(NWID)
    assert type(b.lane.receive(1, 1, REMOTE, b.frame(0x0800, good))) is tuple
    assert "echo_offloaded" in b.vl2 and b.vl2["echo_offloaded"] == 1


# ---------------------------------------------------------------- in a Node (simulator)


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return [Identity.generate() for _ in range(4)]


def _send(w: World, data: bytes) -> None:
    ip_a, ip_b = w.ipv4(w.a), w.ipv4(w.b)
    frame = _udp_frame(ip_a, ip_b, data)
    assert w.a.node.process_virtual_network_frame(w.net.now, w.nwid, w.mac(w.a), w.mac(w.b), 0x0800, 0, frame)
    assert w.net.run_until(lambda: any(fr.data == frame for fr in w.b.frames), 5_000)


def _direct(w: World) -> None:
    """Frames until a and b talk directly (the first ones go through the root, which
    introduces them): only then is there a session for the lane."""
    lane = w.b.node.lane
    assert lane is not None
    for i in range(10):
        _send(w, b"warm-up %d" % i)
        if lane.sessions:
            return
        w.net.run_for(200)
    raise AssertionError("a and b never talked directly")


def test_node_fills_the_lane_after_one_frame_and_the_general_path_agrees(
    identities: list[Identity], tmp_path: Path
) -> None:
    w = World(identities, tmp_path)
    w.join_authorized()
    _direct(w)
    lane = w.b.node.lane
    assert lane is not None
    lane.clear()
    _send(w, b"first")  # the general path, which offers the session
    assert lane.sessions == 1
    captured: list[bytes] = []
    w.net.filter = lambda src, dst, data: (dst == w.b.endpoint and captured.append(data)) or True
    _send(w, b"second")  # the lane
    w.net.filter = None
    (wire,) = captured
    peer = w.b.node.topology.get_peer(int(w.a.node.address))
    assert peer is not None
    taken = lane.receive(w.net.now + 777, 0, w.a.endpoint, wire)
    assert peer.last_receive == w.net.now + 777
    # The same datagram the general way (lane emptied): the same frame is delivered.
    lane.clear()
    before = len(w.b.frames)
    w.b.node.process_wire_packet(w.net.now, 0, w.a.endpoint, wire)
    got = w.b.frames[before:]
    assert [(g.network_id, g.source_mac, g.dest_mac, g.ethertype, g.data) for g in got] == [taken]
    assert lane.sessions == 1  # and refilled
    # The other way: b's frame to a goes out through b's lane and arrives intact.
    back = _udp_frame(w.ipv4(w.b), w.ipv4(w.a), b"answer")
    general_sends = w.b.node.switch.stats["out_FRAME"]
    assert lane.send(w.net.now, w.nwid, w.mac(w.b), w.mac(w.a), 0x0800, back) is not None  # what the node will do
    assert w.b.node.process_virtual_network_frame(w.net.now, w.nwid, w.mac(w.b), w.mac(w.a), 0x0800, 0, back)
    assert w.net.run_until(lambda: any(fr.data == back for fr in w.a.frames), 5_000)
    assert w.b.node.switch.stats["out_FRAME"] == general_sends + 2  # both counted, by the lane

    # Frames in pieces: put back together by the lane, the general Reassembler untouched;
    # one the lane cannot take (compressed, as the real core sends them) is handed over
    # whole and delivered by the general path.
    reassembler_calls = {"n": 0}
    add = w.b.node.switch.reassembler.add

    def counting_add(*args: Any) -> Any:
        reassembler_calls["n"] += 1
        return add(*args)

    w.b.node.switch.reassembler.add = counting_add  # type: ignore[method-assign]
    big = _udp_frame(w.ipv4(w.a), w.ipv4(w.b), bytes(range(256)) * 10)
    before = w.b.node.switch.stats["in_FRAME"]
    assert w.a.node.process_virtual_network_frame(w.net.now, w.nwid, w.mac(w.a), w.mac(w.b), 0x0800, 0, big)
    assert w.net.run_until(lambda: any(fr.data == big for fr in w.b.frames), 5_000)
    assert reassembler_calls["n"] == 0 and w.b.node.switch.stats["in_FRAME"] == before + 1
    squeezable = _udp_frame(w.ipv4(w.a), w.ipv4(w.b), os.urandom(1500) + bytes(3000))
    wire = armor(
        destination=int(w.b.node.address),
        source=int(w.a.node.address),
        verb=Verb.FRAME,
        payload=struct.pack(">QH", w.nwid, 0x0800) + squeezable,
        key=peer.key,
        encrypt=True,
        aes_keys=peer.aes_keys_if_supported(),
        compress=True,
    )
    assert dearmor(wire, peer.key, peer.aes_keys).compressed
    for piece in make_fragments(wire):
        w.b.node.process_wire_packet(w.net.now, 0, w.a.endpoint, piece)
    assert any(fr.data == squeezable for fr in w.b.frames) and reassembler_calls["n"] == 0


def test_lane_is_emptied_by_tracing_leaving_and_control_packets(
    identities: list[Identity], tmp_path: Path
) -> None:
    w = World(identities, tmp_path)
    w.join_authorized()
    lane = w.b.node.lane
    assert lane is not None
    _direct(w)
    _send(w, b"two")
    assert lane.sessions == 1
    w.b.node.trace_enabled = True
    assert lane.sessions == 0
    _send(w, b"traced")  # through the rules, traced, and not offered to the lane
    assert lane.sessions == 0
    assert any(isinstance(ev, NetworkFilterTrace) for _, ev in w.b.node.traces())
    w.b.node.trace_enabled = False
    _send(w, b"three")
    assert lane.sessions == 1
    assert w.a.node.echo(w.net.now, int(w.b.node.address))  # a VL1 ECHO reaches b: a control packet
    w.net.run_for(500)
    assert lane.sessions == 0
    _send(w, b"four")
    assert lane.sessions == 1
    w.net.run_for(6_000)  # a ping check
    assert lane.sessions == 0
    _send(w, b"five")
    assert lane.sessions == 1
    w.b.node.leave(w.nwid)
    assert lane.sessions == 0


def test_traffic_that_goes_one_way_fills_the_senders_lane(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    w.join_authorized()
    _direct(w)
    back = _udp_frame(w.ipv4(w.b), w.ipv4(w.a), b"b speaks once (a learns its COM)")
    assert w.b.node.process_virtual_network_frame(w.net.now, w.nwid, w.mac(w.b), w.mac(w.a), 0x0800, 0, back)
    assert w.net.run_until(lambda: any(fr.data == back for fr in w.a.frames), 5_000)
    lane = w.a.node.lane
    assert lane is not None
    lane.clear()
    _send(w, b"one way: the general path, which offers the session")
    assert lane.sessions == 1
    general = {"n": 0}
    send = w.a.node.switch.send

    def counting_send(*args: Any, **kw: Any) -> Any:
        general["n"] += 1
        return send(*args, **kw)

    w.a.node.switch.send = counting_send  # type: ignore[method-assign]
    _send(w, b"one way: the lane")
    assert general["n"] == 0


def test_a_node_can_be_told_to_take_the_general_path_only(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    w.join_authorized()
    _direct(w)
    w.b.node.disable_lane()
    assert w.b.node.lane is None and w.b.node.switch.lane is None
    calls = {"n": 0}
    general = w.b.node.switch._open_from_session

    def counting(*args: Any) -> Any:
        calls["n"] += 1
        return general(*args)

    w.b.node.switch._open_from_session = counting  # type: ignore[method-assign]
    _send(w, b"general")
    _send(w, b"still general")
    assert calls["n"] == 2  # the general path's session shortcut took both


# ---------------------------------------------------------------- in a NodeService (loopback)


def test_service_offloads_echo_only_while_the_responder_is_the_only_listener() -> None:
    async def main() -> None:
        vnet = await start_vnet(2, sixplane=False)
        try:
            a, b = vnet.members
            ra, rb = a.responder(vnet.nwid), b.responder(vnet.nwid)
            ip_b = vnet.ipv4(b)

            async def ping(seq: int) -> None:
                done = asyncio.Event()
                h = ra.ping(ip_b, a.clock(), seq=seq, on_reply=lambda _h: done.set())
                await asyncio.wait_for(done.wait(), 10)
                assert h.reply_time is not None, h.error

            # Every datagram is offered to the lane once: by the service, not again by the node.
            offered = {"n": 0}
            receive = b.node.lane.receive

            def counting_receive(*args: Any) -> Any:
                offered["n"] += 1
                return receive(*args)

            b.node.lane.receive = counting_receive
            datagrams_in = b.counters.packets_in
            for seq in range(3):
                await ping(seq)
            assert offered["n"] == b.counters.packets_in - datagrams_in > 0
            offloaded = b.node.vl2.stats["echo_offloaded"]
            assert offloaded >= 1  # the first went the general way and filled the lane
            assert ra.counters["bad_checksum"] == 0
            seen: list[Any] = []
            remove = b.add_frame_listener(seen.append)
            for seq in range(3, 6):
                await ping(seq)
            assert b.node.vl2.stats["echo_offloaded"] == offloaded
            requests = [fr for fr in seen if fr.ethertype == 0x0800 and fr.data[20] == f.ICMP_ECHO_REQUEST]
            assert len(requests) == 3  # the listener saw every request
            remove()
            for seq in range(6, 9):
                await ping(seq)
            assert b.node.vl2.stats["echo_offloaded"] >= offloaded + 2
            rb.enabled = False  # the responder off: nobody answers, the lane neither
            h = ra.ping(ip_b, a.clock(), seq=9, timeout=500)
            await until(lambda: h.done, 5, "the ping to time out")
            assert h.error == "timeout"
        finally:
            await vnet.close()

    asyncio.run(asyncio.wait_for(main(), 120))
