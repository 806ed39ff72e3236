"""Symmetric primitives: Salsa20/12, Salsa20/20 and Poly1305 (libsodium), SHA-512/384
(hashlib). `poly1305` is the reference on `cryptography`, imported on first use."""

from __future__ import annotations

import hashlib

from ztcore.crypto._sodium import ffi, lib


def salsa20_12_xor(key: bytes, iv: bytes, data: bytes) -> bytes:
    """XOR `data` with the Salsa20/12 keystream for (key[32], iv[8]) from block 0."""
    if len(key) != 32 or len(iv) != 8:
        raise ValueError("Salsa20 needs a 32-byte key and an 8-byte IV")
    out = ffi.new("unsigned char[]", len(data) or 1)
    lib.crypto_stream_salsa2012_xor(out, data, len(data), iv, key)
    return ffi.buffer(out, len(data))[:]


def salsa20_20_xor(key: bytes, iv: bytes, data: bytes, block: int = 0) -> bytes:
    """XOR `data` with the Salsa20/20 keystream starting at 64-byte block `block`."""
    if len(key) != 32 or len(iv) != 8:
        raise ValueError("Salsa20 needs a 32-byte key and an 8-byte IV")
    out = ffi.new("unsigned char[]", len(data) or 1)
    lib.crypto_stream_salsa20_xor_ic(out, data, len(data), iv, block, key)
    return ffi.buffer(out, len(data))[:]


def poly1305(key: bytes, data: bytes) -> bytes:
    """One-time Poly1305 tag (16 bytes) of `data` under a 32-byte key (reference)."""
    from cryptography.hazmat.primitives.poly1305 import Poly1305

    return Poly1305.generate_tag(key, data)


# Packet hot path: libsodium directly, writing into fresh buffers (Poly1305 through
# libsodium costs about half of `cryptography`'s per-call overhead). The results
# equal salsa20_12_xor / poly1305 above; tests check that they agree.
def salsa20_12_xor_fast(key: bytes | bytearray, iv: bytes | bytearray, data: bytes | bytearray) -> bytearray:
    out = bytearray(len(data))
    lib.crypto_stream_salsa2012_xor(ffi.from_buffer(out), bytes(data), len(data), bytes(iv), bytes(key))
    return out


def poly1305_fast(key: bytes | bytearray, data: bytes | bytearray) -> bytes:
    """Poly1305 tag of `data`; `key` is the first 32 bytes of the given buffer."""
    tag = bytearray(16)
    lib.crypto_onetimeauth_poly1305(
        ffi.from_buffer(tag), ffi.from_buffer(data), len(data), ffi.from_buffer(key)
    )
    return bytes(tag)


def sha512(*parts: bytes) -> bytes:
    h = hashlib.sha512()
    for p in parts:
        h.update(p)
    return h.digest()


def sha384(*parts: bytes) -> bytes:
    h = hashlib.sha384()
    for p in parts:
        h.update(p)
    return h.digest()
