"""Cryptographic primitives used by ZeroTier 1.x.

libsodium (through cffi's ABI mode) provides Salsa20/12, Salsa20/20, Poly1305,
X25519 and Ed25519; hashlib SHA-512/384; the armor kernel takes AES from the
interpreter's libcrypto. `cryptography` is the reference (tests, and the fallback
when libsodium lacks a function) and is imported only when used.
"""

from ztcore.crypto.c25519 import (
    C25519_PRIVATE_KEY_LEN,
    C25519_PUBLIC_KEY_LEN,
    C25519_SIGNATURE_LEN,
    c25519_agree,
    c25519_generate,
    c25519_public_from_private,
    c25519_sign,
    c25519_verify,
)
from ztcore.crypto.symmetric import (
    poly1305,
    salsa20_12_xor,
    salsa20_20_xor,
    sha384,
    sha512,
)

__all__ = [
    "C25519_PRIVATE_KEY_LEN",
    "C25519_PUBLIC_KEY_LEN",
    "C25519_SIGNATURE_LEN",
    "c25519_agree",
    "c25519_generate",
    "c25519_public_from_private",
    "c25519_sign",
    "c25519_verify",
    "poly1305",
    "salsa20_12_xor",
    "salsa20_20_xor",
    "sha384",
    "sha512",
]
