"""VL1 packets: header layout, verbs, error codes, armor/dearmor (cipher
suites 0, 1 and 3), LZ4 payload compression and the AES key derivation.

Wire layout of a packet (head)::

    0   8 bytes  packet ID / IV (big-endian; for suite 3 the first half of the tag)
    8   5 bytes  destination address
    13  5 bytes  source address
    18  1 byte   flags: FFCCCHHH (F = flag bits, C = cipher suite, H = hops)
                 0x80 = legacy "encrypted" flag (set with suite 1; with suite 0 it
                 marks ZeroTier 1.16's encrypted HELLO), 0x40 = fragmented
    19  8 bytes  MAC (suites 0/1: Poly1305 tag[:8]; suite 3: second tag half)
    27  1 byte   verb (low 5 bits) | 0x80 compressed flag   -- encrypted part starts here
    28  ...      payload

The MAC/AAD covers everything except the 3 hop bits, which relays change.
Because the fragmented flag is authenticated, it must be decided before
armoring: `armor` sets it when the packet is longer than `mtu`, and
`ztcore.vl1.fragment.make_fragments` must be called with the same MTU.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import lz4.block

from ztcore.crypto import c25519_agree, c25519_public_from_private, salsa20_12_xor
from ztcore.crypto.aes_gmac_siv import AesGmacSiv
from ztcore.crypto.armor import E_BAD_MAC, E_TOO_LONG, E_TOO_SHORT, E_UNKNOWN_CIPHER, armor_poly, dearmor_poly
from ztcore.crypto.c25519 import C25519_PRIVATE_KEY_LEN
from ztcore.errors import InvalidFormatError

__all__ = [
    "ADDRESS_LENGTH",
    "DEFAULT_PHYSICAL_MTU",
    "FLAG_ENCRYPTED",
    "FLAG_FRAGMENTED",
    "FRAGMENT_INDICATOR",
    "FRAGMENT_MIN_LENGTH",
    "MAX_FRAGMENTS",
    "MAX_HOPS",
    "MAX_PACKET_LENGTH",
    "PACKET_MIN_LENGTH",
    "PROTO_VERSION",
    "PROTO_VERSION_MIN",
    "RELAY_MAX_HOPS",
    "VERB_FLAG_COMPRESSED",
    "VERB_MASK",
    "AesKeys",
    "CipherSuite",
    "Dearmored",
    "ErrorCode",
    "PacketError",
    "PacketHeader",
    "Verb",
    "armor",
    "armor_encrypted",
    "crypt_field",
    "dearmor",
    "derive_aes_keys",
    "fragment_destination",
    "is_fragment",
    "new_packet_id",
    "parse_header",
    "set_hops",
]

# --- protocol constants (values from the real core) ---------------------------

PROTO_VERSION = 12  # what ztcore advertises in HELLO
PROTO_VERSION_MIN = 4  # oldest peer protocol version accepted
MAX_HOPS = 7  # hop counter is 3 bits
RELAY_MAX_HOPS = 3  # relays forward only while hops < this
ADDRESS_LENGTH = 5

DEFAULT_PHYSICAL_MTU = 1432  # ZT_DEFAULT_PHYSMTU: UDP payload size
MIN_PHYSICAL_MTU = 1400
MAX_FRAGMENTS = 7  # ZT_MAX_PACKET_FRAGMENTS, head included
MAX_PACKET_LENGTH = MAX_FRAGMENTS * DEFAULT_PHYSICAL_MTU  # 10024

IDX_IV = 0
IDX_DEST = 8
IDX_SOURCE = 13
IDX_FLAGS = 18
IDX_MAC = 19
IDX_VERB = 27
IDX_PAYLOAD = 28
PACKET_MIN_LENGTH = IDX_PAYLOAD

FRAGMENT_IDX_PACKET_ID = 0
FRAGMENT_IDX_DEST = 8
FRAGMENT_IDX_INDICATOR = 13
FRAGMENT_IDX_NUMBER = 14
FRAGMENT_IDX_HOPS = 15
FRAGMENT_IDX_PAYLOAD = 16
FRAGMENT_MIN_LENGTH = FRAGMENT_IDX_PAYLOAD
FRAGMENT_INDICATOR = 0xFF  # reserved address prefix, so no real source starts with it

FLAG_ENCRYPTED = 0x80
FLAG_FRAGMENTED = 0x40
VERB_FLAG_COMPRESSED = 0x80
VERB_MASK = 0x1F
HOPS_MASK = 0x07
CIPHER_MASK = 0x38

# The real core only tries compression above this payload size.
COMPRESS_MIN_PAYLOAD = 64

# KBKDF labels for the two AES-GMAC-SIV keys.
KBKDF_LABEL_AES_GMAC_SIV_K0 = ord("0")
KBKDF_LABEL_AES_GMAC_SIV_K1 = ord("1")


class Verb(enum.IntEnum):
    NOP = 0x00
    HELLO = 0x01
    ERROR = 0x02
    OK = 0x03
    WHOIS = 0x04
    RENDEZVOUS = 0x05
    FRAME = 0x06
    EXT_FRAME = 0x07
    ECHO = 0x08
    MULTICAST_LIKE = 0x09
    NETWORK_CREDENTIALS = 0x0A
    NETWORK_CONFIG_REQUEST = 0x0B
    NETWORK_CONFIG = 0x0C
    MULTICAST_GATHER = 0x0D
    MULTICAST_FRAME = 0x0E
    PUSH_DIRECT_PATHS = 0x10
    ACK = 0x12
    QOS_MEASUREMENT = 0x13
    USER_MESSAGE = 0x14
    REMOTE_TRACE = 0x15
    PATH_NEGOTIATION_REQUEST = 0x16


class ErrorCode(enum.IntEnum):
    NONE = 0x00
    INVALID_REQUEST = 0x01
    BAD_PROTOCOL_VERSION = 0x02
    OBJ_NOT_FOUND = 0x03
    IDENTITY_COLLISION = 0x04
    UNSUPPORTED_OPERATION = 0x05
    NEED_MEMBERSHIP_CERTIFICATE = 0x06
    NETWORK_ACCESS_DENIED_ = 0x07
    UNWANTED_MULTICAST = 0x08
    NETWORK_AUTHENTICATION_REQUIRED = 0x09


class CipherSuite(enum.IntEnum):
    POLY1305_NONE = 0
    POLY1305_SALSA2012 = 1
    NONE = 2  # trusted path: no crypto, MAC field holds the trusted path ID
    AES_GMAC_SIV = 3


class PacketError(InvalidFormatError):
    """A packet is malformed or fails authentication.

    `reason` is short and machine-readable: too_short, too_long, is_fragment,
    bad_mac, bad_compression, unknown_cipher, no_aes_keys, ...
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# --- header --------------------------------------------------------------------


