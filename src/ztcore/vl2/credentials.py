"""Network credentials, byte-exact with the core: CertificateOfMembership (COM),
Capability, Tag, CertificateOfOwnership (COO) and Revocation, plus the
NETWORK_CREDENTIALS payload that carries them between members.

All integers are big-endian. Layouts:

COM (the only format 1.x sends and accepts: type byte 1, qualifier triples)::

    u8 1 | u16 n | n x (u64 id, u64 value, u64 maxDelta), ids ascending
    | 5-byte signedBy | 96-byte signature (only if signedBy != 0)

    Signed message: the n triples (n*24 bytes). Controllers since 1.6 issue 7
    qualifiers: 0 timestamp (maxDelta = credential window), 1 network id
    (maxDelta 0), 2 issued-to address (maxDelta 2**64-1), and 3..6 the four
    big-endian 64-bit words of SHA-384(address || public key) of the member
    (maxDelta 2**64-1). At most 8 qualifiers are accepted.

Capability::

    u64 nwid | i64 ts | u32 id | u16 ruleCount | rules (see rules.py)
    | u8 maxCustodyChainLength (1..7)
    | custody chain: per entry 5-byte to, 5-byte from, u8 1, u16 96, signature;
      ended by a 5-byte zero "to"
    | u16 0 (length of additional fields)

    Signed message (identical for every custody entry):
    u64 0x7f7f7f7f7f7f7f7f | nwid..maxCustodyChainLength | u16 0 | u64 0x7f7f...

Tag::

    u64 nwid | i64 ts | u32 id | u32 value | 5-byte issuedTo | 5-byte signedBy
    | u8 1 | u16 96 | signature | u16 0
    Signed message: 0x7f*8 | nwid..signedBy | u16 0 | 0x7f*8

CertificateOfOwnership::

    u64 nwid | i64 ts | u64 flags | u32 id | u16 thingCount
    | thingCount x (u8 type, 16-byte value) | 5-byte issuedTo | 5-byte signedBy
    | u8 1 | u16 96 | signature | u16 0
    Signed message: 0x7f*8 | nwid..signedBy | u16 0 | 0x7f*8

Revocation::

    u32 0 | u32 id | u64 nwid | u32 0 | u32 credentialId | i64 threshold
    | u64 flags | 5-byte target | 5-byte signedBy | u8 credentialType
    | u8 1 | u16 96 | signature | u16 0
    Signed message: 0x7f*8 | everything up to credentialType | u16 0 | 0x7f*8

Tags, COOs and revocations must be signed by the network's controller
(nwid >> 24); a capability's first custody entry must be from the controller
and each further one from the previous holder.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ztcore.errors import InvalidFormatError
from ztcore.identity import Address, Identity
from ztcore.vl2.mac import MAC
from ztcore.vl2.rules import Rule, deserialize_rules, serialize_rules

__all__ = [
    "COM_MAX_QUALIFIERS",
    "COM_RESERVED_ID_ISSUED_TO",
    "COM_RESERVED_ID_NETWORK_ID",
    "COM_RESERVED_ID_TIMESTAMP",
    "COO_MAX_THINGS",
    "COO_THING_VALUE_SIZE",
    "MAX_CAPABILITY_CUSTODY_CHAIN_LENGTH",
    "MAX_CAPABILITY_RULES",
    "REVOCATION_FLAG_FAST_PROPAGATE",
    "Capability",
    "CertificateOfMembership",
    "CertificateOfOwnership",
    "ComQualifier",
    "CredentialType",
    "CustodyEntry",
    "IdentityLookup",
    "NetworkCredentials",
    "Revocation",
    "Tag",
    "Thing",
    "VerifyResult",
    "controller_for",
]

SIGNATURE_LEN = 96
COM_MAX_QUALIFIERS = 8
COM_RESERVED_ID_TIMESTAMP = 0
COM_RESERVED_ID_NETWORK_ID = 1
COM_RESERVED_ID_ISSUED_TO = 2
MAX_CAPABILITY_RULES = 64
MAX_CAPABILITY_CUSTODY_CHAIN_LENGTH = 7
COO_MAX_THINGS = 16
COO_THING_VALUE_SIZE = 16
REVOCATION_FLAG_FAST_PROPAGATE = 0x1

_SIGN_GUARD = b"\x7f" * 8
_U64 = (1 << 64) - 1


class CredentialType(enum.IntEnum):
    """Credential type codes (used inside revocations)."""

    NULL = 0
    COM = 1
    CAPABILITY = 2
    TAG = 3
    COO = 4
    REVOCATION = 6


class VerifyResult(enum.IntEnum):
    """Outcome of verifying a credential, mirroring the core's 0 / 1 / -1."""

    OK = 0
    NEED_IDENTITY = 1  # the signer's identity is unknown: WHOIS it and retry
    BAD = -1


