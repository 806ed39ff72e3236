"""ZeroTier's memory-hard hash of a type-0 identity's public key.

The hash drives both address derivation and the hashcash rule of identity
generation: an identity is valid when the first digest byte is below 17 and
the last five digest bytes are its address.

Algorithm (facts from the 1.x core): SHA-512(public key) is the seed digest;
seed[0:32] keys Salsa20/20 and seed[32:40] is its IV. A 2 MiB scratch area is
filled so that 64-byte block n is block n-1 XOR keystream block n (block 0 is
keystream block 0). Then, for every consecutive pair of 64-bit words of the
scratch area read big-endian (a, b): digest word (a mod 8) and scratch word
(b mod 262144) are swapped (raw, no byte swapping), and the digest is XORed
with the next keystream block, the stream continuing after the fill.

`memory_hard_hash` uses the C kernel `ztcore.identity._mhh` when it was built,
otherwise the pure-Python reference `memory_hard_hash_py` (with a one-time
warning, since it is roughly a hundred times slower).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

from ztcore.crypto import salsa20_20_xor, sha512

__all__ = ["GEN_MEMORY", "HAVE_C_KERNEL", "memory_hard_hash", "memory_hard_hash_py"]

log = logging.getLogger(__name__)

GEN_MEMORY = 2097152  # scratch size; part of the identity type-0 definition
_WORDS = GEN_MEMORY // 8
_FILL_BLOCKS = GEN_MEMORY // 64
_STEPS = _WORDS // 2
_M64 = (1 << 64) - 1
# Digest word i (byte offset 8*i) sits at this bit offset of the big-endian 512-bit integer.
_SHIFTS = tuple((7 - i) * 64 for i in range(8))
_CHUNK_BLOCKS = 8192  # keystream blocks turned into integers at a time (bounds memory use)

try:
    from ztcore.identity import _mhh  # type: ignore[attr-defined]
except ImportError:  # extension not built: fall back to the reference
    _c_hash: Callable[[bytes], bytes] | None = None
else:
    from ztcore.crypto._sodium import ffi, lib

    # The kernel links against nothing: it gets libsodium's Salsa20 (already loaded
    # and initialised here) as a function address.
    _mhh.bind_salsa20(int(ffi.cast("uintptr_t", ffi.addressof(lib, "crypto_stream_salsa20_xor_ic"))))
    _c_hash = _mhh.hash

HAVE_C_KERNEL = _c_hash is not None
_warned = False


def memory_hard_hash_py(public_key: bytes) -> bytes:
    """Pure-Python reference of the memory-hard hash; returns the 64-byte digest."""
    seed = sha512(bytes(public_key))
    key, iv = seed[:32], seed[32:40]

    # The fill is a running XOR of keystream blocks: produce all the keystream
    # in one call, then do a log-step prefix XOR on one big integer (block 0
    # is the most significant 512 bits, so shifting right moves a block to
    # the next index).
    acc = int.from_bytes(salsa20_20_xor(key, iv, bytes(GEN_MEMORY)), "big")
    shift = 512
    while shift < GEN_MEMORY * 8:
        acc ^= acc >> shift
        shift <<= 1
    mem = list(struct.unpack(f">{_WORDS}Q", acc.to_bytes(GEN_MEMORY, "big")))
    del acc

    # Final loop. The keystream does not depend on the data, so it is made in
    # large chunks; digest words are kept big-endian inside a 512-bit integer.
    digest = int.from_bytes(seed, "big")
    shifts = _SHIFTS
    m64 = _M64
    wmask = _WORDS - 1  # _WORDS is a power of two
    block = _FILL_BLOCKS
    w = 0
    for _ in range(_STEPS // _CHUNK_BLOCKS):
        ks = salsa20_20_xor(key, iv, bytes(_CHUNK_BLOCKS * 64), block)
        block += _CHUNK_BLOCKS
        from_bytes = int.from_bytes
        for off in range(0, _CHUNK_BLOCKS * 64, 64):
            sh = shifts[mem[w] & 7]
            idx2 = mem[w + 1] & wmask
            w += 2
            old = (digest >> sh) & m64
            new = mem[idx2]
            mem[idx2] = old
            digest ^= ((old ^ new) << sh) ^ from_bytes(ks[off : off + 64], "big")
    return digest.to_bytes(64, "big")


def memory_hard_hash(public_key: bytes) -> bytes:
    """The 64-byte memory-hard hash of `public_key` (C kernel when available)."""
    global _warned
    if _c_hash is not None:
        return _c_hash(sha512(bytes(public_key)))
    if not _warned:
        _warned = True
        log.warning(
            "ztcore.identity._mhh (C kernel) is not built; using the slow pure-Python "
            "memory-hard hash. Rebuild with `pip install -e .` to fix."
        )
    return memory_hard_hash_py(public_key)
