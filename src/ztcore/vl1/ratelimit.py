"""Bounded per-remote state and rate limits for VL1: every table a remote party can make
grow (pending WHOIS, identity-verification gates, RENDEZVOUS intervals) is bounded by
count and by age, and global budgets cap what a flood of distinct sources can make the
node spend (WHOIS sent, identities verified).

Oldest entries are evicted first when a table is full; eviction is counted so that a
flood shows up in the node's counters instead of in its memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["RecentTable", "TokenBucket", "WindowGate"]

K = TypeVar("K", bound=Hashable)


class RecentTable(Generic[K]):
    """key -> last time (ms), at most `max_entries` entries, none older than `max_age` ms
    once `expire` has run. Setting a key makes it the newest."""

    def __init__(self, max_entries: int, max_age: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.max_age = max_age
        self.evicted = 0
        self._items: OrderedDict[K, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def get(self, key: K) -> int | None:
        return self._items.get(key)

    def set(self, key: K, now: int) -> None:
        items = self._items
        if key in items:
            items.move_to_end(key)
        elif len(items) >= self.max_entries:
            items.popitem(last=False)
            self.evicted += 1
        items[key] = now

    def pop(self, key: K) -> int | None:
        return self._items.pop(key, None)

    def expire(self, now: int) -> None:
        """Forget entries set more than max_age ms ago (they are in time order)."""
        items = self._items
        while items:
            key, t = next(iter(items.items()))
            if now - t <= self.max_age:
                break
            del items[key]


class TokenBucket:
    """`rate` events per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last: int | None = None
        self.refused = 0

    def allow(self, now: int) -> bool:
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate / 1000.0)
        if self._last is None or now > self._last:
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.refused += 1
        return False


class WindowGate(Generic[K]):
    """At most `limit` events per key per `window` ms, remembering at most `max_keys` keys
    (the least recently seen key is forgotten first: a forgotten key starts afresh, so the
    table size bounds memory, not the per-key limit of keys still in it)."""

    def __init__(self, limit: int, window: int, max_keys: int) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.evicted = 0
        self._items: OrderedDict[K, tuple[int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def allow(self, key: K, now: int) -> bool:
        items = self._items
        entry = items.get(key)
        if entry is None or now - entry[0] >= self.window:
            start, count = now, 0
        else:
            start, count = entry
        count += 1
        if entry is not None:
            items.move_to_end(key)
        elif len(items) >= self.max_keys:
            items.popitem(last=False)
            self.evicted += 1
        items[key] = (start, count)
        return count <= self.limit

    def expire(self, now: int) -> None:
        """Forget keys whose window has passed (least recently seen first)."""
        items = self._items
        while items:
            key, (start, _) = next(iter(items.items()))
            if now - start < self.window:
                break
            del items[key]
