"""Worlds: the signed root-server lists of ZeroTier (one planet, any number of moons).

Owns the world binary format, its signature, the update rule, the built-in
public planet and world files on disk.

Serialized world (all integers big-endian):

    u8   type                 0 null, 1 planet, 127 moon
    u64  id                   planet: ZT_WORLD_ID_EARTH; moon: its seed root's address
    u64  timestamp            revision, in ms; an update must be newer
    64   update signing key   C25519 public key that must sign the *next* revision
    96   signature            C25519 signature over the signing form (below)
    u8   root count           at most 4
    per root: identity (public form), u8 endpoint count (at most 32), endpoints (InetAddress form)
    moon only: u16 length + that many bytes of a reserved dictionary (written empty, skipped on read)

The signing form is the same bytes without the signature, framed by the 8-byte
markers 0x7f * 8 before and 0xf7 * 8 after.
"""

from __future__ import annotations

import enum
import functools
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ztcore.atomicfile import write_atomic
from ztcore.crypto import (
    C25519_PUBLIC_KEY_LEN,
    C25519_SIGNATURE_LEN,
    c25519_public_from_private,
    c25519_sign,
    c25519_verify,
)
from ztcore.errors import InvalidFormatError
from ztcore.identity import Identity
from ztcore.vl1.inetaddress import InetAddress

__all__ = [
    "WORLD_ID_EARTH",
    "WORLD_ID_MARS",
    "WORLD_MAX_ROOTS",
    "WORLD_MAX_SERIALIZED_LENGTH",
    "WORLD_MAX_STABLE_ENDPOINTS_PER_ROOT",
    "Root",
    "World",
    "WorldType",
    "default_planet",
    "genmoon_order",
    "load_world_file",
    "moon_file_name",
    "save_world_file",
]

WORLD_MAX_ROOTS = 4
WORLD_MAX_STABLE_ENDPOINTS_PER_ROOT = 32
# Upper bound the core allots for one serialized world; larger ones never fit its buffers.
WORLD_MAX_SERIALIZED_LENGTH = (
    (1024 + 32 * WORLD_MAX_STABLE_ENDPOINTS_PER_ROOT) * WORLD_MAX_ROOTS
    + C25519_PUBLIC_KEY_LEN
    + C25519_SIGNATURE_LEN
    + 128
)
WORLD_ID_EARTH = 149604618  # Earth's distance from the sun in km; the public planet's id
WORLD_ID_MARS = 227883110

_SIGN_PREFIX = b"\x7f" * 8
_SIGN_SUFFIX = b"\xf7" * 8
# type, id, timestamp, update key, signature, root count
_HEADER_LEN = 1 + 8 + 8 + C25519_PUBLIC_KEY_LEN + C25519_SIGNATURE_LEN + 1


class WorldType(enum.IntEnum):
    NULL = 0
    PLANET = 1
    MOON = 127


