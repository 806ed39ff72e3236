"""One call per VL1 packet to armor or dearmor it: the C kernel
`ztcore.crypto._armor` bound to libsodium and OpenSSL, and the pure-Python
reference of cipher suites 0 and 1 (Poly1305, optionally Salsa20/12).

Suite 3 (AES-GMAC-SIV) is `ztcore.crypto.aes_gmac_siv.AesGmacSiv.armor` /
`.dearmor`, which use the kernel's `Siv` contexts when `HAVE_C_AES`.

The packet-level functions take the header fields the way the wire has them
(layout in `ztcore.vl1.packet`): `flags` is the whole flags byte (hop bits
included; they are never authenticated) and `verb_byte` includes the
compression flag. `dearmor_*` returns ``(verb_byte, payload)`` or one of the
``E_*`` error codes; they never raise on malformed packets.

Which path runs: the kernel when it was built (`pip install -e .`); suites 0/1
then use libsodium's Salsa20/12 and Poly1305 through function addresses taken
from the cffi binding (as `ztcore.identity.mhh` does), and suite 3 uses the
kernel's own AES-NI/PCLMULQDQ code on x86-64 CPUs that have those instructions,
else the EVP AES functions of the libcrypto the interpreter already has loaded
for `_hashlib`/`_ssl`. Each binding is checked against the reference once at
import; anything missing or disagreeing leaves that suite on the reference.
Setting ZTCORE_PURE_PYTHON_ARMOR=1 in the environment keeps every suite on the
reference (for comparisons and debugging).
"""

from __future__ import annotations

import ctypes
import hmac
import importlib
import logging
import os
import struct
from types import ModuleType

from ztcore.crypto._sodium import ffi, lib
from ztcore.crypto.symmetric import poly1305_fast
from ztcore.crypto.symmetric import salsa20_12_xor_fast as _salsa12

__all__ = [
    "E_BAD_MAC",
    "E_TOO_LONG",
    "E_TOO_SHORT",
    "E_UNKNOWN_CIPHER",
    "HAVE_AESNI",
    "HAVE_C_AES",
    "HAVE_C_ARMOR",
    "HAVE_OPENSSL_AES",
    "MAX_PACKET_LENGTH",
    "armor_poly",
    "armor_poly_py",
    "dearmor_poly",
    "dearmor_poly_py",
]

log = logging.getLogger(__name__)

E_TOO_SHORT = 1
E_TOO_LONG = 2
E_BAD_MAC = 3
E_UNKNOWN_CIPHER = 4

MAX_PACKET_LENGTH = 10024  # 7 fragments x the default physical MTU (the kernel's bound too)
_HEAD = 27  # bytes before the verb: IV 8, destination 5, source 5, flags 1, MAC 8
_MIN = 28
_ZERO64 = bytes(64)
_HEAD_STRUCT = struct.Struct(">Q5s5sB")


# --- pure-Python reference (suites 0 and 1) ----------------------------------------

# Agreed key -> (first 21 bytes as an int, bytes 21..31): mangling a key is one XOR.
# Bounded: cleared when it grows past a few thousand peers.
_KEY_SPLIT: dict[bytes, tuple[int, bytes]] = {}


def _mangle_key(key: bytes | bytearray | memoryview, head19: bytes, size: int) -> bytes:
    # Per-packet Salsa20/12 key: key XOR (IV || dest || source || flags without hops ||
    # size, 16 bits little-endian); the remaining 11 key bytes are unchanged.
    k = bytes(key) if type(key) is not bytes else key
    split = _KEY_SPLIT.get(k)
    if split is None:
        if len(k) < 32:
            raise ValueError("the Salsa20/Poly1305 key must be at least 32 bytes")
        if len(_KEY_SPLIT) >= 4096:
            _KEY_SPLIT.clear()
        split = _KEY_SPLIT[k] = (int.from_bytes(k[:21], "big"), k[21:32])
    mix = int.from_bytes(
        head19[:18] + bytes((head19[18] & 0xF8, size & 0xFF, (size >> 8) & 0xFF)), "big"
    )
    return (split[0] ^ mix).to_bytes(21, "big") + split[1]


def _poly8(key: bytes | bytearray, data: bytes | bytearray) -> bytes:
    return poly1305_fast(key, data)[:8]


def armor_poly_py(
    key: bytes, packet_id: int, destination: int, source: int, flags: int, verb_byte: int, payload: bytes
) -> bytes:
    """Reference: the wire packet armored with suite 0 or 1 (from `flags`)."""
    suite = (flags >> 3) & 7
    if suite > 1:
        raise ValueError("armor_poly does cipher suites 0 and 1 only")
    if len(payload) > MAX_PACKET_LENGTH - _MIN:
        raise ValueError("payload too long for a packet")
    head = _HEAD_STRUCT.pack(
        packet_id, destination.to_bytes(5, "big"), source.to_bytes(5, "big"), flags
    )
    plaintext = bytes((verb_byte,)) + bytes(payload)
    mk = _mangle_key(key, head, _HEAD + len(plaintext))
    iv = head[:8]
    if suite == 1:
        # keystream bytes 0..31 key Poly1305; encryption starts at keystream byte 64
        out = _salsa12(mk, iv, _ZERO64 + plaintext)
        body: bytes | bytearray = out[64:]
        mac = _poly8(out, body)
    else:
        body = plaintext
        mac = _poly8(_salsa12(mk, iv, _ZERO64[:32]), body)
    return head + mac + body


