"""VL1 verb handling (ZeroTier's IncomingPacket): a packet that has authenticated, from
a known peer over a kept path, to its verb's handler.

HELLO (identity checks, the OK reply with our world), OK (replies to HELLO, WHOIS, ECHO
and the VL2 verbs), ERROR, WHOIS, RENDEZVOUS, ECHO, PUSH_DIRECT_PATHS and USER_MESSAGE
here; the VL2 verbs go to the `VL2Handler` the node installs. `Peer::received`'s
bookkeeping (activity, path learning and confirmation) follows every packet.

`IncomingPacket` is a mixin of `ztcore.vl1.switch.Switch`, which receives the packets
(reassembly, relaying, the session shortcut, the queues of traffic waiting for WHOIS)
and owns the tables these methods use; its sending half is `ztcore.vl1.outbound`.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import struct
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from ztcore.api import EventType, UserMessage
from ztcore.errors import ZTError
from ztcore.identity import Address, Identity
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.outbound import (
    SOFTWARE_VERSION,
    Outbound,
    verb_name,
)
from ztcore.vl1.packet import (
    PROTO_VERSION,
    PROTO_VERSION_MIN,
    CipherSuite,
    Dearmored,
    ErrorCode,
    PacketError,
    PacketHeader,
    Verb,
    armor,
    crypt_field,
    dearmor,
    parse_header,
    remove_extended_armor,
)
from ztcore.vl1.path import Path
from ztcore.vl1.peer import DIRECT_PATH_PUSH_INTERVAL, DIRECT_PATH_PUSH_INTERVAL_HAVEPATH, Peer
from ztcore.vl1.ratelimit import TokenBucket, WindowGate
from ztcore.vl1.world import World, WorldType

log = logging.getLogger(__name__)

PUSH_DIRECT_PATHS_MAX_PER_SCOPE_AND_FAMILY = 8
PUSH_DIRECT_PATHS_FLAG_FORGET_PATH = 0x01
PUSH_DIRECT_PATHS_FLAG_CLUSTER_REDIRECT = 0x02

_NONTRIVIAL_VERBS = frozenset(
    {Verb.FRAME, Verb.EXT_FRAME, Verb.NETWORK_CONFIG_REQUEST, Verb.NETWORK_CONFIG, Verb.MULTICAST_FRAME}
)

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


class LaneHooks(Protocol):
    """The node's fast lane, as the switch fills and empties it (ztcore.lane)."""

    def offer(self, now: int, peer: Peer, path: Path, pkt: Dearmored) -> None: ...

    def clear(self) -> None: ...


class IncomingPacket(Outbound):
    """The verb handlers of the switch (see the module docstring)."""

    vl2: VL2Handler | None
    lane: LaneHooks | None
    drops: Counter[str]
    _identity_gate: WindowGate[object]
    _identity_budget: TokenBucket
    # Called with (now, peer, in-re packet id, payload) when an OK(ECHO) arrives.
    on_echo_reply: Callable[[int, Peer, int, bytes], None] | None

    def _do_anything_waiting_for_peer(self, now: int, peer: Peer) -> None:
        """Send and process what waited for `peer`'s identity (the switch's queues)."""
        raise NotImplementedError

    def _drop(self, reason: str, /, **fields: object) -> None:
        self.drops[reason] += 1
        self.host.trace("packet_dropped", **{**fields, "reason": reason})

    def _rate_gate_identity_verification(self, now: int, remote: InetAddress) -> bool:
        return self._identity_gate.allow(remote.ip, now) and self._identity_budget.allow(now)

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
            if self.lane is not None:
                self.lane.clear()  # a peer (re)introducing itself may change what the lane holds
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
        if verb != Verb.FRAME and self.lane is not None:
            # Credentials, configs, HELLOs, paths: whatever a packet other than a FRAME
            # changes, the lane may have cached (ztcore.lane).
            self.lane.clear()
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
                at = InetAddress(
                    ipaddress.ip_address(bytes(raw[:ip_len])), int.from_bytes(raw[ip_len:], "big")
                )
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


_IN_KEYS = {v: f"in_{v.name}" for v in Verb}
