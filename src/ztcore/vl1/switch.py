"""VL1 packet switching: everything that happens to a wire packet between the
UDP socket and a verb handler, and to an outgoing message between the caller and
the wire (ZeroTier's Switch plus the VL1 half of IncomingPacket).

Inbound: fragment reassembly, relaying for others (roots), authentication
(dearmor with the peer's key), HELLO / OK / ERROR / WHOIS / RENDEZVOUS / ECHO /
PUSH_DIRECT_PATHS / USER_MESSAGE / NOP, path learning, and hand-off of VL2 verbs
to the `VL2Handler` the node installs, the transmit / receive queues of traffic
waiting for WHOIS, and the timers. The sending half (armor, paths, relay via a
root, fragmentation, WHOIS, RENDEZVOUS introductions) is `ztcore.vl1.outbound`.

Every packet that is not processed is dropped with a reason counted in
`Switch.drops`; nothing raises out of `on_remote_packet`.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import struct
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ztcore.api import EventType, UserMessage
from ztcore.errors import ZTError, report_unexpected
from ztcore.identity import Address, Identity
from ztcore.vl1.fragment import Reassembler
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.outbound import (
    SOFTWARE_VERSION,
    TX_QUEUE_SIZE,
    WHOIS_RETRY_DELAY,
    Outbound,
    VL1Host,
    _TxEntry,
    verb_name,
)
from ztcore.vl1.packet import (
    FLAG_FRAGMENTED,
    FRAGMENT_IDX_INDICATOR,
    FRAGMENT_INDICATOR,
    FRAGMENT_MIN_LENGTH,
    IDX_FLAGS,
    PACKET_MIN_LENGTH,
    PROTO_VERSION,
    PROTO_VERSION_MIN,
    RELAY_MAX_HOPS,
    CipherSuite,
    Dearmored,
    ErrorCode,
    PacketError,
    PacketHeader,
    Verb,
    armor,
    crypt_field,
    dearmor,
    fragment_destination,
    is_fragment,
    parse_header,
    remove_extended_armor,
    set_hops,
)
from ztcore.vl1.path import Path
from ztcore.vl1.peer import DIRECT_PATH_PUSH_INTERVAL, DIRECT_PATH_PUSH_INTERVAL_HAVEPATH, Peer
from ztcore.vl1.ratelimit import RecentTable, TokenBucket, WindowGate
from ztcore.vl1.topology import MAX_PATHS
from ztcore.vl1.world import World, WorldType

log = logging.getLogger(__name__)

TRANSMIT_QUEUE_TIMEOUT = 5_000  # ZT_TRANSMIT_QUEUE_TIMEOUT
RECEIVE_QUEUE_TIMEOUT = 5_000  # ZT_RECEIVE_QUEUE_TIMEOUT
RX_QUEUE_SIZE = 32  # ZT_RX_QUEUE_SIZE
MIN_UNITE_INTERVAL = 30_000  # ZT_MIN_UNITE_INTERVAL
EXPECTING_REPLY_TIMEOUT = 120_000  # an OK/ERROR later than this is not a reply we wait for
IDENTITY_VERIFICATION_RATE = 10  # new identities validated per second per remote IP
# Floods from distinct (forged) sources must cost bounded memory and bounded traffic:
# every per-remote table has a size cap, and two global budgets cap what such a flood can
# make the node do (WHOIS sent to the roots; identity verifications, a memory-hard hash each).
PER_REMOTE_TABLE_MAX = 4096
# Pairs a root introduced lately (RENDEZVOUS spacing): both ends are peers it knows, so a
# forged source cannot add any; the table grows with the peers served, 2 pairs a peer
# (a ring of peers talking through the root needs one pair each), at least the flat cap.
UNITE_PAIRS_PER_PEER = 2
WHOIS_HOLD = 60_000  # a WHOIS target is remembered this long (per-address retry spacing)
WHOIS_GLOBAL_RATE = 100  # WHOIS sent per second, all addresses together (burst: 2 s worth)
IDENTITY_VERIFICATION_GLOBAL_RATE = 100  # new identities verified per second, all sources
PUSH_DIRECT_PATHS_MAX_PER_SCOPE_AND_FAMILY = 8
PUSH_DIRECT_PATHS_FLAG_FORGET_PATH = 0x01
PUSH_DIRECT_PATHS_FLAG_CLUSTER_REDIRECT = 0x02

# Verbs whose receipt marks a peer as "nontrivially" active (Peer::received).
_NONTRIVIAL_VERBS = frozenset(
    {Verb.FRAME, Verb.EXT_FRAME, Verb.NETWORK_CONFIG_REQUEST, Verb.NETWORK_CONFIG, Verb.MULTICAST_FRAME}
)
# The receive path's shortcut takes packets whose flags byte, bit 7 aside, says: not
# fragmented, hop count 0, cipher suite 1 or 3 (suite 0 carries HELLOs, 2 trusted paths).
_LANE_FLAGS_MASK = FLAG_FRAGMENTED | 0x3F
_LANE_FLAGS = frozenset({int(CipherSuite.POLY1305_SALSA2012) << 3, int(CipherSuite.AES_GMAC_SIV) << 3})

VL2_VERBS = frozenset(
    {
        Verb.FRAME,
        Verb.EXT_FRAME,
        Verb.MULTICAST_LIKE,
        Verb.NETWORK_CREDENTIALS,
        Verb.NETWORK_CONFIG_REQUEST,
        Verb.NETWORK_CONFIG,
        Verb.MULTICAST_GATHER,
        Verb.MULTICAST_FRAME,
    }
)


class VL2Handler(Protocol):
    """What the node's VL2 layer provides to the switch."""

    def handle_packet(self, now: int, peer: Peer, path: Path, packet: Dearmored) -> bool:
        """Handle a VL2 verb; False means "retry later" (e.g. waiting for WHOIS)."""
        ...

    def handle_ok(
        self, now: int, peer: Peer, in_re_verb: int, in_re_packet_id: int, payload: bytes
    ) -> None: ...

    def handle_error(
        self, now: int, peer: Peer, in_re_verb: int, in_re_packet_id: int, code: int, payload: bytes
    ) -> None: ...


