"""AES-GMAC-SIV, ZeroTier's cipher suite 3 (AES-256 with two keys K0 and K1).

Construction (from the ZeroTier 1.x core's specification):

* GMAC under K0 with the 96-bit nonce ``iv8 || 00000000`` over the byte string
  ``aad || zero pad to 16 || plaintext``.  This is exactly the tag standard
  AES-GCM produces for an empty plaintext with that string as its AAD, so
  `cryptography`'s AESGCM computes it.
* The 128-bit GMAC tag is folded to 64 bits (first half XOR second half).
* ``tag = AES-256-ECB(K1, iv8 || fold8)``: the opaque 16-byte IV+MAC blob.
* The payload is encrypted with AES-256-CTR under K1, with the counter block
  being ``tag`` with the top bit of its last 32-bit word cleared (so the 32-bit
  big-endian counter cannot wrap within 2^31 bytes).

Decryption recovers ``iv8 || fold8`` by decrypting the tag with K1, decrypts the
payload, recomputes the GMAC and compares the folded value.

`AesGmacSiv` runs on the C kernel (`ztcore.crypto._armor.Siv`, see
`ztcore.crypto.armor`: its AES-NI code, else prepared OpenSSL contexts) when it
is available and agrees with ZeroTier's vectors; the `*_py` methods are the pure-Python
reference (`cryptography`) and the fallback. `armor`/`dearmor` do a whole VL1
packet (layout in `ztcore.vl1.packet`) in one call.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ztcore.crypto import armor as _armor_mod
from ztcore.crypto.armor import E_BAD_MAC, E_TOO_LONG, E_TOO_SHORT, E_UNKNOWN_CIPHER, MAX_PACKET_LENGTH

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import CipherContext

__all__ = ["HAVE_C_AES", "AesGmacSiv"]

log = logging.getLogger(__name__)

_ZERO16 = bytes(16)
_NONCE_PAD = bytes(4)
_AAD_STRUCT = struct.Struct(">5s5sB")


class _PyContexts:
    """`cryptography` contexts of the reference path, made on first use (a node
    whose kernel is built never imports `cryptography`)."""

    __slots__ = ("gcm", "ecb_enc", "ecb_dec", "ctr", "lock")

    def __init__(self, k0: bytes, k1: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.gcm = AESGCM(k0)
        aes1 = algorithms.AES(k1)
        # ECB contexts are stateless between 16-byte blocks, so one of each
        # direction serves every message; the CTR context is re-pointed with
        # reset_nonce (creating a context costs several times a whole packet).
        ecb = Cipher(aes1, modes.ECB())
        self.ecb_enc: CipherContext = ecb.encryptor()
        self.ecb_dec: CipherContext = ecb.decryptor()
        self.ctr = Cipher(aes1, modes.CTR(_ZERO16)).encryptor()
        self.lock = threading.Lock()


class AesGmacSiv:
    """AES-GMAC-SIV keyed with two 32-byte AES-256 keys (K0 for GMAC, K1 for ECB/CTR).

    The object holds prepared cipher contexts (made once per key pair) and can be
    reused for any number of messages; it keeps no per-message state between calls
    and is safe to share between threads.
    """

    __slots__ = ("_k0", "_k1", "_c", "_py")

    def __init__(self, k0: bytes, k1: bytes, *, use_c: bool = True) -> None:
        if len(k0) != 32 or len(k1) != 32:
            raise ValueError("AES-GMAC-SIV needs two 32-byte keys")
        self._k0 = bytes(k0)
        self._k1 = bytes(k1)
        self._py: _PyContexts | None = None
        self._c = _kernel_siv(self._k0, self._k1) if use_c and HAVE_C_AES else None

    @property
    def uses_c(self) -> bool:
        return self._c is not None

    @property
    def kernel(self) -> object | None:
        """The kernel's Siv context doing the work (None on the pure-Python path)."""
        return self._c

    @property
    def packet_calls(self) -> tuple[Callable[..., bytes], Callable[..., tuple[int, bytes] | int]]:
        """(armor, dearmor) as the callables that do the work (the kernel's own methods
        when it is used): the packet path keeps them to save a call per packet."""
        if self._c is not None:
            return self._c.armor, self._c.dearmor
        return self.armor_py, self.dearmor_py

    def _ctx(self) -> _PyContexts:
        py = self._py
        if py is None:
            py = self._py = _PyContexts(self._k0, self._k1)
        return py

    # -- messages -----------------------------------------------------------------

    def encrypt(self, iv: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """Encrypt; `iv` is 8 bytes in wire order. Returns (tag16, ciphertext)."""
        if self._c is not None:
            return self._c.encrypt(iv, aad, plaintext)  # type: ignore[no-any-return]
        return self.encrypt_py(iv, aad, plaintext)

    def decrypt(self, tag: bytes, aad: bytes, ciphertext: bytes) -> bytes | None:
        """Decrypt and authenticate; returns the plaintext or None if the tag is wrong."""
        if self._c is not None:
            return self._c.decrypt(tag, aad, ciphertext)  # type: ignore[no-any-return]
        return self.decrypt_py(tag, aad, ciphertext)

    def _gmac_fold(self, iv8: bytes, aad: bytes, plaintext: bytes) -> bytes:
        pad = (-len(aad)) & 15
        t = self._ctx().gcm.encrypt(
            iv8 + _NONCE_PAD, b"", aad + _ZERO16[:pad] + plaintext if pad else aad + plaintext
        )
        return (int.from_bytes(t[:8], "big") ^ int.from_bytes(t[8:], "big")).to_bytes(8, "big")

    def _ctr(self, tag: bytes, data: bytes) -> bytes:
        # Counter block = tag with the top bit of the 32-bit counter cleared.
        nonce = tag[:12] + bytes((tag[12] & 0x7F,)) + tag[13:16]
        py = self._ctx()
        with py.lock:
            py.ctr.reset_nonce(nonce)
            return py.ctr.update(data)

    def encrypt_py(self, iv: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """Reference of `encrypt` (`cryptography`)."""
        if len(iv) != 8:
            raise ValueError("AES-GMAC-SIV IV must be 8 bytes")
        iv, aad, plaintext = bytes(iv), bytes(aad), bytes(plaintext)
        fold = self._gmac_fold(iv, aad, plaintext)
        py = self._ctx()
        with py.lock:
            tag = py.ecb_enc.update(iv + fold)
        return tag, self._ctr(tag, plaintext)

    def decrypt_py(self, tag: bytes, aad: bytes, ciphertext: bytes) -> bytes | None:
        """Reference of `decrypt` (`cryptography`)."""
        if len(tag) != 16:
            return None
        tag, aad = bytes(tag), bytes(aad)
        py = self._ctx()
        with py.lock:
            iv_mac = py.ecb_dec.update(tag)
        plaintext = self._ctr(tag, bytes(ciphertext))
        if not hmac.compare_digest(self._gmac_fold(iv_mac[:8], aad, plaintext), iv_mac[8:]):
            return None
        return plaintext

    # -- whole VL1 packets ----------------------------------------------------------

    def armor(
        self, packet_id: int, destination: int, source: int, flags: int, verb_byte: int, payload: bytes
    ) -> bytes:
        """The wire packet: tag[0:8] as packet ID, header, tag[8:16] as MAC, ciphertext.
        `flags` is the whole flags byte (its hop bits are not authenticated)."""
        if self._c is not None:
            return self._c.armor(packet_id, destination, source, flags, verb_byte, payload)  # type: ignore[no-any-return]
        return self.armor_py(packet_id, destination, source, flags, verb_byte, payload)

    def dearmor(self, data: bytes | bytearray | memoryview) -> tuple[int, bytes] | int:
        """Verify and decrypt a suite-3 packet: (verb_byte, payload) or an E_* code."""
        if self._c is not None:
            return self._c.dearmor(data)  # type: ignore[no-any-return]
        return self.dearmor_py(data)

    def armor_py(
        self, packet_id: int, destination: int, source: int, flags: int, verb_byte: int, payload: bytes
    ) -> bytes:
        """Reference of `armor`."""
        if (flags >> 3) & 7 != 3:
            raise ValueError("AesGmacSiv.armor does cipher suite 3 only")
        if len(payload) > MAX_PACKET_LENGTH - 28:
            raise ValueError("payload too long for a packet")
        aad = _AAD_STRUCT.pack(destination.to_bytes(5, "big"), source.to_bytes(5, "big"), flags & 0xF8)
        tag, ct = self.encrypt_py(packet_id.to_bytes(8, "big"), aad, bytes((verb_byte,)) + bytes(payload))
        return b"".join((tag[:8], aad[:10], bytes((flags,)), tag[8:], ct))

    def dearmor_py(self, data: bytes | bytearray | memoryview) -> tuple[int, bytes] | int:
        """Reference of `dearmor`."""
        d = bytes(data)
        if len(d) < 28:
            return E_TOO_SHORT
        if len(d) > MAX_PACKET_LENGTH:
            return E_TOO_LONG
        if (d[18] >> 3) & 7 != 3:
            return E_UNKNOWN_CIPHER
        pt = self.decrypt_py(d[0:8] + d[19:27], d[8:18] + bytes((d[18] & 0xF8,)), d[27:])
        if pt is None:
            return E_BAD_MAC
        return pt[0], pt[1:]


# ZeroTier's GMAC-SIV vector for a 777-byte message (K0 = "0"*32, K1 = "1"*32 in ASCII,
# AAD = plaintext = bytes(i & 0xff), IV = the length as a little-endian uint64).
_CHECK_LEN = 777
_CHECK_TAG = bytes.fromhex("b8c318b5dcc1d672114a6f7be54ef289")
_CHECK_CT_SHA384 = bytes.fromhex(
    "aabf892f18a620b9c3bae91bb03a74c84193e4a7b64916c6bc88b885b9ebed4134495e5f22f12e3046fbb3f26fa111a7"
)


def _kernel_siv(k0: bytes, k1: bytes) -> object:
    assert _armor_mod.Siv is not None
    return _armor_mod.Siv(k0, k1, aesni=_use_aesni)


def _vector_holds(aesni: bool) -> bool:
    msg = bytes(range(256)) * 3 + bytes(range(_CHECK_LEN - 768))
    assert _armor_mod.Siv is not None
    c = _armor_mod.Siv(b"0" * 32, b"1" * 32, aesni=aesni)
    tag, ct = c.encrypt(_CHECK_LEN.to_bytes(8, "little"), msg, msg)
    ok = tag == _CHECK_TAG and hashlib.sha384(ct).digest() == _CHECK_CT_SHA384
    return bool(ok and c.decrypt(tag, msg, ct) == msg)


def _check_kernel() -> tuple[bool, bool]:
    """(the kernel does suite 3, on its AES-NI code): each of its two AES paths is
    used only if it reproduces ZeroTier's vector."""
    if not _armor_mod.HAVE_C_AES or _armor_mod.Siv is None:
        return False, False
    paths = ([True] if _armor_mod.HAVE_AESNI else []) + ([False] if _armor_mod.HAVE_OPENSSL_AES else [])
    for aesni in paths:
        name = "AES-NI code" if aesni else "OpenSSL binding"
        try:
            if _vector_holds(aesni):
                return True, aesni
        except (RuntimeError, ValueError) as e:
            log.warning("the %s of ztcore.crypto._armor failed its check (%s)", name, e)
            continue
        log.warning("the %s of ztcore.crypto._armor disagrees with ZeroTier's vector", name)
    log.warning("suite 3 (AES-GMAC-SIV) runs in Python")
    return False, False


HAVE_C_AES, _use_aesni = _check_kernel()
