"""VL1 packet switching: what happens to a wire packet between the UDP socket and a
verb handler (ZeroTier's Switch).

Inbound: fragment reassembly, relaying for others (roots, with RENDEZVOUS introductions),
the shortcut for packets of an established session (a peer in memory over a kept path),
the receive and transmit queues of traffic waiting for WHOIS, and the timers. The verb
handlers (ZeroTier's IncomingPacket: authentication, HELLO / OK / ERROR / WHOIS / ... and
the hand-off of VL2 verbs) are `ztcore.vl1.incoming`; the sending half (armor, paths,
relay via a root, fragmentation, WHOIS) is `ztcore.vl1.outbound`. `Switch` combines them.

Every packet that is not processed is dropped with a reason counted in
`Switch.drops`; nothing raises out of `on_remote_packet`.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ztcore.errors import report_unexpected
from ztcore.identity import Address
from ztcore.vl1.fragment import Reassembler
from ztcore.vl1.incoming import IncomingPacket, LaneHooks, VL2Handler
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.outbound import (
    SOFTWARE_VERSION,  # noqa: F401 - re-exported: the node reads the version here
    TX_QUEUE_SIZE,
    WHOIS_RETRY_DELAY,
    VL1Host,
    _TxEntry,
)
from ztcore.vl1.packet import (
    FLAG_FRAGMENTED,
    FRAGMENT_IDX_INDICATOR,
    FRAGMENT_INDICATOR,
    FRAGMENT_MIN_LENGTH,
    IDX_FLAGS,
    PACKET_MIN_LENGTH,
    RELAY_MAX_HOPS,
    CipherSuite,
    PacketError,
    PacketHeader,
    Verb,
    dearmor,
    fragment_destination,
    is_fragment,
    parse_header,
    set_hops,
)
from ztcore.vl1.path import Path
from ztcore.vl1.peer import Peer
from ztcore.vl1.ratelimit import RecentTable, TokenBucket, WindowGate
from ztcore.vl1.topology import MAX_PATHS

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

# Verbs whose receipt marks a peer as "nontrivially" active (Peer::received).
# The receive path's shortcut takes packets whose flags byte, bit 7 aside, says: not
# fragmented, hop count 0, cipher suite 1 or 3 (suite 0 carries HELLOs, 2 trusted paths).
_LANE_FLAGS_MASK = FLAG_FRAGMENTED | 0x3F
_LANE_FLAGS = frozenset({int(CipherSuite.POLY1305_SALSA2012) << 3, int(CipherSuite.AES_GMAC_SIV) << 3})


@dataclass(slots=True)
class _RxEntry:
    source: int
    local_socket: int
    path: Path
    data: bytes
    created: int


class Switch(IncomingPacket):
    def __init__(self, host: VL1Host) -> None:
        self.host = host
        self.vl2: VL2Handler | None = None
        self.lane: LaneHooks | None = None
        self.reassembler = Reassembler()
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self._expecting: OrderedDict[int, int] = OrderedDict()
        self._last_whois: RecentTable[int] = RecentTable(PER_REMOTE_TABLE_MAX, WHOIS_HOLD)
        self._whois_budget = TokenBucket(WHOIS_GLOBAL_RATE, 2 * WHOIS_GLOBAL_RATE)
        self._tx_queue: list[_TxEntry] = []
        self._rx_queue: list[_RxEntry] = []
        self._last_unite: RecentTable[tuple[int, int]] = RecentTable(PER_REMOTE_TABLE_MAX, MIN_UNITE_INTERVAL)
        self._identity_gate: WindowGate[object] = WindowGate(
            IDENTITY_VERIFICATION_RATE, 1000, PER_REMOTE_TABLE_MAX
        )
        self._identity_budget = TokenBucket(
            IDENTITY_VERIFICATION_GLOBAL_RATE, IDENTITY_VERIFICATION_GLOBAL_RATE
        )
        # Our address as it appears in a packet's destination field (the receive path's check).
        self._me_wire = int(host.identity.address).to_bytes(5, "big")
        # Called with (now, peer, in-re packet id, payload) when an OK(ECHO) arrives.
        self.on_echo_reply: Callable[[int, Peer, int, bytes], None] | None = None

    # ================================================================ helpers
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
        elif pkt.verb == Verb.FRAME and self.lane is not None:
            self.lane.offer(now, peer, path, pkt)

    def on_reassembled_packet(self, now: int, local_socket: int, remote: InetAddress, data: bytes) -> None:
        """A packet the node's lane put back together from pieces it kept (and counted),
        which is not the lane's to take: the rest of the way as any reassembled packet."""
        try:
            path = self.host.topology.get_path(local_socket, remote)
            path.received(now)
            self._reassembled(now, path, data)
        except PacketError as e:
            self._drop(e.reason, remote=str(remote))
        except Exception as e:  # noqa: BLE001 - as on_remote_packet
            report_unexpected(log, "vl1: processing a reassembled packet", e)
            self._drop("internal_error", remote=str(remote))

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
