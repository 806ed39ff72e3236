"""VL2 through the real Node, Controller and simulator: join, authorize, frames,
ARP over multicast, rules, deauthorization."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

import pytest

from ztcore.api import StateObjectType
from ztcore.controller.live import EmbeddedController
from ztcore.controller.store import ControllerStore
from ztcore.errors import InvalidFormatError
from ztcore.identity import Identity
from ztcore.runtime.http_api import StoreControllerBackend
from ztcore.runtime.service import now_ms
from ztcore.simulation import SimHost, SimNetwork, make_planet
from ztcore.vl1.packet import set_hops
from ztcore.vl2.mac import BROADCAST_MAC, MAC


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return [Identity.generate() for _ in range(5)]


class World:
    def __init__(  # type: ignore[no-untyped-def]
        self, identities: list[Identity], tmp: Path, *, private: bool = True, rules=None, **network: Any
    ) -> None:
        """Root, controller, members a and b, and (with a fifth identity) an outsider that
        never joins; `network` adds or overrides fields of the network's record."""
        self.net = SimNetwork(start_ms=now_ms())
        ep = self.net.allocate_endpoint("10.0.0.1")
        planet, _ = make_planet([(identities[0], [ep])])
        self.root = self.net.add_node(identity=identities[0], planet=planet, endpoint=ep)
        self.ctl = self.net.add_node(identity=identities[1], planet=planet, ip="10.0.1.1")
        self.a = self.net.add_node(identity=identities[2], planet=planet, ip="10.0.1.2")
        self.b = self.net.add_node(identity=identities[3], planet=planet, ip="10.0.1.3")
        self.outsider = (
            self.net.add_node(identity=identities[4], planet=planet, ip="10.0.1.4") if len(identities) > 4 else None
        )
        self.store = ControllerStore(tmp)
        self.controller = EmbeddedController(self.store)
        self.ctl.node.set_controller(self.controller)
        self.backend = StoreControllerBackend(self.store, int(self.ctl.node.address))
        self.backend.add_listener(self.controller)
        body = {
            "name": "testnet",
            "private": private,
            "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.20"}],
            "routes": [{"target": "10.147.17.0/24"}],
            "v4AssignMode": {"zt": True},
            "v6AssignMode": {"rfc4193": True},
        }
        if rules is not None:
            body["rules"] = rules
        self.nw = self.backend.create_network({**body, **network})
        self.nwid = int(self.nw["id"], 16)
        hosts = [h for h in (self.a, self.b, self.ctl, self.outsider) if h is not None]
        assert self.net.run_until(lambda: all(h.node.online for h in hosts))

    def status(self, host: SimHost) -> str | None:
        info = host.node.network(self.nwid)
        return None if info is None else str(info["status"])

    def join_authorized(self) -> None:
        """Members a and b join, are authorized, and reach OK."""
        self.a.node.join(self.nwid)
        self.b.node.join(self.nwid)
        self.authorize(self.a)
        self.authorize(self.b)
        assert self.net.run_until(lambda: self.status(self.a) == "OK" and self.status(self.b) == "OK", 70_000)

    def mac(self, host: SimHost) -> MAC:
        return MAC.from_address(int(host.node.address), self.nwid)

    def authorize(self, host: SimHost, yes: bool = True) -> None:
        self.backend.post_member(self.nw["id"], str(host.node.address), {"authorized": yes})

    def ipv4(self, host: SimHost) -> ipaddress.IPv4Address:
        info = host.node.network(self.nwid)
        assert info is not None
        for a in info["assignedAddresses"]:  # type: ignore[union-attr]
            iface = ipaddress.ip_interface(a)
            if iface.version == 4:
                return iface.ip  # type: ignore[return-value]
        raise AssertionError("no IPv4 assigned")


def _udp_frame(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, payload: bytes) -> bytes:
    udp = struct.pack(">HHHH", 5000, 6000, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0, src.packed, dst.packed)
    return ip + udp


def _arp_request(
    sender_mac: int, sender_ip: ipaddress.IPv4Address, target_ip: ipaddress.IPv4Address
) -> bytes:
    return (
        struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1)
        + MAC(sender_mac).to_bytes()
        + sender_ip.packed
        + bytes(6)
        + target_ip.packed
    )


