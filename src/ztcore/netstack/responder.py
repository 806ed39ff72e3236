"""A sans-I/O IP endpoint for a node on a ZeroTier virtual network.

Without a TAP device the node still has to answer ARP and neighbour
solicitations for its assigned addresses, answer pings, and give the
application UDP and TCP (``self.tcp``, see ``ztcore.netstack.sockets``). ``Responder`` does that frame-in / frame-out: the caller
feeds it every Ethernet frame the network delivers (``handle_frame``) and
it emits frames through the ``send_frame`` callback. Time only enters as the
``now`` (ms) arguments; ``expire(now)`` drives neighbour-cache ageing,
re-solicitation and timeouts.

Scope, on purpose: every destination is treated as on-link (no gateways),
no IPv4 options in output, no multicast UDP reception, no MLD. UDP and ICMP
datagrams larger than the MTU are fragmented, and fragments reassembled
(``ztcore.netstack.ip``). Bad frames are
dropped and counted in ``counters`` by reason; ``handle_frame`` never raises.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ztcore.errors import InvalidFormatError, report_unexpected
from ztcore.netstack import frames as f
from ztcore.netstack.ip import Reassembler, fragment_ipv4, fragment_ipv6
from ztcore.netstack.sockets import TcpEndpoints
from ztcore.netstack.tcpwire import IPPROTO_TCP, parse_tcp
from ztcore.netstack.udp import Address, VirtualUdpSocket

log = logging.getLogger(__name__)

SendFrame = Callable[[int, int, int, bytes], None]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

DEFAULT_MTU = 2800  # ZeroTier's default virtual network MTU (ZT_DEFAULT_MTU)
IP_TTL = 64
NDP_HOP_LIMIT = 255  # RFC 4861: NDP is only valid (and only sent) with hop limit 255
NEIGHBOUR_TTL_MS = 300_000
RESOLVE_RETRY_MS = 1_000
RESOLVE_TIMEOUT_MS = 3_000
PENDING_QUEUE_LIMIT = 32  # packets waiting on one unresolved neighbour
DEFAULT_PING_TIMEOUT_MS = 5_000
DEFAULT_PING_PAYLOAD = bytes(range(0x10, 0x10 + 48))
EPHEMERAL_PORT_FIRST = 49152
EPHEMERAL_PORT_LAST = 65535
MAX_UDP_PAYLOAD = 65507  # 65535 minus the IPv4 and UDP headers (IPv6 would allow 65527)

_V4_LIMITED_BROADCAST = b"\xff\xff\xff\xff"
_ECHO_TYPES = (f.ICMP_ECHO_REQUEST, f.ICMP_ECHO_REPLY)
_SOURCE_CACHE_LIMIT = 1024  # destinations whose source address is remembered

# Address conversions on the per-datagram path, cached: ipaddress objects are immutable,
# and a socket talks to few peers (bad input still raises, and is not cached).
_parse_ip_cached = functools.lru_cache(maxsize=1024, typed=True)(ipaddress.ip_address)


def _parse_ip(host: object) -> IPAddress:
    try:
        return _parse_ip_cached(host)
    except TypeError:  # unhashable: let ipaddress say what is wrong with it
        return ipaddress.ip_address(host)


@functools.lru_cache(maxsize=1024)
def _ip_text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


@dataclass(eq=False)
class PingHandle:
    """One ICMP / ICMPv6 echo request in flight.

    ``done`` becomes True when a reply arrives (``reply_time`` is then the
    round trip in ms) or when it fails (``reply_time`` None, ``error`` is
    "timeout" or "unreachable"). ``on_reply`` is called once with the handle
    when it completes either way.
    """

    dest: IPAddress
    ident: int
    seq: int
    payload: bytes
    sent_at: int
    deadline: int
    reply_time: int | None = None
    done: bool = False
    error: str | None = None
    on_reply: Callable[[PingHandle], None] | None = field(default=None, repr=False)


@dataclass(eq=False)
class _Pending:
    """Packets waiting for a neighbour's MAC, and the resolution's timers."""

    source: bytes  # our address used in the ARP request / NS
    deadline: int
    next_solicit: int
    packets: list[tuple[int, bytes, PingHandle | None]] = field(default_factory=list)


class Responder:
    """ARP, ICMP echo, NDP, ICMPv6 echo and UDP for one node on one network."""

    def __init__(self, mac: int, send_frame: SendFrame, *, mtu: int = DEFAULT_MTU) -> None:
        if not 0 <= mac <= 0xFFFFFFFFFFFF or f.is_multicast_mac(mac):
            raise ValueError("mac must be a 48-bit unicast MAC address")
        self.mac = mac
        self.mtu = mtu
        self._enabled = True
        # Called after the addresses, the MTU or `enabled` change (the runtime then updates
        # the node's ICMP echo offload, which answers for these addresses: ztcore.lane).
        self.on_change: Callable[[], None] | None = None
        self.counters: Counter[str] = Counter()
        self._send_frame = send_frame
        self._now = 0
        self._v4: dict[bytes, ipaddress.IPv4Interface] = {}
        self._v6: dict[bytes, ipaddress.IPv6Interface] = {}
        self._sources: dict[IPAddress, bytes] = {}  # destination -> our address for it
        self._ping_routes: dict[str, tuple[IPAddress, bytes, bytes]] = {}  # text -> (dest, source, packed)
        self._v4_broadcasts: set[bytes] = set()
        self._v6_solicited: set[bytes] = set()
        self._accepted_multicast_macs: set[int] = set()
        self._neighbours: dict[bytes, tuple[int, int]] = {}  # ip -> (mac, expires at)
        self._pending: dict[bytes, _Pending] = {}
        self._pings: dict[tuple[bytes, int, int], PingHandle] = {}
        self._completed_pings: list[PingHandle] = []
        self._sockets: dict[tuple[bool, int], VirtualUdpSocket] = {}
        self._ip_ident = 0
        self._ping_ident = 0
        self._next_ephemeral = EPHEMERAL_PORT_FIRST
        self._frag_ident = 0
        self.reassembler = Reassembler()
        self.tcp = TcpEndpoints(self._tcp_output, is_local=self._is_local, mtu=mtu)

    def close(self, error: OSError) -> None:
        """The network is gone: end TCP connections with ``error``, close UDP sockets."""
        self.tcp.close_all(error)
        for sock in list(self._sockets.values()):
            sock.close()

    @property
    def enabled(self) -> bool:
        """False: every frame is ignored (the host's own stack answers on this network)."""
        return self._enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self._enabled = bool(on)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def set_mtu(self, mtu: int) -> None:
        self.mtu = mtu
        self.tcp.mtu = mtu
        self._changed()

    # --- configuration ---------------------------------------------------------------------------

    def set_addresses(self, addresses: Iterable[Interface]) -> None:
        """Replace the node's assigned addresses (with prefix) on this network."""
        v4: dict[bytes, ipaddress.IPv4Interface] = {}
        v6: dict[bytes, ipaddress.IPv6Interface] = {}
        for a in addresses:
            if isinstance(a, ipaddress.IPv4Interface):
                v4[a.ip.packed] = a
            elif isinstance(a, ipaddress.IPv6Interface):
                v6[a.ip.packed] = a
            else:
                raise TypeError(f"expected an IPv4Interface or IPv6Interface, got {a!r}")
        self._v4, self._v6 = v4, v6
        self._sources = {}
        self._ping_routes = {}
        self._v4_broadcasts = {
            a.network.broadcast_address.packed for a in v4.values() if a.network.prefixlen < 31
        }
        self._v6_solicited = {f.solicited_node_address(ip) for ip in v6}
        self._accepted_multicast_macs = {f.ipv6_multicast_mac(s) for s in self._v6_solicited}
        if v6:
            self._accepted_multicast_macs.add(f.IPV6_ALL_NODES_MAC)
        self._changed()

    @property
    def addresses(self) -> list[Interface]:
        return [*self._v4.values(), *self._v6.values()]

    def multicast_groups(self) -> list[tuple[int, int]]:
        """(MAC, ADI) groups to subscribe to so address resolution reaches us.

        As the real core does for a tap's IPs: IPv4 uses the broadcast MAC
        with the address itself as ADI (how ZeroTier turns ARP broadcasts
        into targeted multicasts), IPv6 the solicited-node MAC 33:33:ff plus
        the address's low 24 bits, ADI 0.
        """
        groups = {(f.BROADCAST_MAC, int.from_bytes(ip, "big")) for ip in self._v4}
        groups |= {(0x3333FF000000 | int.from_bytes(ip[13:], "big"), 0) for ip in self._v6}
        return sorted(groups)

    def neighbours(self) -> dict[IPAddress, int]:
        """Snapshot of the neighbour cache: IP -> MAC."""
        return {ipaddress.ip_address(ip): mac for ip, (mac, _) in self._neighbours.items()}

    # --- frame input -----------------------------------------------------------------------------

    def handle_frame(self, source_mac: int, dest_mac: int, ethertype: int, payload: bytes, now: int) -> bool:
        """Process one frame from the network. True if the stack consumed it
        (answered, delivered or learned from it); False if ignored or dropped
        (see ``counters``). Never raises on bad input."""
        if not self._enabled:
            return False
        self._now = now
        try:
            payload = bytes(payload)
            if source_mac == self.mac:
                self.counters["own_frame"] += 1
                return False
            if f.is_multicast_mac(source_mac):
                self.counters["bad_source"] += 1
                return False
            if (
                dest_mac != self.mac
                and dest_mac != f.BROADCAST_MAC
                and dest_mac not in self._accepted_multicast_macs
            ):
                self.counters["not_for_us"] += 1
                return False
            if ethertype == f.ETHERTYPE_IPV4:  # most frames: no second dispatch
                return self._input_ipv4(source_mac, payload, now)
            return self._dispatch(source_mac, ethertype, payload, now)
        except f.ChecksumError:
            self.counters["bad_checksum"] += 1
        except InvalidFormatError:
            self.counters["malformed"] += 1
        except Exception as e:
            # Network input must never take the node down; a hit here is a bug.
            report_unexpected(log, "netstack: handling a frame", e)
            self.counters["internal_error"] += 1
        return False

    def _dispatch(self, source_mac: int, ethertype: int, payload: bytes, now: int) -> bool:
        if ethertype == f.ETHERTYPE_IPV4:
            return self._input_ipv4(source_mac, payload, now)
        if ethertype == f.ETHERTYPE_IPV6:
            return self._input_ipv6(source_mac, payload, now)
        if ethertype == f.ETHERTYPE_ARP:
            return self._input_arp(source_mac, payload, now)
        self.counters["vlan" if ethertype == f.ETHERTYPE_VLAN else "unsupported_ethertype"] += 1
        return False

    def _input_arp(self, source_mac: int, payload: bytes, now: int) -> bool:
        arp = f.parse_arp(payload)
        if arp.sender_ip in self._v4:
            self.counters["address_conflict"] += 1
            return False
        if arp.op == f.ARP_REQUEST:
            if arp.target_ip not in self._v4:
                # RFC 826: still refresh an entry we already have for the sender.
                if arp.sender_ip in self._neighbours:
                    self._learn(arp.sender_ip, arp.sender_mac, now)
                self.counters["not_for_us"] += 1
                return False
            # 0.0.0.0 is an RFC 5227 probe: answer it, but there is nothing to learn.
            if arp.sender_ip != bytes(4):
                self._learn(arp.sender_ip, arp.sender_mac, now)
            reply_to = (
                source_mac if f.is_multicast_mac(arp.sender_mac) or not arp.sender_mac else arp.sender_mac
            )
            reply = f.build_arp(f.ARP_REPLY, self.mac, arp.target_ip, arp.sender_mac, arp.sender_ip)
            self._emit(reply_to, f.ETHERTYPE_ARP, reply)
            return True
        if arp.op == f.ARP_REPLY:
            if (
                arp.sender_ip in self._pending
                or arp.sender_ip in self._neighbours
                or arp.target_ip in self._v4
            ):
                return self._learn(arp.sender_ip, arp.sender_mac, now)
            self.counters["not_for_us"] += 1
            return False
        self.counters["unsupported_arp_op"] += 1
        return False

    def _input_ipv4(self, source_mac: int, payload: bytes, now: int) -> bool:
        if (
            len(payload) >= 28
            and payload[0] == 0x45  # no IP options
            and payload[9] == f.IPPROTO_ICMP
            and payload[20] in _ECHO_TYPES
            and payload[21] == 0
            and not payload[6] & 0x3F
            and not payload[7]  # neither more fragments nor an offset
            and payload[12] < 224
            and payload[16:20] in self._v4
        ):
            return self._input_icmp_echo(source_mac, payload, now)
        pkt = f.parse_ipv4(payload)
        unicast = pkt.dst in self._v4
        if pkt.is_fragment:
            if not unicast:
                self.counters["not_for_us"] += 1
                return False
            whole = self.reassembler.add_ipv4(pkt, now)
            if whole is None:
                return True  # kept for reassembly (or counted as dropped there)
            pkt = pkt._replace(flags_fragment=0, payload=whole)
        if not unicast and pkt.dst != _V4_LIMITED_BROADCAST and pkt.dst not in self._v4_broadcasts:
            self.counters["not_for_us"] += 1
            return False
        if pkt.src[0] >= 224:  # multicast, reserved or broadcast: never a valid source
            self.counters["bad_source"] += 1
            return False
        if pkt.protocol == f.IPPROTO_UDP:
            d = f.parse_udp(pkt.src, pkt.dst, pkt.payload)
            return self._deliver_udp(False, pkt.src, d)
        if pkt.protocol == IPPROTO_TCP:
            if not unicast:
                self.counters["not_for_us"] += 1
                return False
            return self._input_tcp(source_mac, pkt.src, pkt.dst, pkt.payload, now)
        if pkt.protocol == f.IPPROTO_ICMP:
            icmp = f.parse_icmp_echo(pkt.payload)
            if icmp.type == f.ICMP_ECHO_REQUEST and icmp.code == 0:
                if not unicast:
                    self.counters["broadcast_echo_ignored"] += 1
                    return False
                return self._answer_echo(source_mac, pkt.dst, pkt.src, icmp.ident, icmp.seq, icmp.data)
            if icmp.type == f.ICMP_ECHO_REPLY and icmp.code == 0 and unicast:
                return self._echo_reply(pkt.src, icmp.ident, icmp.seq, now)
            self.counters["unsupported_icmp"] += 1
            return False
        self.counters["unsupported_protocol"] += 1
        return False

    def _input_icmp_echo(self, source_mac: int, p: bytes, now: int) -> bool:
        """An ICMP echo request or reply to one of our addresses, whole and without IP
        options (what every ping sends): the checks and the reply of the general path
        (`_input_ipv4`), in a few steps, because ping is how round trips are measured."""
        total = (p[2] << 8) | p[3]
        if total < 28 or total > len(p):
            raise InvalidFormatError("bad IPv4 header or total length")
        if not f.checksum_valid(p[:20]):
            raise f.ChecksumError("IPv4 header checksum")
        icmp = p[20:total]
        if not f.checksum_valid(icmp):
            raise f.ChecksumError("ICMP checksum")
        ident, seq = (icmp[4] << 8) | icmp[5], (icmp[6] << 8) | icmp[7]
        if icmp[0] == f.ICMP_ECHO_REPLY:
            return self._echo_reply(p[12:16], ident, seq, now)
        return self._answer_echo(source_mac, p[16:20], p[12:16], ident, seq, icmp[8:])

    def _answer_echo(
        self, source_mac: int, ours: bytes, theirs: bytes, ident: int, seq: int, data: bytes
    ) -> bool:
        """Send the ICMP echo reply (fragmented if the MTU asks for it)."""
        reply = f.build_icmp_echo(f.ICMP_ECHO_REPLY, ident, seq, data)
        for packet in fragment_ipv4(ours, theirs, f.IPPROTO_ICMP, reply, self.mtu, self._next_ip_ident()):
            self._emit(source_mac, f.ETHERTYPE_IPV4, packet)
        return True

    def _input_ipv6(self, source_mac: int, payload: bytes, now: int) -> bool:
        pkt = f.parse_ipv6(payload)
        unicast = pkt.dst in self._v6
        if pkt.next_header == f.IPPROTO_IPV6_FRAGMENT:
            if not unicast:
                self.counters["not_for_us"] += 1
                return False
            whole = self.reassembler.add_ipv6(pkt.src, pkt.dst, pkt.payload, now)
            if whole is None:
                return True
            pkt = pkt._replace(next_header=whole[0], payload=whole[1])
        if not unicast and pkt.dst != f.IPV6_ALL_NODES and pkt.dst not in self._v6_solicited:
            self.counters["not_for_us"] += 1
            return False
        if pkt.src[0] == 0xFF:
            self.counters["bad_source"] += 1
            return False
        if pkt.next_header == f.IPPROTO_UDP:
            if not unicast:
                self.counters["not_for_us"] += 1
                return False
            d = f.parse_udp(pkt.src, pkt.dst, pkt.payload)
            return self._deliver_udp(True, pkt.src, d)
        if pkt.next_header == IPPROTO_TCP:
            if not unicast:
                self.counters["not_for_us"] += 1
                return False
            return self._input_tcp(source_mac, pkt.src, pkt.dst, pkt.payload, now)
        if pkt.next_header != f.IPPROTO_ICMPV6:
            self.counters["unsupported_protocol"] += 1
            return False
        type_, code, body = f.verify_icmpv6(pkt.src, pkt.dst, pkt.payload)
        if type_ == f.ICMPV6_NEIGHBOR_SOLICITATION:
            return self._input_ns(source_mac, pkt, code, body, now)
        if type_ == f.ICMPV6_NEIGHBOR_ADVERTISEMENT:
            return self._input_na(source_mac, pkt, code, body, now)
        if type_ == f.ICMPV6_ECHO_REQUEST and code == 0:
            if not unicast:
                self.counters["multicast_echo_ignored"] += 1
                return False
            ident, seq, data = f.parse_icmpv6_echo_body(body)
            reply = f.build_icmpv6_echo(pkt.dst, pkt.src, f.ICMPV6_ECHO_REPLY, ident, seq, data)
            for packet in fragment_ipv6(
                pkt.dst, pkt.src, f.IPPROTO_ICMPV6, reply, self.mtu, self._next_frag_ident()
            ):
                self._emit(source_mac, f.ETHERTYPE_IPV6, packet)
            return True
        if type_ == f.ICMPV6_ECHO_REPLY and code == 0 and unicast:
            ident, seq, _ = f.parse_icmpv6_echo_body(body)
            return self._echo_reply(pkt.src, ident, seq, now)
        self.counters["unsupported_icmp"] += 1
        return False

    def _input_ns(self, source_mac: int, pkt: f.Ipv6Packet, code: int, body: bytes, now: int) -> bool:
        # RFC 4861 7.1.1 validity checks.
        if pkt.hop_limit != NDP_HOP_LIMIT or code != 0:
            self.counters["ndp_invalid"] += 1
            return False
        ns = f.parse_ndp(f.ICMPV6_NEIGHBOR_SOLICITATION, body)
        dad = pkt.src == f.IPV6_UNSPECIFIED
        if ns.target[0] == 0xFF or (dad and (pkt.dst not in self._v6_solicited or ns.link_layer is not None)):
            self.counters["ndp_invalid"] += 1
            return False
        if ns.target not in self._v6:
            self.counters["not_for_us"] += 1
            return False
        if dad:
            # Someone probing our address: defend it to all nodes, not solicited (RFC 4861 7.2.4).
            na = f.build_ndp_na(ns.target, f.IPV6_ALL_NODES, ns.target, self.mac, f.NA_FLAG_OVERRIDE)
            dest_ip, dest_mac = f.IPV6_ALL_NODES, f.IPV6_ALL_NODES_MAC
        else:
            if ns.link_layer is not None:
                self._learn(pkt.src, ns.link_layer, now)
            na = f.build_ndp_na(
                ns.target, pkt.src, ns.target, self.mac, f.NA_FLAG_SOLICITED | f.NA_FLAG_OVERRIDE
            )
            dest_ip = pkt.src
            lladdr = ns.link_layer
            dest_mac = lladdr if lladdr is not None and not f.is_multicast_mac(lladdr) else source_mac
        self._emit(
            dest_mac,
            f.ETHERTYPE_IPV6,
            f.build_ipv6(ns.target, dest_ip, f.IPPROTO_ICMPV6, na, hop_limit=NDP_HOP_LIMIT),
        )
        return True

    def _input_na(self, source_mac: int, pkt: f.Ipv6Packet, code: int, body: bytes, now: int) -> bool:
        # RFC 4861 7.1.2 validity checks.
        if pkt.hop_limit != NDP_HOP_LIMIT or code != 0:
            self.counters["ndp_invalid"] += 1
            return False
        na = f.parse_ndp(f.ICMPV6_NEIGHBOR_ADVERTISEMENT, body)
        if na.target[0] == 0xFF or (pkt.dst[0] == 0xFF and na.flags & f.NA_FLAG_SOLICITED):
            self.counters["ndp_invalid"] += 1
            return False
        if na.target in self._v6:
            self.counters["address_conflict"] += 1
            return False
        if na.target not in self._pending and na.target not in self._neighbours:
            # Unsolicited news about a neighbour we never asked for: nothing to update.
            self.counters["not_for_us"] += 1
            return False
        return self._learn(na.target, na.link_layer if na.link_layer is not None else source_mac, now)

    # --- neighbours ------------------------------------------------------------------------------

    def _input_tcp(self, source_mac: int, src: bytes, dst: bytes, payload: bytes, now: int) -> bool:
        seg = parse_tcp(src, dst, payload)
        # Upper-layer reachability confirmation (RFC 4861 7.3.1): a live TCP exchange keeps
        # the neighbour entry fresh, so a long transfer does not stall on re-resolution.
        entry = self._neighbours.get(src)
        if entry is not None and entry[0] == source_mac:
            self._neighbours[src] = (source_mac, now + NEIGHBOUR_TTL_MS)
        return self.tcp.input(src, dst, seg, now)

    def _learn(self, ip: bytes, mac: int, now: int) -> bool:
        """Record ip -> mac and release packets waiting on it; False if the MAC is unusable."""
        if mac == 0 or f.is_multicast_mac(mac) or mac == self.mac:
            self.counters["bad_link_layer_address"] += 1
            return False
        self._neighbours[ip] = (mac, now + NEIGHBOUR_TTL_MS)
        pending = self._pending.pop(ip, None)
        if pending is not None:
            for ethertype, packet, _ in pending.packets:
                self._emit(mac, ethertype, packet)
        return True

    def _lookup_mac(self, ip: bytes, now: int) -> int | None:
        if len(ip) == 4:
            if ip in self._v4:
                return self.mac
            if ip == _V4_LIMITED_BROADCAST or ip in self._v4_broadcasts:
                return f.BROADCAST_MAC
            if 224 <= ip[0] <= 239:
                return f.ipv4_multicast_mac(ip)
        else:
            if ip in self._v6:
                return self.mac
            if ip[0] == 0xFF:
                return f.ipv6_multicast_mac(ip)
        entry = self._neighbours.get(ip)
        if entry is not None and entry[1] > now:
            return entry[0]
        return None

    def _solicit(self, target: bytes, source: bytes) -> None:
        if len(target) == 4:
            req = f.build_arp(f.ARP_REQUEST, self.mac, source, 0, target)
            # Sent to broadcast; the ZeroTier switch turns it into a multicast
            # to (ff:ff:ff:ff:ff:ff, ADI = target IP).
            self._send_frame(f.BROADCAST_MAC, self.mac, f.ETHERTYPE_ARP, req)
        else:
            group = f.solicited_node_address(target)
            ns = f.build_ndp_ns(source, group, target, self.mac)
            self._send_frame(
                f.ipv6_multicast_mac(group),
                self.mac,
                f.ETHERTYPE_IPV6,
                f.build_ipv6(source, group, f.IPPROTO_ICMPV6, ns, hop_limit=NDP_HOP_LIMIT),
            )

    # --- output ----------------------------------------------------------------------------------

    def _emit(self, dest_mac: int, ethertype: int, packet: bytes) -> None:
        if dest_mac == self.mac:
            # Traffic to one of our own addresses never touches the network.
            self._dispatch(self.mac, ethertype, packet, self._now)
        else:
            self._send_frame(dest_mac, self.mac, ethertype, packet)

    def _next_ip_ident(self) -> int:
        self._ip_ident = (self._ip_ident + 1) & 0xFFFF
        return self._ip_ident

    def _next_frag_ident(self) -> int:
        self._frag_ident = (self._frag_ident + 1) & 0xFFFFFFFF
        return self._frag_ident

    def _is_local(self, ip: bytes) -> bool:
        return ip in self._v4 or ip in self._v6

    def _tcp_output(self, src: bytes, dst: bytes, segment: bytes) -> None:
        ethertype, packet = self._build_ip(src, dst, IPPROTO_TCP, segment)
        self._now = max(self._now, self.tcp.now)  # application calls carry the time too
        self._transmit(dst, src, ethertype, packet, self._now)

    def _transmit_fragmented(
        self, src: bytes, dst: bytes, protocol: int, payload: bytes, now: int, ping: PingHandle | None = None
    ) -> None:
        """Send an upper-layer datagram, in fragments if it exceeds the MTU."""
        if len(src) == 4:
            packets = fragment_ipv4(src, dst, protocol, payload, self.mtu, self._next_ip_ident())
            ethertype = f.ETHERTYPE_IPV4
        else:
            packets = fragment_ipv6(src, dst, protocol, payload, self.mtu, self._next_frag_ident())
            ethertype = f.ETHERTYPE_IPV6
        for packet in packets:
            self._transmit(dst, src, ethertype, packet, now, ping)

    def _source_for(self, dest: IPAddress) -> bytes:
        """Our address on the destination's subnet, else the first of its family."""
        src = self._sources.get(dest)
        if src is not None:
            return src
        table: dict = self._v4 if dest.version == 4 else self._v6
        for ip, iface in table.items():
            if dest in iface.network:
                src = ip
                break
        else:
            if not table:
                raise OSError(errno.ENETUNREACH, f"no IPv{dest.version} address on this network")
            src = next(iter(table))
        if len(self._sources) >= _SOURCE_CACHE_LIMIT:
            self._sources.clear()
        self._sources[dest] = src
        return src

    def _check_size(self, dest: IPAddress, upper_len: int) -> None:
        size = upper_len + (20 if dest.version == 4 else 0)
        if size > 0xFFFF:
            raise OSError(errno.EMSGSIZE, f"{upper_len}-byte datagram exceeds what IP can carry")

    def _build_ip(self, src: bytes, dst: bytes, protocol: int, payload: bytes) -> tuple[int, bytes]:
        if len(src) == 4:
            packet = f.build_ipv4(src, dst, protocol, payload, ident=self._next_ip_ident())
            ethertype = f.ETHERTYPE_IPV4
        else:
            packet = f.build_ipv6(src, dst, protocol, payload)
            ethertype = f.ETHERTYPE_IPV6
        return ethertype, packet

    def _transmit(
        self, dst: bytes, src: bytes, ethertype: int, packet: bytes, now: int, ping: PingHandle | None = None
    ) -> None:
        mac = self._lookup_mac(dst, now)
        if mac is not None:
            self._emit(mac, ethertype, packet)
            return
        pending = self._pending.get(dst)
        if pending is None:
            pending = _Pending(src, now + RESOLVE_TIMEOUT_MS, now + RESOLVE_RETRY_MS)
            self._pending[dst] = pending
            self._solicit(dst, src)
        if len(pending.packets) >= PENDING_QUEUE_LIMIT:
            _, _, old_ping = pending.packets.pop(0)
            self.counters["queue_overflow"] += 1
            if old_ping is not None:
                self._fail_ping(old_ping, "unreachable")
        pending.packets.append((ethertype, packet, ping))

    # --- ping ------------------------------------------------------------------------------------

    def ping(
        self,
        dest_ip: str | IPAddress,
        now: int,
        *,
        ident: int | None = None,
        seq: int = 0,
        payload: bytes = DEFAULT_PING_PAYLOAD,
        timeout: int = DEFAULT_PING_TIMEOUT_MS,
        on_reply: Callable[[PingHandle], None] | None = None,
    ) -> PingHandle:
        """Send an ICMP (IPv4) or ICMPv6 echo request; resolve the MAC first
        if needed. Poll the handle, ``ping_results()``, or pass ``on_reply``."""
        self._now = now
        # A destination given as text is looked up once (parsed, and our source address
        # for it chosen) until the addresses change: pings repeat, and ipaddress objects
        # are slow to hash and convert.
        route = self._ping_routes.get(dest_ip) if type(dest_ip) is str else None
        dest = _parse_ip(dest_ip) if route is None else route[0]
        if ident is None:
            self._ping_ident = (self._ping_ident + 1) & 0xFFFF
            ident = self._ping_ident
        if not (0 <= ident <= 0xFFFF and 0 <= seq <= 0xFFFF):
            raise ValueError("ident and seq must be 16-bit")
        self._check_size(dest, 8 + len(payload))
        if route is None:
            route = (dest, self._source_for(dest), dest.packed)
            if type(dest_ip) is str:
                if len(self._ping_routes) >= _SOURCE_CACHE_LIMIT:
                    self._ping_routes.clear()
                self._ping_routes[dest_ip] = route
        _, src, dst = route
        handle = PingHandle(dest, ident, seq, bytes(payload), now, now + timeout, on_reply=on_reply)
        old = self._pings.get((dst, ident, seq))
        if old is not None:
            self._fail_ping(old, "superseded")
        self._pings[(dst, ident, seq)] = handle
        if len(dst) == 4:
            msg = f.build_icmp_echo(f.ICMP_ECHO_REQUEST, ident, seq, payload)
            self._transmit_fragmented(src, dst, f.IPPROTO_ICMP, msg, now, handle)
        else:
            msg = f.build_icmpv6_echo(src, dst, f.ICMPV6_ECHO_REQUEST, ident, seq, payload)
            self._transmit_fragmented(src, dst, f.IPPROTO_ICMPV6, msg, now, handle)
        return handle

    def ping_results(self) -> list[PingHandle]:
        """Pings completed (replied or failed) since the last call."""
        done, self._completed_pings = self._completed_pings, []
        return done

    def _echo_reply(self, src: bytes, ident: int, seq: int, now: int) -> bool:
        handle = self._pings.pop((src, ident, seq), None)
        if handle is None:
            self.counters["unexpected_echo_reply"] += 1
            return False
        handle.reply_time = max(0, now - handle.sent_at)
        self._complete_ping(handle)
        return True

    def _fail_ping(self, handle: PingHandle, error: str) -> None:
        if handle.done:
            return
        key = (handle.dest.packed, handle.ident, handle.seq)
        if self._pings.get(key) is handle:
            del self._pings[key]
        handle.error = error
        self._complete_ping(handle)

    def _complete_ping(self, handle: PingHandle) -> None:
        handle.done = True
        self._completed_pings.append(handle)
        if handle.on_reply is not None:
            try:
                handle.on_reply(handle)
            except Exception as e:
                self.counters["callback_error"] += 1
                report_unexpected(log, "netstack: ping on_reply callback", e)

    # --- timers ----------------------------------------------------------------------------------

    def expire(self, now: int) -> None:
        """Age the neighbour cache, re-solicit or give up on unresolved
        neighbours (dropping their queued packets) and time out pings."""
        self._now = now
        for ip in [ip for ip, (_, exp) in self._neighbours.items() if exp <= now]:
            del self._neighbours[ip]
        for dst, pending in list(self._pending.items()):
            if now >= pending.deadline:
                del self._pending[dst]
                for _, _, ping in pending.packets:
                    self.counters["resolution_timeout"] += 1
                    if ping is not None:
                        self._fail_ping(ping, "unreachable")
            elif now >= pending.next_solicit:
                pending.next_solicit = now + RESOLVE_RETRY_MS
                self._solicit(dst, pending.source)
        for handle in [h for h in self._pings.values() if now >= h.deadline]:
            self._fail_ping(handle, "timeout")
        self.reassembler.expire(now)
        self.tcp.expire(now)

    # --- UDP -------------------------------------------------------------------------------------

    def udp_socket(self, port: int = 0, *, v6: bool = False) -> VirtualUdpSocket:
        """Bind a UDP port (0: the next free ephemeral one) for IPv4 or IPv6."""
        if port == 0:
            port = self._free_ephemeral_port(v6)
        elif not 0 < port <= 0xFFFF:
            raise ValueError("port must be 0..65535")
        elif (v6, port) in self._sockets:
            raise OSError(errno.EADDRINUSE, f"UDP port {port} already bound")
        sock = VirtualUdpSocket(self, port, v6)
        self._sockets[(v6, port)] = sock
        return sock

    def _free_ephemeral_port(self, v6: bool) -> int:
        span = EPHEMERAL_PORT_LAST - EPHEMERAL_PORT_FIRST + 1
        for _ in range(span):
            port = self._next_ephemeral
            self._next_ephemeral = port + 1 if port < EPHEMERAL_PORT_LAST else EPHEMERAL_PORT_FIRST
            if (v6, port) not in self._sockets:
                return port
        raise OSError(errno.EADDRINUSE, "no free ephemeral UDP port")

    def _deliver_udp(self, v6: bool, src: bytes, d: f.UdpDatagram) -> bool:
        sock = self._sockets.get((v6, d.dest_port))
        if sock is None:
            self.counters["udp_no_socket"] += 1
            return False
        if not sock._deliver(d.payload, (_ip_text(src), d.source_port)):
            self.counters["udp_queue_full"] += 1
            return False
        return True

    def _udp_send(self, sock: VirtualUdpSocket, data: bytes, addr: Address, now: int | None) -> None:
        if now is None:
            now = self._now
        else:
            self._now = now
        host, port = addr
        dest = _parse_ip(host)
        if (dest.version == 6) != sock.v6:
            raise OSError(errno.EAFNOSUPPORT, f"IPv{dest.version} destination on a {sock!r}")
        if not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, f"bad destination port {port}")
        self._check_size(dest, 8 + len(data))
        src = self._source_for(dest)
        dst = dest.packed
        if len(dst) == 4 and 28 + len(data) <= self.mtu:  # most datagrams: one packet, in one call
            packet = f.build_udp_ipv4(src, dst, sock.port, port, self._next_ip_ident(), 64, data)
            self._transmit(dst, src, f.ETHERTYPE_IPV4, packet, now)
            return
        udp = f.build_udp(src, dst, sock.port, port, data)
        self._transmit_fragmented(src, dst, f.IPPROTO_UDP, udp, now)

    def _udp_close(self, sock: VirtualUdpSocket) -> None:
        if self._sockets.get((sock.v6, sock.port)) is sock:
            del self._sockets[(sock.v6, sock.port)]

    def _udp_local_ip(self, v6: bool) -> str:
        table: dict = self._v6 if v6 else self._v4
        if table:
            return str(ipaddress.ip_address(next(iter(table))))
        return "::" if v6 else "0.0.0.0"