class PacketHeader(NamedTuple):
    """The cleartext header of a packet head. Immutable; a named tuple because one is
    made for every packet received (a frozen dataclass costs several times more)."""

    packet_id: int  # 64-bit, big-endian on the wire
    destination: int  # 40-bit address
    source: int  # 40-bit address
    flags: int  # raw flags/cipher/hops byte
    hops: int
    cipher: CipherSuite | int
    fragmented: bool  # more fragments follow this head
    encrypted_hello: bool  # flag 0x80 with cipher suite 0 (ZeroTier 1.16)


# Indexed by the 3 cipher bits; enum lookups by value are slow on the hot path.
_CIPHERS: tuple[CipherSuite | int, ...] = (*CipherSuite, 4, 5, 6, 7)
# Bytes 0..23 as three words: packet ID; destination + source[0:3]; source[3:5] + flags + ...
_HEAD_WORDS = struct.Struct(">QQQ")
_tuple_new = tuple.__new__
# The last bytes object parsed and its header: the receive path parses the same packet
# several times (switch, then dearmor); bytes are immutable, so identity is enough.
_last_parsed: tuple[object, PacketHeader | None] = (None, None)


def is_fragment(data: bytes | bytearray | memoryview) -> bool:
    """True if `data` is a fragment (not a head): longer than the fragment
    header and byte 13 is the 0xff indicator, as the real core tests it."""
    return len(data) > FRAGMENT_MIN_LENGTH and data[FRAGMENT_IDX_INDICATOR] == FRAGMENT_INDICATOR


def parse_header(data: bytes | bytearray | memoryview) -> PacketHeader:
    """Parse the cleartext header of a packet head (works before dearmoring)."""
    global _last_parsed
    last = _last_parsed
    if last[0] is data:
        return last[1]  # type: ignore[return-value]
    if len(data) < PACKET_MIN_LENGTH:
        raise PacketError("too_short", f"{len(data)} bytes")
    if data[FRAGMENT_IDX_INDICATOR] == FRAGMENT_INDICATOR:
        raise PacketError("is_fragment")
    packet_id, w1, w2 = _HEAD_WORDS.unpack_from(data, 0)
    flags = (w2 >> 40) & 0xFF
    cipher = _CIPHERS[(flags & CIPHER_MASK) >> 3]
    header: PacketHeader = _tuple_new(
        PacketHeader,
        (
            packet_id,
            w1 >> 24,
            ((w1 & 0xFFFFFF) << 16) | (w2 >> 48),
            flags,
            flags & HOPS_MASK,
            cipher,
            flags & FLAG_FRAGMENTED != 0,
            flags & (FLAG_ENCRYPTED | CIPHER_MASK) == FLAG_ENCRYPTED,  # 0x80 with suite 0
        ),
    )
    if type(data) is bytes:
        _last_parsed = (data, header)
    return header