def test_private_network_join_authorize_and_exchange_frames(
    identities: list[Identity], tmp_path: Path
) -> None:
    w = World(identities, tmp_path)
    w.a.node.join(w.nwid)
    w.b.node.join(w.nwid)
    assert w.status(w.a) == "REQUESTING_CONFIGURATION"
    assert w.net.run_until(lambda: w.status(w.a) == "ACCESS_DENIED" and w.status(w.b) == "ACCESS_DENIED")
    # The controller recorded the unauthorized members with their identities.
    member = w.store.get_member(w.nw["id"], str(w.a.node.address))
    assert member is not None and member["authorized"] is False
    assert member["identity"] == str(w.a.node.identity.public())

    w.authorize(w.a)
    w.authorize(w.b)
    assert w.net.run_until(lambda: w.status(w.a) == "OK" and w.status(w.b) == "OK", 70_000)
    ip_a, ip_b = w.ipv4(w.a), w.ipv4(w.b)
    assert ip_a != ip_b and ip_a in ipaddress.ip_network("10.147.17.0/24")
    info = w.a.node.network(w.nwid)
    assert info is not None and info["name"] == "testnet" and info["type"] == "PRIVATE"
    assert any(ipaddress.ip_interface(x).version == 6 for x in info["assignedAddresses"])  # rfc4193
    # The config was persisted as a state object.
    assert w.a.state_get(StateObjectType.NETWORK_CONFIG, (w.nwid,)) is not None

    # A unicast frame from a to b arrives intact, with MACs derived from the addresses.
    mac_a = w.mac(w.a)
    mac_b = w.mac(w.b)
    frame = _udp_frame(ip_a, ip_b, b"hello over vl2")
    assert w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x0800, 0, frame)
    assert w.net.run_until(lambda: any(f.data == frame for f in w.b.frames), 5_000)
    got = next(f for f in w.b.frames if f.data == frame)
    assert (got.network_id, got.source_mac, got.dest_mac, got.ethertype) == (w.nwid, mac_a, mac_b, 0x0800)
    # MAC objects are as good as ints; a value that is not a 48-bit MAC is refused, not sent.
    again = _udp_frame(ip_a, ip_b, b"as MAC objects")
    assert w.a.node.process_virtual_network_frame(w.net.now, w.nwid, MAC(mac_a), MAC(mac_b), 0x0800, 0, again)
    assert w.net.run_until(lambda: any(f.data == again for f in w.b.frames), 5_000)
    sent = w.a.node.vl2.stats["frames_out"]
    for bad_source, bad_dest in ((mac_a, mac_b | 1 << 48), (-1, mac_b), (mac_a, "02:00:00:00:00:01")):
        with pytest.raises(InvalidFormatError):
            w.a.node.process_virtual_network_frame(w.net.now, w.nwid, bad_source, bad_dest, 0x0800, 0, frame)
    assert w.a.node.vl2.stats["frames_out"] == sent

    # The receive path's shortcut (whole packet, hops 0, known peer, kept path) and the
    # general path treat a FRAME alike: captured on the wire and handed to b again, it is
    # delivered again by the shortcut; with its hop count raised (not covered by the MAC)
    # the general path takes it and delivers it too; with a MAC bit flipped the shortcut
    # drops it as bad_mac.
    captured: list[bytes] = []
    w.net.filter = lambda src, dst, data: (dst == w.b.endpoint and captured.append(data)) or True
    probe = _udp_frame(ip_a, ip_b, b"captured")
    assert w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x0800, 0, probe)
    assert w.net.run_until(lambda: any(f.data == probe for f in w.b.frames), 5_000)
    w.net.filter = None
    wire = next(d for d in captured if len(d) == 28 + 10 + len(probe))
    general = {"calls": 0}
    topo = w.b.node.topology
    get_path = topo.get_path

    def counting_get_path(*args: Any) -> Any:
        general["calls"] += 1
        return get_path(*args)

    topo.get_path = counting_get_path  # type: ignore[method-assign]
    switch = w.b.node.switch
    before = (sum(f.data == probe for f in w.b.frames), switch.stats["in_FRAME"], switch.drops["bad_mac"])
    w.b.node.process_wire_packet(w.net.now, 0, w.a.endpoint, wire)
    assert general["calls"] == 0  # the shortcut
    w.b.node.process_wire_packet(w.net.now, 0, w.a.endpoint, set_hops(wire, 1))
    assert general["calls"] == 1  # the general path
    tampered = bytearray(wire)
    tampered[19] ^= 0x01
    w.b.node.process_wire_packet(w.net.now, 0, w.a.endpoint, bytes(tampered))
    assert general["calls"] == 1
    after = (sum(f.data == probe for f in w.b.frames), switch.stats["in_FRAME"], switch.drops["bad_mac"])
    assert after == (before[0] + 2, before[1] + 2, before[2] + 1)
    topo.get_path = get_path  # type: ignore[method-assign]

    # A frame too big for one datagram (head + fragment): put back together, it takes the
    # shortcut too (not the general _process_head), and a flipped bit in the fragment is
    # caught by the MAC there.
    captured.clear()
    big = _udp_frame(ip_a, ip_b, bytes(range(256)) * 6)  # 1,564-byte IP packet: two datagrams
    w.net.filter = lambda src, dst, data: (dst == w.b.endpoint and captured.append(data)) or True
    assert w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x0800, 0, big)
    assert w.net.run_until(lambda: any(f.data == big for f in w.b.frames), 5_000)
    w.net.filter = None
    pieces = next(captured[i : i + 2] for i in range(len(captured) - 1) if captured[i + 1][13] == 0xFF)
    assert len(pieces[0]) + len(pieces[1]) > len(big)  # head, then its fragment
    general_heads = {"calls": 0}
    process_head = switch._process_head

    def counting_process_head(*args: Any) -> Any:
        general_heads["calls"] += 1
        return process_head(*args)

    switch._process_head = counting_process_head  # type: ignore[method-assign]
    before = (sum(f.data == big for f in w.b.frames), switch.drops["bad_mac"])
    for piece in pieces:
        w.b.node.process_wire_packet(w.net.now, 0, w.a.endpoint, piece)
    bad_fragment = bytearray(pieces[1])
    bad_fragment[-1] ^= 0x80
    for piece in (pieces[0], bytes(bad_fragment)):
        w.b.node.process_wire_packet(w.net.now, 0, w.a.endpoint, piece)
    assert general_heads["calls"] == 0
    assert (sum(f.data == big for f in w.b.frames), switch.drops["bad_mac"]) == (before[0] + 1, before[1] + 1)

    # ARP request (broadcast) for b's IP becomes a multicast to b's ARP group.
    arp = _arp_request(mac_a, ip_a, ip_b)
    assert w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, BROADCAST_MAC, 0x0806, 0, arp)
    assert w.net.run_until(lambda: any(f.data == arp for f in w.b.frames), 5_000)
    # ...and is not delivered to a node whose IP was not asked for.
    assert not any(f.data == arp for f in w.ctl.frames)


