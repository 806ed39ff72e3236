"""VL1 outbound: what happens to a message between the caller and the wire (the sending
half of ZeroTier's Switch and Peer): armor, the best direct path or relay via the best root,
fragmentation, WHOIS for unknown destinations under a per-address and a global budget with
a bounded transmit queue, HELLO / ECHO contact attempts, RENDEZVOUS introductions and
PUSH_DIRECT_PATHS.

`Outbound` is the sending half of `ztcore.vl1.switch.Switch` (a mixin, under the verb
handlers of `ztcore.vl1.incoming`: the switch owns the tables these methods use); `VL1Host`
is what all of them need from the node that owns them.
"""

from __future__ import annotations

import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ztcore.identity import Address
from ztcore.vl1.fragment import make_fragments
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.packet import (
    DEFAULT_PHYSICAL_MTU,
    PROTO_VERSION,
    Verb,
    armor,
    armor_encrypted,
    crypt_field,
    new_packet_id,
)
from ztcore.vl1.path import Path
from ztcore.vl1.peer import Peer
from ztcore.vl1.ratelimit import RecentTable, TokenBucket

if TYPE_CHECKING:
    from ztcore.api import EventType
    from ztcore.identity import Identity
    from ztcore.vl1.topology import Topology
    from ztcore.vl1.world import World

# The software version ztcore announces in HELLO. Real cores gate behaviour on it
# (e.g. ECHO instead of HELLO for path confirmation needs > 1.1.0), so ztcore
# announces the ZeroTier release whose protocol it implements.
SOFTWARE_VERSION = (1, 14, 1)

WHOIS_RETRY_DELAY = 500  # ZT_WHOIS_RETRY_DELAY
TX_QUEUE_SIZE = 32  # ZT_TX_QUEUE_SIZE
# Requests awaiting an OK/ERROR: at least this many, and at most EXPECTING_REPLIES_PER_PEER
# per known peer beyond that (a root pinging 10,000 leaves has ~10,000 HELLOs out at
# once); entries also age out after the switch's EXPECTING_REPLY_TIMEOUT. The peer count
# itself is bounded by the identity-verification budget, so this stays bounded too.
EXPECTING_REPLIES_MAX = 4096
EXPECTING_REPLIES_PER_PEER = 4


class VL1Host(Protocol):
    """What the switch needs from the node that owns it."""

    identity: Identity
    topology: Topology

    def put_packet(self, local_socket: int, address: InetAddress, data: bytes, ttl: int = 0) -> bool: ...

    def post_event(self, kind: EventType, data: dict[str, object] | None = None) -> None: ...

    def trace(self, kind: str, /, **fields: object) -> None: ...

    def should_use_path(self, address: int, local_socket: int, remote: InetAddress) -> bool: ...

    def direct_paths(self) -> list[InetAddress]: ...

    def world_changed(self, world: World) -> None: ...

    def upstream_heard(self, now: int) -> None: ...


@dataclass(slots=True)
class _TxEntry:
    destination: int
    verb: int
    payload: bytes
    encrypt: bool
    created: int