# An identity source for verification: one Identity, a mapping address -> Identity,
# or a callable returning the Identity for an address (None if unknown).
IdentityLookup = Identity | Mapping[int, Identity] | Callable[[Address], Identity | None]


def controller_for(nwid: int) -> Address:
    """The controller address of network ``nwid`` (its top 40 bits)."""
    return Address((nwid >> 24) & 0xFFFFFFFFFF)


def _lookup(src: IdentityLookup, address: int) -> Identity | None:
    if isinstance(src, Identity):
        return src if src.address == address else None
    if isinstance(src, Mapping):
        return src.get(address)
    return src(Address(address))


class _Reader:
    """Bounds-checked big-endian reader: every short read is an InvalidFormatError."""

    __slots__ = ("d", "p", "what")

    def __init__(self, data: bytes | bytearray | memoryview, offset: int, what: str) -> None:
        self.d = bytes(data)
        if offset < 0 or offset > len(self.d):
            raise InvalidFormatError(f"{what}: offset out of range")
        self.p = offset
        self.what = what

    def take(self, n: int) -> bytes:
        if self.p + n > len(self.d):
            raise InvalidFormatError(f"{self.what}: truncated")
        b = self.d[self.p : self.p + n]
        self.p += n
        return b

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def i64(self) -> int:
        return int.from_bytes(self.take(8), "big", signed=True)

    def address(self) -> Address:
        return Address(int.from_bytes(self.take(5), "big"))

    def signature_block(self) -> bytes:
        """u8 type, then a 96-byte C25519 signature (type 1) or a skipped blob."""
        if self.u8() == 1:
            if self.u16() != SIGNATURE_LEN:
                raise InvalidFormatError(f"{self.what}: bad signature length")
            return self.take(SIGNATURE_LEN)
        self.take(self.u16())
        return bytes(SIGNATURE_LEN)

    def skip_extra_fields(self) -> None:
        self.take(self.u16())


def _i64(v: int) -> bytes:
    return struct.pack(">q", v)


def _sig_block(signature: bytes) -> bytes:
    if len(signature) != SIGNATURE_LEN:
        raise InvalidFormatError("signature must be 96 bytes")
    return b"\x01" + SIGNATURE_LEN.to_bytes(2, "big") + signature


