"""The sans-I/O ZeroTier node (ZeroTierOne.h's ZT_Node).

A `Node` never touches sockets, threads or the clock. A runner feeds it wire
packets (`process_wire_packet`), time (`process_background_tasks`) and, for
virtual networks, Ethernet frames; the node answers through the callbacks of
`ztcore.api.NodeCallbacks`: datagrams to send, state objects to store, events.
"""

from __future__ import annotations

import functools
import logging
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ztcore.api import Event, EventType, NodeCallbacks, StateObjectType, VirtualFrame
from ztcore.errors import InvalidFormatError, ZTError, report_unexpected
from ztcore.identity import Address, Identity
from ztcore.lane import NodeLane, make_lane
from ztcore.tracing import RemoteTrace, TraceEvent, Tracer, decode, split_payload
from ztcore.vl1.inetaddress import InetAddress, IpScope
from ztcore.vl1.packet import PROTO_VERSION, ErrorCode, Verb
from ztcore.vl1.path import PATH_HEARTBEAT_PERIOD
from ztcore.vl1.peer import PEER_PATH_EXPIRATION, PEER_PING_PERIOD, Peer
from ztcore.vl1.switch import SOFTWARE_VERSION, Switch
from ztcore.vl1.topology import PeerRole, Topology
from ztcore.vl1.world import World, WorldType, default_planet
from ztcore.vl2.controller_api import ControllerError, NetworkController
from ztcore.vl2.credentials import NetworkCredentials, Revocation
from ztcore.vl2.multicast_group import MulticastGroup
from ztcore.vl2.multicaster import Multicaster
from ztcore.vl2.netconf import NetworkConfig
from ztcore.vl2.netconf_chunks import NetworkConfigChunker
from ztcore.vl2.network import NETWORK_AUTOCONF_DELAY, Network
from ztcore.vl2.switch import VL2Switch

log = logging.getLogger(__name__)

PING_CHECK_INTERVAL = 5_000  # ZT_PING_CHECK_INTERVAL
HOUSEKEEPING_PERIOD = 30_000  # ZT_HOUSEKEEPING_PERIOD
CORE_TIMER_TASK_GRANULARITY = 60  # ZT_CORE_TIMER_TASK_GRANULARITY
PEER_ACTIVITY_TIMEOUT = 500_000  # ZT_PEER_ACTIVITY_TIMEOUT (non-SDK build)


# Address conversions at the runner boundary happen for every datagram; the same few
# endpoints recur, so both directions are cached.
_to_tuple = functools.lru_cache(maxsize=4096)(InetAddress.to_tuple)
_from_tuple = functools.lru_cache(maxsize=4096)(InetAddress.from_tuple)


@dataclass(frozen=True, slots=True)
class PathInfo:
    address: str
    local_socket: int
    last_send: int
    last_receive: int
    alive: bool
    preferred: bool
    latency: int


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One row of the peer list (ZT_Peer)."""

    address: Address
    role: str  # "LEAF", "MOON" or "PLANET"
    version: str  # "major.minor.revision" or "-"
    proto_version: int
    latency: int  # ms, -1 if unknown
    paths: tuple[PathInfo, ...] = field(default_factory=tuple)

    @property
    def direct(self) -> bool:
        return any(p.alive for p in self.paths)

    def to_json(self) -> dict[str, object]:
        """The shape zerotier-one's /peer API uses."""
        major, minor, rev = (int(x) for x in self.version.split(".")) if self.version != "-" else (-1, -1, -1)
        return {
            "address": str(self.address),
            "versionMajor": major,
            "versionMinor": minor,
            "versionRev": rev,
            "version": self.version,
            "latency": self.latency,
            "role": self.role,
            "paths": [
                {
                    "address": p.address,
                    "lastSend": p.last_send,
                    "lastReceive": p.last_receive,
                    "active": p.alive,
                    "expired": not p.alive,
                    "preferred": p.preferred,
                    "trustedPathId": 0,
                    "localSocket": p.local_socket,
                }
                for p in self.paths
            ],
        }