class Outbound:
    """Sending methods of the switch; the attributes below are the switch's."""

    host: VL1Host
    stats: Counter[str]
    drops: Counter[str]
    _expecting: OrderedDict[int, int]
    _last_whois: RecentTable[int]
    _whois_budget: TokenBucket
    _tx_queue: list[_TxEntry]

    @property
    def _me(self) -> Address:
        return self.host.identity.address

    def expect_reply_to(self, packet_id: int, now: int) -> None:
        self._expecting[packet_id] = now
        self._expecting.move_to_end(packet_id)  # kept in time order for expiry
        if len(self._expecting) > self.expecting_replies_bound():
            self._expecting.popitem(last=False)

    def expecting_replies_bound(self) -> int:
        return max(EXPECTING_REPLIES_MAX, EXPECTING_REPLIES_PER_PEER * len(self.host.topology.peers))

    def expecting_reply_to(self, packet_id: int) -> bool:
        return packet_id in self._expecting

    def introduce(self, now: int, a: Peer, b: Peer) -> None:
        """Send each of `a` and `b` a RENDEZVOUS naming the other's best address in
        the narrowest scope and family they share (Peer::introduce)."""
        best_a = self._best_by_scope(now, a)
        best_b = self._best_by_scope(now, b)
        for key in sorted(set(best_a) & set(best_b), key=lambda k: (k[0], k[1] == 6), reverse=True):
            pa, pb = best_a[key], best_b[key]
            self._send_rendezvous(now, a, pa, b, pb)
            self._send_rendezvous(now, b, pb, a, pa)
            self.stats["rendezvous_sent"] += 2
            return

    def _best_by_scope(self, now: int, peer: Peer) -> dict[tuple[int, int], Path]:
        best: dict[tuple[int, int], tuple[int, Path]] = {}
        for pp in peer.paths:
            key = (int(pp.path.scope), 6 if pp.path.address.is_v6 else 4)
            q = pp.path.quality(now) // pp.priority
            if key not in best or q <= best[key][0]:
                best[key] = (q, pp.path)
        return {k: v[1] for k, v in best.items()}

    def _send_rendezvous(self, now: int, to: Peer, to_path: Path, about: Peer, about_path: Path) -> None:
        addr = about_path.address
        raw_ip = addr.ip.packed
        payload = (
            b"\x00" + Address(about.address).to_bytes() + struct.pack(">HB", addr.port, len(raw_ip)) + raw_ip
        )
        self._send_via_path(now, to, to_path, Verb.RENDEZVOUS, payload, encrypt=True)

    def push_direct_paths(self, now: int, peer: Peer) -> None:
        addresses = self.host.direct_paths()
        if not addresses:
            return
        entries = bytearray()
        count = 0
        for a in addresses[:32]:
            ip = a.ip.packed
            entries += b"\x00\x00\x00" + bytes((6 if len(ip) == 16 else 4, len(ip) + 2)) + ip
            entries += struct.pack(">H", a.port)
            count += 1
        self.send(now, peer.address, Verb.PUSH_DIRECT_PATHS, struct.pack(">H", count) + bytes(entries))

    def send_hello(self, now: int, peer: Peer, local_socket: int, at: InetAddress | None) -> None:
        """HELLO carries our identity in the clear (MAC'd, not encrypted); the moon
        list at its end is encrypted with the agreed key (cryptField)."""
        topo = self.host.topology
        packet_id = new_packet_id()
        head = bytearray(struct.pack(">BBBHQ", PROTO_VERSION, *SOFTWARE_VERSION, now & 0xFFFFFFFFFFFFFFFF))
        head += self.host.identity.to_bytes(include_private=False)
        head += at.to_bytes() if at is not None else InetAddress.nil_bytes()
        head += struct.pack(">QQ", topo.planet.id, topo.planet.timestamp)
        moons = bytearray(struct.pack(">H", len(topo.moons)))
        for moon in topo.moons.values():
            moons += struct.pack(">BQQ", int(moon.type), moon.id, moon.timestamp)
        payload = bytes(head) + crypt_field(peer.key, packet_id, bytes(moons))
        wire = armor(
            destination=int(peer.address),
            source=int(self._me),
            verb=Verb.HELLO,
            payload=payload,
            key=peer.key,
            encrypt=False,
            packet_id=packet_id,
        )
        self.expect_reply_to(packet_id, now)
        self.stats["out_HELLO"] += 1
        if at is not None:
            self._put_wire(now, local_socket, at, wire)
        else:
            self._send_armored(now, peer, wire)

    def attempt_to_contact_at(
        self, now: int, peer: Peer, local_socket: int, at: InetAddress, full_hello: bool
    ) -> None:
        """Peer::attemptToContactAt: an ECHO when the peer's version is known (cheap),
        else a full HELLO."""
        if not full_hello and peer.proto_version >= 5 and peer.version != (1, 1, 0):
            wire = armor(
                destination=int(peer.address),
                source=int(self._me),
                verb=Verb.ECHO,
                payload=b"",
                key=peer.key,
                encrypt=True,
                aes_keys=peer.aes_keys_if_supported(),
            )
            self.expect_reply_to(int.from_bytes(wire[:8], "big"), now)
            self.stats["out_ECHO"] += 1
            self._put_wire(now, local_socket, at, wire)
        else:
            self.send_hello(now, peer, local_socket, at)

    def send(self, now: int, destination: int, verb: int, payload: bytes, encrypt: bool = True) -> bool:
        """Send a message to `destination`, resolving it by WHOIS and queueing if needed.
        Returns True if it went out now, False if it was queued."""
        if int(destination) == int(self._me):
            return False
        peer = self.host.topology.get_peer(destination)
        if peer is not None and self._try_send(now, peer, verb, payload, encrypt):
            return True
        if len(self._tx_queue) >= TX_QUEUE_SIZE:
            # Shed frames before control messages: losing a queued credential push
            # would get every following frame refused until it is re-sent.
            victim = next((i for i, e in enumerate(self._tx_queue) if e.verb in _SHEDDABLE_VERBS), 0)
            self._tx_queue.pop(victim)
            self.drops["tx_queue_full"] += 1
        self._tx_queue.append(_TxEntry(int(destination), verb, payload, encrypt, now))
        if peer is None:
            self.request_whois(now, destination)
        return False

    def armor_for(self, peer: Peer, verb: int, payload: bytes, encrypt: bool = True) -> bytes:
        if encrypt and (len(payload) <= 256 or verb in _UNCOMPRESSED_VERBS):
            return armor_encrypted(
                peer.identity.address, self.host.identity.address, verb, payload, peer.key, peer.aes_keys_if_supported()
            )
        return armor(
            destination=int(peer.address),
            source=int(self._me),
            verb=verb,
            payload=payload,
            key=peer.key,
            encrypt=encrypt,
            aes_keys=peer.aes_keys_if_supported() if encrypt else None,
            compress=len(payload) > 256 and verb not in _UNCOMPRESSED_VERBS,
        )

    def _try_send(self, now: int, peer: Peer, verb: int, payload: bytes, encrypt: bool) -> bool:
        path = peer.best_path(now)
        if path is None or not path.alive(now):
            upstream = self.host.topology.get_upstream_peer(now)
            if upstream is None or upstream is peer:
                path = peer.best_path(now, include_expired=True)
            else:
                path = upstream.best_path(now)
            if path is None:
                return False
        wire = self.armor_for(peer, verb, payload, encrypt)
        if verb not in _NO_REPLY_VERBS:
            self.expect_reply_to(int.from_bytes(wire[:8], "big"), now)
        self.stats[_OUT_KEYS.get(verb) or f"out_{verb_name(verb)}"] += 1
        self._put_wire(now, path.local_socket, path.address, wire)
        path.last_out = now  # Path.sent, without the call
        return True

    def _send_via_path(
        self, now: int, peer: Peer, path: Path, verb: int, payload: bytes, encrypt: bool
    ) -> None:
        wire = self.armor_for(peer, verb, payload, encrypt)
        self.stats[_OUT_KEYS.get(verb) or f"out_{verb_name(verb)}"] += 1
        self._put_wire(now, path.local_socket, path.address, wire)
        path.sent(now)

    def _send_armored(self, now: int, peer: Peer, wire: bytes) -> bool:
        if self._send_direct(now, peer, wire, force=False):
            return True
        upstream = self.host.topology.get_upstream_peer(now)
        if upstream is not None and upstream is not peer:
            return self._send_direct(now, upstream, wire, force=True)
        return False

    def _send_direct(self, now: int, peer: Peer, wire: bytes, force: bool) -> bool:
        """Peer::sendDirect: over the best path, alive (or any if `force`)."""
        path = peer.best_path(now, include_expired=force)
        if path is None or (not force and not path.alive(now)):
            return False
        self._put_wire(now, path.local_socket, path.address, wire)
        path.sent(now)
        return True

    def _put_wire(self, now: int, local_socket: int, at: InetAddress, wire: bytes) -> None:
        if len(wire) > DEFAULT_PHYSICAL_MTU:
            for chunk in make_fragments(wire, DEFAULT_PHYSICAL_MTU):
                self.host.put_packet(local_socket, at, chunk)
        else:
            self.host.put_packet(local_socket, at, wire)
        self.stats["packets_out"] += 1

    def request_whois(self, now: int, address: int) -> None:
        if int(address) == int(self._me):
            return
        last = self._last_whois.get(int(address))
        if last is not None and now - last < WHOIS_RETRY_DELAY:
            return
        upstream = self.host.topology.get_upstream_peer(now)
        if upstream is None or upstream.address == address:
            return
        if not self._whois_budget.allow(now):
            # Forged sources must not turn the node into an amplifier aimed at its own roots;
            # queued traffic retries from the timer (do_timer_tasks) once budget is back.
            self.stats["whois_rate_limited"] += 1
            return
        self._last_whois.set(int(address), now)
        self.stats["whois_sent"] += 1
        self._try_send(now, upstream, Verb.WHOIS, Address(address).to_bytes(), True)


# Frames are never answered with OK (ztcore never asks for EXT_FRAME ACKs), so they
# need no entry in the expected-replies table.
_NO_REPLY_VERBS = frozenset({Verb.FRAME, Verb.MULTICAST_FRAME})
_SHEDDABLE_VERBS = frozenset({Verb.FRAME, Verb.EXT_FRAME, Verb.MULTICAST_FRAME})
# Unicast frames go out uncompressed, as from the real core since 1.4.8: their payloads
# (mostly already-compressed or encrypted traffic) almost never shrink, so trying costs
# every frame an LZ4 pass for nothing. Control messages and multicast still try.
_UNCOMPRESSED_VERBS = frozenset({Verb.FRAME, Verb.EXT_FRAME})
_OUT_KEYS = {v: f"out_{v.name}" for v in Verb}


def verb_name(verb: int) -> str:
    try:
        return Verb(verb).name
    except ValueError:
        return f"VERB_{verb:#x}"
