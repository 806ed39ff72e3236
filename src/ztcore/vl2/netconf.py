"""Network configurations (NetworkConfig) and their Dictionary encoding.

This module owns what a controller issues to one member: the NetworkConfig
model (routes, static IPs, DNS, specialists, rules, credentials, SSO fields),
its limits, and the Dictionary it travels as. The metadata a member sends with
its request is in ``netconf_request``; the chunked, controller-signed
NETWORK_CONFIG transport is in ``netconf_chunks``.

Dictionary encoding (network config version 7), keys in the order the core
writes them::

    v     7 (hex)                 nwid  network id (hex)
    ts    timestamp (hex, signed) ctmd  credential time max delta (hex, signed)
    r     revision (hex)          id    issued-to address (10 hex digits)
    tt    remote trace target (10 hex digits, 0000000000 if none)
    tl    remote trace level (hex) f     flags (hex)
    ml    multicast limit (hex)    t     type: 0 private, 1 public (hex)
    n     name (text)              mtu   MTU (hex)
    C     COM (binary, only if present)
    CAP   capabilities, concatenated (binary, only if any)
    TAG   tags, concatenated (binary, only if any)
    COO   certificates of ownership, concatenated (binary, only if any)
    S     specialists, u64 each: flags in the top 24 bits, address below (binary)
    RT    routes: InetAddress target (prefix bits in the port), InetAddress via,
          u16 flags, u16 metric (binary, only if any)
    I     static IPs: InetAddress with prefix bits in the port (binary, only if any)
    R     rules (binary, only if any)
    DNS   128-byte NUL-padded search domain + 4 InetAddress servers (always)
    ssov/ssoe/aurl/aexpt         SSO version 0 (implicit flow)
    ssov/ssoe/iurl/ssoce/sson/ssos/ssocid/ssop   SSO version 1

Hex integers are 16 digits (see dictionary.py). Readers use the core's
lenient getters, defaults and clamps (MTU clamped to 1280..10000, default 2800).
Configs older than version 6 are rejected as 1.14 does, unless
``allow_legacy=True`` asks for the pre-1.2 keys (eb, p, v4s, v6s, et, ab).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from ztcore.errors import InvalidFormatError
from ztcore.identity import Address
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl2.credentials import (
    Capability,
    CertificateOfMembership,
    CertificateOfOwnership,
    Tag,
)
from ztcore.vl2.dictionary import Dictionary, encode_entry, strtoull_hex
from ztcore.vl2.rules import Rule, RuleType, deserialize_rules, serialize_rules

__all__ = [
    "DEFAULT_MTU",
    "FLAG_DISABLE_COMPRESSION",
    "FLAG_ENABLE_BROADCAST",
    "FLAG_ENABLE_IPV6_NDP_EMULATION",
    "FLAG_RULES_RESULT_OF_UNSUPPORTED_MATCH",
    "NETWORKCONFIG_DICT_CAPACITY",
    "NETWORKCONFIG_METADATA_DICT_CAPACITY",
    "NETWORKCONFIG_VERSION",
    "SPECIALIST_TYPE_ACTIVE_BRIDGE",
    "SPECIALIST_TYPE_ANCHOR",
    "SPECIALIST_TYPE_MULTICAST_REPLICATOR",
    "DnsConfig",
    "NetworkConfig",
    "NetworkType",
    "Route",
]

NETWORKCONFIG_VERSION = 7
# The core sizes its config Dictionary from C struct sizes; this is the value of
# ZT_NETWORKCONFIG_DICT_CAPACITY in 64-bit Linux/macOS/Windows builds. Chunks
# announcing a total length >= this are refused.
NETWORKCONFIG_DICT_CAPACITY = 484520
NETWORKCONFIG_METADATA_DICT_CAPACITY = 1024

DEFAULT_MTU = 2800
MIN_MTU = 1280
MAX_MTU = 10000
MAX_NETWORK_SHORT_NAME_LENGTH = 127
MAX_NETWORK_ROUTES = 128
MAX_ZT_ASSIGNED_ADDRESSES = 32
MAX_NETWORK_SPECIALISTS = 256
MAX_NETWORK_RULES = 1024
MAX_NETWORK_CAPABILITIES = 128
MAX_NETWORK_TAGS = 128
MAX_CERTIFICATES_OF_OWNERSHIP = 4
MAX_DNS_SERVERS = 4
DNS_DOMAIN_FIELD = 128
MAX_CAPABILITY_RULES = 64

FLAG_ENABLE_BROADCAST = 0x2
FLAG_ENABLE_IPV6_NDP_EMULATION = 0x4
FLAG_RULES_RESULT_OF_UNSUPPORTED_MATCH = 0x8
FLAG_DISABLE_COMPRESSION = 0x10

SPECIALIST_TYPE_ACTIVE_BRIDGE = 0x0000020000000000
SPECIALIST_TYPE_ANCHOR = 0x0000040000000000
SPECIALIST_TYPE_MULTICAST_REPLICATOR = 0x0000080000000000

# Credential time window defaults used by controllers (ms).
CREDENTIAL_TIME_DFL_MAX_DELTA = 1000 * 60 * 30
CREDENTIAL_TIME_MAX_MAX_DELTA = 1000 * 60 * 60 * 2
CREDENTIAL_TIME_MIN_MAX_DELTA = 1000 * 60 * 5

# Config dictionary keys.
K_VERSION = "v"
K_NETWORK_ID = "nwid"
K_TIMESTAMP = "ts"
K_REVISION = "r"
K_ISSUED_TO = "id"
K_REMOTE_TRACE_TARGET = "tt"
K_REMOTE_TRACE_LEVEL = "tl"
K_FLAGS = "f"
K_MULTICAST_LIMIT = "ml"
K_TYPE = "t"
K_NAME = "n"
K_MTU = "mtu"
K_CREDENTIAL_TIME_MAX_DELTA = "ctmd"
K_COM = "C"
K_SPECIALISTS = "S"
K_ROUTES = "RT"
K_STATIC_IPS = "I"
K_RULES = "R"
K_CAPABILITIES = "CAP"
K_TAGS = "TAG"
K_CERTIFICATES_OF_OWNERSHIP = "COO"
K_DNS = "DNS"
K_SSO_ENABLED = "ssoe"
K_SSO_VERSION = "ssov"
K_AUTHENTICATION_URL = "aurl"
K_AUTHENTICATION_EXPIRY_TIME = "aexpt"
K_ISSUER_URL = "iurl"
K_CENTRAL_ENDPOINT_URL = "ssoce"
K_NONCE = "sson"
K_STATE = "ssos"
K_CLIENT_ID = "ssocid"
K_SSO_PROVIDER = "ssop"
# Pre-1.2 keys (read only with allow_legacy=True).
K_ENABLE_BROADCAST_OLD = "eb"
K_IPV4_STATIC_OLD = "v4s"
K_IPV6_STATIC_OLD = "v6s"
K_PRIVATE_OLD = "p"
K_ALLOWED_ETHERNET_TYPES_OLD = "et"
K_CERTIFICATE_OF_MEMBERSHIP_OLD = "com"
K_ACTIVE_BRIDGES_OLD = "ab"

# The keys as bytes (valid Dictionary keys: no NUL, CR, LF or '=').
_KB = {
    k: k.encode()
    for k in (
        K_VERSION,
        K_NETWORK_ID,
        K_TIMESTAMP,
        K_CREDENTIAL_TIME_MAX_DELTA,
        K_REVISION,
        K_ISSUED_TO,
        K_REMOTE_TRACE_TARGET,
        K_REMOTE_TRACE_LEVEL,
        K_FLAGS,
        K_MULTICAST_LIMIT,
        K_TYPE,
        K_NAME,
        K_MTU,
        K_COM,
        K_CAPABILITIES,
        K_TAGS,
        K_CERTIFICATES_OF_OWNERSHIP,
        K_SPECIALISTS,
        K_ROUTES,
        K_STATIC_IPS,
        K_RULES,
        K_DNS,
        K_SSO_VERSION,
        K_SSO_ENABLED,
        K_AUTHENTICATION_URL,
        K_AUTHENTICATION_EXPIRY_TIME,
        K_ISSUER_URL,
        K_CENTRAL_ENDPOINT_URL,
        K_NONCE,
        K_STATE,
        K_CLIENT_ID,
        K_SSO_PROVIDER,
    )
}

# C string buffer sizes of the SSO fields (values are cut to size-1 bytes on read).
_SSO_FIELD_SIZES = {
    "authentication_url": 2048,
    "issuer_url": 2048,
    "central_auth_url": 2048,
    "sso_nonce": 128,
    "sso_state": 256,
    "sso_client_id": 256,
    "sso_provider": 64,
}

_U64 = (1 << 64) - 1


def _s64(v: int) -> int:
    v &= _U64
    return v - (1 << 64) if v >= (1 << 63) else v


class NetworkType(enum.IntEnum):
    PRIVATE = 0  # membership checked with certificates
    PUBLIC = 1  # no access control


@dataclass(frozen=True)
class Route:
    """A pushed route; ``target``'s port field holds its prefix length. ``via`` None
    means on-link (no gateway)."""

    target: InetAddress | None
    via: InetAddress | None = None
    flags: int = 0
    metric: int = 0


@dataclass
class DnsConfig:
    """Pushed DNS: a search domain and up to four servers."""

    domain: str = ""
    servers: list[InetAddress] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        dom = self.domain.encode("utf-8").split(b"\x00", 1)[0][: DNS_DOMAIN_FIELD - 1]
        out = bytearray(dom.ljust(DNS_DOMAIN_FIELD, b"\x00"))
        if len(self.servers) > MAX_DNS_SERVERS:
            raise InvalidFormatError(f"at most {MAX_DNS_SERVERS} DNS servers")
        for i in range(MAX_DNS_SERVERS):
            out += self.servers[i].to_bytes() if i < len(self.servers) else InetAddress.nil_bytes()
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> tuple[DnsConfig, int]:
        if len(data) - offset < DNS_DOMAIN_FIELD:
            raise InvalidFormatError("DNS config: truncated domain")
        dom = data[offset : offset + DNS_DOMAIN_FIELD - 1].split(b"\x00", 1)[0]
        p = offset + DNS_DOMAIN_FIELD
        servers: list[InetAddress] = []
        for _ in range(MAX_DNS_SERVERS):
            addr, n = InetAddress.from_bytes(data, p)
            p += n
            if addr is not None:
                servers.append(addr)
        return cls(dom.decode("utf-8", "replace"), servers), p - offset


def _addr10(a: int) -> str:
    return f"{int(a) & 0xFFFFFFFFFF:010x}"


def _c_string(s: str, size: int) -> str:
    """``s`` as the core would hold it in a ``char[size]``: at most size-1 bytes."""
    b = s.encode("utf-8").split(b"\x00", 1)[0][: size - 1]
    return b.decode("utf-8", "ignore")


def _is_network(addr: InetAddress) -> bool:
    """The core's InetAddress::isNetwork (bits in the port field, host part all zero)."""
    bits = addr.port
    full = 32 if addr.ip.version == 4 else 128
    if bits <= 0 or bits >= full:
        return False
    return (int(addr.ip) & ((1 << (full - bits)) - 1)) == 0