def fragment_destination(data: bytes | bytearray | memoryview) -> int:
    """Destination address of a fragment (for relaying)."""
    if len(data) < FRAGMENT_MIN_LENGTH:
        raise PacketError("fragment_too_short", f"{len(data)} bytes")
    return int.from_bytes(data[FRAGMENT_IDX_DEST : FRAGMENT_IDX_DEST + 5], "big")


def set_hops(data: bytes | bytearray | memoryview, hops: int) -> bytes:
    """Return a copy with only the hop count changed (the MAC does not cover it).

    Works on a packet head (low 3 bits of the flags byte) and on a fragment
    (its hops byte at index 15)."""
    if not 0 <= hops <= MAX_HOPS:
        raise ValueError(f"hops must be 0..{MAX_HOPS}")
    b = bytearray(data)
    if is_fragment(b):
        b[FRAGMENT_IDX_HOPS] = hops
    else:
        if len(b) < PACKET_MIN_LENGTH:
            raise PacketError("too_short", f"{len(b)} bytes")
        b[IDX_FLAGS] = (b[IDX_FLAGS] & 0xF8) | hops
    return bytes(b)


# --- keys ----------------------------------------------------------------------


def _kbkdf_hmac_sha384(key: bytes, label: int, context: int = 0, iteration: int = 0) -> bytes:
    # NIST SP 800-108 counter-mode style message with a "ZT" prefix on the label
    # and a 384-bit output length, PRF = HMAC-SHA384 keyed with the 48-byte key.
    msg = iteration.to_bytes(4, "big") + bytes((ord("Z"), ord("T"), label, 0, context, 0, 0, 0x01, 0x80))
    return hmac.new(key, msg, hashlib.sha384).digest()


