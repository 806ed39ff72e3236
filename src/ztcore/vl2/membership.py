"""What this node knows of one other member of a network (the real core's Membership).

Holds the member's certificate of membership, and the tags, capabilities and
certificates of ownership it sent in NETWORK_CREDENTIALS, with the core's rules
for accepting them: a valid controller signature (capabilities: a valid chain
of custody), not revoked, and a replacement only by one at least as new. A
tag, capability or COO counts only while its timestamp lies within the
network's credential window of our own config's timestamp and above any
revocation threshold for it; ``clean`` forgets the ones that fell out.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ztcore.identity import Identity
from ztcore.vl1.packet import MAX_PACKET_LENGTH
from ztcore.vl2.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    CredentialType,
    NetworkCredentials,
    Revocation,
    Tag,
    VerifyResult,
)
from ztcore.vl2.rules.evaluate import CompiledRules, Ownership, compile_rules

if TYPE_CHECKING:
    from ztcore.vl2.netconf import NetworkConfig

__all__ = [
    "MULTICAST_ANNOUNCE_PERIOD",
    "AddCredentialResult",
    "Membership",
    "credential_key",
    "credential_packets",
]

MULTICAST_ANNOUNCE_PERIOD = 60_000  # ZT_MULTICAST_ANNOUNCE_PERIOD
# The real core fills a NETWORK_CREDENTIALS packet while its size plus the
# in-memory size of one more credential (and 16) stays below the packet limit;
# these are upper bounds of those sizes.
_CRED_ROOM = {"capability": 2400, "tag": 160, "coo": 440}
_PACKET_HEADER = 28

IdentityLookup = Callable[[Any], Identity | None]


class AddCredentialResult(enum.Enum):
    REJECTED = "rejected"
    ACCEPTED_NEW = "accepted"
    ACCEPTED_REDUNDANT = "redundant"
    DEFERRED_FOR_WHOIS = "need_identity"

    @property
    def accepted(self) -> bool:
        return self in (AddCredentialResult.ACCEPTED_NEW, AddCredentialResult.ACCEPTED_REDUNDANT)


def credential_key(kind: int, credential_id: int) -> int:
    return (int(kind) << 32) | (credential_id & 0xFFFFFFFF)


_C = TypeVar("_C", Tag, Capability, CertificateOfOwnership)
# Every change to any member's credentials gets a new number, so (member, generation)
# names one state of its credentials (rule caches are keyed by it).
_GENERATIONS = itertools.count(1)

_KIND: dict[type, CredentialType] = {
    Tag: CredentialType.TAG,
    Capability: CredentialType.CAPABILITY,
    CertificateOfOwnership: CredentialType.COO,
}


@dataclass(eq=False)
class Membership:
    """One remote member of one network, as seen by this node."""

    com: CertificateOfMembership | None = None
    com_revocation_threshold: int = 0
    last_pushed_credentials: int = -(10**15)
    last_updated_multicast: int = -(10**15)
    revocations: dict[int, int] = field(default_factory=dict)  # credential_key -> threshold
    tags: dict[int, Tag] = field(default_factory=dict)
    capabilities: dict[int, Capability] = field(default_factory=dict)
    coos: dict[int, CertificateOfOwnership] = field(default_factory=dict)
    # is_allowed() for the exact objects it was computed from: it runs for every frame.
    _allowed_for: tuple[object, object, int, object] | None = None
    _allowed: bool = False
    # Rule-engine views, rebuilt when credentials or our config change.
    _view_for: tuple[object, int] | None = None
    _view: tuple[dict[int, int], list[tuple[int, CompiledRules]], Ownership] | None = None
    _generation: int = 0

    # ------------------------------------------------------------- access
    def is_allowed(self, config: NetworkConfig, identity: Identity) -> bool:
        """Membership::isAllowedOnNetwork."""
        if config.is_public:
            return True
        com, ours = self.com, config.com
        if com is None or ours is None:
            return False
        k = self._allowed_for
        if (
            k is not None
            and k[0] is ours
            and k[1] is com
            and k[2] == self.com_revocation_threshold
            and k[3] is identity
        ):
            return self._allowed
        allowed = com.timestamp > self.com_revocation_threshold and ours.agrees_with(com, identity)
        self._allowed_for = (ours, com, self.com_revocation_threshold, identity)
        self._allowed = allowed
        return allowed

    def multicast_like_gate(self, now: int) -> bool:
        if now - self.last_updated_multicast >= MULTICAST_ANNOUNCE_PERIOD:
            self.last_updated_multicast = now
            return True
        return False

    # -------------------------------------------------------- credentials
    def add_com(self, com: CertificateOfMembership, lookup: IdentityLookup) -> AddCredentialResult:
        if com.timestamp <= self.com_revocation_threshold:
            return AddCredentialResult.REJECTED
        if self.com is not None:
            if com.timestamp < self.com.timestamp:
                return AddCredentialResult.REJECTED
            if self.com.to_bytes() == com.to_bytes():
                return AddCredentialResult.ACCEPTED_REDUNDANT
        v = com.verify(lookup)
        if v == VerifyResult.NEED_IDENTITY:
            return AddCredentialResult.DEFERRED_FOR_WHOIS
        if v != VerifyResult.OK:
            return AddCredentialResult.REJECTED
        self.com = com
        return AddCredentialResult.ACCEPTED_NEW

    def _add(self, table: dict[int, _C], cred: _C, lookup: IdentityLookup) -> AddCredentialResult:
        have = table.get(cred.id)
        if have is not None:
            if have.timestamp > cred.timestamp:
                return AddCredentialResult.REJECTED  # older than what we hold
            if have.to_bytes() == cred.to_bytes():
                return AddCredentialResult.ACCEPTED_REDUNDANT
        threshold = self.revocations.get(credential_key(_KIND[type(cred)], cred.id))
        if threshold is not None and threshold >= cred.timestamp:
            return AddCredentialResult.REJECTED
        v = cred.verify(lookup)
        if v == VerifyResult.NEED_IDENTITY:
            return AddCredentialResult.DEFERRED_FOR_WHOIS
        if v != VerifyResult.OK:
            return AddCredentialResult.REJECTED
        table[cred.id] = cred
        self._generation = next(_GENERATIONS)
        return AddCredentialResult.ACCEPTED_NEW

    def add_tag(self, tag: Tag, lookup: IdentityLookup) -> AddCredentialResult:
        return self._add(self.tags, tag, lookup)

    def add_capability(self, cap: Capability, lookup: IdentityLookup) -> AddCredentialResult:
        return self._add(self.capabilities, cap, lookup)

    def add_coo(self, coo: CertificateOfOwnership, lookup: IdentityLookup) -> AddCredentialResult:
        return self._add(self.coos, coo, lookup)

    def add_revocation(self, rev: Revocation) -> AddCredentialResult:
        """Apply an already verified revocation (Membership::addCredential(Revocation))."""
        kind = rev.credential_type
        if kind == CredentialType.COM:
            if rev.threshold > self.com_revocation_threshold:
                self.com_revocation_threshold = rev.threshold
                return AddCredentialResult.ACCEPTED_NEW
            return AddCredentialResult.ACCEPTED_REDUNDANT
        if kind in (CredentialType.CAPABILITY, CredentialType.TAG, CredentialType.COO):
            key = credential_key(kind, rev.credential_id)
            if self.revocations.get(key, 0) < rev.threshold:
                self.revocations[key] = rev.threshold
                # As the real core does, this also raises the COM revocation threshold.
                self.com_revocation_threshold = rev.threshold
                self._generation = next(_GENERATIONS)
                return AddCredentialResult.ACCEPTED_NEW
            return AddCredentialResult.ACCEPTED_REDUNDANT
        return AddCredentialResult.REJECTED

    @property
    def generation(self) -> int:
        """Changes whenever this member's tags, capabilities, COOs or revocations do."""
        return self._generation

    # ---------------------------------------------------------- validity
    def credential_valid(
        self, config: NetworkConfig, cred: Tag | Capability | CertificateOfOwnership
    ) -> bool:
        """Membership::_isCredentialTimestampValid."""
        ts = cred.timestamp
        if abs(ts - config.timestamp) > config.credential_time_max_delta:
            return False
        threshold = self.revocations.get(credential_key(_KIND[type(cred)], cred.id))
        return threshold is None or ts > threshold

    def get_tag(self, config: NetworkConfig, tag_id: int) -> Tag | None:
        t = self.tags.get(tag_id)
        return t if t is not None and self.credential_valid(config, t) else None

    def valid_capabilities(self, config: NetworkConfig) -> Iterator[Capability]:
        for c in self.capabilities.values():
            if self.credential_valid(config, c):
                yield c

    def clean(self, config: NetworkConfig) -> None:
        """Forget tags, capabilities and COOs that are no longer valid."""
        for table in (self.tags, self.capabilities, self.coos):
            for k in [k for k, v in table.items() if not self.credential_valid(config, v)]:  # type: ignore[arg-type]
                del table[k]
                self._generation = next(_GENERATIONS)

    def rules_view(
        self, config: NetworkConfig, ndp_prefixes: tuple[tuple[bytes, int], ...] = ()
    ) -> tuple[dict[int, int], list[tuple[int, CompiledRules]], Ownership]:
        """(valid tags id->value, valid capabilities compiled, ownership) for the
        rules engine; cached until credentials or the config change."""
        key = (config, self._generation)
        if self._view is not None and self._view_for is not None and self._view_for[0] is config:
            if self._view_for[1] == self._generation:
                return self._view
        tags = {t.id: t.value for t in self.tags.values() if self.credential_valid(config, t)}
        caps = [
            (c.id, compile_rules(c.rules))
            for c in sorted(self.valid_capabilities(config), key=lambda c: c.id)
        ]
        coos = [c for c in self.coos.values() if self.credential_valid(config, c)]
        view = (tags, caps, Ownership.from_coos(coos, ndp_prefixes))
        self._view_for, self._view = key, view
        return view


