"""Remembered verdicts: a flow cache in front of the rules engine.

Evaluating a rule table is a pure function of the tables (rules, capabilities,
tags, ownership, the network's flags) and of a few things about the frame: the
two ZeroTier addresses, the MACs, ethertype, VLAN, length, and the payload bytes
the rules can read (IPv4/IPv6 addresses, protocol and TOS, ports or ICMP
type/code, TCP flags, an ARP sender or NDP target, and what MATCH_INTEGER_RANGE
rules point at) -- not the IP id, TTL or checksums that change per packet.
Frames of one flow agree on all of these, so the evaluation of the first frame
answers for the rest. The owner clears the cache whenever a table changes
(new config, a member's new credentials) and never caches tables with
MATCH_RANDOM.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VerdictCache", "rule_visible_key"]

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_ARP = 0x0806
_ETHERTYPE_IPV6 = 0x86DD
_IPV6_SKIPPED = (0, 43, 60, 135)


def rule_visible_key(ethertype: int, data: bytes, need: int = 0) -> bytes:
    """The payload bytes the rules engine can read for this frame, concatenated.

    IPv4 and IPv6 keep only the header fields rules look at (not the length, id,
    TTL or checksum that change from packet to packet) and the first bytes of the
    transport header (ports or ICMP type/code, TCP flags). ``need`` > 0 (a
    MATCH_INTEGER_RANGE may read anywhere up to there) keeps a plain prefix.
    """
    n = len(data)
    if ethertype == _ETHERTYPE_IPV4:
        if n < 20:
            return data[:need] if need else data
        hl = 4 * (data[0] & 0x0F)
        key = data[0:2] + data[9:10] + data[12:20] + data[hl : hl + 4] + data[hl + 12 : hl + 14]
    elif ethertype == _ETHERTYPE_IPV6:
        if n < 40:
            return data[:need] if need else data
        if data[6] not in _IPV6_SKIPPED:
            # traffic class, next header, addresses, transport start, an NDP target
            key = data[0:2] + data[6:7] + data[8:44] + data[48:64]
        else:
            pos, proto = 40, data[6]
            while proto in _IPV6_SKIPPED and pos + 8 <= n:
                proto, pos = data[pos], pos + data[pos + 1] * 8 + 8
            key = data[: max(pos + 14, 64)]
    elif ethertype == _ETHERTYPE_ARP:
        key = data[:28]
    else:
        key = b""
    return key + b"|" + data[:need] if need else key


class VerdictCache:
    """A bounded map from a frame's rule-visible facts to an evaluation."""

    __slots__ = ("_entries", "max_entries", "hits", "misses")

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: dict[tuple[Any, ...], Any] = {}
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> Any:
        v = self._entries.get(key)
        if v is None:
            self.misses += 1
        else:
            self.hits += 1
        return v

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # cheap and good enough: flows re-fill it at once
        self._entries[key] = value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
