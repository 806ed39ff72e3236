"""Selective acknowledgment bookkeeping (RFC 2018, RFC 6675) for ``ztcore.netstack.tcp``.

``Scoreboard`` is the sender's record of what the peer SACKed above SND.UNA;
``receiver_blocks`` is what a receiver reports about the out-of-order data it
holds. Sequence numbers here are the connection's unbounded integers.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ztcore.netstack.tcpwire import ACK, FIN


class Scoreboard:
    """Disjoint, sorted [start, end) ranges the peer holds above snd_una."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.sacked_bytes = 0

    def __bool__(self) -> bool:
        return bool(self._starts)

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    @property
    def highest(self) -> int | None:
        """End of the highest SACKed range (RFC 6675 "HighACK" side), None if nothing is SACKed."""
        return self._ends[-1] if self._ends else None

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self.sacked_bytes = 0

    def add(self, blocks: Iterable[tuple[int, int]], una: int, snd_max: int) -> bool:
        """Merge SACK blocks (already unwrapped); ignores D-SACKs and blocks outside
        (una, snd_max]. True if something new was learned."""
        learned = False
        for left, right in blocks:
            left = max(left, una)
            if not una < right <= snd_max or left >= right:
                continue
            before = self.sacked_bytes
            self._insert(left, right)
            learned = learned or self.sacked_bytes != before
        return learned

    def _insert(self, left: int, right: int) -> None:
        i = bisect.bisect_left(self._ends, left)  # first range that ends at or after left
        j = i
        while j < len(self._starts) and self._starts[j] <= right:
            left = min(left, self._starts[j])
            right = max(right, self._ends[j])
            self.sacked_bytes -= self._ends[j] - self._starts[j]
            j += 1
        self._starts[i:j] = [left]
        self._ends[i:j] = [right]
        self.sacked_bytes += right - left

    def advance(self, una: int) -> None:
        """Forget what the cumulative ACK now covers."""
        while self._starts and self._starts[0] < una:
            if self._ends[0] <= una:
                self.sacked_bytes -= self._ends[0] - self._starts[0]
                del self._starts[0], self._ends[0]
            else:
                self.sacked_bytes -= una - self._starts[0]
                self._starts[0] = una

    def covering(self, seq: int) -> int | None:
        """The end of the SACKed range holding ``seq``, or None."""
        i = bisect.bisect_right(self._starts, seq) - 1
        if i >= 0 and seq < self._ends[i]:
            return self._ends[i]
        return None

    def holes(self, start: int, limit: int) -> Iterator[tuple[int, int]]:
        """Un-SACKed sub-ranges of [start, limit), in order."""
        pos = start
        i = bisect.bisect_right(self._ends, pos)
        while pos < limit:
            if i < len(self._starts) and self._starts[i] <= pos:
                pos = self._ends[i]
                i += 1
                continue
            nxt = self._starts[i] if i < len(self._starts) else limit
            end = min(nxt, limit)
            if pos < end:
                yield pos, end
            pos = end

    def unsacked(self, start: int, limit: int) -> int:
        return sum(e - s for s, e in self.holes(start, limit))


def receiver_blocks(ooo: dict[int, bytes], latest: int | None, limit: int = 3) -> list[tuple[int, int]]:
    """SACK blocks for the out-of-order data ``ooo`` (start -> bytes): the block holding
    the most recently received segment first (RFC 2018 4), then the highest others."""
    merged: list[list[int]] = []
    for s in sorted(ooo):
        e = s + len(ooo[s])
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    blocks = [(s, e) for s, e in merged]
    if latest is not None:
        for k, (s, e) in enumerate(blocks):
            if s <= latest < e:
                first = blocks.pop(k)
                return [first, *reversed(blocks)][:limit]
    return list(reversed(blocks))[:limit]


class SackSender:
    """SACK-based loss recovery (RFC 6675) for ``TcpConnection``, which mixes it in:
    the pipe estimate, hole retransmission, and detection of lost retransmissions
    (a hole is presumed lost again once data sent after its retransmission is SACKed)."""

    # Provided by TcpConnection.
    snd_una: int
    snd_max: int
    cwnd: int
    send_mss: int
    counters: dict[str, int]
    _scoreboard: Scoreboard
    _high_rxt: int
    _rxt_marks: dict[int, int]
    _fin_seq: int | None
    _sndq: bytearray
    _segments: list[Any]

    if TYPE_CHECKING:  # TcpConnection's; declared for the type checker only

        def _data_seq(self, offset: int) -> int: ...

        def _seg(self, flags: int, seq: int, payload: bytes = b"") -> Any: ...

    def _sack_loss_detected(self) -> bool:
        """RFC 6675 IsLost(SND.UNA), with RFC 5827 early retransmit for small flights."""
        mss = self.send_mss
        sacked = self._scoreboard.sacked_bytes
        if sacked > 2 * mss:
            return True
        outstanding = -(-(self.snd_max - self.snd_una) // mss)
        return 2 <= outstanding < 4 and sacked >= (outstanding - 1) * mss

    def _pipe(self) -> int:
        """RFC 6675 pipe: bytes believed in flight (holes below the highest SACK count as
        lost unless retransmitted in this recovery)."""
        highest = self._scoreboard.highest
        if highest is None:
            return self.snd_max - self.snd_una
        retransmitted = self._scoreboard.unsacked(self.snd_una, min(self._high_rxt, highest))
        return max(0, self.snd_max - highest) + retransmitted

    def _mark_lost_retransmissions(self) -> None:
        highest = self._scoreboard.highest
        if highest is None:
            return
        for start, mark in list(self._rxt_marks.items()):
            if start < self.snd_una or self._scoreboard.covering(start) is not None:
                del self._rxt_marks[start]
            elif highest > mark:
                del self._rxt_marks[start]
                self._high_rxt = min(self._high_rxt, start)
                self.counters["lost_retransmits"] = self.counters.get("lost_retransmits", 0) + 1

    def _retransmit_holes(self, now: int) -> None:
        """Resend the holes the scoreboard shows, while the pipe leaves room (RFC 6675 5 step 4)."""
        mss = self.send_mss
        highest = self._scoreboard.highest
        while highest is not None and self.cwnd - self._pipe() >= mss:
            hole = next(self._scoreboard.holes(max(self._high_rxt, self.snd_una), highest), None)
            if hole is None:
                return
            start, end = hole
            offset = start - self._data_seq(0)
            n = min(mss, end - start, len(self._sndq) - offset)
            if n > 0:
                flags = ACK | (FIN if self._fin_seq is not None and start + n == self._fin_seq else 0)
                self._segments.append(self._seg(flags, start, bytes(self._sndq[offset : offset + n])))
            elif self._fin_seq is not None and start == self._fin_seq:
                self._segments.append(self._seg(ACK | FIN, start))
                n = 1
            else:
                return
            self._rxt_marks[start] = self.snd_max
            self._high_rxt = start + n
            self.counters["retransmits"] += 1