def dearmor_poly_py(key: bytes, data: bytes | bytearray | memoryview) -> tuple[int, bytes] | int:
    """Reference: verify (and for suite 1 decrypt) a packet; (verb_byte, payload) or E_*."""
    d = bytes(data)
    n = len(d)
    if n < _MIN:
        return E_TOO_SHORT
    if n > MAX_PACKET_LENGTH:
        return E_TOO_LONG
    suite = (d[18] >> 3) & 7
    if suite > 1:
        return E_UNKNOWN_CIPHER
    mk = _mangle_key(key, d[:19], n)
    body = d[_HEAD:]
    if suite == 1:
        out = _salsa12(mk, d[:8], _ZERO64 + body)
        if not hmac.compare_digest(_poly8(out, body), d[19:27]):
            return E_BAD_MAC
        return out[64], bytes(out[65:])
    if not hmac.compare_digest(_poly8(_salsa12(mk, d[:8], _ZERO64[:32]), body), d[19:27]):
        return E_BAD_MAC
    return body[0], body[1:]


# --- the C kernel ----------------------------------------------------------------


def _address(obj: object) -> int:
    return int(ctypes.cast(obj, ctypes.c_void_p).value or 0)


def _libcrypto_addresses(names: tuple[str, ...]) -> tuple[int, ...] | None:
    """EVP function addresses from the libcrypto this interpreter already uses."""
    # _hashlib first: hashlib has loaded it already, while _ssl would pull in sockets.
    for source in ("_hashlib", "_ssl", None):  # None: linked into the interpreter itself
        path: str | None = None
        if source is not None:
            try:
                path = getattr(importlib.import_module(source), "__file__", None)
            except ImportError:
                continue
            if not path:
                continue
        try:
            handle = ctypes.CDLL(path)
            addresses = tuple(_address(getattr(handle, name)) for name in names)
        except (OSError, AttributeError):
            continue
        if all(addresses):
            return addresses
    return None


def _load_kernel() -> tuple[ModuleType | None, bool, bool]:
    """(the kernel or None, whether it does suite 3, whether its EVP path is bound)."""
    if os.environ.get("ZTCORE_PURE_PYTHON_ARMOR"):
        log.info("ZTCORE_PURE_PYTHON_ARMOR is set: packets are armored in Python")
        return None, False, False
    try:
        from ztcore.crypto import _armor  # type: ignore[attr-defined]
    except ImportError:
        log.info("ztcore.crypto._armor (C kernel) is not built; packets are armored in Python")
        return None, False, False
    _armor.bind_sodium(
        int(ffi.cast("uintptr_t", ffi.addressof(lib, "crypto_stream_salsa2012_xor"))),
        int(ffi.cast("uintptr_t", ffi.addressof(lib, "crypto_onetimeauth_poly1305"))),
    )
    # Self-check against the reference (a wrong binding would be silent otherwise).
    key = bytes(range(48))
    for flags in (0x00, 0x8A):
        wire = armor_poly_py(key, 0x0123456789ABCDEF, 0x1122334455, 0x66778899AA, flags, 6, bytes(range(77)))
        if _armor.armor_poly(key, 0x0123456789ABCDEF, 0x1122334455, 0x66778899AA, flags, 6, bytes(range(77))) != wire:
            log.warning("ztcore.crypto._armor disagrees with the reference; packets are armored in Python")
            return None, False, False
    # EVP is bound even where AES-NI does the work: the tests hold one to the other.
    addresses = _libcrypto_addresses(_armor.OPENSSL_NAMES)
    if addresses is not None:
        _armor.bind_openssl(addresses)
    if addresses is None and not _armor.HAVE_AESNI:
        log.info("no AES-NI and no libcrypto with EVP AES in this interpreter; suite 3 runs in Python")
    return _armor, addresses is not None or bool(_armor.HAVE_AESNI), addresses is not None


_kernel, HAVE_C_AES, HAVE_OPENSSL_AES = _load_kernel()
HAVE_AESNI = bool(_kernel is not None and _kernel.HAVE_AESNI)
"""Suite 3 runs on the kernel's AES-NI code (`HAVE_OPENSSL_AES`: its EVP path is bound too)."""
HAVE_C_ARMOR = _kernel is not None
"""True when suites 0/1 run in the C kernel (suite 3 also needs HAVE_C_AES, which
AesGmacSiv confirms against the reference vectors before using it)."""

if _kernel is not None:
    armor_poly = _kernel.armor_poly
    dearmor_poly = _kernel.dearmor_poly
    Siv = _kernel.Siv
else:
    armor_poly = armor_poly_py
    dearmor_poly = dearmor_poly_py
    Siv = None