def _check_u(name: str, v: int, bits: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < (1 << bits):
        raise InvalidFormatError(f"{name} must be a {bits}-bit unsigned integer, got {v!r}")


def _check_i64(name: str, v: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not -(1 << 63) <= v < (1 << 63):
        raise InvalidFormatError(f"{name} must be a signed 64-bit integer, got {v!r}")


# --------------------------------------------------------------------------- COM


class ComQualifier(NamedTuple):
    id: int
    value: int
    max_delta: int


@dataclass
class CertificateOfMembership:
    """Certificate of network membership: signed (id, value, maxDelta) qualifiers."""

    qualifiers: list[ComQualifier] = field(default_factory=list)
    signed_by: Address = field(default_factory=lambda: Address(0))
    signature: bytes = bytes(SIGNATURE_LEN)

    @classmethod
    def create(
        cls, timestamp: int, timestamp_max_delta: int, network_id: int, issued_to: Identity
    ) -> CertificateOfMembership:
        """An unsigned COM as controllers issue it (7 qualifiers incl. the identity hash)."""
        h = issued_to.public_key_hash()
        q = [
            ComQualifier(COM_RESERVED_ID_TIMESTAMP, timestamp & _U64, timestamp_max_delta & _U64),
            ComQualifier(COM_RESERVED_ID_NETWORK_ID, network_id, 0),
            ComQualifier(COM_RESERVED_ID_ISSUED_TO, int(issued_to.address), _U64),
        ]
        for i in range(4):
            q.append(ComQualifier(3 + i, int.from_bytes(h[8 * i : 8 * i + 8], "big"), _U64))
        return cls(q)

    def __bool__(self) -> bool:
        return bool(self.qualifiers)

    def _value(self, qid: int) -> int:
        for q in self.qualifiers:
            if q.id == qid:
                return q.value
        return 0

    @property
    def timestamp(self) -> int:
        v = self._value(COM_RESERVED_ID_TIMESTAMP)
        return v - (1 << 64) if v >= (1 << 63) else v

    @property
    def network_id(self) -> int:
        return self._value(COM_RESERVED_ID_NETWORK_ID)

    @property
    def issued_to(self) -> Address:
        return Address(self._value(COM_RESERVED_ID_ISSUED_TO) & 0xFFFFFFFFFF)

    @property
    def is_signed(self) -> bool:
        return bool(self.signed_by)

    def _signed_message(self) -> bytes:
        return b"".join(struct.pack(">QQQ", q.id, q.value, q.max_delta) for q in self.qualifiers)

    def _check(self) -> None:
        if len(self.qualifiers) > COM_MAX_QUALIFIERS:
            raise InvalidFormatError(f"a COM holds at most {COM_MAX_QUALIFIERS} qualifiers")
        for q in self.qualifiers:
            for name, v in zip(("id", "value", "max_delta"), q, strict=True):
                _check_u(f"COM qualifier {name}", v, 64)

    def sign(self, signer: Identity) -> bool:
        """Sign with ``signer`` (needs its private key); False if it has none."""
        if not signer.has_private:
            return False
        self._check()
        self.signature = signer.sign(self._signed_message())
        self.signed_by = signer.address
        return True

    def verify(self, signer: IdentityLookup) -> VerifyResult:
        """Check the signature; it must come from the network's controller."""
        if not self.signed_by or len(self.qualifiers) > COM_MAX_QUALIFIERS:
            return VerifyResult.BAD
        if self.signed_by != controller_for(self.network_id):
            return VerifyResult.BAD
        ident = _lookup(signer, self.signed_by)
        if ident is None:
            return VerifyResult.NEED_IDENTITY
        ok = ident.address == self.signed_by and ident.verify(self._signed_message(), self.signature)
        return VerifyResult.OK if ok else VerifyResult.BAD

    def agrees_with(self, other: CertificateOfMembership, other_identity: Identity | None = None) -> bool:
        """True if every qualifier of ours exists in ``other`` within our maxDelta.

        If we carry identity-hash qualifiers (ids 3..6), ``other`` must carry the
        hash of ``other_identity`` (which is then required).
        """
        if not self.qualifiers or not other.qualifiers:
            return False
        theirs: dict[int, int] = {}
        for q in other.qualifiers:
            theirs[q.id] = q.value
        full_identity = False
        for q in self.qualifiers:
            if 3 <= q.id <= 6:
                full_identity = True
            if q.id not in theirs:
                return False
            if abs(q.value - theirs[q.id]) > q.max_delta:
                return False
        if full_identity:
            if other_identity is None:
                return False
            h = other_identity.public_key_hash()
            for i in range(4):
                if theirs.get(3 + i) != int.from_bytes(h[8 * i : 8 * i + 8], "big"):
                    return False
        return True

    def to_bytes(self) -> bytes:
        self._check()
        out = bytearray(b"\x01")
        out += len(self.qualifiers).to_bytes(2, "big")
        out += self._signed_message()
        out += Address(self.signed_by).to_bytes()
        if self.signed_by:
            if len(self.signature) != SIGNATURE_LEN:
                raise InvalidFormatError("signature must be 96 bytes")
            out += self.signature
        return bytes(out)

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, offset: int = 0
    ) -> tuple[CertificateOfMembership, int]:
        r = _Reader(data, offset, "certificate of membership")
        if r.u8() != 1:
            raise InvalidFormatError("certificate of membership: unsupported type byte")
        n = r.u16()
        if n > COM_MAX_QUALIFIERS:
            raise InvalidFormatError(f"certificate of membership: {n} qualifiers (max {COM_MAX_QUALIFIERS})")
        qs: list[ComQualifier] = []
        last = 0
        for _ in range(n):
            qid, value, delta = struct.unpack(">QQQ", r.take(24))
            if qid < last:
                raise InvalidFormatError("certificate of membership: qualifiers not sorted by id")
            last = qid
            qs.append(ComQualifier(qid, value, delta))
        signed_by = r.address()
        sig = r.take(SIGNATURE_LEN) if signed_by else bytes(SIGNATURE_LEN)
        return cls(qs, signed_by, sig), r.p - offset


# -------------------------------------------------------------------- Capability


@dataclass
class CustodyEntry:
    to: Address
    from_: Address
    signature: bytes = bytes(SIGNATURE_LEN)


@dataclass
class Capability:
    """A signed group of flow rules, with a (so far always length-1) chain of custody."""

    id: int
    network_id: int
    timestamp: int
    rules: list[Rule] = field(default_factory=list)
    max_custody_chain_length: int = 1
    custody: list[CustodyEntry] = field(default_factory=list)

    @property
    def issued_to(self) -> Address:
        """The last recipient in the chain of custody (0 if unsigned)."""
        return self.custody[-1].to if self.custody else Address(0)

    def _check(self) -> None:
        _check_u("capability id", self.id, 32)
        _check_u("network id", self.network_id, 64)
        _check_i64("timestamp", self.timestamp)
        if len(self.rules) > MAX_CAPABILITY_RULES:
            raise InvalidFormatError(f"a capability holds at most {MAX_CAPABILITY_RULES} rules")
        if not 1 <= self.max_custody_chain_length <= MAX_CAPABILITY_CUSTODY_CHAIN_LENGTH:
            raise InvalidFormatError("max custody chain length must be 1..7")
        if len(self.custody) > self.max_custody_chain_length:
            raise InvalidFormatError("custody chain longer than its maximum")

    def _body(self) -> bytes:
        return (
            struct.pack(">Q", self.network_id)
            + _i64(self.timestamp)
            + struct.pack(">IH", self.id, len(self.rules))
            + serialize_rules(self.rules)
            + bytes((self.max_custody_chain_length,))
        )

    def signed_message(self) -> bytes:
        self._check()
        return _SIGN_GUARD + self._body() + b"\x00\x00" + _SIGN_GUARD

    def sign(self, signer: Identity, to: int) -> bool:
        """Append a custody entry from ``signer`` to ``to``; False if the chain is full
        or ``signer`` has no private key."""
        if not signer.has_private or len(self.custody) >= self.max_custody_chain_length:
            return False
        sig = signer.sign(self.signed_message())
        self.custody.append(CustodyEntry(Address(int(to)), signer.address, sig))
        return True

    def verify(self, identities: IdentityLookup) -> VerifyResult:
        """Check the chain: first entry from the controller, each next from the previous holder."""
        if not 1 <= self.max_custody_chain_length <= MAX_CAPABILITY_CUSTODY_CHAIN_LENGTH:
            return VerifyResult.BAD
        try:
            msg = self.signed_message()
        except InvalidFormatError:
            return VerifyResult.BAD
        if not self.custody:
            return VerifyResult.BAD
        for i, c in enumerate(self.custody):
            if not c.to or not c.from_:
                return VerifyResult.BAD
            if i == 0:
                if c.from_ != controller_for(self.network_id):
                    return VerifyResult.BAD
            elif c.from_ != self.custody[i - 1].to:
                return VerifyResult.BAD
            ident = _lookup(identities, c.from_)
            if ident is None:
                return VerifyResult.NEED_IDENTITY
            if ident.address != c.from_ or not ident.verify(msg, c.signature):
                return VerifyResult.BAD
        return VerifyResult.OK

    def to_bytes(self) -> bytes:
        self._check()
        out = bytearray(self._body())
        for c in self.custody:
            if not c.to:
                break  # a zero "to" ends the chain
            out += Address(c.to).to_bytes() + Address(c.from_).to_bytes() + _sig_block(c.signature)
        out += bytes(5)
        out += b"\x00\x00"
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Capability, int]:
        r = _Reader(data, offset, "capability")
        nwid = r.u64()
        ts = r.i64()
        cap_id = r.u32()
        rc = r.u16()
        if rc > MAX_CAPABILITY_RULES:
            raise InvalidFormatError(f"capability: {rc} rules (max {MAX_CAPABILITY_RULES})")
        rules, r.p = deserialize_rules(r.d, r.p, rc)
        mccl = r.u8()
        if not 1 <= mccl <= MAX_CAPABILITY_CUSTODY_CHAIN_LENGTH:
            raise InvalidFormatError("capability: bad max custody chain length")
        custody: list[CustodyEntry] = []
        while True:
            to = r.address()
            if not to:
                break
            if len(custody) >= mccl:
                raise InvalidFormatError("capability: custody chain too long")
            frm = r.address()
            custody.append(CustodyEntry(to, frm, r.signature_block()))
        r.skip_extra_fields()
        return cls(cap_id, nwid, ts, rules, mccl, custody), r.p - offset


