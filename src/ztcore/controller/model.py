"""Controller network and member records: JSON fields, defaults, validation and updates.

Owns the shape of the JSON objects that zerotier-one's embedded network
controller stores and serves on its HTTP API, so that existing API clients
(ztncui, zero-ui, ztnet, ztctl, ...) work unchanged:

* `init_network` / `init_member` fill in the defaults that zerotier-one's
  controller gives every record (`authTokens: [null]`, `dns: []`, the single
  ACTION_ACCEPT rule, `vMajor: -1`, ...);
* `update_network` / `update_member` apply a (partial) POST body to a record,
  validating each field and normalizing it to the form zerotier-one writes
  back (routes as ``{"target": "ip/bits", "via": ip|null}``, member tags as
  ``[[id, value], ...]``, rules re-rendered per type, ...);
* `clean_network` / `clean_member` drop computed fields before storing.

Field values and the rules array are validated by `ztcore.controller.validate`; a
`rulesSource` body is compiled by `ztcore.controller.rules_source`.

Everything here is a pure function over plain dicts; revision counters are
bumped by the store (`ztcore.controller.store`) when a record really changes.
Unknown or read-only keys in a body (`id`, `objtype`, `revision`, ...) are
ignored, as zerotier-one does, so a client may POST back a whole object it got.
Bad values raise `ApiError(400, ...)` instead of being silently dropped.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import time
from collections.abc import Mapping
from typing import Any

from ztcore.controller.rules_source import apply_rules_source, resolve_member_tag
from ztcore.controller.validate import (
    _HEX,
    _U8,
    _U32,
    MAX_ARRAY_SIZE,
    ApiError,
    _as_bool,
    _as_cidr,
    _as_ip,
    _as_list,
    _as_str,
    _as_trace_target,
    _as_uint,
    _bad,
    format_address,
    normalize_rule,
    normalize_rules,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_MTU",
    "MAX_ARRAY_SIZE",
    "MAX_MTU",
    "MIN_MTU",
    "ApiError",
    "clean_member",
    "clean_network",
    "format_address",
    "format_nwid",
    "init_member",
    "init_network",
    "normalize_rule",
    "normalize_rules",
    "note_config_request",
    "now_ms",
    "parse_address",
    "parse_body",
    "parse_nwid",
    "records_equal",
    "update_member",
    "update_network",
]

# Controller JSON API version reported by GET /controller (ZT_NETCONF_CONTROLLER_API_VERSION).
API_VERSION = 4
# ZT_DEFAULT_MTU / ZT_MIN_MTU / ZT_MAX_MTU.
DEFAULT_MTU = 2800
MIN_MTU = 1280
MAX_MTU = 10000
# ZT_MAX_DNS_SERVERS: a network config carries at most this many resolvers.
MAX_DNS_SERVERS = 4


# Keys a record may carry that are computed on read and never stored
# (what zerotier-one's DB::cleanNetwork / DB::cleanMember erase).
_NETWORK_COMPUTED = (
    "clock",
    "authorizedMemberCount",
    "activeMemberCount",
    "totalMemberCount",
    "lastModified",
)
_MEMBER_COMPUTED = (
    "clock",
    "physicalAddr",
    "recentLog",
    "lastModified",
    "lastRequestMetaData",
    "authenticationURL",
    "authenticationClientID",
)


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every controller timestamp."""
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# Identifiers


def parse_nwid(text: object) -> int:
    """A 16-hex-digit network ID (either case) as an int; ApiError 400 otherwise."""
    if not isinstance(text, str) or len(text) != 16 or not _HEX.issuperset(text):
        raise ApiError(400, f"invalid network id {str(text)[:40]!r} (want 16 hex digits)")
    return int(text, 16)


