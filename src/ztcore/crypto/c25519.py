"""ZeroTier's "C25519" key pairs: a Curve25519 (X25519) ECDH key and an Ed25519
signing key side by side.

Public key: 64 bytes = X25519 public (32) + Ed25519 public (32).
Private key: 64 bytes = X25519 private (32) + Ed25519 seed (32).
Signature: 96 bytes = Ed25519 signature over the first 32 bytes of
SHA-512(message), followed by those 32 bytes.
Key agreement: SHA-512 of the raw X25519 result, stretched by re-hashing when
more than 64 bytes are wanted.

Fast path: libsodium (crypto_scalarmult_curve25519, crypto_sign_ed25519_*)
through the cffi binding, so that a running node never loads `cryptography`.
The ``*_ref`` functions are the reference on `cryptography` (imported on first
use); they are used when libsodium lacks one of the symbols, and by the tests.

Verification edge cases (libsodium's rules; the tests pin them): a signature
whose S is not reduced below the group order, a small-order or non-canonically
encoded Ed25519 public key, or a small-order R is rejected. The real core's
verify (node/C25519.cpp) reduces S modulo the order and checks no key or R
order, so it accepts such signatures when the equation holds; an honest signer
never makes one (Ed25519 signing yields a reduced S and R in the prime-order
subgroup), and a small-order key is one anyone can sign for, so they are not
accepted here. `cryptography` (OpenSSL) also rejects an unreduced S.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
from typing import Any

from ztcore.crypto._sodium import ffi, has_symbols, lib
from ztcore.crypto.symmetric import sha512

log = logging.getLogger(__name__)

C25519_PUBLIC_KEY_LEN = 64
C25519_PRIVATE_KEY_LEN = 64
C25519_SIGNATURE_LEN = 96

HAVE_SODIUM_C25519 = has_symbols(
    "crypto_scalarmult_curve25519",
    "crypto_scalarmult_curve25519_base",
    "crypto_sign_ed25519_seed_keypair",
    "crypto_sign_ed25519_detached",
    "crypto_sign_ed25519_verify_detached",
)
"""True when the loaded libsodium has every X25519/Ed25519 function used here."""


def _stretch(raw: bytes, key_len: int) -> bytes:
    digest = sha512(raw)
    out = bytearray()
    while len(out) < key_len:
        if out:
            digest = sha512(digest)
        out += digest[: key_len - len(out)]
    return bytes(out)


def _check_private(private: bytes) -> None:
    if len(private) != C25519_PRIVATE_KEY_LEN:
        raise ValueError("C25519 private key must be 64 bytes")


# --- libsodium ----------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _ed25519_secret(seed: bytes) -> tuple[bytes, bytes]:
    # (public, libsodium's 64-byte secret key) for a seed. Deriving them costs a scalar
    # multiplication; a node or controller signs with the same few keys all the time.
    pk = ffi.new("unsigned char[32]")
    sk = ffi.new("unsigned char[64]")
    lib.crypto_sign_ed25519_seed_keypair(pk, sk, seed)
    return ffi.buffer(pk)[:], ffi.buffer(sk)[:]


def _public_from_private_sodium(private: bytes) -> bytes:
    _check_private(private)
    private = bytes(private)
    dh = ffi.new("unsigned char[32]")
    lib.crypto_scalarmult_curve25519_base(dh, private[:32])
    return ffi.buffer(dh)[:] + _ed25519_secret(private[32:64])[0]


def _agree_sodium(private: bytes, their_public: bytes, key_len: int) -> bytes:
    private, their_public = bytes(private), bytes(their_public)
    if len(private) < 32 or len(their_public) < 32:
        raise ValueError("an X25519 key is 32 bytes")
    raw = ffi.new("unsigned char[32]")
    # Non-zero for a small-order peer key (all-zero shared secret), as `cryptography` refuses it.
    if lib.crypto_scalarmult_curve25519(raw, private[:32], their_public[:32]) != 0:
        raise ValueError("Error computing shared key.")
    return _stretch(ffi.buffer(raw)[:], key_len)


def _sign_sodium(private: bytes, message: bytes) -> bytes:
    _check_private(private)
    digest = sha512(message)[:32]
    sig = ffi.new("unsigned char[64]")
    lib.crypto_sign_ed25519_detached(sig, ffi.NULL, digest, 32, _ed25519_secret(bytes(private[32:64]))[1])
    return ffi.buffer(sig)[:] + digest


def _verify_sodium(public: bytes, message: bytes, signature: bytes) -> bool:
    if len(public) != C25519_PUBLIC_KEY_LEN or len(signature) != C25519_SIGNATURE_LEN:
        return False
    digest = sha512(message)[:32]
    signature = bytes(signature)
    if not hmac.compare_digest(signature[64:96], digest):
        return False
    return lib.crypto_sign_ed25519_verify_detached(signature[:64], digest, 32, bytes(public[32:64])) == 0  # type: ignore[no-any-return]


# --- reference (`cryptography`, loaded on first use) ----------------------------------


@functools.lru_cache(maxsize=256)
def _ed25519_key(seed: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed)


def c25519_public_from_private_ref(private: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    _check_private(private)
    dh = X25519PrivateKey.from_private_bytes(private[:32]).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ed = _ed25519_key(bytes(private[32:64])).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return dh + ed


def c25519_agree_ref(private: bytes, their_public: bytes, key_len: int = 48) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    raw = X25519PrivateKey.from_private_bytes(private[:32]).exchange(
        X25519PublicKey.from_public_bytes(their_public[:32])
    )
    return _stretch(raw, key_len)


def c25519_sign_ref(private: bytes, message: bytes) -> bytes:
    _check_private(private)
    digest = sha512(message)[:32]
    return _ed25519_key(bytes(private[32:64])).sign(digest) + digest  # type: ignore[no-any-return]


def c25519_verify_ref(public: bytes, message: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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


# The real core's first self-test key pair: the libsodium path is used only if it
# derives the same public key (a wrong binding would otherwise be silent).
_CHECK_PRIVATE = bytes.fromhex(
    "e5f37bd40ec9dc775086dcf42ebcdb27f073d45873c44b718b3cc54fa87ca484"
    "d9962373b40316bf1ea12dd8c48ae78210dac9e5459b01dc73a6c917a815316d"
)
_CHECK_PUBLIC = bytes.fromhex(
    "a1fc7ab46ddf7dcfe7ec75e5fadd11cbcc37f8845d1c924e098965fcd8e95a30"
    "dae486a335b4190cbc7bcb3eb94cbd16e83d132bc9c339eaf142e76f69789ab7"
)

if HAVE_SODIUM_C25519 and _public_from_private_sodium(_CHECK_PRIVATE) != _CHECK_PUBLIC:
    log.warning("libsodium's X25519/Ed25519 disagree with ZeroTier's vector; C25519 runs on cryptography")
    HAVE_SODIUM_C25519 = False
elif not HAVE_SODIUM_C25519:
    log.info("libsodium lacks X25519/Ed25519 functions; C25519 runs on cryptography")


# --- the API --------------------------------------------------------------------------


def c25519_public_from_private(private: bytes) -> bytes:
    """The 64-byte public key of a 64-byte private key."""
    if HAVE_SODIUM_C25519:
        return _public_from_private_sodium(private)
    return c25519_public_from_private_ref(private)


def c25519_generate() -> tuple[bytes, bytes]:
    """Return a fresh (public, private) pair."""
    private = os.urandom(C25519_PRIVATE_KEY_LEN)
    return c25519_public_from_private(private), private


def c25519_agree(private: bytes, their_public: bytes, key_len: int = 48) -> bytes:
    """Shared secret as ZeroTier derives it; raises ValueError on a degenerate peer key."""
    if HAVE_SODIUM_C25519:
        return _agree_sodium(private, their_public, key_len)
    return c25519_agree_ref(private, their_public, key_len)


def c25519_sign(private: bytes, message: bytes) -> bytes:
    """96-byte signature (deterministic)."""
    if HAVE_SODIUM_C25519:
        return _sign_sodium(private, message)
    return c25519_sign_ref(private, message)


def c25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True only for a valid 96-byte signature; never raises on malformed input."""
    if HAVE_SODIUM_C25519:
        return _verify_sodium(public, message, signature)
    return c25519_verify_ref(public, message, signature)
