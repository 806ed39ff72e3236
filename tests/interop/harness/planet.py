"""A minimal planet (ZeroTier world) writer for the harness, independent of ``ztcore.vl1.world``.

Owns only what the harness needs to point a real core at roots inside a test LAN: build and
sign a planet from (public identity string, [(ip, port), ...]) pairs. It is deliberately
written from the byte layout alone (World::serialize in the reference core) rather than with
ztcore's own world code, so an interop test can use it as an independent construction.

Layout: u8 type (1 = planet), u64 id, u64 timestamp, 64-byte update key, 96-byte signature,
u8 root count, per root: identity (address[5], type 0, public key[64], private length 0),
u8 endpoint count, endpoints (0x04 + IPv4[4] + port[2] or 0x06 + IPv6[16] + port[2]).
The signature covers the same bytes minus the signature, framed by 8 x 0x7f and 8 x 0xf7.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Sequence

from ztcore.crypto import c25519_generate, c25519_sign

# Not the public Earth (149604618) or Mars planet ids: a planet with a foreign id read from
# storage is kept by the core as is, never replaced by its built-in default.
TEST_WORLD_ID = 0x7A7C_0000_0000_0001


def _identity_public_bytes(identity: str) -> bytes:
    fields = identity.strip().split(":")
    if len(fields) < 3 or fields[1] != "0" or len(fields[0]) != 10 or len(fields[2]) != 128:
        raise ValueError(f"not a type-0 identity string: {identity[:40]!r}...")
    return bytes.fromhex(fields[0]) + b"\x00" + bytes.fromhex(fields[2]) + b"\x00"


def _endpoint_bytes(ip: str, port: int) -> bytes:
    addr = ipaddress.ip_address(ip)
    kind = b"\x04" if addr.version == 4 else b"\x06"
    return kind + addr.packed + struct.pack(">H", port)


def make_planet(
    roots: Sequence[tuple[str, Sequence[tuple[str, int]]]],
    world_id: int = TEST_WORLD_ID,
    timestamp_ms: int | None = None,
    signing_key: tuple[bytes, bytes] | None = None,
) -> bytes:
    """Serialized, signed planet. ``roots``: (identity string, [(ip, port), ...]) each.

    ``signing_key`` is (public64, private64); a fresh one is generated when omitted.
    """
    if not 1 <= len(roots) <= 4:
        raise ValueError("a planet has 1..4 roots")
    pub, priv = signing_key if signing_key else c25519_generate()
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    head = struct.pack(">BQQ", 1, world_id, ts) + pub
    body = bytes([len(roots)])
    for identity, endpoints in roots:
        body += _identity_public_bytes(identity) + bytes([len(endpoints)])
        body += b"".join(_endpoint_bytes(ip, port) for ip, port in endpoints)
    signature = c25519_sign(priv, b"\x7f" * 8 + head + body + b"\xf7" * 8)
    return head + signature + body
