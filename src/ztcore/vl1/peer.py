"""A remote ZeroTier node as seen by VL1: its identity, the symmetric keys agreed
with it, its known paths and its reported software version (ZeroTier's Peer)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ztcore.errors import InvalidFormatError
from ztcore.identity import Identity
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.packet import PROTO_VERSION, AesKeys, derive_aes_keys
from ztcore.vl1.path import Path

MAX_PEER_NETWORK_PATHS = 64  # ZT_MAX_PEER_NETWORK_PATHS
PEER_PING_PERIOD = 60_000  # ZT_PEER_PING_PERIOD
PEER_PATH_EXPIRATION = PEER_PING_PERIOD * 4 + 3_000  # ZT_PEER_PATH_EXPIRATION
PEER_ACTIVITY_TIMEOUT = 500_000  # ZT_PEER_ACTIVITY_TIMEOUT
DIRECT_PATH_PUSH_INTERVAL = 15_000
DIRECT_PATH_PUSH_INTERVAL_HAVEPATH = 120_000
AES_MIN_PROTO_VERSION = 12  # peers at or above this get AES-GMAC-SIV


@dataclass(eq=False, slots=True)
class PeerPath:
    path: Path
    last_receive: int
    priority: int = 1


@dataclass(eq=False)
class Peer:
    identity: Identity
    key: bytes  # 48-byte agreed key
    aes_keys: AesKeys
    paths: list[PeerPath] = field(default_factory=list)
    proto_version: int = -1
    version: tuple[int, int, int] | None = None  # (major, minor, revision)
    last_receive: int = 0
    last_nontrivial_receive: int = 0
    last_sent_full_hello: int = 0
    last_direct_path_push_sent: int = 0
    last_trust: int = -600_000
    tried_paths: dict[tuple[int, object], int] = field(default_factory=dict)
    last_whois_gate: int = 0
    whois_gate_count: int = 0

    @classmethod
    def create(cls, own: Identity, identity: Identity) -> Peer:
        """Agree keys with `identity`; raises ZTError on a degenerate public key."""
        key = own.agree(identity)
        return cls(identity=identity, key=key, aes_keys=derive_aes_keys(key))

    @property
    def address(self) -> int:
        return self.identity.address

    # ------------------------------------------------------------ cache form
    def to_cache_bytes(self) -> bytes:
        """The real core's peer cache record (peers.d/<address>.peer): version 2,
        identity, remote version, and the addresses of its paths."""
        major, minor, rev = self.version if self.version else (0, 0, 0)
        out = bytearray(b"\x02")
        out += self.identity.to_bytes(include_private=False)
        out += struct.pack(">HHHH", max(self.proto_version, 0) & 0xFFFF, major, minor, rev)
        addrs = [pp.path.address for pp in self.paths]
        out += struct.pack(">H", len(addrs))
        for a in addrs:
            out += a.to_bytes()
        return bytes(out)

    @classmethod
    def from_cache_bytes(cls, own: Identity, data: bytes) -> tuple[Peer, list[InetAddress]]:
        """Restore a cached peer; returns it and the addresses worth trying.
        Raises InvalidFormatError on anything malformed (or ZTError on a bad key)."""
        try:
            if not data or data[0] != 2:
                raise InvalidFormatError("unknown peer cache record version")
            identity, n = Identity.from_bytes(data, 1)
            ptr = 1 + n
            proto, major, minor, rev, count = struct.unpack_from(">HHHHH", data, ptr)
            ptr += 10
            addrs: list[InetAddress] = []
            for _ in range(count):
                addr, n = InetAddress.from_bytes(data, ptr)
                ptr += n
                if addr is not None:
                    addrs.append(addr)
        except (struct.error, IndexError) as e:
            raise InvalidFormatError(f"truncated peer cache record: {e}") from e
        peer = cls.create(own, identity)
        if proto:
            peer.set_remote_version(proto, major, minor, rev)
        return peer, addrs

    def aes_keys_if_supported(self) -> AesKeys | None:
        """AES-GMAC-SIV is used toward peers that announced protocol 12 or newer."""
        return self.aes_keys if self.proto_version >= AES_MIN_PROTO_VERSION else None

    def set_remote_version(self, proto: int, major: int, minor: int, revision: int) -> None:
        self.proto_version = proto
        self.version = (major, minor, revision)

    @property
    def version_string(self) -> str:
        return ".".join(str(v) for v in self.version) if self.version else "-"

    # ---------------------------------------------------------------- paths
    def alive_paths(self, now: int) -> list[PeerPath]:
        return [pp for pp in self.paths if pp.path.alive(now)]

    def best_path(self, now: int, include_expired: bool = False) -> Path | None:
        best: Path | None = None
        best_q = None
        for pp in self.paths:
            if include_expired or (now - pp.last_receive) < PEER_PATH_EXPIRATION:
                q = pp.path.quality(now) // pp.priority
                if best_q is None or q < best_q:
                    best, best_q = pp.path, q
        return best

    def has_active_path_to(self, now: int, address: object) -> bool:
        return any(pp.path.address == address and pp.path.alive(now) for pp in self.paths)

    def relay_quality(self, now: int) -> int:
        """How good this peer is as a relay (lower is better), as Topology ranks roots."""
        path = self.best_path(now, include_expired=False)
        if path is None:
            return 0xFFFFFFFF
        return path.quality(now)

    def latency(self, now: int) -> int:
        path = self.best_path(now)
        return path.latency if path is not None else -1

    def is_active(self, now: int) -> bool:
        return (now - self.last_nontrivial_receive) < PEER_ACTIVITY_TIMEOUT

    def trust_established(self, now: int) -> bool:
        return (now - self.last_trust) < 600_000

    def rate_gate_inbound_whois(self, now: int) -> bool:
        if now - self.last_whois_gate >= 1000:
            self.last_whois_gate = now
            self.whois_gate_count = 0
        self.whois_gate_count += 1
        return self.whois_gate_count <= 20

    def learn_path(self, path: Path, now: int) -> bool:
        """Adopt `path` (after an OK arrived over it); replaces a dead path to the same
        IP on the same socket, else a free slot, else the oldest. Returns True if new."""
        for pp in self.paths:
            if pp.path is path:
                pp.last_receive = now
                return False
        replace = None
        for i, pp in enumerate(self.paths):
            if (
                pp.path.address.ips_equal(path.address)
                and pp.path.local_socket == path.local_socket
                and not pp.path.alive(now)
            ):
                replace = i
                break
        if replace is None and len(self.paths) >= MAX_PEER_NETWORK_PATHS:
            replace = max(range(len(self.paths)), key=lambda i: now - self.paths[i].path.last_in)
        if replace is None:
            self.paths.append(PeerPath(path, now))
        else:
            self.paths[replace] = PeerPath(path, now)
        return True

    def expire_paths(self, now: int) -> None:
        max_priority = max((pp.priority for pp in self.paths), default=0)
        self.paths = [
            pp
            for pp in self.paths
            if (now - pp.last_receive) < PEER_PATH_EXPIRATION and pp.priority == max_priority
        ]


__all__ = ["Peer", "PeerPath", "PROTO_VERSION"]
