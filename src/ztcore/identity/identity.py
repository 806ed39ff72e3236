"""ZeroTier identities (type 0: C25519 / Ed25519), as the 1.x core defines them.

An identity is a 40-bit address, a 64-byte C25519 public key and optionally
the 64-byte private key. The address is the last 5 bytes of the memory-hard
hash of the public key, and a key pair only counts if the hash's first byte
is below 17 (hashcash) and the address is not reserved.

Forms:
  text    "<10 hex address>:0:<128 hex public>[:<128 hex private>]"
  binary  address(5) | type(1) = 0 | public(64) | private length(1) = 0 or 64 | private(0 or 64)

Only type 0 exists in the 1.x protocol. Other types (e.g. the P-384 type 1 of
later cores) are rejected with InvalidFormatError.
"""

from __future__ import annotations

import hmac
import os
from collections import OrderedDict

from ztcore.crypto import (
    C25519_PRIVATE_KEY_LEN,
    C25519_PUBLIC_KEY_LEN,
    C25519_SIGNATURE_LEN,
    c25519_agree,
    c25519_public_from_private,
    c25519_sign,
    c25519_verify,
    sha384,
    sha512,
)
from ztcore.errors import InvalidFormatError, ZTError
from ztcore.identity.address import Address
from ztcore.identity.mhh import memory_hard_hash

__all__ = [
    "IDENTITY_GEN_HASHCASH_FIRST_BYTE_LESS_THAN",
    "IDENTITY_TYPE_C25519",
    "SYMMETRIC_KEY_SIZE",
    "Identity",
]

# Identities that passed validation (or were generated) in this process, most recently
# used last. Shared by every node of the process, so 1,000 nodes of one runtime do not
# hash each other's keys again; bounded so that a stream of distinct valid identities
# cannot grow it without limit.
VALIDATED_CACHE_MAX = 65536
_VALIDATED: OrderedDict[tuple[int, bytes], None] = OrderedDict()


def _remember_valid(identity: Identity) -> None:
    _VALIDATED[(int(identity.address), bytes(identity.public_key))] = None
    _VALIDATED.move_to_end((int(identity.address), bytes(identity.public_key)))
    while len(_VALIDATED) > VALIDATED_CACHE_MAX:
        _VALIDATED.popitem(last=False)

IDENTITY_TYPE_C25519 = 0
IDENTITY_GEN_HASHCASH_FIRST_BYTE_LESS_THAN = 17
SYMMETRIC_KEY_SIZE = 48  # ZT_SYMMETRIC_KEY_SIZE: bytes of key agreed between two peers

_HEX = frozenset("0123456789abcdefABCDEF")
_BINARY_MIN = Address.LENGTH + 1 + C25519_PUBLIC_KEY_LEN + 1


def _unhex(field: str, length: int, what: str) -> bytes:
    # bytes.fromhex alone would also accept embedded spaces; require plain hex digits.
    if len(field) != length * 2 or not _HEX.issuperset(field):
        raise InvalidFormatError(f"identity {what} must be {length * 2} hex digits")
    return bytes.fromhex(field)