@dataclass(frozen=True, slots=True)
class AesKeys:
    """The two AES-256 keys of cipher suite 3, with prepared cipher contexts."""

    k0: bytes
    k1: bytes
    siv: AesGmacSiv = field(init=False, repr=False, compare=False)
    # siv.armor / siv.dearmor as the callables that do the work (one call less a packet).
    seal: Callable[..., bytes] = field(init=False, repr=False, compare=False)
    open: Callable[..., tuple[int, bytes] | int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        siv = AesGmacSiv(self.k0, self.k1)
        object.__setattr__(self, "siv", siv)
        seal, open_ = siv.packet_calls
        object.__setattr__(self, "seal", seal)
        object.__setattr__(self, "open", open_)


def derive_aes_keys(identity_key: bytes) -> AesKeys:
    """Derive K0/K1 from the 48-byte agreed key exactly as a Peer does."""
    if len(identity_key) != 48:
        raise ValueError("the agreed identity key must be 48 bytes")
    k0 = _kbkdf_hmac_sha384(identity_key, KBKDF_LABEL_AES_GMAC_SIV_K0)[:32]
    k1 = _kbkdf_hmac_sha384(identity_key, KBKDF_LABEL_AES_GMAC_SIV_K1)[:32]
    return AesKeys(k0, k1)


# Packet IDs come from os.urandom drawn 8 KiB at a time (one getrandom call per 1,024
# packets instead of one per packet; the real core also draws them from a pooled
# secure random source). An iterator hands each value out once, even between threads;
# a forked child drops the parent's buffer so the two never reuse an ID under one key.
_ID_BATCH = struct.Struct("<1024Q")
_packet_ids = iter(())


def _drop_packet_ids() -> None:
    global _packet_ids
    _packet_ids = iter(())


os.register_at_fork(after_in_child=_drop_packet_ids)


def new_packet_id() -> int:
    """A cryptographically random 64-bit packet ID (also the per-packet IV)."""
    global _packet_ids
    pid = next(_packet_ids, None)
    if pid is None:
        ids = iter(_ID_BATCH.unpack(os.urandom(_ID_BATCH.size)))
        pid = next(ids)
        _packet_ids = ids
    return pid  # type: ignore[no-any-return]


def crypt_field(key: bytes, packet_id: int, data: bytes) -> bytes:
    """Salsa20/12-encrypt (or decrypt) a field inside a packet, as HELLO does for
    its trailing fields: key = first 32 bytes of the agreed key, IV = the packet
    ID with its 3 low bits cleared."""
    iv = (packet_id & 0xFFFFFFFFFFFFFFF8).to_bytes(8, "big")
    return salsa20_12_xor(bytes(key[:32]), iv, data)


# --- armor / dearmor --------------------------------------------------------------
#
# The cryptography is one call per packet (ztcore.crypto.armor: the C kernel, or the
# pure-Python reference where it is not built); this layer builds the flags byte,
# compresses and decompresses, and turns failure codes into PacketError.

_E_REASON = {E_TOO_SHORT: "too_short", E_TOO_LONG: "too_long", E_BAD_MAC: "bad_mac", E_UNKNOWN_CIPHER: "unknown_cipher"}
_SUITE3_FLAGS = int(CipherSuite.AES_GMAC_SIV) << 3
_SUITE1_CIPHER_BITS = int(CipherSuite.POLY1305_SALSA2012) << 3
_SUITE1_FLAGS = FLAG_ENCRYPTED | _SUITE1_CIPHER_BITS
_MAX_PAYLOAD = MAX_PACKET_LENGTH - IDX_PAYLOAD


class Dearmored(NamedTuple):
    header: PacketHeader
    verb: int  # low 5 bits of the verb byte
    payload: bytes  # decrypted and decompressed
    compressed: bool  # the payload arrived LZ4-compressed


def armor(
    *,
    destination: int,
    source: int,
    verb: int,
    payload: bytes,
    key: bytes,
    encrypt: bool,
    packet_id: int | None = None,
    hops: int = 0,
    aes_keys: AesKeys | None = None,
    compress: bool = False,
    mtu: int = DEFAULT_PHYSICAL_MTU,
    extended_armor_for: bytes | None = None,
) -> bytes:
    """Build and armor a whole wire packet.

    Suite 3 if `aes_keys` and `encrypt`, else suite 1 if `encrypt`, else suite 0
    (cleartext payload, still MAC'd). `key` is the agreed key (48 bytes, only the
    first 32 are used by Salsa20/Poly1305). With suite 3 the packet ID on the wire
    is the first half of the SIV tag, not `packet_id`. The FRAGMENTED flag is set
    (and authenticated) when the result is longer than `mtu`. `extended_armor_for`
    (a recipient's public key, suite 0 only) adds 1.16's extended armor.
    """
    if not 0 <= verb <= VERB_MASK:
        raise ValueError("verb must fit in 5 bits")
    if not 0 <= hops <= MAX_HOPS:
        raise ValueError(f"hops must be 0..{MAX_HOPS}")
    verb_byte = verb
    n = len(payload)
    if compress and n > COMPRESS_MIN_PAYLOAD:
        c = lz4.block.compress(payload, mode="default", store_size=False)
        if 0 < len(c) < n:
            payload = c
            n = len(c)
            verb_byte |= VERB_FLAG_COMPRESSED
    if n > _MAX_PAYLOAD:
        raise PacketError("too_long", f"{IDX_PAYLOAD + n} bytes")
    if packet_id is None:
        packet_id = new_packet_id()
    frag = FLAG_FRAGMENTED if IDX_PAYLOAD + n > mtu else 0
    if encrypt:
        if aes_keys is not None:
            return aes_keys.siv.armor(packet_id, destination, source, frag | _SUITE3_FLAGS | hops, verb_byte, payload)
        return armor_poly(key, packet_id, destination, source, frag | _SUITE1_FLAGS | hops, verb_byte, payload)
    if extended_armor_for is None:
        return armor_poly(key, packet_id, destination, source, frag | hops, verb_byte, payload)
    # Suite 0 with flag 0x80 (set before the MAC, which covers it): 1.16's extended armor.
    wire = armor_poly(key, packet_id, destination, source, frag | FLAG_ENCRYPTED | hops, verb_byte, payload)
    return _add_extended_armor(wire, extended_armor_for)


def armor_encrypted(
    destination: int, source: int, verb: int, payload: bytes, key: bytes, aes_keys: AesKeys | None
) -> bytes:
    """`armor` with encryption, as every message to a peer is sent: the payload as it is
    (no compression), hop count 0, a fresh packet ID. One call into the cipher."""
    if not 0 <= verb <= VERB_MASK:
        raise ValueError("verb must fit in 5 bits")
    n = len(payload)
    if n > _MAX_PAYLOAD:
        raise PacketError("too_long", f"{IDX_PAYLOAD + n} bytes")
    frag = FLAG_FRAGMENTED if IDX_PAYLOAD + n > DEFAULT_PHYSICAL_MTU else 0
    if aes_keys is not None:
        return aes_keys.seal(new_packet_id(), destination, source, frag | _SUITE3_FLAGS, verb, payload)
    return armor_poly(key, new_packet_id(), destination, source, frag | _SUITE1_FLAGS, verb, payload)


def dearmor(data: bytes | bytearray | memoryview, key: bytes, aes_keys: AesKeys | None = None) -> Dearmored:
    """Verify, decrypt and decompress a complete (reassembled) packet."""
    header = parse_header(data)
    if len(data) > MAX_PACKET_LENGTH:
        raise PacketError("too_long", f"{len(data)} bytes")
    cs = header.flags & CIPHER_MASK
    if cs == _SUITE3_FLAGS:
        if aes_keys is None:
            raise PacketError("no_aes_keys")
        opened = aes_keys.open(data)
    elif cs <= _SUITE1_CIPHER_BITS:  # suites 0 and 1
        opened = dearmor_poly(key, data)
    else:
        raise PacketError("unknown_cipher", str(cs >> 3))
    if type(opened) is int:
        raise PacketError(_E_REASON.get(opened, "bad_packet"))
    verb_byte, payload = opened  # type: ignore[misc]
    if verb_byte & VERB_FLAG_COMPRESSED:
        if payload:
            try:
                payload = lz4.block.decompress(payload, uncompressed_size=MAX_PACKET_LENGTH)
            except lz4.block.LZ4BlockError as e:
                raise PacketError("bad_compression", str(e)) from None
            if not payload or len(payload) > _MAX_PAYLOAD:
                raise PacketError("bad_compression", "decompressed size out of range")
        return _tuple_new(Dearmored, (header, verb_byte & VERB_MASK, payload, True))  # type: ignore[no-any-return]
    return _tuple_new(Dearmored, (header, verb_byte & VERB_MASK, payload, False))  # type: ignore[no-any-return]


# --- extended armor (1.16's optional encrypted HELLO) ------------------------------
#
# A HELLO with flag 0x80 and cipher suite 0 carries, after its normal (MAC'd,
# cleartext) armor, a second layer: everything from the MAC field on is encrypted
# with AES-256-CTR under a key agreed between a fresh ephemeral X25519 key and the
# recipient's identity key; the ephemeral public key (32 bytes) is appended. The
# counter block is the packet's first 12 bytes followed by a 32-bit counter from 0.
# (Layout as on ZeroTierOne's hello-encryption branch; no real 1.16 node was
# available to test against.)

EXTENDED_ARMOR_START = IDX_MAC
EPHEMERAL_KEY_LENGTH = 32


def _extended_ctr(key: bytes, head12: bytes, data: bytes) -> bytes:
    # Rare (a 1.16 peer's HELLO): `cryptography` is loaded only when it happens.
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    c = Cipher(algorithms.AES(key), modes.CTR(bytes(head12) + bytes(4))).encryptor()
    return c.update(bytes(data)) + c.finalize()


def _add_extended_armor(wire: bytes, recipient_public_key: bytes) -> bytes:
    ephemeral_private = secrets.token_bytes(C25519_PRIVATE_KEY_LEN)
    ephemeral_public = c25519_public_from_private(ephemeral_private)[:EPHEMERAL_KEY_LENGTH]
    key = c25519_agree(ephemeral_private, bytes(recipient_public_key), 32)
    body = _extended_ctr(key, wire[:12], wire[EXTENDED_ARMOR_START:])
    return wire[:EXTENDED_ARMOR_START] + body + ephemeral_public


def remove_extended_armor(data: bytes | bytearray | memoryview, own_private_key: bytes) -> bytes:
    """Undo extended armor with our identity's private key; the result is an ordinary
    suite-0 packet (flag 0x80 kept: the MAC covers it). Raises PacketError."""
    if len(data) < IDX_VERB + 1 + EPHEMERAL_KEY_LENGTH:
        raise PacketError("too_short", "extended armor")
    d = bytes(data)
    try:
        key = c25519_agree(own_private_key, d[-EPHEMERAL_KEY_LENGTH:] + bytes(32), 32)
    except ValueError as e:
        raise PacketError("bad_ephemeral_key", str(e)) from e
    body = _extended_ctr(key, d[:12], d[EXTENDED_ARMOR_START:-EPHEMERAL_KEY_LENGTH])
    return d[:EXTENDED_ARMOR_START] + body