@dataclass(slots=True)
class _PendingEcho:
    destination: int
    sent_at: int
    callback: Callable[[int], None] | None


class Node:
    """One ZeroTier node. All methods take `now` (ms) from the caller."""

    def __init__(
        self,
        callbacks: NodeCallbacks,
        now: int,
        *,
        planet: World | None = None,
        allow_loopback: bool = False,
        identity: Identity | None = None,
        trace: bool = False,
    ) -> None:
        self.callbacks = callbacks
        self.allow_loopback = allow_loopback
        self._trace_enabled = trace
        self.lane: NodeLane | None = None
        self.tracer = Tracer(self, lambda ev: self.post_event(EventType.TRACE, ev))
        self._now = now
        self.identity = identity if identity is not None else self._load_or_create_identity()
        if not self.identity.has_private:
            raise ZTError("a node needs an identity with its private key")
        self.topology = Topology(self.identity, self._choose_planet(planet))
        self.topology.cache_load = lambda a: self.callbacks.state_get(StateObjectType.PEER, (a,))
        self.topology.cache_save = lambda a, data: self.callbacks.state_put(StateObjectType.PEER, (a,), data)
        self.topology.restored = self._try_restored_peer
        self.switch = Switch(self)
        self.switch.on_echo_reply = self._on_echo_reply
        self.multicaster = Multicaster()
        self.vl2 = VL2Switch(self)
        self.switch.vl2 = self.vl2
        # The established-session fast lane (None without the C extensions).
        self.lane = make_lane(self, self.switch.stats, self.vl2.stats)
        self.switch.lane = self.lane
        self._networks: dict[int, Network] = {}
        self.controller: NetworkController | None = None
        self._controller_authorizations: dict[tuple[int, int], int] = {}
        self.online = False
        self._last_ping_check = -PING_CHECK_INTERVAL
        self._last_housekeeping = now
        self._direct_paths: list[InetAddress] = []
        self._pending_echo: dict[int, _PendingEcho] = {}
        self._down = False
        self.post_event(EventType.UP)

    # ------------------------------------------------------------ start-up
    def _load_or_create_identity(self) -> Identity:
        raw = self.callbacks.state_get(StateObjectType.IDENTITY_SECRET, ())
        if raw is not None:
            try:
                identity = Identity.from_string(raw.decode("ascii", "replace"))
            except InvalidFormatError as e:
                raise ZTError(f"stored identity.secret is not a valid identity: {e}") from e
            if not identity.has_private:
                raise ZTError("stored identity.secret has no private key")
            return identity
        identity = Identity.generate()
        self.callbacks.state_put(
            StateObjectType.IDENTITY_SECRET, (), identity.to_string(include_private=True).encode()
        )
        self.callbacks.state_put(StateObjectType.IDENTITY_PUBLIC, (), identity.to_string().encode())
        return identity

    def _choose_planet(self, given: World | None) -> World:
        base = given if given is not None else default_planet()
        raw = self.callbacks.state_get(StateObjectType.PLANET, ())
        if raw:
            try:
                stored, _ = World.from_bytes(raw)
            except InvalidFormatError:
                log.warning("stored planet is corrupt; using the configured one")
                return base
            if stored.type == WorldType.PLANET and (
                stored.id != base.id or stored.timestamp >= base.timestamp
            ):
                # A stored planet of another id means the operator installed it on purpose.
                return stored if given is None or stored.id == base.id else base
        return base

    @property
    def address(self) -> Address:
        return self.identity.address

    @property
    def planet(self) -> World:
        return self.topology.planet

    # ---------------------------------------------------- VL1Host protocol
    def put_packet(self, local_socket: int, address: InetAddress, data: bytes, ttl: int = 0) -> bool:
        return self.callbacks.wire_packet_send(local_socket, _to_tuple(address), data, ttl)

    def post_event(self, kind: EventType, data: object = None) -> None:
        self.callbacks.event(Event(kind, {} if data is None else data))  # type: ignore[arg-type]

    # ------------------------------------------------------------- tracing
    @property
    def trace_enabled(self) -> bool:
        """Trace every frame through the rules (what `ztnode trace` and the workbench turn on)."""
        return self._trace_enabled

    @trace_enabled.setter
    def trace_enabled(self, on: bool) -> None:
        self._trace_enabled = bool(on)
        self.lane_invalidate()  # traced frames never take the lane

    def trace(self, kind: str, /, **fields: object) -> None:
        """What VL1/VL2 report: mapped to a typed event (ztcore.tracing), kept in the
        ring buffer, posted as EventType.TRACE and sent to remote targets that want it.
        (`kind` is positional-only: a field may itself be called ``kind``.)"""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s", self.identity.address, kind, fields)
        self.tracer.record_kind(self._now, kind, fields)

    def trace_network_filter(self, now: int, network_id: int, **fields: Any) -> TraceEvent:
        """Trace::networkFilter, for the rules engine: one frame's verdict (0 drop,
        1 accept, 2 super-accept) with the base and capability rule logs; the fields
        are `Tracer.network_filter`'s. The real core traces only when the network
        names a trace target (`filter_trace_wanted`)."""
        return self.tracer.network_filter(now, network_id, **fields)

    def filter_trace_wanted(self, network_id: int) -> bool:
        """True if frames on this network should be traced through the rules: its config
        names a remote trace target (as the real core), or local tracing is on."""
        if self._trace_enabled:
            return True
        # Asked for every frame in and out: the one network's config, without building lists.
        network = self._networks.get(network_id)
        config = network.config if network is not None else None
        return config is not None and bool(int(config.remote_trace_target))

    def remote_trace_targets(self, network_id: int | None) -> list[tuple[int, int]]:
        """(target, level) named by one joined network's config (``tt``/``tl``), or by all."""
        if network_id is None:
            nets = list(self._networks.values())
        else:
            one = self._networks.get(int(network_id))
            nets = [one] if one is not None else []
        out: list[tuple[int, int]] = []
        for n in nets:
            c = n.config
            if c is not None and int(c.remote_trace_target):
                out.append((int(c.remote_trace_target), int(c.remote_trace_level)))
        return out

    def send_remote_trace(self, now: int, destination: int, payload: bytes) -> None:
        if int(destination) == int(self.address):
            self.on_remote_trace(now, int(destination), payload)  # we are our own target
        else:
            self.switch.send(now, int(destination), Verb.REMOTE_TRACE, payload)

    def on_remote_trace(self, now: int, source: int, payload: bytes) -> None:
        """A VERB_REMOTE_TRACE from `source`: each dictionary is posted as
        EventType.REMOTE_TRACE (a `RemoteTrace`) and handed to our controller, if any."""
        for data in split_payload(bytes(payload)):
            try:
                event: TraceEvent | None = decode(data, timestamp=now)
            except InvalidFormatError as e:
                self.switch.drops["remote_trace_malformed"] += 1
                log.debug("remote trace from %010x: %s", int(source), e)
                event = None
            rt = RemoteTrace(int(source), data, event, now)
            self.post_event(EventType.REMOTE_TRACE, rt)
            handler = getattr(self.controller, "handle_remote_trace", None)
            if handler is not None:
                try:
                    handler(now, rt)
                except Exception as e:  # noqa: BLE001 - a controller bug must not stop packet processing
                    report_unexpected(log, "node: controller remote trace", e)

    def traces(self, since: int = 0, limit: int = 1024) -> list[tuple[int, TraceEvent]]:
        """The ring buffer's events newer than sequence number `since`, oldest first."""
        return self.tracer.since(since, limit)

    def should_use_path(self, address: int, local_socket: int, remote: InetAddress) -> bool:
        """Node::shouldUsePathForZeroTierTraffic: the real core never uses loopback
        paths; ztcore nodes may, when the runner allows it (in-process simulations)."""
        if remote.scope == IpScope.LOOPBACK and not self.allow_loopback:
            return False
        return remote.port != 0

    def direct_paths(self) -> list[InetAddress]:
        return list(self._direct_paths)

    def set_direct_paths(self, addresses: list[InetAddress]) -> None:
        """Local addresses the runner knows it is reachable at (sent in PUSH_DIRECT_PATHS)."""
        self._direct_paths = list(addresses)

    def world_changed(self, world: World) -> None:
        if world.type == WorldType.PLANET:
            self.callbacks.state_put(StateObjectType.PLANET, (), world.to_bytes())
        else:
            self.callbacks.state_put(StateObjectType.MOON, (world.id,), world.to_bytes())

    def upstream_heard(self, now: int) -> None:
        # The real core notices this at its next 5 s ping check; noticing it at once
        # costs nothing and makes start-up prompt.
        if not self.online:
            self.online = True
            self.post_event(EventType.ONLINE)

    # ------------------------------------------------------------- inputs
    def process_wire_packet(
        self, now: int, local_socket: int, remote: tuple[str, int], data: bytes, *, lane_tried: bool = False
    ) -> None:
        """A datagram from the wire. ``lane_tried``: the runner offered it to `lane` itself
        (which returned None), so it goes the general way at once."""
        self._now = now
        lane = None if lane_tried else self.lane
        if lane is not None and type(data) is bytes:
            taken = lane.receive(now, local_socket, remote, data)
            if taken is not None:
                self.lane_output(now, local_socket, remote, taken)
                return
        try:
            address = _from_tuple(remote)
        except (InvalidFormatError, TypeError):
            self.switch.drops["bad_remote_address"] += 1
            return
        self.switch.on_remote_packet(now, local_socket, address, bytes(data))

    def lane_output(self, now: int, local_socket: int, remote: tuple[str, int], taken: Any) -> None:
        """Hand on what `lane.receive` returned for a datagram (anything but None)."""
        if taken is True:
            return  # a piece of a packet, kept (or dropped as the Reassembler would)
        if type(taken) is bytes:
            self.callbacks.wire_packet_send(local_socket, remote, taken, 0)
        elif len(taken) == 5:
            nwid, source_mac, dest_mac, ethertype, payload = taken
            self.callbacks.virtual_network_frame(
                VirtualFrame(nwid, source_mac, dest_mac, ethertype, 0, payload)
            )
        else:  # put together from pieces the lane kept, but not the lane's to take
            try:
                address = _from_tuple(remote)
            except (InvalidFormatError, TypeError):
                self.switch.drops["bad_remote_address"] += 1
                return
            self.switch.on_reassembled_packet(now, local_socket, address, taken[0])

    def lane_send(self, out: tuple[int, tuple[str, int], Any]) -> None:
        """Send what `lane.send` returned: one datagram, or a packet's pieces (in one call
        when the callbacks offer the optional ``wire_packets_send``)."""
        local_socket, remote, wire = out
        if type(wire) is bytes:
            self.callbacks.wire_packet_send(local_socket, remote, wire, 0)
            return
        send_many = getattr(self.callbacks, "wire_packets_send", None)
        if send_many is not None:
            send_many(local_socket, remote, wire)
            return
        for piece in wire:
            self.callbacks.wire_packet_send(local_socket, remote, piece, 0)

    def disable_lane(self) -> None:
        """Take every packet the general way from now on (the reference path: for
        comparisons; the environment's ZTCORE_NO_LANE=1 does it for every node)."""
        self.lane = None
        self.switch.lane = None

    def lane_invalidate(self) -> None:
        """Something the lane caches may have changed (see ztcore.lane)."""
        if self.lane is not None:
            self.lane.clear()

    def process_background_tasks(self, now: int) -> int:
        """Run timers; returns the absolute time (ms) by which to be called again."""
        self._now = now
        until_ping = PING_CHECK_INTERVAL - (now - self._last_ping_check)
        if until_ping <= 0:
            self.lane_invalidate()
            self._last_ping_check = now
            until_ping = PING_CHECK_INTERVAL
            self._ping_peers(now)
            self._update_online(now)
            self._network_tasks(now)
        if now - self._last_housekeeping >= HOUSEKEEPING_PERIOD:
            self._last_housekeeping = now
            self.topology.clean(now)
            self.multicaster.clean(now)
            for network in self._networks.values():
                network.clean(lambda a: self.topology.get_peer(a) is not None)
            for key, t in list(self._controller_authorizations.items()):
                if now - t > NETWORK_AUTOCONF_DELAY * 3:
                    del self._controller_authorizations[key]
            for pid, pe in list(self._pending_echo.items()):
                if now - pe.sent_at > 30_000:
                    del self._pending_echo[pid]
        switch_delay = self.switch.do_timer_tasks(now)
        self.vl2.do_timer_tasks(now)
        return now + max(min(until_ping, switch_delay), CORE_TIMER_TASK_GRANULARITY)

    def _update_online(self, now: int) -> None:
        last = max(
            (p.last_receive for a in self.topology.upstream_addresses() if (p := self.topology.get_peer(a))),
            default=0,
        )
        online = (last > 0 and (now - last) < PEER_ACTIVITY_TIMEOUT) or self.topology.am_upstream
        if online != self.online:
            self.online = online
            self.post_event(EventType.ONLINE if online else EventType.OFFLINE)

    def _ping_peers(self, now: int) -> None:
        topo = self.topology
        best_upstream = topo.get_upstream_peer(now)
        for peer in topo.each_peer():
            if topo.is_upstream(peer.address):
                has_paths = bool(peer.paths)
                scale = 16 if has_paths else 0
                if (
                    peer.last_sent_full_hello
                    and (now - peer.last_sent_full_hello) <= PATH_HEARTBEAT_PERIOD * scale
                ):
                    # Also keep the path alive: heartbeats are cheap ECHOs.
                    self._ping_and_keepalive(now, peer)
                    continue
                sent = self._ping_and_keepalive(now, peer)
                contacted = sent != 0
                endpoints = list(topo.upstream_endpoints(peer.address))
                random.shuffle(endpoints)
                for family_bit, want_v6 in ((0x1, False), (0x2, True)):
                    if sent & family_bit:
                        continue
                    for ep in endpoints:
                        if ep.is_v6 == want_v6 and self.should_use_path(peer.address, -1, ep):
                            self.switch.send_hello(now, peer, -1, ep)
                            peer.last_sent_full_hello = now
                            contacted = True
                            break
                if not contacted and best_upstream is not None and best_upstream is not peer:
                    up = best_upstream.best_path(now)
                    if up is not None:
                        self.switch.send_hello(now, peer, up.local_socket, up.address)
            elif peer.is_active(now):
                self._ping_and_keepalive(now, peer)

    def _ping_and_keepalive(self, now: int, peer: Peer) -> int:
        """Peer::doPingAndKeepalive: full HELLO every ping period, ECHO heartbeats
        in between, expired paths dropped. Returns bits 0x1 (IPv4) / 0x2 (IPv6) sent."""
        full = (now - peer.last_sent_full_hello) >= PEER_PING_PERIOD or not peer.last_sent_full_hello
        if full:
            peer.last_sent_full_hello = now
        sent = 0
        peer.expire_paths(now)
        for pp in peer.paths:
            if (now - pp.last_receive) < PEER_PATH_EXPIRATION and (full or pp.path.needs_heartbeat(now)):
                self.switch.attempt_to_contact_at(now, peer, pp.path.local_socket, pp.path.address, full)
                pp.path.sent(now)
                sent |= 0x2 if pp.path.address.is_v6 else 0x1
        return sent

    # ----------------------------------------------------------- commands
    def send_user_message(self, now: int, destination: int, type_id: int, data: bytes) -> bool:
        """VERB_USER_MESSAGE; True if sent or queued for sending after WHOIS."""
        self._now = now
        if int(destination) == int(self.address):
            return False
        self.switch.send(now, Address(destination), Verb.USER_MESSAGE, struct.pack(">Q", type_id) + data)
        return True

    def echo(self, now: int, destination: int, callback: Callable[[int], None] | None = None) -> bool:
        """Send a VL1 ECHO to `destination`; `callback(rtt_ms)` runs when OK(ECHO) returns."""
        self._now = now
        peer = self.topology.get_peer(destination)
        token = random.getrandbits(64)
        payload = struct.pack(">Q", token)
        self._pending_echo[token] = _PendingEcho(int(destination), now, callback)
        if peer is None:
            self.switch.send(now, Address(destination), Verb.ECHO, payload)
            return True
        return self.switch.send(now, peer.address, Verb.ECHO, payload) or True

    def _on_echo_reply(self, now: int, peer: Peer, in_re_packet_id: int, payload: bytes) -> None:
        if len(payload) < 8:
            return
        (token,) = struct.unpack_from(">Q", payload, 0)
        pending = self._pending_echo.pop(token, None)
        if pending is None or pending.destination != int(peer.address):
            return
        if pending.callback is not None:
            pending.callback(now - pending.sent_at)

    def orbit(self, moon: World) -> bool:
        """Add a moon (its roots become upstreams too); True if accepted."""
        if self.topology.add_world(moon):
            self.world_changed(moon)
            return True
        return False

    def deorbit(self, moon_id: int) -> bool:
        if self.topology.remove_moon(moon_id):
            self.callbacks.state_put(StateObjectType.MOON, (moon_id,), None)
            return True
        return False

    def _try_restored_peer(self, peer: Peer, addresses: list[InetAddress]) -> None:
        # As the real core: cached paths are not trusted, only tried with a HELLO.
        for at in addresses[:4]:
            if self.should_use_path(peer.address, -1, at):
                self.switch.send_hello(self._now, peer, -1, at)

    def shutdown(self, now: int) -> None:
        if self._down:
            return
        self._down = True
        self.topology.save_all_peers()
        self.post_event(EventType.DOWN)

    # ---------------------------------------------------------------- VL2
    def _network_tasks(self, now: int) -> None:
        for network in list(self._networks.values()):
            if network.needs_config(now) and now - network.last_config_request >= PING_CHECK_INTERVAL:
                self.vl2.request_configuration(now, network)
            self.vl2.announce_multicast_groups(now, network)

    def get_network(self, network_id: int) -> Network | None:
        return self._networks.get(int(network_id))

    def join(self, network_id: int) -> dict[str, object]:
        """Join a network (or return it if already joined); restores a saved config."""
        network_id = int(network_id)
        if not 0 < network_id < (1 << 64):
            raise ZTError(f"invalid network id {network_id:#x}")
        network = self._networks.get(network_id)
        if network is None:
            saved = self.callbacks.state_get(StateObjectType.NETWORK_CONFIG, (network_id,))
            network = Network(self, network_id, self._now, saved)
            self._networks[network_id] = network
            if network.config is None:
                self.vl2.request_configuration(self._now, network)
        return network.info()

    def leave(self, network_id: int) -> bool:
        network = self._networks.pop(int(network_id), None)
        if network is None:
            return False
        self.lane_invalidate()
        network.destroyed = True
        self.callbacks.state_put(StateObjectType.NETWORK_CONFIG, (int(network_id),), None)
        self.callbacks.virtual_network_config(int(network_id), "destroy", None)
        return True

    def networks(self) -> list[dict[str, object]]:
        """Joined networks in zerotier-one's /network JSON shape."""
        return [n.info() for n in sorted(self._networks.values(), key=lambda n: n.id)]

    def network(self, network_id: int) -> dict[str, object] | None:
        network = self._networks.get(int(network_id))
        return network.info() if network is not None else None

    def set_network_settings(self, network_id: int, settings: dict[str, bool]) -> None:
        """Local per-network settings as zerotier-one keeps them (allowManaged, allowGlobal,
        allowDefault, allowDNS); they tell the host side what it may apply."""
        network = self._networks.get(int(network_id))
        if network is None:
            raise ZTError(f"not a member of network {int(network_id):016x}")
        for key, value in settings.items():
            if key in network.settings:
                network.settings[key] = bool(value)
        self.callbacks.virtual_network_config(network.id, "update", network.info())

    def network_config(self, network_id: int) -> NetworkConfig | None:
        network = self._networks.get(int(network_id))
        return network.config if network is not None else None

    def multicast_subscribe(self, network_id: int, mac: int, adi: int = 0) -> bool:
        network = self._networks.get(int(network_id))
        if network is None:
            return False
        group = MulticastGroup(mac, adi)
        if group not in network.subscriptions:
            network.subscriptions.add(group)
            self.vl2.announce_multicast_groups(self._now, network, force=True)
        return True

    def multicast_unsubscribe(self, network_id: int, mac: int, adi: int = 0) -> bool:
        network = self._networks.get(int(network_id))
        if network is None:
            return False
        network.subscriptions.discard(MulticastGroup(mac, adi))
        return True

    def process_virtual_network_frame(
        self,
        now: int,
        network_id: int,
        source_mac: int,
        dest_mac: int,
        ethertype: int,
        vlan_id: int,
        data: bytes,
        *,
        lane_tried: bool = False,
    ) -> bool:
        """A frame from the host side of a joined network; False if it was dropped.
        ``lane_tried``: as for `process_wire_packet`, with `lane.send`."""
        self._now = now
        lane = None if lane_tried else self.lane
        if lane is not None and not vlan_id:
            out = lane.send(now, network_id, source_mac, dest_mac, ethertype, data)
            if out is not None:
                self.lane_send(out)
                return True
        network = self._networks.get(int(network_id))
        if network is None:
            self.vl2.drops["not_a_member"] += 1
            return False
        return self.vl2.on_local_frame(now, network, source_mac, dest_mac, ethertype, vlan_id, bytes(data))

    # NetworkHost / VL2Host
    def state_put(self, kind: StateObjectType, object_id: tuple[int, ...], data: bytes | None) -> None:
        self.callbacks.state_put(kind, object_id, data)

    def network_config_changed(self, network: Network, operation: str) -> None:
        self.lane_invalidate()
        if network.destroyed:
            return
        self.callbacks.virtual_network_config(network.id, operation, network.info())
        if network.config is not None:
            self.vl2.announce_multicast_groups(self._now, network, force=True)

    def lookup_identity(self, address: int) -> Identity | None:
        identity = self.topology.get_identity(address)
        if identity is None:
            self.switch.request_whois(self._now, address)
        return identity

    def peer_last_heard(self, address: int) -> int | None:
        """When an authenticated packet from ``address`` last arrived (None: never);
        the hosted controller counts members heard from recently as online."""
        peer = self.topology.get_peer(int(address))
        return None if peer is None or not peer.last_receive else peer.last_receive

    def controller_has_authorized(self, now: int, network_id: int, address: int) -> bool:
        t = self._controller_authorizations.get((int(network_id), int(address)))
        return t is not None and now - t < NETWORK_AUTOCONF_DELAY * 3

    def deliver_frame(
        self, network: Network, source_mac: int, dest_mac: int, ethertype: int, vlan_id: int, data: bytes
    ) -> None:
        self.callbacks.virtual_network_frame(
            VirtualFrame(network.id, int(source_mac), int(dest_mac), ethertype, vlan_id, data)
        )

    # ----------------------------------------------------------- controller
    def set_controller(self, controller: NetworkController | None) -> None:
        """Host a network controller for networks whose id starts with our address."""
        self.controller = controller
        if controller is not None:
            controller.init(self.identity, self)

    def nc_send_config(
        self, network_id: int, request_packet_id: int, destination: Address, config: NetworkConfig
    ) -> None:
        self._controller_authorizations[(int(network_id), int(destination))] = self._now
        if int(destination) == int(self.address):
            network = self._networks.get(int(network_id))
            if network is not None:
                network.set_configuration(self._now, config)
            return
        for chunk in NetworkConfigChunker(self.identity).chunks(network_id, config):
            if request_packet_id:
                payload = struct.pack(">BQ", Verb.NETWORK_CONFIG_REQUEST, request_packet_id) + chunk
                self.switch.send(self._now, int(destination), Verb.OK, payload)
            else:
                self.switch.send(self._now, int(destination), Verb.NETWORK_CONFIG, chunk)

    def nc_send_revocation(self, destination: Address, revocation: Revocation) -> None:
        if int(destination) == int(self.address):
            network = self._networks.get(revocation.network_id)
            if network is not None:
                network.add_revocation(revocation)
            return
        payload = NetworkCredentials(revocations=[revocation]).to_bytes()
        self.switch.send(self._now, int(destination), Verb.NETWORK_CREDENTIALS, payload)

    def nc_send_error(
        self,
        network_id: int,
        request_packet_id: int,
        destination: Address,
        error: ControllerError,
        error_data: bytes = b"",
    ) -> None:
        if int(destination) == int(self.address):
            network = self._networks.get(int(network_id))
            if network is None:
                return
            if error == ControllerError.ACCESS_DENIED:
                network.set_access_denied()
            elif error in (ControllerError.OBJECT_NOT_FOUND, ControllerError.INTERNAL_SERVER_ERROR):
                network.set_not_found()
            return
        if not request_packet_id:
            return  # an ERROR must answer something
        code = {
            ControllerError.ACCESS_DENIED: ErrorCode.NETWORK_ACCESS_DENIED_,
            ControllerError.AUTHENTICATION_REQUIRED: ErrorCode.NETWORK_AUTHENTICATION_REQUIRED,
        }.get(error, ErrorCode.OBJ_NOT_FOUND)
        payload = struct.pack(">BQBQ", Verb.NETWORK_CONFIG_REQUEST, request_packet_id, code, int(network_id))
        if error_data and len(error_data) <= 0xFFFF:
            payload += struct.pack(">H", len(error_data)) + error_data
        self.switch.send(self._now, int(destination), Verb.ERROR, payload)

    # ------------------------------------------------------------- queries
    def peers(self, now: int | None = None) -> list[PeerInfo]:
        now = self._now if now is None else now
        result: list[PeerInfo] = []
        for peer in self.topology.each_peer():
            best = peer.best_path(now)
            paths = tuple(
                PathInfo(
                    address=str(pp.path.address),
                    local_socket=pp.path.local_socket,
                    last_send=pp.path.last_out,
                    last_receive=pp.path.last_in,
                    alive=pp.path.alive(now),
                    preferred=pp.path is best,
                    latency=pp.path.latency,
                )
                for pp in peer.paths
            )
            result.append(
                PeerInfo(
                    address=peer.identity.address,
                    role=self.topology.role(peer.address).name,
                    version=peer.version_string,
                    proto_version=peer.proto_version,
                    latency=peer.latency(now),
                    paths=paths,
                )
            )
        result.sort(key=lambda p: int(p.address))
        return result

    def peer(self, address: int, now: int | None = None) -> PeerInfo | None:
        for p in self.peers(now):
            if int(p.address) == int(address):
                return p
        return None

    def status(self) -> dict[str, object]:
        """The shape of zerotier-one's /status."""
        return {
            "address": str(self.address),
            "publicIdentity": self.identity.to_string(),
            "online": self.online,
            "version": ".".join(str(v) for v in SOFTWARE_VERSION),
            "versionMajor": SOFTWARE_VERSION[0],
            "versionMinor": SOFTWARE_VERSION[1],
            "versionRev": SOFTWARE_VERSION[2],
            "versionBuild": 0,
            "protocolVersion": PROTO_VERSION,
            "planetWorldId": self.planet.id,
            "planetWorldTimestamp": self.planet.timestamp,
            "clock": self._now,
            "tcpFallbackActive": False,
            "role": PeerRole.PLANET.name if self.topology.am_upstream else PeerRole.LEAF.name,
        }

    @property
    def drops(self) -> dict[str, int]:
        return dict(self.switch.drops)