# --------------------------------------------------------------------------- Tag


class _ControllerSigned:
    """Signing, verification and the wire form shared by Tag, CertificateOfOwnership and
    Revocation: a body, then the signature block and an empty extra-fields length;
    the signature covers the body between two guard strings."""

    signed_by: Address
    signature: bytes
    network_id: int

    def _body(self) -> bytes:
        raise NotImplementedError

    def signed_message(self) -> bytes:
        return _SIGN_GUARD + self._body() + b"\x00\x00" + _SIGN_GUARD

    def sign(self, signer: Identity) -> bool:
        if not signer.has_private:
            return False
        self.signed_by = signer.address
        self.signature = signer.sign(self.signed_message())
        return True

    def verify(self, signer: IdentityLookup) -> VerifyResult:
        return _verify_controller_signed(
            self.signed_by, self.network_id, self.signed_message, self.signature, signer
        )

    def to_bytes(self) -> bytes:
        return self._body() + _sig_block(self.signature) + b"\x00\x00"


@dataclass
class Tag(_ControllerSigned):
    """A signed (id, value) pair attached to one member, matched by tag rules."""

    id: int
    value: int
    network_id: int
    timestamp: int
    issued_to: Address
    signed_by: Address = field(default_factory=lambda: Address(0))
    signature: bytes = bytes(SIGNATURE_LEN)

    def _body(self) -> bytes:
        _check_u("tag id", self.id, 32)
        _check_u("tag value", self.value, 32)
        _check_u("network id", self.network_id, 64)
        _check_i64("timestamp", self.timestamp)
        return (
            struct.pack(">Q", self.network_id)
            + _i64(self.timestamp)
            + struct.pack(">II", self.id, self.value)
            + Address(self.issued_to).to_bytes()
            + Address(self.signed_by).to_bytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Tag, int]:
        r = _Reader(data, offset, "tag")
        nwid = r.u64()
        ts = r.i64()
        tag_id = r.u32()
        value = r.u32()
        issued_to = r.address()
        signed_by = r.address()
        sig = r.signature_block()
        r.skip_extra_fields()
        return cls(tag_id, value, nwid, ts, issued_to, signed_by, sig), r.p - offset