def test_waiting_multicast_reaches_a_member_whose_like_arrives_later(
    identities: list[Identity], tmp_path: Path
) -> None:
    """As Multicaster::_add: a member added by a LIKE gets the multicasts still waiting for
    recipients at once (an ARP request sent before the target announced its ARP group is
    answered as soon as the announcement arrives, not at the next ARP retry)."""
    w = World(identities, tmp_path)
    w.ctl.node.join(w.nwid)
    w.b.node.join(w.nwid)
    w.authorize(w.ctl)
    w.authorize(w.b)
    assert w.net.run_until(lambda: w.status(w.ctl) == "OK" and w.status(w.b) == "OK", 70_000)
    group_mac = 0x01005E00007B
    mac_ctl = MAC.from_address(int(w.ctl.node.address), w.nwid)
    frame = _udp_frame(w.ipv4(w.ctl), ipaddress.IPv4Address("239.0.0.123"), b"waiting for members")
    # Nobody has announced the group yet: the frame waits (the gather finds no one).
    assert w.ctl.node.process_virtual_network_frame(w.net.now, w.nwid, mac_ctl, group_mac, 0x0800, 0, frame)
    w.net.run_for(1_000)
    assert not any(f.data == frame for f in w.b.frames)
    # b subscribes: its LIKE reaches the controller node, which sends b the waiting frame.
    w.b.node.multicast_subscribe(w.nwid, group_mac)
    assert w.net.run_until(lambda: any(f.data == frame for f in w.b.frames), 1_000)