@dataclass
class NetworkConfig:
    """A network configuration as issued by a controller to one member."""

    network_id: int
    issued_to: Address
    timestamp: int = 0
    credential_time_max_delta: int = 0
    revision: int = 0
    remote_trace_target: Address = field(default_factory=lambda: Address(0))
    remote_trace_level: int = 0
    flags: int = 0
    type: int = NetworkType.PRIVATE
    name: str = ""
    mtu: int = DEFAULT_MTU
    multicast_limit: int = 0
    specialists: list[int] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    static_ips: list[InetAddress] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    com: CertificateOfMembership | None = None
    capabilities: list[Capability] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    certificates_of_ownership: list[CertificateOfOwnership] = field(default_factory=list)
    dns: DnsConfig = field(default_factory=DnsConfig)
    sso_enabled: bool = False
    sso_version: int = 0
    authentication_url: str = ""
    authentication_expiry_time: int = 0
    issuer_url: str = ""
    central_auth_url: str = ""
    sso_nonce: str = ""
    sso_state: str = ""
    sso_client_id: str = ""
    sso_provider: str = "default"

    # ------------------------------------------------------------- queries

    @property
    def enable_broadcast(self) -> bool:
        return bool(self.flags & FLAG_ENABLE_BROADCAST)

    @property
    def ndp_emulation(self) -> bool:
        return bool(self.flags & FLAG_ENABLE_IPV6_NDP_EMULATION)

    @property
    def disable_compression(self) -> bool:
        return bool(self.flags & FLAG_DISABLE_COMPRESSION)

    @property
    def rules_result_of_unsupported_match(self) -> bool:
        return bool(self.flags & FLAG_RULES_RESULT_OF_UNSUPPORTED_MATCH)

    @property
    def is_public(self) -> bool:
        return self.type == NetworkType.PUBLIC

    @property
    def is_private(self) -> bool:
        return self.type == NetworkType.PRIVATE

    def _specialists_with(self, mask: int) -> list[Address]:
        return [Address(s & 0xFFFFFFFFFF) for s in self.specialists if s & mask]

    def active_bridges(self) -> list[Address]:
        return self._specialists_with(SPECIALIST_TYPE_ACTIVE_BRIDGE)

    def anchors(self) -> list[Address]:
        return self._specialists_with(SPECIALIST_TYPE_ANCHOR)

    def multicast_replicators(self) -> list[Address]:
        return self._specialists_with(SPECIALIST_TYPE_MULTICAST_REPLICATOR)

    def always_contact_addresses(self) -> list[Address]:
        return self._specialists_with(SPECIALIST_TYPE_ANCHOR | SPECIALIST_TYPE_MULTICAST_REPLICATOR)

    def is_active_bridge(self, address: int) -> bool:
        return int(address) in self.active_bridges()

    permits_bridging = is_active_bridge

    def add_specialist(self, address: int, role_flags: int) -> bool:
        """Add ``address`` with ``role_flags``, or OR the flags into its existing entry."""
        a = int(address) & 0xFFFFFFFFFF
        for i, s in enumerate(self.specialists):
            if s & 0xFFFFFFFFFF == a:
                self.specialists[i] = s | role_flags
                return True
        if len(self.specialists) >= MAX_NETWORK_SPECIALISTS:
            return False
        self.specialists.append(role_flags | a)
        return True

    def capability(self, cap_id: int) -> Capability | None:
        return next((c for c in self.capabilities if c.id == cap_id), None)

    def tag(self, tag_id: int) -> Tag | None:
        return next((t for t in self.tags if t.id == tag_id), None)

    # ------------------------------------------------------ dictionary form

    def to_dictionary(self, capacity: int = NETWORKCONFIG_DICT_CAPACITY) -> Dictionary:
        """Encode as the core's toDictionary does; InvalidFormatError if it overflows."""
        return Dictionary.from_bytes(self.to_bytes(capacity), capacity)

    def to_bytes(self, capacity: int = NETWORKCONFIG_DICT_CAPACITY) -> bytes:
        """The dictionary's serialized bytes (what NETWORK_CONFIG chunks carry): the bytes
        `Dictionary.add` would make of each entry, joined at once (a controller encodes one
        config per request); InvalidFormatError if they overflow `capacity`."""
        self._check_limits()
        parts: list[bytes] = []
        size = -1
        for key, value in self._entries():
            entry = encode_entry(key, value)
            size += len(entry) + 1
            if size > capacity - 1:
                raise InvalidFormatError(
                    f"network config too large for its dictionary (at key {key.decode()!r})"
                )
            parts.append(entry)
        return b"\n".join(parts)

    def _entries(self) -> Iterator[tuple[bytes, str | bytes | bool | int]]:
        """The dictionary's entries, keyed and ordered as the core writes them."""
        yield _KB[K_VERSION], NETWORKCONFIG_VERSION
        yield _KB[K_NETWORK_ID], self.network_id
        yield _KB[K_TIMESTAMP], self.timestamp
        yield _KB[K_CREDENTIAL_TIME_MAX_DELTA], self.credential_time_max_delta
        yield _KB[K_REVISION], self.revision
        yield _KB[K_ISSUED_TO], _addr10(self.issued_to)
        yield _KB[K_REMOTE_TRACE_TARGET], _addr10(self.remote_trace_target)
        yield _KB[K_REMOTE_TRACE_LEVEL], self.remote_trace_level
        yield _KB[K_FLAGS], self.flags
        yield _KB[K_MULTICAST_LIMIT], self.multicast_limit
        yield _KB[K_TYPE], int(self.type)
        yield _KB[K_NAME], _c_string(self.name, MAX_NETWORK_SHORT_NAME_LENGTH + 1)
        yield _KB[K_MTU], self.mtu

        if self.com:
            yield _KB[K_COM], self.com.to_bytes()
        if self.capabilities:
            yield _KB[K_CAPABILITIES], b"".join(c.to_bytes() for c in self.capabilities)
        if self.tags:
            yield _KB[K_TAGS], b"".join(t.to_bytes() for t in self.tags)
        if self.certificates_of_ownership:
            coos = self.certificates_of_ownership
            yield _KB[K_CERTIFICATES_OF_OWNERSHIP], b"".join(c.to_bytes() for c in coos)
        if self.specialists:
            yield _KB[K_SPECIALISTS], b"".join(struct.pack(">Q", s) for s in self.specialists)
        if self.routes:
            rt = bytearray()
            for r in self.routes:
                rt += r.target.to_bytes() if r.target is not None else InetAddress.nil_bytes()
                rt += r.via.to_bytes() if r.via is not None else InetAddress.nil_bytes()
                rt += struct.pack(">HH", r.flags, r.metric)
            yield _KB[K_ROUTES], bytes(rt)
        if self.static_ips:
            yield _KB[K_STATIC_IPS], b"".join(ip.to_bytes() for ip in self.static_ips)
        if self.rules:
            yield _KB[K_RULES], serialize_rules(self.rules)
        yield _KB[K_DNS], self.dns.to_bytes()

        if self.sso_version == 0:
            yield _KB[K_SSO_VERSION], 0
            yield _KB[K_SSO_ENABLED], self.sso_enabled
            if self.sso_enabled:
                if self.authentication_url:
                    yield _KB[K_AUTHENTICATION_URL], _c_string(self.authentication_url, 2048)
                yield _KB[K_AUTHENTICATION_EXPIRY_TIME], self.authentication_expiry_time & _U64
        elif self.sso_version == 1:
            yield _KB[K_SSO_VERSION], 1
            yield _KB[K_SSO_ENABLED], self.sso_enabled
            yield _KB[K_ISSUER_URL], _c_string(self.issuer_url, 2048)
            yield _KB[K_CENTRAL_ENDPOINT_URL], _c_string(self.central_auth_url, 2048)
            yield _KB[K_NONCE], _c_string(self.sso_nonce, 128)
            yield _KB[K_STATE], _c_string(self.sso_state, 256)
            yield _KB[K_CLIENT_ID], _c_string(self.sso_client_id, 256)
            yield _KB[K_SSO_PROVIDER], _c_string(self.sso_provider, 64)

    def _check_limits(self) -> None:
        for name, items, limit in (
            ("specialists", self.specialists, MAX_NETWORK_SPECIALISTS),
            ("routes", self.routes, MAX_NETWORK_ROUTES),
            ("static IPs", self.static_ips, MAX_ZT_ASSIGNED_ADDRESSES),
            ("rules", self.rules, MAX_NETWORK_RULES),
            ("capabilities", self.capabilities, MAX_NETWORK_CAPABILITIES),
            ("tags", self.tags, MAX_NETWORK_TAGS),
            ("certificates of ownership", self.certificates_of_ownership, MAX_CERTIFICATES_OF_OWNERSHIP),
        ):
            if len(items) > limit:
                raise InvalidFormatError(f"network config has {len(items)} {name} (max {limit})")
        if not 0 < self.network_id <= _U64:
            raise InvalidFormatError("network config needs a non-zero 64-bit network id")

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, allow_legacy: bool = False) -> NetworkConfig:
        return cls.from_dictionary(
            Dictionary.from_bytes(data, NETWORKCONFIG_DICT_CAPACITY), allow_legacy=allow_legacy
        )

    @classmethod
    def from_dictionary(cls, d: Dictionary | bytes, *, allow_legacy: bool = False) -> NetworkConfig:
        """Decode like the core's fromDictionary; InvalidFormatError where it fails."""
        if not isinstance(d, Dictionary):
            d = Dictionary.from_bytes(d, NETWORKCONFIG_DICT_CAPACITY)
        nwid = d.get_uint(K_NETWORK_ID, 0)
        if not nwid:
            raise InvalidFormatError("network config has no network id")
        issued_to = d.get_uint(K_ISSUED_TO, 0) & 0xFFFFFFFFFF
        if not issued_to:
            raise InvalidFormatError("network config has no issued-to address")
        nc = cls(network_id=nwid, issued_to=Address(issued_to))
        nc.timestamp = _s64(d.get_uint(K_TIMESTAMP, 0))
        nc.credential_time_max_delta = _s64(d.get_uint(K_CREDENTIAL_TIME_MAX_DELTA, 0))
        nc.revision = d.get_uint(K_REVISION, 0)
        nc.remote_trace_target = Address(d.get_uint(K_REMOTE_TRACE_TARGET, 0) & 0xFFFFFFFFFF)
        nc.remote_trace_level = d.get_uint(K_REMOTE_TRACE_LEVEL, 0) & 0xFFFFFFFF
        nc.multicast_limit = d.get_uint(K_MULTICAST_LIMIT, 0) & 0xFFFFFFFF
        nc.name = (d.get(K_NAME, MAX_NETWORK_SHORT_NAME_LENGTH) or b"").decode("utf-8", "replace")
        nc.mtu = min(max(d.get_uint(K_MTU, DEFAULT_MTU) & 0xFFFFFFFF, MIN_MTU), MAX_MTU)

        if d.get_uint(K_VERSION, 0) < 6:
            if not allow_legacy:
                raise InvalidFormatError("network config version < 6 (pre-1.2 format) is not accepted")
            nc._from_legacy(d)
            return nc

        nc.flags = d.get_uint(K_FLAGS, 0)
        t = d.get_uint(K_TYPE, NetworkType.PRIVATE) & 0xFFFFFFFF
        nc.type = NetworkType(t) if t in (0, 1) else t
        try:
            nc._read_binary_fields(d)
        except InvalidFormatError:
            raise
        except (ValueError, IndexError, struct.error) as e:  # defensive: never leak parser internals
            raise InvalidFormatError(f"malformed network config: {e}") from e
        nc._read_sso(d)
        return nc

    def _read_binary_fields(self, d: Dictionary) -> None:
        com = d.get(K_COM)
        if com is not None:
            if com:
                self.com, _ = CertificateOfMembership.from_bytes(com)
            else:
                # An empty value makes the core read past the end and fail.
                raise InvalidFormatError("network config: empty COM")

        caps = d.get(K_CAPABILITIES)
        if caps is not None:
            # Like the core, stop at the first undecodable capability and keep the rest.
            p = 0
            while p < len(caps) and len(self.capabilities) < MAX_NETWORK_CAPABILITIES:
                try:
                    cap, n = Capability.from_bytes(caps, p)
                except InvalidFormatError:
                    break
                self.capabilities.append(cap)
                p += n
            self.capabilities.sort(key=lambda c: c.id)

        tags = d.get(K_TAGS)
        if tags is not None:
            p = 0
            while p < len(tags) and len(self.tags) < MAX_NETWORK_TAGS:
                try:
                    tag, n = Tag.from_bytes(tags, p)
                except InvalidFormatError:
                    break
                self.tags.append(tag)
                p += n
            self.tags.sort(key=lambda t: t.id)

        coos = d.get(K_CERTIFICATES_OF_OWNERSHIP)
        if coos is not None:
            p = 0
            while p < len(coos):
                coo, n = CertificateOfOwnership.from_bytes(coos, p)
                if len(self.certificates_of_ownership) < MAX_CERTIFICATES_OF_OWNERSHIP:
                    self.certificates_of_ownership.append(coo)
                p += n

        spec = d.get(K_SPECIALISTS)
        if spec is not None:
            for p in range(0, len(spec) - 7, 8):
                if len(self.specialists) < MAX_NETWORK_SPECIALISTS:
                    self.specialists.append(int.from_bytes(spec[p : p + 8], "big"))

        routes = d.get(K_ROUTES)
        if routes is not None:
            p = 0
            while p < len(routes) and len(self.routes) < MAX_NETWORK_ROUTES:
                target, n = InetAddress.from_bytes(routes, p)
                p += n
                via, n = InetAddress.from_bytes(routes, p)
                p += n
                if p + 4 > len(routes):
                    raise InvalidFormatError("network config: truncated route")
                rflags, metric = struct.unpack_from(">HH", routes, p)
                p += 4
                self.routes.append(Route(target, via, rflags, metric))

        ips = d.get(K_STATIC_IPS)
        if ips is not None:
            p = 0
            while p < len(ips) and len(self.static_ips) < MAX_ZT_ASSIGNED_ADDRESSES:
                ip, n = InetAddress.from_bytes(ips, p)
                p += n
                if ip is not None:
                    self.static_ips.append(ip)

        rules = d.get(K_RULES)
        if rules is not None:
            self.rules, _ = deserialize_rules(rules, 0, MAX_NETWORK_RULES)

        dns = d.get(K_DNS)
        if dns is not None:
            self.dns, _ = DnsConfig.from_bytes(dns)

    def _read_sso(self, d: Dictionary) -> None:
        def s(key: str, attr: str) -> str:
            return (d.get(key, _SSO_FIELD_SIZES[attr] - 1) or b"").decode("utf-8", "replace")

        self.sso_version = d.get_uint(K_SSO_VERSION, 0)
        self.sso_enabled = d.get_bool(K_SSO_ENABLED, False)
        if self.sso_version == 0:
            if self.sso_enabled:
                self.authentication_url = s(K_AUTHENTICATION_URL, "authentication_url")
                self.authentication_expiry_time = d.get_int(K_AUTHENTICATION_EXPIRY_TIME, 0)
        elif self.sso_version == 1:
            if self.sso_enabled:
                self.authentication_url = s(K_AUTHENTICATION_URL, "authentication_url")
                self.issuer_url = s(K_ISSUER_URL, "issuer_url")
                self.central_auth_url = s(K_CENTRAL_ENDPOINT_URL, "central_auth_url")
                self.sso_nonce = s(K_NONCE, "sso_nonce")
                self.sso_state = s(K_STATE, "sso_state")
                self.sso_client_id = s(K_CLIENT_ID, "sso_client_id")
                self.sso_provider = s(K_SSO_PROVIDER, "sso_provider") or "default"
            else:
                self.sso_provider = ""  # the core clears every SSO string here

    def _from_legacy(self, d: Dictionary) -> None:
        """Pre-1.2 ("version < 6") keys, as the core decoded them when it still could."""
        if d.get_bool(K_ENABLE_BROADCAST_OLD):
            self.flags |= FLAG_ENABLE_BROADCAST
        self.flags |= FLAG_ENABLE_IPV6_NDP_EMULATION
        self.type = NetworkType.PRIVATE if d.get_bool(K_PRIVATE_OLD, True) else NetworkType.PUBLIC
        for key in (K_IPV4_STATIC_OLD, K_IPV6_STATIC_OLD):
            for item in (d.get_str(key, "", 1023) or "").split(","):
                if not item or len(self.static_ips) >= MAX_ZT_ASSIGNED_ADDRESSES:
                    continue
                try:
                    ip = InetAddress.parse(item)
                except InvalidFormatError:
                    continue
                if not _is_network(ip):
                    self.static_ips.append(ip)
        ets = d.get_str(K_ALLOWED_ETHERNET_TYPES_OLD, None, 1023)
        if ets:
            for item in ets.split(","):
                if not item:
                    continue
                if len(self.rules) + 2 > MAX_NETWORK_RULES:
                    break
                et = strtoull_hex(item) & 0xFFFF
                if et:
                    self.rules.append(Rule(RuleType.MATCH_ETHERTYPE, ether_type=et))
                self.rules.append(Rule(RuleType.ACTION_ACCEPT))
        else:
            self.rules = [Rule(RuleType.ACTION_ACCEPT)]
        for item in (d.get_str(K_ACTIVE_BRIDGES_OLD, "", 1023) or "").split(","):
            if item:
                self.add_specialist(strtoull_hex(item) & 0xFFFFFFFFFF, SPECIALIST_TYPE_ACTIVE_BRIDGE)
