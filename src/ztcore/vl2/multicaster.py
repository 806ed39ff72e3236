"""Multicast subscriptions: who LIKEs which (network, group), as learned from
MULTICAST_LIKE and gather replies, and how many members to hand out on a
MULTICAST_GATHER (ZeroTier's Multicaster)."""

from __future__ import annotations

import random
from collections import defaultdict

from ztcore.vl2.multicast_group import MulticastGroup

MULTICAST_LIKE_EXPIRE = 600_000  # ZT_MULTICAST_LIKE_EXPIRE
MULTICAST_EXPLICIT_GATHER_DELAY = MULTICAST_LIKE_EXPIRE // 10
# The real core gathers on every send to a group it knows no member of; ztcore
# rate-limits that so an unanswered ARP cannot flood the controller and roots.
EMPTY_GROUP_GATHER_INTERVAL = 500
# LIKEs come from authenticated peers, but one peer (on a root: any peer) can LIKE any
# number of (network, group) pairs; past this many subscriptions new ones are refused
# (known ones are still refreshed) until old ones expire.
MAX_SUBSCRIPTIONS = 100_000


class Multicaster:
    def __init__(self) -> None:
        # (nwid, group) -> {member address: last LIKE time}
        self._groups: dict[tuple[int, MulticastGroup], dict[int, int]] = defaultdict(dict)
        self._last_gather: dict[tuple[int, MulticastGroup], int] = {}
        self._count = 0
        self._last_full_clean = -1000
        self.refused = 0

    def __len__(self) -> int:
        """Subscriptions held (member, network, group)."""
        return self._count

    def add(self, now: int, nwid: int, group: MulticastGroup, member: int) -> None:
        members = self._groups.get((nwid, group))
        if members is not None and int(member) in members:
            members[int(member)] = now
            return
        if self._count >= MAX_SUBSCRIPTIONS:
            if now - self._last_full_clean >= 1000:  # a full table is not rescanned per LIKE
                self._last_full_clean = now
                self.clean(now)
            if self._count >= MAX_SUBSCRIPTIONS:
                self.refused += 1
                return
        self._groups[(nwid, group)][int(member)] = now
        self._count += 1

    def remove(self, nwid: int, group: MulticastGroup, member: int) -> None:
        members = self._groups.get((nwid, group))
        if members is not None and members.pop(int(member), None) is not None:
            self._count -= 1
            if not members:
                del self._groups[(nwid, group)]

    def members(self, now: int, nwid: int, group: MulticastGroup) -> list[int]:
        members = self._groups.get((nwid, group), {})
        return [a for a, t in members.items() if now - t < MULTICAST_LIKE_EXPIRE]

    def gather(
        self, now: int, requester: int, nwid: int, group: MulticastGroup, limit: int
    ) -> tuple[int, list[int]]:
        """(total known, up to `limit` members other than `requester`, shuffled)."""
        members = [a for a in self.members(now, nwid, group) if a != int(requester)]
        random.shuffle(members)
        return len(members), members[: max(0, limit)]

    def should_gather(self, now: int, nwid: int, group: MulticastGroup) -> bool:
        """Gather again when the delay has passed, or (rate-limited) while no member is known."""
        key = (nwid, group)
        since = now - self._last_gather.get(key, -MULTICAST_EXPLICIT_GATHER_DELAY)
        empty = not self.members(now, nwid, group)
        if since >= MULTICAST_EXPLICIT_GATHER_DELAY or (empty and since >= EMPTY_GROUP_GATHER_INTERVAL):
            self._last_gather[key] = now
            return True
        return False

    def clean(self, now: int) -> None:
        for key in list(self._groups):
            members = self._groups[key]
            for a in [a for a, t in members.items() if now - t >= MULTICAST_LIKE_EXPIRE]:
                del members[a]
                self._count -= 1
            if not members:
                del self._groups[key]
