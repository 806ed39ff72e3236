"""IP fragmentation and reassembly for the userspace stack (RFC 791, RFC 8200 4.5).

``fragment_ipv4`` / ``fragment_ipv6`` cut a datagram that does not fit the
network MTU into fragments; ``Reassembler`` puts fragments back together.
TCP never needs this (its segments are sized from the MTU); UDP and ICMP do.

Reassembly is bounded: a datagram is dropped if it is not complete within
``timeout_ms`` (30 s, Linux's ipfrag_time), if it would exceed 65,535 bytes,
or if its fragments overlap (RFC 5722 for IPv6; done for IPv4 too, as Linux
does), and at most ``max_datagrams`` are in progress at once (the oldest is
dropped to make room). Every drop is counted in ``counters``.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

from ztcore.errors import InvalidFormatError
from ztcore.netstack import frames as f

IPPROTO_FRAGMENT = 44
REASSEMBLY_TIMEOUT_MS = 30_000
MAX_DATAGRAMS = 64
MAX_DATAGRAM = 65535
_SKIPPABLE_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options
_FRAG6 = struct.Struct("!BBHI")


def fragment_ipv4(
    src: bytes, dst: bytes, protocol: int, payload: bytes, mtu: int, ident: int, *, ttl: int = 64
) -> list[bytes]:
    """One packet if it fits, else fragments of at most ``mtu`` bytes (offsets in 8-byte units)."""
    if 20 + len(payload) <= mtu:
        return [f.build_ipv4(src, dst, protocol, payload, ident=ident, ttl=ttl, dont_fragment=False)]
    if 20 + len(payload) > MAX_DATAGRAM:
        raise InvalidFormatError("IPv4 datagram too long")
    step = (mtu - 20) // 8 * 8
    if step <= 0:
        raise ValueError("MTU too small to fragment")
    out = []
    for off in range(0, len(payload), step):
        chunk = payload[off : off + step]
        more = off + step < len(payload)
        pkt = bytearray(f.build_ipv4(src, dst, protocol, chunk, ident=ident, ttl=ttl, dont_fragment=False))
        pkt[6:8] = ((0x2000 if more else 0) | (off // 8)).to_bytes(2, "big")
        pkt[10:12] = b"\x00\x00"
        pkt[10:12] = f.internet_checksum(bytes(pkt[:20])).to_bytes(2, "big")
        out.append(bytes(pkt))
    return out


def fragment_ipv6(
    src: bytes, dst: bytes, next_header: int, payload: bytes, mtu: int, ident: int, *, hop_limit: int = 64
) -> list[bytes]:
    """One packet if it fits, else packets with a fragment header (RFC 8200 4.5)."""
    if 40 + len(payload) <= mtu:
        return [f.build_ipv6(src, dst, next_header, payload, hop_limit=hop_limit)]
    if len(payload) > MAX_DATAGRAM:
        raise InvalidFormatError("IPv6 payload too long (no jumbograms)")
    step = (mtu - 40 - 8) // 8 * 8
    if step <= 0:
        raise ValueError("MTU too small to fragment")
    out = []
    for off in range(0, len(payload), step):
        chunk = payload[off : off + step]
        more = off + step < len(payload)
        header = _FRAG6.pack(next_header, 0, off | (1 if more else 0), ident & 0xFFFFFFFF)
        out.append(f.build_ipv6(src, dst, IPPROTO_FRAGMENT, header + chunk, hop_limit=hop_limit))
    return out


def skip_extension_headers(next_header: int, payload: bytes) -> tuple[int, bytes]:
    """Walk past hop-by-hop / routing / destination-options headers."""
    while next_header in _SKIPPABLE_EXT:
        if len(payload) < 8:
            raise InvalidFormatError("truncated IPv6 extension header")
        ext_len = (payload[1] + 1) * 8
        if ext_len > len(payload):
            raise InvalidFormatError("truncated IPv6 extension header")
        next_header = payload[0]
        payload = payload[ext_len:]
    return next_header, payload


@dataclass
class _Partial:
    deadline: int
    parts: dict[int, bytes] = field(default_factory=dict)  # offset -> data
    total: int | None = None  # known once the last fragment arrived
    received: int = 0
    next_header: int | None = None  # IPv6: from the first fragment
    bad: bool = False


class Reassembler:
    """Fragments in, whole datagrams out; one per responder (both families)."""

    def __init__(self, *, timeout_ms: int = REASSEMBLY_TIMEOUT_MS, max_datagrams: int = MAX_DATAGRAMS):
        self.timeout_ms = timeout_ms
        self.max_datagrams = max_datagrams
        self.counters: Counter[str] = Counter()
        self._partials: dict[tuple, _Partial] = {}

    def __len__(self) -> int:
        return len(self._partials)

    def add_ipv4(self, pkt: f.Ipv4Packet, now: int) -> bytes | None:
        """Take an IPv4 fragment; the whole payload once complete, else None."""
        offset = (pkt.flags_fragment & 0x1FFF) * 8
        more = bool(pkt.flags_fragment & 0x2000)
        key = (4, pkt.src, pkt.dst, pkt.protocol, pkt.ident)
        done = self._add(key, offset, more, pkt.payload, now)
        return done[1] if done is not None else None

    def add_ipv6(self, src: bytes, dst: bytes, fragment: bytes, now: int) -> tuple[int, bytes] | None:
        """Take an IPv6 fragment (``fragment`` starts at its fragment header);
        (upper-layer protocol, payload) once complete, else None."""
        if len(fragment) < 8:
            raise InvalidFormatError("truncated IPv6 fragment header")
        nh, _res, off_m, ident = _FRAG6.unpack_from(fragment)
        offset = off_m & 0xFFF8
        more = bool(off_m & 1)
        data = fragment[8:]
        if offset == 0 and not more:
            # An atomic fragment (RFC 6946): a whole datagram on its own.
            return skip_extension_headers(nh, data)
        done = self._add((6, src, dst, ident), offset, more, data, now, nh if offset == 0 else None)
        if done is None:
            return None
        first_nh, payload = done
        assert first_nh is not None
        return skip_extension_headers(first_nh, payload)

    def _add(
        self, key: tuple, offset: int, more: bool, data: bytes, now: int, next_header: int | None = None
    ) -> tuple[int | None, bytes] | None:
        if more and (len(data) == 0 or len(data) % 8):
            self.counters["frag_bad_length"] += 1  # all but the last fragment carry multiples of 8
            return None
        end = offset + len(data)
        if end > MAX_DATAGRAM:
            self.counters["frag_too_long"] += 1
            self._partials.pop(key, None)
            return None
        partial = self._partials.get(key)
        if partial is None:
            if len(self._partials) >= self.max_datagrams:
                oldest = min(self._partials, key=lambda k: self._partials[k].deadline)
                del self._partials[oldest]
                self.counters["frag_evicted"] += 1
            partial = _Partial(now + self.timeout_ms)
            self._partials[key] = partial
        if not more:
            if partial.total is not None and partial.total != end:
                partial.bad = True
            partial.total = end
        if next_header is not None:
            partial.next_header = next_header
        for o, d in partial.parts.items():
            if o < end and offset < o + len(d):
                if o == offset and d == data:
                    self.counters["frag_duplicate"] += 1
                    return None
                partial.bad = True
        if partial.total is not None and end > partial.total:
            partial.bad = True
        if partial.bad:
            del self._partials[key]
            self.counters["frag_overlap"] += 1
            return None
        partial.parts[offset] = data
        partial.received += len(data)
        if partial.total is None or partial.received != partial.total:
            return None
        del self._partials[key]
        if key[0] == 6 and partial.next_header is None:
            self.counters["frag_bad_length"] += 1
            return None
        self.counters["reassembled"] += 1
        return partial.next_header, b"".join(partial.parts[o] for o in sorted(partial.parts))

    def expire(self, now: int) -> None:
        for key in [k for k, p in self._partials.items() if now >= p.deadline]:
            del self._partials[key]
            self.counters["frag_timeout"] += 1