def test_unauthorized_sender_is_refused(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    w.a.node.join(w.nwid)
    w.b.node.join(w.nwid)
    w.authorize(w.b)
    assert w.net.run_until(lambda: w.status(w.b) == "OK" and w.status(w.a) == "ACCESS_DENIED", 70_000)
    # a has no config, so it cannot even send.
    mac_a = w.mac(w.a)
    mac_b = w.mac(w.b)
    assert not w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x0800, 0, b"x" * 40)
    assert w.a.node.vl2.drops["no_configuration"] == 1


def test_deauthorize_cuts_member_off(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    w.join_authorized()
    ip_a, ip_b = w.ipv4(w.a), w.ipv4(w.b)
    mac_a = w.mac(w.a)
    mac_b = w.mac(w.b)
    first = _udp_frame(ip_a, ip_b, b"before")
    w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x0800, 0, first)
    assert w.net.run_until(lambda: any(f.data == first for f in w.b.frames), 5_000)

    w.authorize(w.a, False)  # revocations go out to every member
    w.net.run_for(2_000)
    later = _udp_frame(ip_a, ip_b, b"after")
    w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x0800, 0, later)
    w.net.run_for(5_000)
    assert not any(f.data == later for f in w.b.frames)
    assert w.b.node.vl2.drops["access_denied"] >= 1
    # a's next config request is refused.
    assert w.net.run_until(lambda: w.status(w.a) == "ACCESS_DENIED", 70_000)


def test_drop_rule_is_enforced_and_counted(identities: list[Identity], tmp_path: Path) -> None:
    rules = [
        {"type": "MATCH_IP_PROTOCOL", "not": False, "or": False, "ipProtocol": 17},
        {"type": "MATCH_IP_DEST_PORT_RANGE", "not": False, "or": False, "start": 6000, "end": 6000},
        {"type": "ACTION_DROP"},
        {"type": "ACTION_ACCEPT"},
    ]
    w = World(identities, tmp_path, rules=rules)
    w.join_authorized()
    ip_a, ip_b = w.ipv4(w.a), w.ipv4(w.b)
    mac_a = w.mac(w.a)
    mac_b = w.mac(w.b)
    blocked = _udp_frame(ip_a, ip_b, b"to port 6000")  # _udp_frame uses dest port 6000
    assert not w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x0800, 0, blocked)
    assert w.a.node.vl2.drops["filter_blocked_outbound"] == 1
    # Another ethertype passes the same table.
    other = b"\x00" * 46
    assert w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x88B5, 0, other)
    assert w.net.run_until(lambda: any(f.data == other for f in w.b.frames), 5_000)


def test_unknown_network_reports_not_found(identities: list[Identity], tmp_path: Path) -> None:
    w = World(identities, tmp_path)
    missing = (int(w.ctl.node.address) << 24) | 0xABCDEF
    w.a.node.join(missing)
    assert w.net.run_until(lambda: (w.a.node.network(missing) or {}).get("status") == "NOT_FOUND", 10_000)
    assert w.a.node.leave(missing)
    assert w.a.node.network(missing) is None
    assert not w.a.node.leave(missing)


def test_mutated_real_traffic_never_raises(identities: list[Identity], tmp_path: Path) -> None:
    """Capture every datagram of a full join + frame exchange, then replay thousands of
    mutated copies into every node: all must be dropped and counted, none may escape."""
    import random

    captured: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []
    w = World(identities, tmp_path)
    w.net.filter = lambda src, dst, data: captured.append((src, dst, data)) or True
    w.join_authorized()
    mac_a = w.mac(w.a)
    mac_b = w.mac(w.b)
    frame = _udp_frame(w.ipv4(w.a), w.ipv4(w.b), b"x" * 3000)  # large enough to fragment
    w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x0800, 0, frame)
    w.net.run_for(2_000)
    w.net.filter = None
    assert len(captured) > 20
    rng = random.Random(1234)
    hosts = {h.endpoint: h for h in (w.root, w.ctl, w.a, w.b)}
    for _ in range(4000):
        src, dst, data = rng.choice(captured)
        b = bytearray(data)
        op = rng.randrange(4)
        if op == 0 and b:
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1:
            b = b[: rng.randrange(len(b) + 1)]
        elif op == 2:
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        # op 3: replay unchanged (duplicates must be harmless)
        hosts[dst].node.process_wire_packet(w.net.now, 0, src, bytes(b))
        w.net.run_for(1)
    total_drops = 0
    for h in hosts.values():
        assert "internal_error" not in h.node.drops, h.node.drops
        total_drops += sum(h.node.drops.values()) + sum(h.node.vl2.drops.values())
    # Most mutations break the MAC; every one of those is a counted drop.
    assert total_drops >= 2000
    # Everyone still works.
    again = _udp_frame(w.ipv4(w.a), w.ipv4(w.b), b"still alive")
    w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x0800, 0, again)
    assert w.net.run_until(lambda: any(f.data == again for f in w.b.frames), 5_000)