def parse_address(text: object) -> int:
    """A 10-hex-digit ZeroTier address as an int; reserved addresses (0, 0xff...) are refused."""
    if not isinstance(text, str) or len(text) != 10 or not _HEX.issuperset(text):
        raise ApiError(400, f"invalid ZeroTier address {str(text)[:40]!r} (want 10 hex digits)")
    value = int(text, 16)
    if value == 0 or (value >> 32) == 0xFF:
        raise ApiError(400, f"ZeroTier address {text} is reserved")
    return value


def format_nwid(nwid: int) -> str:
    return f"{nwid:016x}"


def parse_body(body: bytes | str) -> dict[str, Any]:
    """Decode a request body: empty means ``{}``; anything but a JSON object is a 400."""
    if isinstance(body, bytes | bytearray):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ApiError(400, "request body is not UTF-8") from e
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"request body is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise ApiError(400, "request body must be a JSON object")
    return value


# --------------------------------------------------------------------------------------------
# Defaults


def _default_rules() -> list[dict[str, Any]]:
    # With no rules given a network behaves like a flat L2 segment: accept everything.
    return [{"not": False, "or": False, "type": "ACTION_ACCEPT"}]


def init_network(network: Mapping[str, Any] | None = None, now: int | None = None) -> dict[str, Any]:
    """A copy of `network` with every missing field set to zerotier-one's default."""
    n: dict[str, Any] = copy.deepcopy(dict(network)) if network else {}
    t = now_ms() if now is None else now
    defaults: dict[str, Any] = {
        "private": True,
        "creationTime": t,
        "name": "",
        "multicastLimit": 32,
        "enableBroadcast": True,
        "v4AssignMode": {"zt": False},
        "v6AssignMode": {"rfc4193": False, "zt": False, "6plane": False},
        "authTokens": [None],
        "capabilities": [],
        "tags": [],
        "routes": [],
        "ipAssignmentPools": [],
        "mtu": DEFAULT_MTU,
        "remoteTraceTarget": None,
        "remoteTraceLevel": 0,
        "rulesSource": "",
        "rules": _default_rules(),
        "dns": [],
        "ssoEnabled": False,
        "clientId": "",
        "authorizationEndpoint": "",
    }
    for k, v in defaults.items():
        if k not in n:
            n[k] = v
    n["objtype"] = "network"
    return n


def init_member(member: Mapping[str, Any] | None = None, now: int | None = None) -> dict[str, Any]:
    """A copy of `member` with every missing field set to zerotier-one's default."""
    m: dict[str, Any] = copy.deepcopy(dict(member)) if member else {}
    t = now_ms() if now is None else now
    defaults: dict[str, Any] = {
        "authorized": False,
        "ssoExempt": False,
        "ipAssignments": [],
        "activeBridge": False,
        "tags": [],
        "capabilities": [],
        "creationTime": t,
        "noAutoAssignIps": False,
        "revision": 0,
        "lastDeauthorizedTime": 0,
        "lastAuthorizedTime": 0,
        "lastAuthorizedCredentialType": None,
        "lastAuthorizedCredential": None,
        "authenticationExpiryTime": 0,
        "vMajor": -1,
        "vMinor": -1,
        "vRev": -1,
        "vProto": -1,
        "remoteTraceTarget": None,
        "remoteTraceLevel": 0,
    }
    for k, v in defaults.items():
        if k not in m:
            m[k] = v
    m["objtype"] = "member"
    return m