def _verify_controller_signed(
    signed_by: int, nwid: int, message: Callable[[], bytes], signature: bytes, signer: IdentityLookup
) -> VerifyResult:
    if not signed_by or signed_by != controller_for(nwid):
        return VerifyResult.BAD
    ident = _lookup(signer, signed_by)
    if ident is None:
        return VerifyResult.NEED_IDENTITY
    try:
        msg = message()
    except InvalidFormatError:
        return VerifyResult.BAD
    if ident.address != signed_by or not ident.verify(msg, signature):
        return VerifyResult.BAD
    return VerifyResult.OK


# ------------------------------------------------------------------------- COO


class Thing(enum.IntEnum):
    """Kinds of things a certificate of ownership can name."""

    NULL = 0
    MAC_ADDRESS = 1
    IPV4_ADDRESS = 2
    IPV6_ADDRESS = 3


def _thing_of(x: Any) -> tuple[int, bytes]:
    """(thing type, raw value) for a MAC, an ipaddress address or an InetAddress."""
    if isinstance(x, MAC):
        return Thing.MAC_ADDRESS, x.to_bytes()
    ip = getattr(x, "ip", x)
    if isinstance(ip, ipaddress.IPv4Address):
        return Thing.IPV4_ADDRESS, ip.packed
    if isinstance(ip, ipaddress.IPv6Address):
        return Thing.IPV6_ADDRESS, ip.packed
    raise InvalidFormatError(f"not a MAC or IP address: {x!r}")


