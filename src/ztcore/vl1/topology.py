"""What a node knows of the network around it: peers, physical paths, the planet
and moons, and which peers are upstream roots (ZeroTier's Topology)."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator

from ztcore.errors import ZTError, report_unexpected
from ztcore.identity import Identity
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.path import Path
from ztcore.vl1.peer import PEER_ACTIVITY_TIMEOUT, Peer
from ztcore.vl1.world import World, WorldType

log = logging.getLogger(__name__)

# Kept paths (authenticated endpoints); the least recently active unused ones go first.
MAX_PATHS = 16_384


class PeerRole(enum.IntEnum):
    """As ZT_PeerRole."""

    LEAF = 0
    MOON = 1
    PLANET = 2


class Topology:
    def __init__(self, identity: Identity, planet: World) -> None:
        self.identity = identity
        self.planet = planet
        self.moons: dict[int, World] = {}
        self.peers: dict[int, Peer] = {}
        self.paths: dict[tuple[int, InetAddress], Path] = {}
        self._upstreams: dict[int, tuple[InetAddress, ...]] = {}
        self._roles: dict[int, PeerRole] = {}
        # Peer cache (the node's PEER state objects): load(address) -> bytes | None,
        # save(address, bytes); `restored(peer, addresses)` tries a restored peer's paths.
        self.cache_load: Callable[[int], bytes | None] | None = None
        self.cache_save: Callable[[int, bytes], None] | None = None
        self.restored: Callable[[Peer, list[InetAddress]], None] | None = None
        self._rebuild_upstreams()

    # ------------------------------------------------------------- worlds
    def _rebuild_upstreams(self) -> None:
        upstreams: dict[int, tuple[InetAddress, ...]] = {}
        roles: dict[int, PeerRole] = {}
        for moon in self.moons.values():
            for root in moon.roots:
                upstreams[int(root.identity.address)] = tuple(root.stable_endpoints)
                roles[int(root.identity.address)] = PeerRole.MOON
        for root in self.planet.roots:
            upstreams[int(root.identity.address)] = tuple(root.stable_endpoints)
            roles[int(root.identity.address)] = PeerRole.PLANET
        upstreams.pop(int(self.identity.address), None)
        self._upstreams = upstreams
        self._roles = roles
        # Roots' identities are known from the worlds: no WHOIS is ever needed for them.
        for world in [self.planet, *self.moons.values()]:
            for root in world.roots:
                if (
                    root.identity.address != self.identity.address
                    and int(root.identity.address) not in self.peers
                ):
                    try:
                        self.peers[int(root.identity.address)] = Peer.create(self.identity, root.identity)
                    except Exception as e:  # noqa: BLE001 - a degenerate root key: unusable, skip it
                        report_unexpected(log, f"topology: root {root.identity.address} unusable", e)
                        continue

    def add_world(self, world: World) -> bool:
        """Accept a planet or moon update under the real core's rule; True if taken."""
        if world.type == WorldType.PLANET:
            if self.planet.should_be_replaced_by(world):
                self.planet = world
                self._rebuild_upstreams()
                return True
            return False
        if world.type == WorldType.MOON:
            current = self.moons.get(world.id)
            if current is None or current.should_be_replaced_by(world):
                if current is None and not world.verify_signature():
                    return False
                self.moons[world.id] = world
                self._rebuild_upstreams()
                return True
        return False

    def remove_moon(self, world_id: int) -> bool:
        if self.moons.pop(world_id, None) is None:
            return False
        self._rebuild_upstreams()
        return True

    @property
    def am_upstream(self) -> bool:
        """True when this node is itself a root of its planet or of a moon."""
        me = self.identity.address
        return any(r.identity.address == me for w in [self.planet, *self.moons.values()] for r in w.roots)

    def is_upstream(self, address: int) -> bool:
        return int(address) in self._upstreams

    def upstream_addresses(self) -> list[int]:
        return list(self._upstreams)

    def upstream_endpoints(self, address: int) -> tuple[InetAddress, ...]:
        return self._upstreams.get(int(address), ())

    def role(self, address: int) -> PeerRole:
        return self._roles.get(int(address), PeerRole.LEAF)

    def should_accept_world_update_from(self, address: int) -> bool:
        return self.is_upstream(address)

    # -------------------------------------------------------------- peers
    def get_peer(self, address: int) -> Peer | None:
        peer = self.peers.get(int(address))
        if peer is None and self.cache_load is not None and int(address) != int(self.identity.address):
            peer = self._restore(int(address))
        return peer

    def _restore(self, address: int) -> Peer | None:
        assert self.cache_load is not None
        try:
            raw = self.cache_load(address)
        except Exception as e:  # noqa: BLE001 - a broken store must not break packet processing
            report_unexpected(log, "topology: loading a cached peer", e)
            return None
        if not raw:
            return None
        try:
            peer, addrs = Peer.from_cache_bytes(self.identity, raw)
        except ZTError as e:
            log.warning("cached peer %010x is unreadable: %s", address, e)
            return None
        if int(peer.address) != address:
            return None
        self.peers[address] = peer
        if self.restored is not None:
            self.restored(peer, addrs)
        return peer

    def save_peer(self, peer: Peer) -> None:
        if self.cache_save is not None:
            try:
                self.cache_save(int(peer.address), peer.to_cache_bytes())
            except Exception as e:  # noqa: BLE001 - persisting is best effort, as in the real core
                report_unexpected(log, "topology: saving a peer", e)

    def save_all_peers(self) -> None:
        for peer in list(self.peers.values()):
            self.save_peer(peer)

    def add_peer(self, peer: Peer) -> Peer:
        """Add `peer` unless one with that address exists; returns the one kept."""
        existing = self.peers.get(int(peer.address))
        if existing is not None:
            return existing
        self.peers[int(peer.address)] = peer
        return peer

    def get_identity(self, address: int) -> Identity | None:
        if int(address) == int(self.identity.address):
            return self.identity
        peer = self.peers.get(int(address))
        return peer.identity if peer is not None else None

    def get_upstream_peer(self, now: int) -> Peer | None:
        """The root with the best relay quality (only roots we have talked to qualify)."""
        best: Peer | None = None
        best_q = None
        for address in self._upstreams:
            peer = self.peers.get(address)
            if peer is None:
                continue
            q = peer.relay_quality(now)
            if best_q is None or q <= best_q:
                best, best_q = peer, q
        return best

    def each_peer(self) -> Iterator[Peer]:
        return iter(list(self.peers.values()))

    # -------------------------------------------------------------- paths
    def get_path(self, local_socket: int, address: InetAddress) -> Path:
        """The kept path for (socket, address), or a new transient one that nothing keeps:
        state for a remote is created only once a packet from it authenticates (see
        `adopt_path`), so unauthenticated junk costs no memory."""
        path = self.paths.get((local_socket, address))
        return path if path is not None else Path(local_socket, address)

    def adopt_path(self, path: Path) -> Path:
        """Keep `path` (a packet over it has authenticated); returns the path to use from
        now on, which is an already kept one for the same endpoint if there is one."""
        key = (path.local_socket, path.address)
        kept = self.paths.get(key)
        if kept is path:
            return path
        if kept is not None:
            kept.last_in = max(kept.last_in, path.last_in)
            kept.last_out = max(kept.last_out, path.last_out)
            return kept
        if len(self.paths) >= MAX_PATHS:
            self._evict_paths()
        self.paths[key] = path
        return path

    def _evict_paths(self) -> None:
        """Make room: forget the least recently active paths no peer uses (an eighth of the
        table), so that many authenticated sources cannot grow it without bound either."""
        in_use = {id(pp.path) for p in self.peers.values() for pp in p.paths}
        idle = sorted(
            ((max(path.last_in, path.last_out), key) for key, path in self.paths.items() if id(path) not in in_use),
            key=lambda item: item[0],
        )
        for _, key in idle[: max(1, MAX_PATHS // 8)]:
            del self.paths[key]

    def clean(self, now: int, path_timeout: int = 600_000) -> None:
        """Forget paths nobody used lately; peers (not roots) silent for the activity
        timeout go to the peer cache and leave memory (Topology::doPeriodicTasks)."""
        for peer in list(self.peers.values()):
            peer.expire_paths(now)
            if not self.is_upstream(peer.address) and (now - peer.last_receive) >= PEER_ACTIVITY_TIMEOUT:
                self.save_peer(peer)
                del self.peers[int(peer.address)]
        in_use = {id(pp.path) for p in self.peers.values() for pp in p.paths}
        for key, path in list(self.paths.items()):
            if id(path) not in in_use and (now - max(path.last_in, path.last_out)) > path_timeout:
                del self.paths[key]
