"""VL1 fragmentation: splitting an armored packet into a head and fragments, and
reassembling them on receipt.

Fragment layout (after the packet has been armored)::

    0   8 bytes  packet ID (copied from the head, i.e. the armored ID)
    8   5 bytes  destination address
    13  1 byte   0xff fragment indicator
    14  1 byte   total fragments (high nibble, head included) | fragment number (low nibble, 1..)
    15  1 byte   hops
    16  ...      the next slice of the armored packet

The head keeps the packet header with the FRAGMENTED flag, which is covered by
the MAC, so `ztcore.vl1.packet.armor` sets it (given the same `mtu`) before
`make_fragments` slices the result.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ztcore.vl1.packet import (
    DEFAULT_PHYSICAL_MTU,
    FLAG_FRAGMENTED,
    FRAGMENT_IDX_INDICATOR,
    FRAGMENT_IDX_NUMBER,
    FRAGMENT_INDICATOR,
    FRAGMENT_MIN_LENGTH,
    IDX_FLAGS,
    MAX_FRAGMENTS,
    MAX_PACKET_LENGTH,
    PACKET_MIN_LENGTH,
    PacketError,
)

__all__ = ["RECEIVE_QUEUE_TIMEOUT", "RX_QUEUE_SIZE", "Reassembler", "make_fragments"]

RECEIVE_QUEUE_TIMEOUT = 5000  # ms, ZT_RECEIVE_QUEUE_TIMEOUT
RX_QUEUE_SIZE = 32  # ZT_RX_QUEUE_SIZE: packets being reassembled at once


def make_fragments(packet: bytes, mtu: int = DEFAULT_PHYSICAL_MTU) -> list[bytes]:
    """Split an armored packet into wire datagrams of at most `mtu` bytes.

    A packet without the FRAGMENTED flag that fits is returned alone. A packet
    longer than `mtu` must already carry the flag (armor it with the same `mtu`):
    the flag is authenticated, so setting it here would break the MAC.
    """
    if mtu < PACKET_MIN_LENGTH or mtu <= FRAGMENT_MIN_LENGTH:
        raise ValueError(f"mtu {mtu} too small")
    n = len(packet)
    if n < PACKET_MIN_LENGTH:
        raise PacketError("too_short", f"{n} bytes")
    packet = bytes(packet)
    if not packet[IDX_FLAGS] & FLAG_FRAGMENTED:
        if n <= mtu:
            return [packet]
        raise PacketError("not_marked_fragmented", f"{n} bytes > mtu {mtu}; armor with the same mtu")
    # Flagged: always produce a head and at least one fragment, even if the
    # packet would fit this path's MTU (the receiver waits for fragments).
    head_len = min(mtu, n - 1)
    if head_len < PACKET_MIN_LENGTH:
        raise PacketError("too_short", "flagged packet too short to fragment")
    chunk = mtu - FRAGMENT_MIN_LENGTH
    remaining = n - head_len
    total = 1 + (remaining + chunk - 1) // chunk
    if total > MAX_FRAGMENTS:
        raise PacketError("too_many_fragments", f"{total} needed, max {MAX_FRAGMENTS}")
    prefix = packet[:13] + bytes((FRAGMENT_INDICATOR,))
    out = [packet[:head_len]]
    pos = head_len
    for fno in range(1, total):
        out.append(b"".join((prefix, bytes(((total << 4) | fno, 0)), packet[pos : pos + chunk])))
        pos += chunk
    return out


@dataclass(slots=True)
class _Pending:
    created: int
    head: bytes | None = None
    total: int = 0  # 0 until a fragment tells us
    frags: dict[int, bytes] = field(default_factory=dict)


class Reassembler:
    """Collects heads and fragments by packet ID and returns completed packets.

    Bounded like the real core's RX queue: at most `max_pending` packets in
    progress (the oldest is dropped to make room) and each is forgotten
    `timeout_ms` after its first piece arrived. Drops are counted in `drops`.
    """

    def __init__(self, *, timeout_ms: int = RECEIVE_QUEUE_TIMEOUT, max_pending: int = RX_QUEUE_SIZE) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.timeout_ms = timeout_ms
        self.max_pending = max_pending
        self.drops: collections.Counter[str] = collections.Counter()
        self._pending: collections.OrderedDict[int, _Pending] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def _entry(self, packet_id: int, now: int) -> _Pending:
        e = self._pending.get(packet_id)
        if e is None:
            self._expire_oldest(now)
            while len(self._pending) >= self.max_pending:
                self._pending.popitem(last=False)
                self.drops["queue_full"] += 1
            e = _Pending(created=now)
            self._pending[packet_id] = e
        return e

    def _expire_oldest(self, now: int) -> None:
        # Entries are in creation order, so only the front can be stale.
        while self._pending:
            pid, e = next(iter(self._pending.items()))
            if now - e.created <= self.timeout_ms:
                break
            del self._pending[pid]
            self.drops["expired"] += 1

    def expire(self, now: int) -> None:
        """Forget packets whose first piece arrived more than timeout_ms ago."""
        self._expire_oldest(now)

    def add(self, data: bytes, now: int) -> bytes | None:
        """Feed one datagram (a FRAGMENTED head or a fragment).

        Returns the reassembled packet when it is complete, else None. A head
        without the FRAGMENTED flag is already complete and is returned as is.
        """
        n = len(data)
        if n > FRAGMENT_IDX_INDICATOR and data[FRAGMENT_IDX_INDICATOR] == FRAGMENT_INDICATOR:
            return self._add_fragment(bytes(data), now)
        if n < PACKET_MIN_LENGTH:
            self.drops["head_too_short"] += 1
            return None
        if not data[IDX_FLAGS] & FLAG_FRAGMENTED:
            return bytes(data)
        if n > MAX_PACKET_LENGTH:
            self.drops["too_long"] += 1
            return None
        e = self._entry(int.from_bytes(data[0:8], "big"), now)
        if e.head is not None:
            self.drops["duplicate_head"] += 1
            return None
        e.head = bytes(data)
        return self._try_complete(int.from_bytes(data[0:8], "big"), e)

    def _add_fragment(self, data: bytes, now: int) -> bytes | None:
        if len(data) <= FRAGMENT_MIN_LENGTH:
            self.drops["fragment_too_short"] += 1
            return None
        if len(data) > MAX_PACKET_LENGTH:
            self.drops["fragment_too_long"] += 1
            return None
        b = data[FRAGMENT_IDX_NUMBER]
        total = b >> 4
        fno = b & 0x0F
        if total > MAX_FRAGMENTS:
            self.drops["too_many_fragments"] += 1
            return None
        if fno == 0 or fno >= MAX_FRAGMENTS or total < 2 or fno >= total:
            self.drops["bad_fragment_number"] += 1
            return None
        packet_id = int.from_bytes(data[0:8], "big")
        e = self._entry(packet_id, now)
        if e.total and e.total != total:
            self.drops["total_mismatch"] += 1
            return None
        if fno in e.frags:
            self.drops["duplicate_fragment"] += 1
            return None
        e.total = total
        e.frags[fno] = data
        return self._try_complete(packet_id, e)

    def _try_complete(self, packet_id: int, e: _Pending) -> bytes | None:
        if e.head is None or not e.total or len(e.frags) != e.total - 1:
            return None
        del self._pending[packet_id]
        parts = [e.head]
        parts.extend(e.frags[i][FRAGMENT_MIN_LENGTH:] for i in range(1, e.total))
        packet = b"".join(parts)
        if len(packet) > MAX_PACKET_LENGTH:
            self.drops["too_long"] += 1
            return None
        return packet
