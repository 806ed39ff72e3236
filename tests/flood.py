"""Packet generators for flood tests and the flood bench (not a test module): junk from
distinct endpoints, forged-source packets, and forged HELLOs (fresh keys, MAC'd correctly,
claiming addresses their keys do not hash to)."""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Iterator

from ztcore.crypto import c25519_generate
from ztcore.identity import Identity
from ztcore.vl1.packet import Verb, armor


def distinct_endpoint(i: int) -> tuple[str, int]:
    """The i-th of 2**24 distinct IPv4 endpoints in 100.64.0.0/10 (never sent to: the
    node under test answers through callbacks, not sockets)."""
    return (f"100.{64 + ((i >> 16) & 0x3F)}.{(i >> 8) & 0xFF}.{i & 0xFF}", 1024 + (i % 60000))


def junk(count: int, rng: random.Random) -> Iterator[tuple[tuple[str, int], bytes]]:
    for i in range(count):
        yield distinct_endpoint(i), rng.randbytes(rng.choice((1, 8, 20, 40, 120)))


def forged_source(count: int, destination: int, rng: random.Random) -> Iterator[tuple[tuple[str, int], bytes]]:
    """Well-formed packets to `destination` from random (unknown) source addresses."""
    template = bytearray(
        armor(destination=destination, source=1, verb=Verb.ECHO, payload=b"", key=os.urandom(48), encrypt=True)
    )
    for i in range(count):
        pkt = bytearray(template)
        pkt[0:8] = rng.randbytes(8)
        pkt[13:18] = rng.randrange(1, 0xFF00000000).to_bytes(5, "big")
        yield distinct_endpoint(i), bytes(pkt)


def forged_hellos(
    count: int, target: Identity, rng: random.Random, keys: int = 64
) -> Iterator[tuple[tuple[str, int], bytes]]:
    """HELLOs MAC'd with a key agreed with `target`, from identities whose address is not
    derived from their key: the target must run the memory-hard check to refuse them."""
    pairs = [c25519_generate() for _ in range(keys)]
    for i in range(count):
        public, private = pairs[i % keys]
        address = rng.randrange(1, 0xFF00000000)
        fake = Identity(address, public, private)
        hello = struct.pack(">BBBHQ", 12, 1, 14, 1, 1_700_000_000_000) + fake.to_bytes()
        key = fake.agree(target)
        wire = armor(
            destination=int(target.address), source=address, verb=Verb.HELLO, payload=hello, key=key, encrypt=False
        )
        yield distinct_endpoint(i), wire