@dataclass
class CertificateOfOwnership(_ControllerSigned):
    """Controller-signed list of MACs/IPs a member may use as its own source addresses."""

    network_id: int
    timestamp: int
    issued_to: Address
    id: int = 0
    flags: int = 0
    things: list[tuple[int, bytes]] = field(default_factory=list)  # (Thing, 16-byte value)
    signed_by: Address = field(default_factory=lambda: Address(0))
    signature: bytes = bytes(SIGNATURE_LEN)

    def add_thing(self, thing: Any) -> bool:
        """Add a MAC or IP (ipaddress object or InetAddress); False when already full."""
        if len(self.things) >= COO_MAX_THINGS:
            return False
        t, raw = _thing_of(thing)
        self.things.append((t, raw.ljust(COO_THING_VALUE_SIZE, b"\x00")))
        return True

    def owns(self, thing: Any) -> bool:
        t, raw = _thing_of(thing)
        return any(tt == t and v[: len(raw)] == raw for tt, v in self.things)

    def _body(self) -> bytes:
        _check_u("network id", self.network_id, 64)
        _check_i64("timestamp", self.timestamp)
        _check_u("flags", self.flags, 64)
        _check_u("COO id", self.id, 32)
        if len(self.things) > COO_MAX_THINGS:
            raise InvalidFormatError(f"a COO holds at most {COO_MAX_THINGS} things")
        out = bytearray(struct.pack(">Q", self.network_id) + _i64(self.timestamp))
        out += struct.pack(">QIH", self.flags, self.id, len(self.things))
        for t, v in self.things:
            _check_u("thing type", int(t), 8)
            if len(v) > COO_THING_VALUE_SIZE:
                raise InvalidFormatError("COO thing value longer than 16 bytes")
            out += bytes((int(t),)) + bytes(v).ljust(COO_THING_VALUE_SIZE, b"\x00")
        out += Address(self.issued_to).to_bytes() + Address(self.signed_by).to_bytes()
        return bytes(out)

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, offset: int = 0
    ) -> tuple[CertificateOfOwnership, int]:
        r = _Reader(data, offset, "certificate of ownership")
        nwid = r.u64()
        ts = r.i64()
        flags = r.u64()
        coo_id = r.u32()
        n = r.u16()
        if n > COO_MAX_THINGS:
            # The core silently mis-parses such input; nothing valid produces it.
            raise InvalidFormatError(f"certificate of ownership: {n} things (max {COO_MAX_THINGS})")
        things: list[tuple[int, bytes]] = []
        for _ in range(n):
            t = r.u8()
            things.append((Thing(t) if t in Thing._value2member_map_ else t, r.take(COO_THING_VALUE_SIZE)))
        issued_to = r.address()
        signed_by = r.address()
        sig = r.signature_block()
        r.skip_extra_fields()
        return cls(nwid, ts, issued_to, coo_id, flags, things, signed_by, sig), r.p - offset


