"""Cryptographic primitives used by ZeroTier 1.x.

`cryptography` provides X25519, Ed25519, Poly1305, AES and SHA-512;
libsodium (through cffi's ABI mode) provides Salsa20/12 and Salsa20/20.
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