def clean_network(network: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without the computed fields that are never stored."""
    return {k: v for k, v in network.items() if k not in _NETWORK_COMPUTED}


def clean_member(member: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without the computed fields that are never stored."""
    return {k: v for k, v in member.items() if k not in _MEMBER_COMPUTED}


def records_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal in every field but `revision` (a save that changes nothing bumps nothing)."""
    ka = set(a) - {"revision"}
    kb = set(b) - {"revision"}
    return ka == kb and all(a[k] == b[k] for k in ka)


# --------------------------------------------------------------------------------------------
# Network fields


def _v4_assign_mode(v: object) -> dict[str, bool]:
    if v is None:
        return {"zt": False}
    if isinstance(v, str):  # older clients send "zt"
        return {"zt": v == "zt"}
    if isinstance(v, dict):
        return {"zt": _as_bool(v.get("zt", False), "v4AssignMode.zt")}
    raise _bad("v4AssignMode", 'expected an object like {"zt": true}')


def _v6_assign_mode(v: object, current: object) -> dict[str, bool]:
    keys = ("rfc4193", "zt", "6plane")
    if v is None:
        return dict.fromkeys(keys, False)
    if isinstance(v, str):  # older clients send "rfc4193,zt"
        modes = {s.strip() for s in v.split(",")}
        return {k: k in modes for k in keys}
    if isinstance(v, dict):
        # Keys absent from the body keep their stored value (zerotier-one drops them instead).
        out = {k: bool(current.get(k, False)) if isinstance(current, dict) else False for k in keys}
        for k in keys:
            if k in v:
                out[k] = _as_bool(v[k], f"v6AssignMode.{k}")
        return out
    raise _bad("v6AssignMode", 'expected an object like {"zt": false, "6plane": true, "rfc4193": false}')


def _routes(v: object) -> list[dict[str, Any]]:
    out = []
    for i, rt in enumerate(_as_list(v, "routes")):
        f = f"routes[{i}]"
        if not isinstance(rt, dict):
            raise _bad(f, "each route must be an object with 'target' and 'via'")
        target = _as_cidr(rt.get("target"), f"{f}.target")
        tip = ipaddress.ip_interface(target)
        via = rt.get("via")
        via_out: str | None = None
        if via not in (None, ""):
            vip = _as_ip(via, f"{f}.via")
            # A gateway of the other address family is meaningless; zerotier-one stores null.
            via_out = str(vip) if vip.version == tip.version else None
        out.append({"target": target, "via": via_out})
    return out


def _pools(v: object) -> list[dict[str, str]]:
    out = []
    for i, p in enumerate(_as_list(v, "ipAssignmentPools")):
        f = f"ipAssignmentPools[{i}]"
        if not isinstance(p, dict) or "ipRangeStart" not in p or "ipRangeEnd" not in p:
            raise _bad(f, "each pool must be an object with 'ipRangeStart' and 'ipRangeEnd'")
        s = _as_ip(p["ipRangeStart"], f"{f}.ipRangeStart")
        e = _as_ip(p["ipRangeEnd"], f"{f}.ipRangeEnd")
        if s.version != e.version:
            raise _bad(f, "ipRangeStart and ipRangeEnd must be of the same address family")
        if int(e) < int(s):
            raise _bad(f, "ipRangeEnd is below ipRangeStart")
        out.append({"ipRangeStart": str(s), "ipRangeEnd": str(e)})
    return out


def _auth_tokens(v: object) -> Any:
    if v is None or isinstance(v, list):
        # The stored default is [null]; clients POST it back unchanged.
        return [None]
    if not isinstance(v, dict):
        raise _bad("authTokens", "expected an object mapping token to expiry time (0 = never)")
    return {str(k): _as_uint(t, f"authTokens.{k}") for k, t in v.items()}


def _net_capabilities(v: object) -> list[dict[str, Any]]:
    caps: dict[int, dict[str, Any]] = {}
    for i, c in enumerate(_as_list(v, "capabilities")):
        f = f"capabilities[{i}]"
        if not isinstance(c, dict):
            raise _bad(f, "each capability must be an object with 'id', 'default' and 'rules'")
        cid = _as_uint(c.get("id", 0), f"{f}.id", _U32)
        rules = normalize_rules(c.get("rules", []), f"{f}.rules")
        caps[cid] = {"id": cid, "default": _as_bool(c.get("default", False), f"{f}.default"), "rules": rules}
    return [caps[k] for k in sorted(caps)]


def _net_tags(v: object) -> list[dict[str, Any]]:
    tags: dict[int, dict[str, Any]] = {}
    for i, tg in enumerate(_as_list(v, "tags")):
        f = f"tags[{i}]"
        if not isinstance(tg, dict):
            raise _bad(f, "each tag must be an object with 'id' and 'default'")
        tid = _as_uint(tg.get("id", 0), f"{f}.id", _U32)
        dfl = tg.get("default")
        tags[tid] = {"id": tid, "default": None if dfl is None else _as_uint(dfl, f"{f}.default", _U32)}
    return [tags[k] for k in sorted(tags)]


def _dns(v: object) -> Any:
    if v is None or v == []:
        return []
    if not isinstance(v, dict):
        raise _bad("dns", 'expected an object like {"domain": "example.zt", "servers": ["10.0.0.1"]}')
    servers = _as_list(v.get("servers", []), "dns.servers")
    if len(servers) > MAX_DNS_SERVERS:
        raise _bad("dns.servers", f"at most {MAX_DNS_SERVERS} servers")
    return {
        "domain": _as_str(v.get("domain", ""), "dns.domain", 255),
        "servers": [str(_as_ip(s, f"dns.servers[{i}]")) for i, s in enumerate(servers)],
    }


def update_network(
    network: Mapping[str, Any] | None, body: Mapping[str, Any], nwid: int, now: int | None = None
) -> dict[str, Any]:
    """Apply a POST body to `network` (None = a new network); returns the updated copy.

    Only keys present in `body` change. The result carries ``id``/``nwid`` and every
    default; its ``revision`` is left for the store to bump.
    """
    if not isinstance(body, Mapping):
        raise ApiError(400, "request body must be a JSON object")
    n = init_network(network, now)
    b = body
    if "name" in b:
        n["name"] = _as_str(b["name"], "name", 4096)
    if "private" in b:
        n["private"] = _as_bool(b["private"], "private")
    if "enableBroadcast" in b:
        n["enableBroadcast"] = _as_bool(b["enableBroadcast"], "enableBroadcast")
    if "multicastLimit" in b:
        n["multicastLimit"] = _as_uint(b["multicastLimit"], "multicastLimit", _U32)
    if "mtu" in b:
        # Clamped rather than refused, as zerotier-one does.
        n["mtu"] = max(MIN_MTU, min(MAX_MTU, _as_uint(b["mtu"], "mtu")))
    if "remoteTraceTarget" in b:
        n["remoteTraceTarget"] = _as_trace_target(b["remoteTraceTarget"], "remoteTraceTarget")
    if "remoteTraceLevel" in b:
        n["remoteTraceLevel"] = _as_uint(b["remoteTraceLevel"], "remoteTraceLevel", _U8)
    if "v4AssignMode" in b:
        n["v4AssignMode"] = _v4_assign_mode(b["v4AssignMode"])
    if "v6AssignMode" in b:
        n["v6AssignMode"] = _v6_assign_mode(b["v6AssignMode"], n.get("v6AssignMode"))
    if "routes" in b:
        n["routes"] = _routes(b["routes"])
    if "ipAssignmentPools" in b:
        n["ipAssignmentPools"] = _pools(b["ipAssignmentPools"])
    if "rules" in b:
        n["rules"] = normalize_rules(b["rules"])
    if "rulesSource" in b:
        n["rulesSource"] = _as_str(b["rulesSource"], "rulesSource", 1 << 20)
    if "authTokens" in b:
        n["authTokens"] = _auth_tokens(b["authTokens"])
    if "capabilities" in b:
        n["capabilities"] = _net_capabilities(b["capabilities"])
    if "tags" in b:
        n["tags"] = _net_tags(b["tags"])
    if "dns" in b:
        n["dns"] = _dns(b["dns"])
    if "rulesSource" in b:
        # The controller compiles the source (zerotier-one does not); explicit fields win.
        apply_rules_source(n, b)
    ids = format_nwid(nwid)
    n["id"] = ids
    n["nwid"] = ids
    return clean_network(n)


# --------------------------------------------------------------------------------------------
# Member fields


def _ip_assignments(v: object) -> list[str]:
    out: list[str] = []
    for i, ip in enumerate(_as_list(v, "ipAssignments")):
        s = str(_as_ip(ip, f"ipAssignments[{i}]"))
        if s not in out:
            out.append(s)
    return out


def _member_tags(v: object, network: Mapping[str, Any] | None) -> list[list[int]]:
    tags: dict[int, int] = {}
    for i, tg in enumerate(_as_list(v, "tags")):
        if not isinstance(tg, list) or len(tg) != 2:
            raise _bad(f"tags[{i}]", "each member tag must be a pair [id, value] (or [name, value name])")
        tg = resolve_member_tag(tg, network, f"tags[{i}]")
        tags[_as_uint(tg[0], f"tags[{i}][0]", _U32)] = _as_uint(tg[1], f"tags[{i}][1]", _U32)
    return [[k, tags[k]] for k in sorted(tags)]


def _member_capabilities(v: object) -> list[int]:
    ids = {_as_uint(c, f"capabilities[{i}]", _U32) for i, c in enumerate(_as_list(v, "capabilities"))}
    return sorted(ids)


def update_member(
    member: Mapping[str, Any] | None,
    body: Mapping[str, Any],
    nwid: int,
    address: int,
    now: int | None = None,
    *,
    network: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply a POST body to `member` (None = a new member); returns the updated copy.

    A change of ``authorized`` stamps ``lastAuthorizedTime`` or ``lastDeauthorizedTime``
    with `now`; authorizing through the API records credential type ``"api"``. Tags
    may be given by name when `network` (its record) has a compiled ``rulesSource``.
    """
    if not isinstance(body, Mapping):
        raise ApiError(400, "request body must be a JSON object")
    t = now_ms() if now is None else now
    m = init_member(member, t)
    b = body
    if "activeBridge" in b:
        m["activeBridge"] = _as_bool(b["activeBridge"], "activeBridge")
    if "noAutoAssignIps" in b:
        m["noAutoAssignIps"] = _as_bool(b["noAutoAssignIps"], "noAutoAssignIps")
    if "authenticationExpiryTime" in b:
        m["authenticationExpiryTime"] = _as_uint(b["authenticationExpiryTime"], "authenticationExpiryTime")
    if "name" in b:
        m["name"] = _as_str(b["name"], "name", 255)
    if "remoteTraceTarget" in b:
        m["remoteTraceTarget"] = _as_trace_target(b["remoteTraceTarget"], "remoteTraceTarget")
    if "remoteTraceLevel" in b:
        m["remoteTraceLevel"] = _as_uint(b["remoteTraceLevel"], "remoteTraceLevel", _U8)
    if "authorized" in b:
        auth = _as_bool(b["authorized"], "authorized")
        if auth != bool(m.get("authorized", False)):
            m["authorized"] = auth
            if auth:
                m["lastAuthorizedTime"] = t
                m["lastAuthorizedCredentialType"] = "api"
                m["lastAuthorizedCredential"] = None
            else:
                m["lastDeauthorizedTime"] = t
    if "ipAssignments" in b:
        m["ipAssignments"] = _ip_assignments(b["ipAssignments"])
    if "tags" in b:
        m["tags"] = _member_tags(b["tags"], network)
    if "capabilities" in b:
        m["capabilities"] = _member_capabilities(b["capabilities"])
    ids = format_address(address)
    m["id"] = ids
    m["address"] = ids
    m["nwid"] = format_nwid(nwid)
    return clean_member(m)


def note_config_request(
    member: Mapping[str, Any],
    identity: str,
    version: tuple[int, int, int, int] | None = None,
) -> dict[str, Any]:
    """Record what a member's network config request told us: its identity and version.

    `version` is (vMajor, vMinor, vRev, vProto) from the request metadata; zerotier-one
    records it only for authorized members.
    """
    m = dict(member)
    if not m.get("identity"):
        m["identity"] = identity
    if version is not None:
        m["vMajor"], m["vMinor"], m["vRev"], m["vProto"] = (int(x) for x in version)
    return m