# -------------------------------------------------------------------- Revocation


@dataclass
class Revocation(_ControllerSigned):
    """Controller-signed revocation of a member's credentials issued before ``threshold``."""

    id: int
    network_id: int
    credential_id: int
    threshold: int
    flags: int
    target: Address
    credential_type: int = CredentialType.NULL
    signed_by: Address = field(default_factory=lambda: Address(0))
    signature: bytes = bytes(SIGNATURE_LEN)

    @property
    def fast_propagate(self) -> bool:
        return bool(self.flags & REVOCATION_FLAG_FAST_PROPAGATE)

    def _body(self) -> bytes:
        _check_u("revocation id", self.id, 32)
        _check_u("network id", self.network_id, 64)
        _check_u("credential id", self.credential_id, 32)
        _check_i64("threshold", self.threshold)
        _check_u("flags", self.flags, 64)
        _check_u("credential type", int(self.credential_type), 8)
        return (
            struct.pack(">IIQII", 0, self.id, self.network_id, 0, self.credential_id)
            + _i64(self.threshold)
            + struct.pack(">Q", self.flags)
            + Address(self.target).to_bytes()
            + Address(self.signed_by).to_bytes()
            + bytes((int(self.credential_type),))
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Revocation, int]:
        r = _Reader(data, offset, "revocation")
        r.take(4)  # unused
        rev_id = r.u32()
        nwid = r.u64()
        r.take(4)  # unused
        cred_id = r.u32()
        threshold = r.i64()
        flags = r.u64()
        target = r.address()
        signed_by = r.address()
        ct = r.u8()
        ctype: int = CredentialType(ct) if ct in CredentialType._value2member_map_ else ct
        sig = r.signature_block()
        r.skip_extra_fields()
        return cls(rev_id, nwid, cred_id, threshold, flags, target, ctype, signed_by, sig), r.p - offset


# ------------------------------------------------------- NETWORK_CREDENTIALS


@dataclass
class NetworkCredentials:
    """The NETWORK_CREDENTIALS payload: COMs (ended by a 0 byte), then counted
    lists of capabilities, tags, revocations and COOs (u16 count each).

    Older senders stop after the COMs or after any list; missing lists are empty.
    """

    coms: list[CertificateOfMembership] = field(default_factory=list)
    capabilities: list[Capability] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    revocations: list[Revocation] = field(default_factory=list)
    coos: list[CertificateOfOwnership] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        out = bytearray()
        for com in self.coms:
            out += com.to_bytes()
        out += b"\x00"
        for items in (self.capabilities, self.tags, self.revocations, self.coos):
            seq: Iterable[Any] = items
            if len(items) > 0xFFFF:
                raise InvalidFormatError("too many credentials of one kind")
            out += len(items).to_bytes(2, "big")
            for c in seq:
                out += c.to_bytes()
        return bytes(out)

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, offset: int = 0
    ) -> tuple[NetworkCredentials, int]:
        d = bytes(data)
        p = offset
        nc = cls()
        while p < len(d) and d[p] != 0:
            com, n = CertificateOfMembership.from_bytes(d, p)
            nc.coms.append(com)
            p += n
        p += 1  # the 0 after the COMs, if present
        kinds: list[tuple[list[Any], Any]] = [
            (nc.capabilities, Capability),
            (nc.tags, Tag),
            (nc.revocations, Revocation),
            (nc.coos, CertificateOfOwnership),
        ]
        for dest, kind in kinds:
            if p >= len(d):
                break
            r = _Reader(d, p, "network credentials")
            count = r.u16()
            p = r.p
            for _ in range(count):
                item, n = kind.from_bytes(d, p)
                dest.append(item)
                p += n
        return nc, min(p, len(d)) - offset