def test_ndp_emulation_answers_solicitations_for_rfc4193_addresses(
    identities: list[Identity], tmp_path: Path
) -> None:
    """As the real core: an NS for another member's RFC4193 address is answered locally
    with a forged NA carrying that member's MAC (checked with scapy as an oracle)."""
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6

    w = World(identities, tmp_path)
    w.join_authorized()

    def v6(host: SimHost) -> ipaddress.IPv6Address:
        info = host.node.network(w.nwid)
        return next(ipaddress.ip_interface(a).ip for a in info["assignedAddresses"] if ":" in a)  # type: ignore[union-attr, return-value]

    mac_a = w.mac(w.a)
    mac_b = w.mac(w.b)
    target = v6(w.b)
    solicited = ipaddress.IPv6Address("ff02::1:ff00:0") + (int(target) & 0xFFFFFF)
    ns = (
        IPv6(src=str(v6(w.a)), dst=str(solicited), hlim=255)
        / ICMPv6ND_NS(tgt=str(target))
        / ICMPv6NDOptSrcLLAddr(lladdr=str(mac_a))
    )
    group_mac = 0x3333FF000000 | (int(target) & 0xFFFFFF)
    sent_before = w.a.node.vl2.stats["multicast_frames_out"] + w.a.node.vl2.stats["gathers_sent"]
    assert w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, group_mac, 0x86DD, 0, bytes(ns))
    na_frames = [f for f in w.a.frames if f.ethertype == 0x86DD and f.dest_mac == mac_a]
    assert len(na_frames) == 1 and na_frames[0].source_mac == mac_b
    pkt = IPv6(na_frames[0].data)
    na = pkt[ICMPv6ND_NA]
    assert str(na.tgt) == str(target) and na.S == 1 and na.O == 1
    assert str(pkt[ICMPv6NDOptDstLLAddr].lladdr) == str(mac_b)
    assert pkt.dst == str(v6(w.a)) and pkt.hlim == 255
    checksum = na.cksum
    del na.cksum
    assert IPv6(bytes(pkt))[ICMPv6ND_NA].cksum == checksum  # scapy recomputes the same checksum
    # Nothing went out on the wire for it.
    assert w.a.node.vl2.stats["multicast_frames_out"] + w.a.node.vl2.stats["gathers_sent"] == sent_before
    assert w.a.node.vl2.stats["ndp_emulated"] == 1


def test_direct_paths_are_pushed_to_trusted_peers(identities: list[Identity], tmp_path: Path) -> None:
    """Once two members trust each other (frames with valid COMs), each tells the other
    the addresses it knows it can be reached at (PUSH_DIRECT_PATHS), which get tried."""
    from ztcore.vl1.inetaddress import InetAddress

    w = World(identities, tmp_path)
    w.a.node.set_direct_paths([InetAddress.parse("10.0.1.2/40000")])
    w.join_authorized()
    mac_a = w.mac(w.a)
    mac_b = w.mac(w.b)
    tried: list[tuple[str, int]] = []
    w.net.filter = lambda src, dst, data: tried.append(dst) or True
    for i in range(2):
        frame = _udp_frame(w.ipv4(w.a), w.ipv4(w.b), bytes([i]) * 10)
        w.a.node.process_virtual_network_frame(w.net.now, w.nwid, mac_a, mac_b, 0x0800, 0, frame)
        back = _udp_frame(w.ipv4(w.b), w.ipv4(w.a), bytes([i]) * 10)
        w.b.node.process_virtual_network_frame(w.net.now, w.nwid, mac_b, mac_a, 0x0800, 0, back)
        w.net.run_for(500)
    assert w.b.node.switch.stats["in_PUSH_DIRECT_PATHS"] >= 1
    assert ("10.0.1.2", 40000) in tried  # b tried the pushed address