def credential_packets(config: NetworkConfig) -> list[NetworkCredentials]:
    """Membership::pushCredentials: our COM, capabilities, tags and COOs, split over
    as many NETWORK_CREDENTIALS packets as they need (the COM goes in the first)."""
    caps, tags, coos = config.capabilities, config.tags, config.certificates_of_ownership
    send_com = config.com is not None and bool(config.com)
    ci = ti = oi = 0
    out: list[NetworkCredentials] = []
    while ci < len(caps) or ti < len(tags) or oi < len(coos) or send_com:
        nc = NetworkCredentials()
        size = _PACKET_HEADER
        if send_com and config.com is not None:
            nc.coms.append(config.com)
            size += len(config.com.to_bytes())
        send_com = False
        size += 1 + 2
        while ci < len(caps) and size + _CRED_ROOM["capability"] + 16 < MAX_PACKET_LENGTH:
            nc.capabilities.append(caps[ci])
            size += len(caps[ci].to_bytes())
            ci += 1
        size += 2
        while ti < len(tags) and size + _CRED_ROOM["tag"] + 16 < MAX_PACKET_LENGTH:
            nc.tags.append(tags[ti])
            size += len(tags[ti].to_bytes())
            ti += 1
        size += 2 + 2  # no revocations (they travel on their own), then the COO count
        while oi < len(coos) and size + _CRED_ROOM["coo"] + 16 < MAX_PACKET_LENGTH:
            nc.coos.append(coos[oi])
            size += len(coos[oi].to_bytes())
            oi += 1
        out.append(nc)
    return out
