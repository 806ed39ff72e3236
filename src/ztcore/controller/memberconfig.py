"""A member's network config from the controller's records, and the credentials in it.

Owns the translation zerotier-one's EmbeddedNetworkController makes from a network's
and a member's JSON records to the `NetworkConfig` it issues: type, MTU, routes,
DNS, rules, active bridges, remote trace target, capabilities and tags (default
ones recorded in the member), static IPs; and `issue`, which stamps a config with
the request's time and signs its COM, capabilities, tags and certificate of
ownership. `IssuedConfig` is a config without its credentials, as the live
controller (`ztcore.controller.live`) keeps it for members' repeat requests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ztcore.controller import ipam
from ztcore.errors import InvalidFormatError
from ztcore.identity import Address, Identity
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl2.credentials import Capability, CertificateOfMembership, CertificateOfOwnership, Tag
from ztcore.vl2.dictionary import Dictionary
from ztcore.vl2.netconf import (
    CREDENTIAL_TIME_DFL_MAX_DELTA,
    CREDENTIAL_TIME_MAX_MAX_DELTA,
    CREDENTIAL_TIME_MIN_MAX_DELTA,
    DEFAULT_MTU,
    FLAG_ENABLE_BROADCAST,
    FLAG_ENABLE_IPV6_NDP_EMULATION,
    MAX_CAPABILITY_RULES,
    MAX_DNS_SERVERS,
    MAX_MTU,
    MAX_NETWORK_CAPABILITIES,
    MAX_NETWORK_ROUTES,
    MAX_NETWORK_RULES,
    MAX_NETWORK_TAGS,
    MAX_ZT_ASSIGNED_ADDRESSES,
    MIN_MTU,
    SPECIALIST_TYPE_ACTIVE_BRIDGE,
    DnsConfig,
    NetworkConfig,
    NetworkType,
    Route,
)
from ztcore.vl2.netconf_request import REQUEST_KEY_RULES_ENGINE_REV
from ztcore.vl2.rules import Rule, RuleType, rules_from_json

__all__ = [
    "IssuedConfig",
    "add_addresses",
    "address_text",
    "build_config",
    "inet",
    "issue",
    "json_bool",
    "json_int",
    "member_capabilities",
    "member_tags",
    "split_config",
]

_U32 = 0xFFFFFFFF
_HEX = frozenset("0123456789abcdefABCDEF")


def json_int(v: object, default: int) -> int:
    """A lenient integer as the core's jsonInt reads it (bools/strings/floats accepted)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip(), 0)
        except ValueError:
            return default
    return default