class Identity:
    """A ZeroTier identity; equality and hashing use (address, public key) only."""

    __slots__ = ("address", "public_key", "private_key")

    address: Address
    public_key: bytes
    private_key: bytes | None

    def __init__(self, address: int, public_key: bytes, private_key: bytes | None = None) -> None:
        public_key = bytes(public_key)
        if len(public_key) != C25519_PUBLIC_KEY_LEN:
            raise InvalidFormatError("identity public key must be 64 bytes")
        if private_key is not None:
            private_key = bytes(private_key)
            if len(private_key) != C25519_PRIVATE_KEY_LEN:
                raise InvalidFormatError("identity private key must be 64 bytes")
        self.address = address if isinstance(address, Address) else Address(address)
        self.public_key = public_key
        self.private_key = private_key

    # -- creation -------------------------------------------------------------------

    @classmethod
    def generate(cls) -> Identity:
        """Make a new identity by hashcash search (tens of milliseconds with the C kernel)."""
        # Like the real core, keep the Ed25519 half fixed and search only over
        # the X25519 half of the key pair: cheaper, and equally random.
        private = bytearray(os.urandom(C25519_PRIVATE_KEY_LEN))
        ed_public = c25519_public_from_private(bytes(private))[32:]
        while True:
            private[:32] = os.urandom(32)
            public = c25519_public_from_private(bytes(private))[:32] + ed_public
            digest = memory_hard_hash(public)
            if digest[0] >= IDENTITY_GEN_HASHCASH_FIRST_BYTE_LESS_THAN:
                continue
            address = Address.from_bytes(digest, 59)
            if not address.is_reserved():
                identity = cls(address, public, bytes(private))
                _remember_valid(identity)
                return identity

    @classmethod
    def from_string(cls, text: str) -> Identity:
        """Parse the text form; surrounding whitespace (e.g. a file's newline) is ignored.

        This checks the format only: use validate() to check the address/key pairing.
        """
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("ascii")
            except UnicodeDecodeError:
                raise InvalidFormatError("identity text must be ASCII") from None
        if not isinstance(text, str):
            raise InvalidFormatError("identity text must be a string")
        fields = text.strip().split(":")
        if len(fields) not in (3, 4):
            raise InvalidFormatError("identity must look like <address>:0:<public>[:<private>]")
        if fields[1] != "0":
            raise InvalidFormatError(
                f"unsupported identity type {fields[1][:8]!r} (only type 0 exists in ZeroTier 1.x)"
            )
        address = Address.parse(fields[0])
        if address.is_reserved():
            raise InvalidFormatError(f"identity address {address} is reserved")
        public = _unhex(fields[2], C25519_PUBLIC_KEY_LEN, "public key")
        private = _unhex(fields[3], C25519_PRIVATE_KEY_LEN, "private key") if len(fields) == 4 else None
        return cls(address, public, private)

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> tuple[Identity, int]:
        """Parse the binary form at `offset`; returns (identity, bytes consumed)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidFormatError("identity data must be bytes")
        data = bytes(data)
        if offset < 0 or len(data) - offset < _BINARY_MIN:
            raise InvalidFormatError("identity data truncated")
        p = offset
        address = Address.from_bytes(data, p)
        p += Address.LENGTH
        id_type = data[p]
        p += 1
        if id_type != IDENTITY_TYPE_C25519:
            raise InvalidFormatError(
                f"unsupported identity type {id_type} (only type 0 exists in ZeroTier 1.x)"
            )
        public = data[p : p + C25519_PUBLIC_KEY_LEN]
        p += C25519_PUBLIC_KEY_LEN
        private_len = data[p]
        p += 1
        private: bytes | None = None
        if private_len:
            if private_len != C25519_PRIVATE_KEY_LEN:
                raise InvalidFormatError(f"identity private key length {private_len} is not 64")
            if len(data) - p < C25519_PRIVATE_KEY_LEN:
                raise InvalidFormatError("identity private key truncated")
            private = data[p : p + C25519_PRIVATE_KEY_LEN]
            p += C25519_PRIVATE_KEY_LEN
        return cls(address, public, private), p - offset

    # -- serialization --------------------------------------------------------------

    def to_bytes(self, include_private: bool = False) -> bytes:
        head = self.address.to_bytes() + bytes((IDENTITY_TYPE_C25519,)) + self.public_key
        if include_private and self.private_key is not None:
            return head + bytes((C25519_PRIVATE_KEY_LEN,)) + self.private_key
        return head + b"\x00"

    def to_string(self, include_private: bool = False) -> str:
        text = f"{self.address}:0:{self.public_key.hex()}"
        if include_private and self.private_key is not None:
            text += ":" + self.private_key.hex()
        return text

    def __str__(self) -> str:
        return self.to_string(False)

    def __repr__(self) -> str:
        return f"Identity('{self.to_string(False)}'{', private' if self.private_key else ''})"

    # -- checks ---------------------------------------------------------------------

    def validate(self) -> bool:
        """The core's locallyValidate(): hashcash and address derived from the public key.

        The memory-hard hash costs milliseconds, so an identity that passed once in
        this process (or was generated here) is remembered and not hashed again.
        """
        if self.known_valid():
            return True
        try:
            if self.address.is_reserved() or len(self.public_key) != C25519_PUBLIC_KEY_LEN:
                return False
            digest = memory_hard_hash(self.public_key)
            valid = digest[0] < IDENTITY_GEN_HASHCASH_FIRST_BYTE_LESS_THAN and hmac.compare_digest(
                digest[59:64], self.address.to_bytes()
            )
        except (TypeError, ValueError):  # validate() is a predicate: a malformed key is "not valid"
            return False
        if valid:
            _remember_valid(self)
        return valid

    def known_valid(self) -> bool:
        """True if this exact identity was validated or generated in this process
        (a cheap lookup: what lets a root skip its rate gate for identities it knows)."""
        key = (int(self.address), bytes(self.public_key))
        if key in _VALIDATED:
            _VALIDATED.move_to_end(key)
            return True
        return False

    @property
    def has_private(self) -> bool:
        return self.private_key is not None

    def public(self) -> Identity:
        """A copy without the private key."""
        return Identity(self.address, self.public_key)

    # -- cryptography ---------------------------------------------------------------

    def agree(self, other: Identity) -> bytes:
        """The 48-byte symmetric key shared with `other` (needs our private key)."""
        if self.private_key is None:
            raise ZTError("key agreement needs a private key")
        try:
            return c25519_agree(self.private_key, other.public_key, SYMMETRIC_KEY_SIZE)
        except ValueError as exc:  # degenerate peer key (all-zero shared secret)
            raise ZTError(f"key agreement with {other.address} failed: {exc}") from None

    def sign(self, message: bytes) -> bytes:
        """96-byte C25519 signature of `message` (deterministic)."""
        if self.private_key is None:
            raise ZTError("signing needs a private key")
        return c25519_sign(self.private_key, bytes(message))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True only if `signature` is this identity's valid signature of `message`."""
        try:
            signature = bytes(signature)
            if len(signature) != C25519_SIGNATURE_LEN:
                return False
            return c25519_verify(self.public_key, bytes(message), signature)
        except (TypeError, ValueError):  # verify() is a predicate: malformed input is just "not valid"
            return False

    def public_key_hash(self) -> bytes:
        """SHA-384 of address (5 bytes) + public key, as certificates of membership use it."""
        return sha384(self.address.to_bytes(), self.public_key)

    def sha512_private_key(self) -> bytes | None:
        """SHA-512 of the private key, or None without one."""
        return None if self.private_key is None else sha512(self.private_key)

    # -- comparison -----------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return self.address == other.address and self.public_key == other.public_key

    def __lt__(self, other: Identity) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return (self.address, self.public_key) < (other.address, other.public_key)

    def __hash__(self) -> int:
        return hash((int(self.address), self.public_key))

    def __bool__(self) -> bool:
        # The core treats an identity with address 0 as "nil".
        return bool(self.address)