@dataclass(frozen=True)
class Root:
    """One root server: its identity and the fixed endpoints where it can be reached.

    `nil_endpoint_positions` records where the serialized endpoint list held
    entries with no IP (nil or reserved kinds). The core keeps such entries as
    empty addresses and re-serializes them as nil, which matters for signatures;
    normal worlds have none.
    """

    identity: Identity
    stable_endpoints: tuple[InetAddress, ...] = ()
    nil_endpoint_positions: tuple[int, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stable_endpoints", tuple(self.stable_endpoints))
        object.__setattr__(self, "nil_endpoint_positions", tuple(self.nil_endpoint_positions))
        total = len(self.stable_endpoints) + len(self.nil_endpoint_positions)
        nils = self.nil_endpoint_positions
        if len(set(nils)) != len(nils) or any(not 0 <= i < total for i in nils):
            raise ValueError("nil_endpoint_positions must be distinct indexes into the endpoint list")
        if total > WORLD_MAX_STABLE_ENDPOINTS_PER_ROOT:
            raise InvalidFormatError(
                f"root {self.identity.address} has {total} stable endpoints "
                f"(at most {WORLD_MAX_STABLE_ENDPOINTS_PER_ROOT})"
            )

    @property
    def address(self) -> int:
        return self.identity.address

    def to_bytes(self) -> bytes:
        out = [self.identity.to_bytes(include_private=False)]
        total = len(self.stable_endpoints) + len(self.nil_endpoint_positions)
        out.append(bytes((total,)))
        nils = set(self.nil_endpoint_positions)
        eps = iter(self.stable_endpoints)
        for i in range(total):
            out.append(InetAddress.nil_bytes() if i in nils else next(eps).to_bytes())
        return b"".join(out)


def _need(data: bytes, p: int, n: int, what: str) -> None:
    if p + n > len(data):
        raise InvalidFormatError(f"world truncated in {what}")


def _parse_root(data: bytes, p: int) -> tuple[Root, int]:
    start = p
    try:
        identity, used = Identity.from_bytes(data, p)
    except InvalidFormatError:
        raise
    except (ValueError, IndexError, struct.error) as e:  # defensive: keep the error contract
        raise InvalidFormatError(f"bad root identity in world: {e}") from e
    p += used
    _need(data, p, 1, "endpoint count")
    count = data[p]
    p += 1
    if count > WORLD_MAX_STABLE_ENDPOINTS_PER_ROOT:
        raise InvalidFormatError(f"world root lists {count} endpoints (at most 32)")
    endpoints: list[InetAddress] = []
    nils: list[int] = []
    for i in range(count):
        ep, used = InetAddress.from_bytes(data, p)
        p += used
        if ep is None:
            nils.append(i)
        else:
            endpoints.append(ep)
    return Root(identity, tuple(endpoints), tuple(nils)), p - start


@dataclass(frozen=True)
class World:
    """A signed planet or moon definition."""

    type: WorldType
    id: int
    timestamp: int
    update_signing_key: bytes
    signature: bytes
    roots: tuple[Root, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", WorldType(self.type))
        object.__setattr__(self, "roots", tuple(self.roots))
        if not 0 <= self.id < 1 << 64 or not 0 <= self.timestamp < 1 << 64:
            raise InvalidFormatError("world id and timestamp must be unsigned 64-bit integers")
        if len(self.update_signing_key) != C25519_PUBLIC_KEY_LEN:
            raise InvalidFormatError("world update signing key must be 64 bytes")
        if len(self.signature) != C25519_SIGNATURE_LEN:
            raise InvalidFormatError("world signature must be 96 bytes")
        if len(self.roots) > WORLD_MAX_ROOTS:
            raise InvalidFormatError(f"a world has at most {WORLD_MAX_ROOTS} roots, not {len(self.roots)}")

    # ---------------------------------------------------------------- binary form

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> tuple[World, int]:
        """Parse one serialized world at `offset`; returns (world, bytes consumed).

        Like the core, this checks structure only: neither the signature nor the
        root identities are validated here.
        """
        data = bytes(data)
        p = offset
        if p < 0:
            raise InvalidFormatError("negative offset")
        _need(data, p, _HEADER_LEN, "header")
        try:
            wtype = WorldType(data[p])
        except ValueError as e:
            raise InvalidFormatError(f"unknown world type {data[p]}") from e
        wid, ts = struct.unpack_from(">QQ", data, p + 1)
        p += 17
        key = data[p : p + C25519_PUBLIC_KEY_LEN]
        p += C25519_PUBLIC_KEY_LEN
        sig = data[p : p + C25519_SIGNATURE_LEN]
        p += C25519_SIGNATURE_LEN
        nroots = data[p]
        p += 1
        if nroots > WORLD_MAX_ROOTS:
            raise InvalidFormatError(f"world lists {nroots} roots (at most {WORLD_MAX_ROOTS})")
        roots = []
        for _ in range(nroots):
            root, used = _parse_root(data, p)
            roots.append(root)
            p += used
        if wtype == WorldType.MOON:
            # Reserved dictionary: length-prefixed, skipped (and never re-emitted, as in the core).
            _need(data, p, 2, "moon dictionary length")
            dict_len = int.from_bytes(data[p : p + 2], "big")
            _need(data, p + 2, dict_len, "moon dictionary")
            p += 2 + dict_len
        return cls(wtype, wid, ts, key, sig, tuple(roots)), p - offset

    def to_bytes(self, for_signing: bool = False) -> bytes:
        """The serialized world, or with `for_signing` the framed form that gets signed."""
        out = [_SIGN_PREFIX] if for_signing else []
        out.append(struct.pack(">BQQ", int(self.type), self.id, self.timestamp))
        out.append(self.update_signing_key)
        if not for_signing:
            out.append(self.signature)
        out.append(bytes((len(self.roots),)))
        out.extend(r.to_bytes() for r in self.roots)
        if self.type == WorldType.MOON:
            out.append(b"\x00\x00")  # empty reserved dictionary
        if for_signing:
            out.append(_SIGN_SUFFIX)
        return b"".join(out)

    # ---------------------------------------------------------------- signing

    @classmethod
    def make(
        cls,
        *,
        type: WorldType,
        id: int,
        timestamp: int,
        update_signing_public: bytes,
        update_signing_private: bytes | None = None,
        roots: Sequence[Root],
        sign_with: bytes | None = None,
    ) -> World:
        """Build and sign a world.

        The world embeds `update_signing_public` (the key that must sign its next
        revision). It is signed with `sign_with` if given -- for an update, the
        private key matching the *previous* revision's update key -- else with
        `update_signing_private` (a new, self-signed world).
        """
        signer = sign_with if sign_with is not None else update_signing_private
        if signer is None:
            raise ValueError("World.make needs update_signing_private or sign_with")
        if update_signing_private is not None and (
            c25519_public_from_private(update_signing_private) != bytes(update_signing_public)
        ):
            raise ValueError("update_signing_private does not match update_signing_public")
        unsigned = cls(
            WorldType(type),
            id,
            timestamp,
            bytes(update_signing_public),
            bytes(C25519_SIGNATURE_LEN),
            tuple(roots),
        )
        sig = c25519_sign(signer, unsigned.to_bytes(for_signing=True))
        return cls(unsigned.type, id, timestamp, unsigned.update_signing_key, sig, unsigned.roots)

    def verify_signature(self, signing_key: bytes | None = None) -> bool:
        """Check the signature against this world's own update key, or a given (previous) one.

        A world is normally signed by its predecessor's key; the first revision
        and the public planet are signed by the key they embed.
        """
        key = self.update_signing_key if signing_key is None else signing_key
        return c25519_verify(key, self.to_bytes(for_signing=True), self.signature)

    def should_be_replaced_by(self, update: World) -> bool:
        """The core's update rule: same type and id, newer timestamp, signed with *this* world's key.

        A null world (type NULL or id 0) is replaced by anything.
        """
        if self.id == 0 or self.type == WorldType.NULL:
            return True
        if update.id != self.id or update.type != self.type or update.timestamp <= self.timestamp:
            return False
        return update.verify_signature(self.update_signing_key)

    # ---------------------------------------------------------------- queries

    def root_addresses(self) -> set[int]:
        return {r.identity.address for r in self.roots}

    def root(self, address: int) -> Root | None:
        for r in self.roots:
            if r.identity.address == address:
                return r
        return None

    def __bool__(self) -> bool:
        return self.type != WorldType.NULL


# --------------------------------------------------------------------------- helpers


def _endpoint_order(ep: InetAddress) -> tuple:
    # The core sorts sockaddr structures field by field as native integers; on the
    # little-endian machines zerotier-idtool runs on, that means the network-order
    # port and IPv4 address compare byte-reversed. IPv6 addresses compare as bytes.
    port_native = int.from_bytes(ep.port.to_bytes(2, "big"), "little")
    if ep.is_v4:
        return (0, port_native, int.from_bytes(ep.ip.packed, "little"), b"")
    return (1, port_native, 0, ep.ip.packed)


def genmoon_order(roots: Iterable[Root]) -> tuple[Root, ...]:
    """Roots and their endpoints in the order zerotier-idtool genmoon sorts them."""
    ordered = [
        Root(r.identity, tuple(sorted(r.stable_endpoints, key=_endpoint_order)), r.nil_endpoint_positions)
        for r in roots
    ]
    ordered.sort(key=lambda r: (int(r.identity.address), r.identity.public_key))
    return tuple(ordered)


def moon_file_name(world_id: int) -> str:
    """The file name the core uses for a moon: 16 hex digits + ".moon"."""
    return f"{world_id:016x}.moon"


@functools.cache
def default_planet() -> World:
    """The public ZeroTier planet built into the core (parsed and signature-checked once)."""
    # Imported here: importlib.resources pulls in tempfile, shutil, bz2 and lzma (about
    # 0.8 MiB), which a node given its own planet file never needs.
    from importlib import resources

    data = resources.files("ztcore").joinpath("data", "planet.zerotier").read_bytes()
    world, used = World.from_bytes(data)
    if used != len(data) or world.type != WorldType.PLANET or not world.verify_signature():
        raise InvalidFormatError("built-in planet data is corrupt")
    return world


def load_world_file(path: str | os.PathLike[str]) -> World:
    """Read a planet or moon file. Trailing bytes after the world are ignored, as the core does.

    Raises OSError if the file cannot be read, InvalidFormatError if it is not a world.
    """
    data = Path(path).read_bytes()
    if len(data) > WORLD_MAX_SERIALIZED_LENGTH:
        raise InvalidFormatError(f"{path} is too large to be a world file")
    return World.from_bytes(data)[0]


def save_world_file(path: str | os.PathLike[str], world: World) -> None:
    """Write a world in its binary form (the planet / moons.d/*.moon file format), atomically:
    a node reading it meanwhile (or after a crash) sees the old world or the new one."""
    write_atomic(path, world.to_bytes())