def json_bool(v: object, default: bool) -> bool:
    """A lenient boolean as the core's jsonBool reads it."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v > 0
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "t")
    return default


def address_text(v: object) -> int | None:
    """A 10-hex-digit address string (as remoteTraceTarget holds) or None."""
    if isinstance(v, str) and len(v) == 10 and _HEX.issuperset(v):
        return int(v, 16)
    return None


def inet(text: object, bits: int | None = None) -> InetAddress | None:
    """An IP (optionally "ip/bits") as an InetAddress; the netmask goes in the port."""
    if not isinstance(text, str):
        return None
    try:
        if "/" in text:
            iface = ipaddress.ip_interface(text.strip())
            return InetAddress(iface.ip, iface.network.prefixlen if bits is None else bits)
        return InetAddress(ipaddress.ip_address(text.strip()), bits or 0)
    except (ValueError, InvalidFormatError):
        return None


@dataclass(slots=True)
class IssuedConfig:
    """A member's config without its credentials, and what they say: all a repeat
    request needs (credentials are re-issued with each request's time).

    `network` holds the fields every member of the network gets (timestamp 0, no
    credentials) and is shared by the members' entries, so that 10,000 cached
    members cost a few MiB; the member's own fields are kept beside it.
    """

    network: NetworkConfig
    issued_to: Address
    flags: int
    remote_trace_target: Address
    remote_trace_level: int
    specialists: list[int]
    static_ips: list[InetAddress]
    ctmd: int
    capabilities: list[tuple[int, list[Rule]]] = field(default_factory=list)
    tags: list[tuple[int, int]] = field(default_factory=list)
    # What the cached answer was made for (see `ztcore.controller.live`).
    generation: tuple[int, int] = (-1, -1)
    identity: Identity | None = None
    version: tuple[int, int, int, int] | None = None
    rules_engine: bool = False
    # A genuine request's metadata known to match `version` and `rules_engine`.
    metadata: bytes | None = None
    # `ControllerStore.fingerprint` of its inputs; None if it depends on other members too.
    fingerprint: bytes | None = None


def build_config(
    network_id: int,
    network: Mapping[str, Any],
    member: dict[str, Any],
    identity: Identity,
    metadata: Dictionary,
    new_member: bool,
    sso: bool,
    bridges: list[int],
) -> tuple[NetworkConfig, int, list[tuple[int, list[Rule]]], list[tuple[int, int]]]:
    """Everything but the addresses and the credentials: the config, its credential
    time window, and the member's capabilities and tags; `member` gains default
    capabilities and tags. `bridges`: addresses of the network's active bridges."""
    address = identity.address

    ctmd = json_int(network.get("certificateTimeoutWindowSize"), CREDENTIAL_TIME_DFL_MAX_DELTA)
    ctmd = max(min(ctmd, CREDENTIAL_TIME_MAX_MAX_DELTA), CREDENTIAL_TIME_MIN_MAX_DELTA)

    nc = NetworkConfig(network_id=network_id, issued_to=address)
    nc.type = NetworkType.PRIVATE if json_bool(network.get("private"), True) else NetworkType.PUBLIC
    nc.credential_time_max_delta = ctmd
    nc.revision = max(0, json_int(network.get("revision"), 0))
    if json_bool(network.get("enableBroadcast"), True):
        nc.flags |= FLAG_ENABLE_BROADCAST
    name = network.get("name")
    nc.name = name if isinstance(name, str) else ""
    nc.mtu = max(min(json_int(network.get("mtu"), DEFAULT_MTU), MAX_MTU), MIN_MTU)
    nc.multicast_limit = json_int(network.get("multicastLimit"), 32) & _U32
    if sso:
        nc.sso_enabled = True
        nc.sso_version = 0
        nc.authentication_expiry_time = json_int(member.get("authenticationExpiryTime"), 0)

    target = address_text(member.get("remoteTraceTarget"))
    if target is not None:
        nc.remote_trace_target = Address(target)
        nc.remote_trace_level = json_int(member.get("remoteTraceLevel"), 0) & 0xFF
    else:
        target = address_text(network.get("remoteTraceTarget"))
        nc.remote_trace_target = Address(target or 0)
        nc.remote_trace_level = json_int(network.get("remoteTraceLevel"), 0) & 0xFF

    bridges = list(bridges)
    if json_bool(member.get("activeBridge"), False) and int(address) not in bridges:
        bridges.append(int(address))  # a first request's own record is not stored yet
    for b in bridges:
        nc.add_specialist(b, SPECIALIST_TYPE_ACTIVE_BRIDGE)

    caps: list[tuple[int, list[Rule]]] = []
    tags: list[tuple[int, int]] = []
    if metadata.get_uint(REQUEST_KEY_RULES_ENGINE_REV, 0) <= 0:
        # Members without a rules engine get allow-all; newer peers still filter inbound.
        nc.rules = [Rule(RuleType.ACTION_ACCEPT)]
    else:
        rules = network.get("rules")
        nc.rules = rules_from_json(rules)[:MAX_NETWORK_RULES] if isinstance(rules, list) else []
        caps = member_capabilities(network, member, new_member)
        tags = member_tags(network, member)

    routes = network.get("routes")
    for rt in routes if isinstance(routes, list) else []:
        if len(nc.routes) >= MAX_NETWORK_ROUTES:
            break
        if not isinstance(rt, Mapping) or not isinstance(rt.get("target"), str):
            continue
        t = inet(rt["target"])
        if t is None:
            continue
        via = inet(rt.get("via")) if isinstance(rt.get("via"), str) else None
        if via is not None and via.ip.version != t.ip.version:
            via = None
        nc.routes.append(Route(t, via))

    dns = network.get("dns")
    if isinstance(dns, Mapping):
        domain = dns.get("domain")
        servers = dns.get("servers")
        addrs = [inet(s) for s in (servers if isinstance(servers, list) else [])[:MAX_DNS_SERVERS]]
        nc.dns = DnsConfig(domain if isinstance(domain, str) else "", [a for a in addrs if a is not None])
    return nc, ctmd, caps, tags


def member_capabilities(
    network: Mapping[str, Any], member: dict[str, Any], new_member: bool
) -> list[tuple[int, list[Rule]]]:
    """(id, rules) of the member's capabilities that the network defines, at most
    MAX_NETWORK_CAPABILITIES."""
    mcaps = member.get("capabilities")
    if not isinstance(mcaps, list):
        mcaps = member["capabilities"] = []
    by_id: dict[int, Mapping[str, Any]] = {}
    caps = network.get("capabilities")
    for cap in caps if isinstance(caps, list) else []:
        if not isinstance(cap, Mapping):
            continue
        cid = json_int(cap.get("id"), 0) & _U32
        by_id[cid] = cap
        # Default capabilities are handed out once, to members seen for the first time.
        if new_member and json_bool(cap.get("default"), False):
            if cid not in {json_int(c, 0) & _U32 for c in mcaps}:
                mcaps.append(cid)
    out: list[tuple[int, list[Rule]]] = []
    for c in mcaps:
        cid = json_int(c, 0) & _U32
        cap = by_id.get(cid)
        if not cap:
            continue
        rules = cap.get("rules")
        out.append((cid, rules_from_json(rules)[:MAX_CAPABILITY_RULES] if isinstance(rules, list) else []))
        if len(out) >= MAX_NETWORK_CAPABILITIES:
            break
    return out


def member_tags(network: Mapping[str, Any], member: dict[str, Any]) -> list[tuple[int, int]]:
    """(id, value) of the member's tags, network defaults filled in, by id, at most
    MAX_NETWORK_TAGS."""
    values: dict[int, int] = {}
    mtags = member.get("tags")
    if not isinstance(mtags, list):
        mtags = member["tags"] = []
    for t in mtags:
        if isinstance(t, list) and len(t) == 2:
            values[json_int(t[0], 0) & _U32] = json_int(t[1], 0) & _U32
    tags = network.get("tags")
    for t in tags if isinstance(tags, list) else []:
        if not isinstance(t, Mapping):
            continue
        tid = json_int(t.get("id"), 0) & _U32
        dfl = t.get("default")
        # A network tag's default is given (and recorded) to members that lack the tag.
        if isinstance(dfl, int | float) and not isinstance(dfl, bool) and tid not in values:
            values[tid] = int(dfl) & _U32
            mtags.append([tid, int(dfl) & _U32])
    return [(tid, values[tid]) for tid in sorted(values)[:MAX_NETWORK_TAGS]]


def add_addresses(
    network_id: int,
    network: Mapping[str, Any],
    member: Mapping[str, Any],
    nc: NetworkConfig,
) -> None:
    """Static IPs (RFC4193/6PLANE, then assigned ones inside a route); `issue`
    adds their COO."""
    address = int(nc.issued_to)
    if ipam.managed_v6_addresses(network, member, network_id, address):
        nc.flags |= FLAG_ENABLE_IPV6_NDP_EMULATION
    for text in ipam.static_ips(network, member, network_id, address):
        ip = inet(text)
        if ip is not None and len(nc.static_ips) < MAX_ZT_ASSIGNED_ADDRESSES:
            nc.static_ips.append(ip)


def split_config(
    shared_configs: dict[int, NetworkConfig],
    network_id: int,
    nc: NetworkConfig,
    ctmd: int,
    capabilities: list[tuple[int, list[Rule]]],
    tags: list[tuple[int, int]],
) -> IssuedConfig:
    """`nc` (no credentials) as an `IssuedConfig`: the member's own fields, and the rest
    taken from `shared_configs` (per network, the last shared part) when it is the same."""
    shared = replace(
        nc,
        issued_to=Address(0),
        flags=0,
        remote_trace_target=Address(0),
        remote_trace_level=0,
        specialists=[],
        static_ips=[],
    )
    last = shared_configs.get(network_id)
    if last is not None and last == shared:
        shared = last
    else:
        shared_configs[network_id] = shared
    return IssuedConfig(
        shared,
        nc.issued_to,
        nc.flags,
        nc.remote_trace_target,
        nc.remote_trace_level,
        nc.specialists,
        nc.static_ips,
        ctmd,
        capabilities,
        tags,
    )


def issue(
    now: int, network_id: int, issued: IssuedConfig, identity: Identity, signer: Identity
) -> NetworkConfig:
    """`issued`'s config for `identity` stamped `now`, with its COM, capabilities, tags and
    COO signed by `signer` (the controller)."""
    base = issued.network
    address = issued.issued_to
    # Fresh lists: whoever receives the config may keep it, the cached one must not change.
    nc = replace(
        base,
        issued_to=address,
        timestamp=now,
        flags=issued.flags,
        remote_trace_target=issued.remote_trace_target,
        remote_trace_level=issued.remote_trace_level,
        specialists=list(issued.specialists),
        routes=list(base.routes),
        static_ips=list(issued.static_ips),
        rules=list(base.rules),
        dns=replace(base.dns, servers=list(base.dns.servers)),
        capabilities=[],
        tags=[],
        certificates_of_ownership=[],
    )
    com = CertificateOfMembership.create(now, issued.ctmd, network_id, identity)
    if not com.sign(signer):
        raise RuntimeError("could not sign the certificate of membership")
    nc.com = com
    for cid, rules in issued.capabilities:
        capability = Capability(cid, network_id, now, rules, 1)
        if capability.sign(signer, address):
            nc.capabilities.append(capability)
    for tid, value in issued.tags:
        tag = Tag(tid, value, network_id, now, address)
        if tag.sign(signer):
            nc.tags.append(tag)
    if nc.static_ips:
        coo = CertificateOfOwnership(network_id, now, address, id=1)
        for ip in nc.static_ips:
            if not coo.add_thing(ip):
                break
        coo.sign(signer)
        nc.certificates_of_ownership = [coo]
    return nc