@dataclass(slots=True)
class _RxEntry:
    source: int
    local_socket: int
    path: Path
    data: bytes
    created: int


class Switch(Outbound):
    def __init__(self, host: VL1Host) -> None:
        self.host = host
        self.vl2: VL2Handler | None = None
        self.reassembler = Reassembler()
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self._expecting: OrderedDict[int, int] = OrderedDict()
        self._last_whois: RecentTable[int] = RecentTable(PER_REMOTE_TABLE_MAX, WHOIS_HOLD)
        self._whois_budget = TokenBucket(WHOIS_GLOBAL_RATE, 2 * WHOIS_GLOBAL_RATE)
        self._tx_queue: list[_TxEntry] = []
        self._rx_queue: list[_RxEntry] = []
        self._last_unite: RecentTable[tuple[int, int]] = RecentTable(PER_REMOTE_TABLE_MAX, MIN_UNITE_INTERVAL)
        self._identity_gate: WindowGate[object] = WindowGate(IDENTITY_VERIFICATION_RATE, 1000, PER_REMOTE_TABLE_MAX)
        self._identity_budget = TokenBucket(IDENTITY_VERIFICATION_GLOBAL_RATE, IDENTITY_VERIFICATION_GLOBAL_RATE)
        # Our address as it appears in a packet's destination field (the receive path's check).
        self._me_wire = int(host.identity.address).to_bytes(5, "big")
        # Called with (now, peer, in-re packet id, payload) when an OK(ECHO) arrives.
        self.on_echo_reply: Callable[[int, Peer, int, bytes], None] | None = None

    # ================================================================ helpers
    def _drop(self, reason: str, /, **fields: object) -> None:
        self.drops[reason] += 1
        self.host.trace("packet_dropped", **{**fields, "reason": reason})

    def _rate_gate_identity_verification(self, now: int, remote: InetAddress) -> bool:
        return self._identity_gate.allow(remote.ip, now) and self._identity_budget.allow(now)

    def table_sizes(self) -> dict[str, tuple[int, int]]:
        """Every table a remote party can make grow: name -> (entries now, bound)."""
        topo = self.host.topology
        return {
            "paths": (len(topo.paths), MAX_PATHS),
            "pending_whois": (len(self._last_whois), PER_REMOTE_TABLE_MAX),
            "identity_gate": (len(self._identity_gate), PER_REMOTE_TABLE_MAX),
            "unite_gate": (len(self._last_unite), self._last_unite.max_entries),
            "expecting_replies": (len(self._expecting), self.expecting_replies_bound()),
            "reassembly": (len(self.reassembler), self.reassembler.max_pending),
            "rx_queue": (len(self._rx_queue), RX_QUEUE_SIZE),
            "tx_queue": (len(self._tx_queue), TX_QUEUE_SIZE),
        }

    # ================================================================ inbound
    def on_remote_packet(self, now: int, local_socket: int, remote: InetAddress, data: bytes) -> None:
        try:
            self._on_remote_packet(now, local_socket, remote, data)
        except PacketError as e:
            self._drop(e.reason, remote=str(remote))
        except Exception as e:  # noqa: BLE001 - a hostile packet must never take the node down
            # A bug, not bad input (parsers raise PacketError): counted every time, logged
            # sparingly (report_unexpected) so that a packet flood cannot become a log flood.
            report_unexpected(log, "vl1: processing a packet", e)
            self._drop("internal_error", remote=str(remote))

    def _on_remote_packet(self, now: int, local_socket: int, remote: InetAddress, data: bytes) -> None:
        # The common case first, in a few steps: a whole packet for us, straight from a peer
        # in memory (hops 0), encrypted (suite 1 or 3), over a path already kept. Anything
        # else, or a packet that fails here, takes the general path below.
        if (
            len(data) >= PACKET_MIN_LENGTH
            and data[FRAGMENT_IDX_INDICATOR] != FRAGMENT_INDICATOR  # first: fragments leave here
            and data[IDX_FLAGS] & _LANE_FLAGS_MASK in _LANE_FLAGS
            and data[8:13] == self._me_wire
        ):
            topo = self.host.topology
            path = topo.paths.get((local_socket, remote))
            peer = topo.peers.get(int.from_bytes(data[13:18], "big"))
            if path is not None and peer is not None:
                path.last_in = now  # Path.received
                self.stats["packets_in"] += 1
                self._open_from_session(now, peer, path, data)
                return
        # A path the node does not know yet is transient: it is kept (Topology.adopt_path)
        # only once a packet over it authenticates, so junk from a million sources leaves
        # nothing behind.
        path = self.host.topology.get_path(local_socket, remote)
        path.received(now)
        self.stats["packets_in"] += 1
        if len(data) <= FRAGMENT_MIN_LENGTH:
            self._drop("too_short", size=len(data))
            return
        if is_fragment(data):
            destination = fragment_destination(data)
            if destination != self._me:
                self._relay(now, path, destination, None, data, is_fragment=True)
                return
            complete = self.reassembler.add(data, now)
            if complete is not None:
                self._reassembled(now, path, complete)
            return
        if len(data) < PACKET_MIN_LENGTH:
            self._drop("too_short", size=len(data))
            return
        header = parse_header(data)
        if header.source == self._me:
            self._drop("from_self")
            return
        if header.destination != self._me:
            self._relay(now, path, header.destination, header.source, data, is_fragment=False)
            return
        if header.fragmented:
            complete = self.reassembler.add(data, now)
            if complete is not None:
                self._reassembled(now, path, complete)
            return
        if not self._try_decode(now, path, data, header):
            self._wait_for_whois(now, path, data, header)

    def _relay(
        self, now: int, path: Path, destination: int, source: int | None, data: bytes, is_fragment: bool
    ) -> None:
        topo = self.host.topology
        if not topo.am_upstream and not path.trust_established(now):
            self._drop("relay_not_allowed")
            return
        hops = data[15] if is_fragment else data[18] & 0x07
        if hops >= RELAY_MAX_HOPS:
            self._drop("too_many_hops")
            return
        data = set_hops(data, hops + 1)
        relay_to = topo.get_peer(destination)
        if relay_to is not None and self._send_direct(now, relay_to, data, force=False):
            self.stats["relayed"] += 1
            if source is not None and not is_fragment and self._should_unite(now, source, destination):
                source_peer = topo.get_peer(source)
                if source_peer is not None:
                    self.introduce(now, relay_to, source_peer)
            return
        upstream = topo.get_upstream_peer(now)
        if upstream is not None and upstream.address != source and upstream.address != destination:
            if self._send_direct(now, upstream, data, force=True):
                self.stats["relayed"] += 1
                return
        self._drop("relay_no_route", destination=str(Address(destination)))

    def unite_pairs_bound(self) -> int:
        return max(PER_REMOTE_TABLE_MAX, UNITE_PAIRS_PER_PEER * len(self.host.topology.peers))

    def _should_unite(self, now: int, a: int, b: int) -> bool:
        key = (min(a, b), max(a, b))
        table = self._last_unite
        last = table.get(key)
        if last is None or now - last >= MIN_UNITE_INTERVAL:
            if last is None and len(table) >= table.max_entries:
                # Full before the next timer run re-sized it (peers arrived in a burst).
                table.max_entries = self.unite_pairs_bound()
            table.set(key, now)
            return True
        return False

    def _open_from_session(self, now: int, peer: Peer, path: Path, data: bytes) -> None:
        """Dearmor and dispatch a packet for us from `peer`, in memory, over the kept `path`
        (the receive path's shortcut: the caller checked flags and destination)."""
        try:
            pkt = dearmor(data, peer.key, peer.aes_keys)
        except PacketError as e:
            self._drop(e.reason, source=str(peer.identity.address))
            return
        if not self._dispatch(now, peer, path, data, pkt):
            self._wait_for_whois(now, path, data, pkt.header)

    def _reassembled(self, now: int, path: Path, data: bytes) -> None:
        """A packet put back together from fragments (its head was checked on arrival): the
        shortcut when it is from a session as above, else the general way."""
        if data[IDX_FLAGS] & _LANE_FLAGS_MASK & ~FLAG_FRAGMENTED in _LANE_FLAGS:
            topo = self.host.topology
            peer = topo.peers.get(int.from_bytes(data[13:18], "big"))
            if peer is not None and topo.paths.get((path.local_socket, path.address)) is path:
                self._open_from_session(now, peer, path, data)
                return
        self._process_head(now, path, data)

    def _process_head(self, now: int, path: Path, data: bytes, header: PacketHeader | None = None) -> None:
        if header is None:
            header = parse_header(data)
        if not self._try_decode(now, path, data, header):
            self._wait_for_whois(now, path, data, header)

    def _wait_for_whois(self, now: int, path: Path, data: bytes, header: PacketHeader) -> None:
        if len(self._rx_queue) >= RX_QUEUE_SIZE:
            self._rx_queue.pop(0)
            self.drops["rx_queue_full"] += 1
        self._rx_queue.append(_RxEntry(header.source, path.local_socket, path, data, now))

    def _try_decode(self, now: int, path: Path, data: bytes, header: PacketHeader | None = None) -> bool:
        """Authenticate and dispatch one complete packet (`header` parsed from it by the
        caller, if it has). False = wait for WHOIS."""
        if header is None:
            header = parse_header(data)
        if header.encrypted_hello:
            # 1.16's optional encrypted HELLO: peel the extended armor with our identity
            # key, then it is an ordinary HELLO (its MAC still has to check out).
            assert self.host.identity.private_key is not None
            data = remove_extended_armor(data, self.host.identity.private_key)
            self.stats["in_encrypted_HELLO"] += 1
        if header.cipher == CipherSuite.NONE:
            self._drop("trusted_path_not_configured")
            return True
        verb_byte = data[27] & 0x1F
        if header.cipher == CipherSuite.POLY1305_NONE and verb_byte == Verb.HELLO:
            self._do_hello(now, path, data, header.source, already_authenticated=False)
            return True
        peer = self.host.topology.get_peer(header.source)
        if peer is None:
            self.request_whois(now, header.source)
            return False
        try:
            pkt = dearmor(data, peer.key, peer.aes_keys)
        except PacketError as e:
            self._drop(e.reason, source=str(Address(header.source)))
            return True
        path = self.host.topology.adopt_path(path)
        return self._dispatch(now, peer, path, data, pkt)

    def _dispatch(self, now: int, peer: Peer, path: Path, data: bytes, pkt: Dearmored) -> bool:
        """An authenticated packet from `peer` over the kept `path`, to its verb's handler.
        False = wait for WHOIS (a VL2 handler needs an identity not known yet)."""
        verb = pkt.verb
        self.stats[_IN_KEYS.get(verb) or f"in_{verb_name(verb)}"] += 1
        if verb in VL2_VERBS:  # first: frames are most of the traffic
            if self.vl2 is None:
                self._peer_received(now, peer, path, pkt.header.hops, verb)
                self._drop("vl2_not_available", verb=verb_name(verb))
                return True
            if not self.vl2.handle_packet(now, peer, path, pkt):
                return False
            self._peer_received(now, peer, path, pkt.header.hops, verb)
        elif verb == Verb.HELLO:
            self._do_hello(now, path, data, pkt.header.source, already_authenticated=True, decoded=pkt)
        elif verb == Verb.OK:
            self._do_ok(now, peer, path, pkt)
        elif verb == Verb.ERROR:
            self._do_error(now, peer, path, pkt)
        elif verb == Verb.WHOIS:
            self._do_whois(now, peer, path, pkt)
        elif verb == Verb.RENDEZVOUS:
            self._do_rendezvous(now, peer, path, pkt)
        elif verb == Verb.ECHO:
            self._do_echo(now, peer, path, pkt)
        elif verb == Verb.PUSH_DIRECT_PATHS:
            self._do_push_direct_paths(now, peer, path, pkt)
        elif verb == Verb.USER_MESSAGE:
            self._do_user_message(now, peer, path, pkt)
        else:
            # NOP, ACK, QOS_MEASUREMENT, REMOTE_TRACE, PATH_NEGOTIATION_REQUEST and
            # unknown verbs: authenticated, so they count as received.
            if verb == Verb.REMOTE_TRACE and hasattr(self.host, "on_remote_trace"):
                self.host.on_remote_trace(now, int(peer.address), pkt.payload)
            self._peer_received(now, peer, path, pkt.header.hops, verb)
        return True

    # ----------------------------------------------------------- peer bookkeeping
    def _peer_received(
        self, now: int, peer: Peer, path: Path, hops: int, verb: int, trust_established: bool = False
    ) -> None:
        """Peer::received: activity, path learning (on OK only), path confirmation."""
        peer.last_receive = now
        if verb in _NONTRIVIAL_VERBS:
            peer.last_nontrivial_receive = now
        if trust_established:
            peer.last_trust = now
            path.trusted_packet_received(now)
        if self.host.topology.is_upstream(peer.address):
            self.host.upstream_heard(now)
        if hops == 0:
            have_path = False
            for pp in peer.paths:
                if pp.path is path:
                    pp.last_receive = now
                    have_path = True
                    break
                if (
                    pp.path.address.ips_equal(path.address)
                    and pp.path.local_socket == path.local_socket
                    and pp.path.alive(now)
                ):
                    have_path = True
                    break
            if not have_path and self.host.should_use_path(peer.address, path.local_socket, path.address):
                if verb == Verb.OK:
                    if peer.learn_path(path, now):
                        self.host.trace(
                            "peer_learned_new_path",
                            peer=str(peer.identity.address),
                            path=str(path.address),
                            local_socket=path.local_socket,
                        )
                else:
                    key = (path.local_socket, path.address)
                    peer.tried_paths = {k: t for k, t in peer.tried_paths.items() if now - t <= 1000}
                    if key not in peer.tried_paths:
                        peer.tried_paths[key] = now
                        self.host.trace(
                            "peer_confirming_unknown_path",
                            peer=str(peer.identity.address),
                            path=str(path.address),
                            local_socket=path.local_socket,
                            verb=int(verb),
                        )
                        self.attempt_to_contact_at(
                            now, peer, path.local_socket, path.address, full_hello=True
                        )
                        path.sent(now)
        if peer.trust_established(now):
            since = now - peer.last_direct_path_push_sent
            if since >= (DIRECT_PATH_PUSH_INTERVAL_HAVEPATH if hops == 0 else DIRECT_PATH_PUSH_INTERVAL):
                peer.last_direct_path_push_sent = now
                self.push_direct_paths(now, peer)

    # ----------------------------------------------------------------- HELLO
    def _do_hello(
        self,
        now: int,
        path: Path,
        data: bytes,
        source: int,
        already_authenticated: bool,
        decoded: Dearmored | None = None,
    ) -> None:
        topo = self.host.topology
        header = parse_header(data)
        payload_start = 28
        raw = data if decoded is None else None
        payload = decoded.payload if decoded is not None else bytes(data[payload_start:])
        if len(payload) < 13:
            self._drop("hello_too_short")
            return
        proto, vmaj, vmin, vrev, timestamp = struct.unpack_from(">BBBHQ", payload, 0)
        try:
            identity, consumed = Identity.from_bytes(payload, 13)
        except ZTError:
            self._drop("hello_bad_identity")
            return
        ptr = 13 + consumed
        if proto < PROTO_VERSION_MIN:
            self._drop("hello_protocol_too_old", version=proto)
            return
        if int(identity.address) != source:
            self._drop("hello_identity_address_mismatch")
            return
        peer = topo.get_peer(source)
        if peer is not None:
            if not already_authenticated:
                if peer.identity != identity:
                    self._hello_collision(now, path, data, header.packet_id, identity, peer)
                    return
                try:
                    decoded = dearmor(raw, peer.key, peer.aes_keys)
                except PacketError:
                    self._drop("bad_mac", source=str(identity.address), verb="HELLO")
                    return
        else:
            if already_authenticated:
                self._drop("hello_illegal_state")
                return
            # The gate bounds how many unknown identities a remote IP makes us hash; one
            # already validated in this process (e.g. by another node of ours) costs nothing.
            if not identity.known_valid() and not self._rate_gate_identity_verification(now, path.address):
                self._drop("hello_rate_limited")
                return
            try:
                new_peer = Peer.create(self.host.identity, identity)
            except ZTError:
                self._drop("hello_bad_identity")
                return
            try:
                decoded = dearmor(raw, new_peer.key, new_peer.aes_keys)
            except PacketError:
                self._drop("bad_mac", source=str(identity.address), verb="HELLO")
                return
            if not identity.validate():
                self._drop("hello_invalid_identity", source=str(identity.address))
                return
            peer = topo.add_peer(new_peer)
            self._do_anything_waiting_for_peer(now, peer)
        assert decoded is not None
        path = topo.adopt_path(path)
        payload = decoded.payload
        self.stats["in_HELLO"] += 1

        external: InetAddress | None = None
        if ptr < len(payload):
            try:
                external, n = InetAddress.from_bytes(payload, ptr)
                ptr += n
            except ZTError:
                external = None
                ptr = len(payload)
        planet_id = planet_ts = 0
        if ptr + 16 <= len(payload):
            planet_id, planet_ts = struct.unpack_from(">QQ", payload, ptr)
            ptr += 16
        moons: list[tuple[int, int]] = []
        if ptr < len(payload):
            rest = crypt_field(peer.key, decoded.header.packet_id, payload[ptr:])
            if len(rest) >= 2:
                (count,) = struct.unpack_from(">H", rest, 0)
                p = 2
                for _ in range(count):
                    if p + 17 > len(rest):
                        break
                    if rest[p] == WorldType.MOON:
                        moons.append(struct.unpack_from(">QQ", rest, p + 1))
                    p += 17
        del external  # surface address learning (SelfAwareness) is not used by ztcore yet

        # OK(HELLO): echo timestamp, our version, the address we saw them at, world updates.
        out = bytearray()
        out += struct.pack(
            ">BQQBBBH", Verb.HELLO, decoded.header.packet_id, timestamp, PROTO_VERSION, *SOFTWARE_VERSION
        )
        out += path.address.to_bytes() if proto >= 5 else path.address.with_port(0).to_bytes()
        worlds = bytearray()
        planet = topo.planet
        if planet_id and planet_id == planet.id and planet.timestamp > planet_ts:
            worlds += planet.to_bytes()
        for moon_id, moon_ts in moons:
            moon = topo.moons.get(moon_id)
            if moon is not None and moon.timestamp > moon_ts:
                worlds += moon.to_bytes()
        out += struct.pack(">H", len(worlds)) + worlds
        peer.set_remote_version(proto, vmaj, vmin, vrev)
        self._send_via_path(now, peer, path, Verb.OK, bytes(out), encrypt=True)
        self._peer_received(now, peer, path, decoded.header.hops, Verb.HELLO)

    def _hello_collision(
        self, now: int, path: Path, data: bytes, packet_id: int, identity: Identity, existing: Peer
    ) -> None:
        if not self._rate_gate_identity_verification(now, path.address):
            return
        try:
            key = self.host.identity.agree(identity)
        except ZTError:
            self._drop("hello_bad_identity")
            return
        try:
            dearmor(data, key, None)
        except PacketError:
            self._drop("bad_mac", verb="HELLO")
            return
        self._drop("address_collision", address=str(identity.address))
        payload = struct.pack(">BQB", Verb.HELLO, packet_id, ErrorCode.IDENTITY_COLLISION)
        wire = armor(
            destination=int(identity.address),
            source=int(self._me),
            verb=Verb.ERROR,
            payload=payload,
            key=key,
            encrypt=True,
        )
        self.host.put_packet(path.local_socket, path.address, wire)
        path.sent(now)

    # -------------------------------------------------------------------- OK
    def _do_ok(self, now: int, peer: Peer, path: Path, pkt: Dearmored) -> None:
        p = pkt.payload
        if len(p) < 9:
            self._drop("ok_too_short")
            return
        in_re_verb = p[0] & 0x1F
        (in_re_pid,) = struct.unpack_from(">Q", p, 1)
        if not self.expecting_reply_to(in_re_pid):
            self._drop("ok_unexpected", in_re=verb_name(in_re_verb))
            return
        body = p[9:]
        if in_re_verb == Verb.HELLO:
            if len(body) < 13:
                self._drop("ok_hello_too_short")
                return
            ts, vproto, vmaj, vmin, vrev = struct.unpack_from(">QBBBH", body, 0)
            if vproto < PROTO_VERSION_MIN:
                self._drop("ok_hello_protocol_too_old")
                return
            ptr = 13
            if ptr < len(body):
                try:
                    _surface, n = InetAddress.from_bytes(body, ptr)
                    ptr += n
                except ZTError:
                    ptr = len(body)
            if ptr + 2 <= len(body):
                (worlds_len,) = struct.unpack_from(">H", body, ptr)
                ptr += 2
                if self.host.topology.should_accept_world_update_from(peer.address):
                    end = min(len(body), ptr + worlds_len)
                    while ptr < end:
                        try:
                            world, n = World.from_bytes(body[:end], ptr)
                        except ZTError:
                            self._drop("ok_hello_bad_world")
                            break
                        ptr += n
                        if self.host.topology.add_world(world):
                            self.host.world_changed(world)
            if pkt.header.hops == 0:
                path.update_latency(max(0, now - ts))
            peer.set_remote_version(vproto, vmaj, vmin, vrev)
        elif in_re_verb == Verb.WHOIS:
            if self.host.topology.is_upstream(peer.address):
                ptr = 0
                while ptr < len(body):
                    try:
                        identity, n = Identity.from_bytes(body, ptr)
                    except ZTError:
                        self._drop("ok_whois_bad_identity")
                        break
                    ptr += n
                    if self.host.topology.get_peer(identity.address) is None:
                        try:
                            new_peer = Peer.create(self.host.identity, identity)
                        except ZTError:
                            continue
                        added = self.host.topology.add_peer(new_peer)
                        self._do_anything_waiting_for_peer(now, added)
        elif in_re_verb == Verb.ECHO:
            if self.on_echo_reply is not None:
                self.on_echo_reply(now, peer, in_re_pid, bytes(body))
        elif self.vl2 is not None:
            self.vl2.handle_ok(now, peer, in_re_verb, in_re_pid, body)
        self._peer_received(now, peer, path, pkt.header.hops, Verb.OK)

    # ----------------------------------------------------------------- ERROR
    def _do_error(self, now: int, peer: Peer, path: Path, pkt: Dearmored) -> None:
        p = pkt.payload
        if len(p) < 10:
            self._drop("error_too_short")
            return
        in_re_verb = p[0] & 0x1F
        (in_re_pid,) = struct.unpack_from(">Q", p, 1)
        code = p[9]
        body = p[10:]
        if code == ErrorCode.IDENTITY_COLLISION:
            if self.host.topology.is_upstream(peer.address):
                self.host.post_event(EventType.FATAL_ERROR_IDENTITY_COLLISION, {})
        elif self.vl2 is not None:
            self.vl2.handle_error(now, peer, in_re_verb, in_re_pid, code, body)
        self._peer_received(now, peer, path, pkt.header.hops, Verb.ERROR)

    # ----------------------------------------------------------------- WHOIS
    def _do_whois(self, now: int, peer: Peer, path: Path, pkt: Dearmored) -> None:
        topo = self.host.topology
        if not topo.am_upstream and not peer.rate_gate_inbound_whois(now):
            self._drop("whois_rate_limited")
            return
        out = bytearray(struct.pack(">BQ", Verb.WHOIS, pkt.header.packet_id))
        count = 0
        p = pkt.payload
        for ptr in range(0, len(p) - 4, 5):
            addr = int.from_bytes(p[ptr : ptr + 5], "big")
            identity = topo.get_identity(addr)
            if identity is not None:
                out += identity.to_bytes(include_private=False)
                count += 1
            else:
                self.request_whois(now, addr)
        if count:
            self._send_via_path(now, peer, path, Verb.OK, bytes(out), encrypt=True)
        self._peer_received(now, peer, path, pkt.header.hops, Verb.WHOIS)

    # ------------------------------------------------------------ RENDEZVOUS
    def _do_rendezvous(self, now: int, peer: Peer, path: Path, pkt: Dearmored) -> None:
        topo = self.host.topology
        if topo.is_upstream(peer.address):
            p = pkt.payload
            if len(p) >= 9:
                with_addr = int.from_bytes(p[1:6], "big")
                (port,) = struct.unpack_from(">H", p, 6)
                addr_len = p[8]
                other = topo.get_peer(with_addr)
                if other is not None and port > 0 and addr_len in (4, 16) and len(p) >= 9 + addr_len:
                    ip = ipaddress.ip_address(bytes(p[9 : 9 + addr_len]))
                    at = InetAddress(ip, port)
                    if self.host.should_use_path(with_addr, path.local_socket, at):
                        # A low-TTL junk packet opens local NATs / stateful firewalls.
                        self.host.put_packet(path.local_socket, at, secrets.token_bytes(4), ttl=2)
                        self.attempt_to_contact_at(now, other, path.local_socket, at, full_hello=False)
                        self.host.trace("rendezvous", peer=str(other.identity.address), at=str(at))
        else:
            self._drop("rendezvous_not_from_upstream")
        self._peer_received(now, peer, path, pkt.header.hops, Verb.RENDEZVOUS)

    # ------------------------------------------------------------------ ECHO
    def _do_echo(self, now: int, peer: Peer, path: Path, pkt: Dearmored) -> None:
        if not path.rate_gate_echo(now):
            self._drop("echo_rate_limited")
            return
        out = struct.pack(">BQ", Verb.ECHO, pkt.header.packet_id) + pkt.payload
        self._send_via_path(now, peer, path, Verb.OK, out, encrypt=True)
        self._peer_received(now, peer, path, pkt.header.hops, Verb.ECHO)

    # ----------------------------------------------------- PUSH_DIRECT_PATHS
    def _do_push_direct_paths(self, now: int, peer: Peer, path: Path, pkt: Dearmored) -> None:
        p = pkt.payload
        per_scope: Counter[tuple[int, int]] = Counter()
        if len(p) >= 2:
            (count,) = struct.unpack_from(">H", p, 0)
            ptr = 2
            for _ in range(count):
                if ptr + 5 > len(p):
                    break
                flags = p[ptr]
                (ext_len,) = struct.unpack_from(">H", p, ptr + 1)
                ptr += 3 + ext_len
                if ptr + 2 > len(p):
                    break
                addr_type, addr_len = p[ptr], p[ptr + 1]
                ptr += 2
                if ptr + addr_len > len(p):
                    break
                raw = p[ptr : ptr + addr_len]
                ptr += addr_len
                if (addr_type, addr_len) not in ((4, 6), (6, 18)):
                    continue
                ip_len = addr_len - 2
                at = InetAddress(ipaddress.ip_address(bytes(raw[:ip_len])), int.from_bytes(raw[ip_len:], "big"))
                if flags & PUSH_DIRECT_PATHS_FLAG_FORGET_PATH:
                    continue
                if peer.has_active_path_to(now, at):
                    continue
                if not self.host.should_use_path(peer.address, -1, at):
                    continue
                key = (int(at.scope), addr_type)
                per_scope[key] += 1
                if per_scope[key] <= PUSH_DIRECT_PATHS_MAX_PER_SCOPE_AND_FAMILY:
                    self.attempt_to_contact_at(now, peer, -1, at, full_hello=False)
        self._peer_received(now, peer, path, pkt.header.hops, Verb.PUSH_DIRECT_PATHS)

    # ---------------------------------------------------------- USER_MESSAGE
    def _do_user_message(self, now: int, peer: Peer, path: Path, pkt: Dearmored) -> None:
        if len(pkt.payload) >= 8:
            (type_id,) = struct.unpack_from(">Q", pkt.payload, 0)
            self.host.post_event(
                EventType.USER_MESSAGE, UserMessage(peer.identity.address, type_id, bytes(pkt.payload[8:]))
            )
        else:
            self._drop("user_message_too_short")
        self._peer_received(now, peer, path, pkt.header.hops, Verb.USER_MESSAGE)

    # ======================================================= queues and timers
    def retry_waiting_for(self, now: int, peer: Peer) -> None:
        """Re-run packets from `peer` that were deferred (e.g. refused for lack of
        credentials that have just arrived)."""
        self._do_anything_waiting_for_peer(now, peer)

    def _do_anything_waiting_for_peer(self, now: int, peer: Peer) -> None:
        self._last_whois.pop(int(peer.address))
        waiting_rx = [e for e in self._rx_queue if e.source == peer.address]
        self._rx_queue = [e for e in self._rx_queue if e.source != peer.address]
        for e in waiting_rx:
            try:
                self._try_decode(now, e.path, e.data)
            except PacketError as err:
                self._drop(err.reason)
        waiting_tx = [e for e in self._tx_queue if e.destination == peer.address]
        self._tx_queue = [e for e in self._tx_queue if e.destination != peer.address]
        for e in waiting_tx:
            if not self._try_send(now, peer, e.verb, e.payload, e.encrypt):
                self._tx_queue.append(e)

    def do_timer_tasks(self, now: int) -> int:
        """Retry WHOIS for queued traffic, expire old queue entries; returns ms until next call."""
        next_delay = 1000
        still: list[_TxEntry] = []
        for e in self._tx_queue:
            if now - e.created > TRANSMIT_QUEUE_TIMEOUT:
                self._drop("tx_queue_timeout", destination=str(Address(e.destination)))
                continue
            peer = self.host.topology.get_peer(e.destination)
            if peer is not None and self._try_send(now, peer, e.verb, e.payload, e.encrypt):
                continue
            if peer is None:
                self.request_whois(now, e.destination)
            still.append(e)
            next_delay = WHOIS_RETRY_DELAY
        self._tx_queue = still
        kept: list[_RxEntry] = []
        for e in self._rx_queue:
            if now - e.created > RECEIVE_QUEUE_TIMEOUT:
                self._drop("rx_queue_timeout", source=str(Address(e.source)))
                continue
            if self.host.topology.get_peer(e.source) is None:
                self.request_whois(now, e.source)
            kept.append(e)
            next_delay = WHOIS_RETRY_DELAY
        self._rx_queue = kept
        self.reassembler.expire(now)
        self._last_whois.expire(now)
        self._last_unite.expire(now)
        self._last_unite.max_entries = self.unite_pairs_bound()
        self._identity_gate.expire(now)
        while self._expecting:
            pid, t = next(iter(self._expecting.items()))
            if now - t <= EXPECTING_REPLY_TIMEOUT:
                break
            del self._expecting[pid]
        return next_delay


_IN_KEYS = {v: f"in_{v.name}" for v in Verb}
