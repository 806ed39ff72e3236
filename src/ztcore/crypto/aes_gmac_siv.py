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
"""

from __future__ import annotations

import hmac
import threading

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["AesGmacSiv"]

_ZERO16 = bytes(16)
_NONCE_PAD = bytes(4)


class AesGmacSiv:
    """AES-GMAC-SIV keyed with two 32-byte AES-256 keys (K0 for GMAC, K1 for ECB/CTR).

    The object holds prepared cipher contexts and can be reused for any number
    of messages; it keeps no per-message state between calls and is safe to
    share between threads.
    """

    __slots__ = ("_gcm", "_ecb_enc", "_ecb_dec", "_ctr_ctx", "_lock")

    def __init__(self, k0: bytes, k1: bytes) -> None:
        if len(k0) != 32 or len(k1) != 32:
            raise ValueError("AES-GMAC-SIV needs two 32-byte keys")
        self._gcm = AESGCM(bytes(k0))
        aes1 = algorithms.AES(bytes(k1))
        # ECB contexts are stateless between 16-byte blocks, so one of each
        # direction serves every message; the CTR context is re-pointed with
        # reset_nonce (creating a context costs several times a whole packet).
        ecb = Cipher(aes1, modes.ECB())
        self._ecb_enc = ecb.encryptor()
        self._ecb_dec = ecb.decryptor()
        self._ctr_ctx = Cipher(aes1, modes.CTR(_ZERO16)).encryptor()
        self._lock = threading.Lock()

    def _gmac_fold(self, iv8: bytes, aad: bytes, plaintext: bytes) -> bytes:
        pad = (-len(aad)) & 15
        t = self._gcm.encrypt(
            iv8 + _NONCE_PAD, b"", aad + _ZERO16[:pad] + plaintext if pad else aad + plaintext
        )
        return (int.from_bytes(t[:8], "big") ^ int.from_bytes(t[8:], "big")).to_bytes(8, "big")

    def _ctr(self, tag: bytes, data: bytes) -> bytes:
        # Counter block = tag with the top bit of the 32-bit counter cleared.
        nonce = tag[:12] + bytes((tag[12] & 0x7F,)) + tag[13:16]
        with self._lock:
            ctx = self._ctr_ctx
            ctx.reset_nonce(nonce)
            return ctx.update(data)

    def encrypt(self, iv: bytes, aad: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """Encrypt; `iv` is 8 bytes in wire order. Returns (tag16, ciphertext)."""
        if len(iv) != 8:
            raise ValueError("AES-GMAC-SIV IV must be 8 bytes")
        fold = self._gmac_fold(iv, aad, plaintext)
        with self._lock:
            tag = self._ecb_enc.update(iv + fold)
        return tag, self._ctr(tag, plaintext)

    def decrypt(self, tag: bytes, aad: bytes, ciphertext: bytes) -> bytes | None:
        """Decrypt and authenticate; returns the plaintext or None if the tag is wrong."""
        if len(tag) != 16:
            return None
        with self._lock:
            iv_mac = self._ecb_dec.update(tag)
        plaintext = self._ctr(tag, ciphertext)
        if not hmac.compare_digest(self._gmac_fold(iv_mac[:8], aad, plaintext), iv_mac[8:]):
            return None
        return plaintext
