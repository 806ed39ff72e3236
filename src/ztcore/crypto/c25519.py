"""ZeroTier's "C25519" key pairs: a Curve25519 (X25519) ECDH key and an Ed25519
signing key side by side.

Public key: 64 bytes = X25519 public (32) + Ed25519 public (32).
Private key: 64 bytes = X25519 private (32) + Ed25519 seed (32).
Signature: 96 bytes = Ed25519 signature over the first 32 bytes of
SHA-512(message), followed by those 32 bytes.
Key agreement: SHA-512 of the raw X25519 result, stretched by re-hashing when
more than 64 bytes are wanted.
"""

from __future__ import annotations

import functools
import hmac
import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ztcore.crypto.symmetric import sha512

C25519_PUBLIC_KEY_LEN = 64
C25519_PRIVATE_KEY_LEN = 64
C25519_SIGNATURE_LEN = 96


def c25519_public_from_private(private: bytes) -> bytes:
    if len(private) != C25519_PRIVATE_KEY_LEN:
        raise ValueError("C25519 private key must be 64 bytes")
    dh = (
        X25519PrivateKey.from_private_bytes(private[:32])
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    ed = (
        Ed25519PrivateKey.from_private_bytes(private[32:])
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return dh + ed


def c25519_generate() -> tuple[bytes, bytes]:
    """Return a fresh (public, private) pair."""
    private = os.urandom(C25519_PRIVATE_KEY_LEN)
    return c25519_public_from_private(private), private


def c25519_agree(private: bytes, their_public: bytes, key_len: int = 48) -> bytes:
    """Shared secret as ZeroTier derives it; raises ValueError on a degenerate peer key."""
    raw = X25519PrivateKey.from_private_bytes(private[:32]).exchange(
        X25519PublicKey.from_public_bytes(their_public[:32])
    )
    digest = sha512(raw)
    out = bytearray()
    while len(out) < key_len:
        if out:
            digest = sha512(digest)
        out += digest[: key_len - len(out)]
    return bytes(out)


@functools.lru_cache(maxsize=256)
def _ed25519_key(seed: bytes) -> Ed25519PrivateKey:
    # Loading a key costs more than signing with it; a node or controller signs with
    # the same few keys all the time (COMs, config chunks, credentials).
    return Ed25519PrivateKey.from_private_bytes(seed)


def c25519_sign(private: bytes, message: bytes) -> bytes:
    digest = sha512(message)[:32]
    return _ed25519_key(bytes(private[32:64])).sign(digest) + digest


def c25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True only for a valid 96-byte signature; never raises on malformed input."""
    if len(public) != C25519_PUBLIC_KEY_LEN or len(signature) != C25519_SIGNATURE_LEN:
        return False
    digest = sha512(message)[:32]
    if not hmac.compare_digest(signature[64:96], digest):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public[32:64]).verify(signature[:64], digest)
    except (InvalidSignature, ValueError):
        return False
    return True
