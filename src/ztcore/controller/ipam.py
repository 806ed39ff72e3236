"""Controller IP address management: managed addresses for network members.

Owns how the controller picks a member's addresses, following zerotier-one's
embedded controller:

* ``v6AssignMode.rfc4193`` / ``v6AssignMode["6plane"]``: addresses computed from
  (network id, member address), never stored in ``ipAssignments``
  (computed by `ztcore.vl2.networkid`);
* ``v4AssignMode.zt`` / ``v6AssignMode.zt``: one address per family drawn from
  ``ipAssignmentPools`` and stored in the member's ``ipAssignments``, only if the
  member has no managed address of that family yet, only inside a managed route
  (an IPv6 one without ``via``), never one another member already holds, never an
  IPv4 address ending in ``.255``. IPv4 candidates start at
  ``rangeStart + (member address mod rangeLength)`` and walk upwards, so the
  choice is deterministic; IPv6 pools first try ``rangeStart + member address``
  when the range is wide enough, then random addresses.
* ``noAutoAssignIps`` on the member turns all of it off.

zerotier-one gives up after 1000 IPv4 candidates; we keep walking the same
sequence up to 65536 so that a crowded pool still yields a free address.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ztcore.vl2.networkid import RFC4193_PREFIX_BITS, SIXPLANE_PREFIX_BITS, rfc4193_ip, sixplane_ip

__all__ = [
    "auto_assign",
    "managed_v6_addresses",
    "routes_of",
    "static_ips",
]

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4_TRIALS_MAX = 65536
_V6_TRIALS = 1000
_U64 = (1 << 64) - 1


def _flag(obj: object, key: str) -> bool:
    return isinstance(obj, Mapping) and obj.get(key) is True


def routes_of(network: Mapping[str, Any]) -> list[tuple[IPNet, IPAddr | None]]:
    """The network's managed routes as (target network, via) pairs; malformed entries skipped."""
    out: list[tuple[IPNet, IPAddr | None]] = []
    routes = network.get("routes")
    if not isinstance(routes, list):
        return out
    for rt in routes:
        if not isinstance(rt, Mapping) or not isinstance(rt.get("target"), str):
            continue
        try:
            target = ipaddress.ip_interface(rt["target"]).network
            via = ipaddress.ip_address(rt["via"]) if isinstance(rt.get("via"), str) else None
        except ValueError:
            continue
        out.append((target, via))
    return out


def _parse_ips(values: Iterable[object]) -> set[IPAddr]:
    out: set[IPAddr] = set()
    for v in values:
        if isinstance(v, str):
            try:
                out.add(ipaddress.ip_address(v.split("/", 1)[0]))
            except ValueError:
                pass
    return out


def managed_v6_addresses(
    network: Mapping[str, Any], member: Mapping[str, Any], nwid: int, address: int
) -> list[str]:
    """The RFC4193 and 6PLANE addresses (``ip/bits``) the network's v6AssignMode gives this member."""
    if member.get("noAutoAssignIps") is True:
        return []
    mode = network.get("v6AssignMode")
    out = []
    if _flag(mode, "rfc4193"):
        out.append(f"{rfc4193_ip(nwid, address)}/{RFC4193_PREFIX_BITS}")
    if _flag(mode, "6plane"):
        out.append(f"{sixplane_ip(nwid, address)}/{SIXPLANE_PREFIX_BITS}")
    return out


def _longest_route_bits(ip: IPAddr, routes: list[tuple[IPNet, IPAddr | None]]) -> int | None:
    best: int | None = None
    for target, _via in routes:
        if target.version == ip.version and ip in target and (best is None or target.prefixlen > best):
            best = target.prefixlen
    return best


def static_ips(network: Mapping[str, Any], member: Mapping[str, Any], nwid: int, address: int) -> list[str]:
    """Every address (``ip/bits``) a network config for this member carries, in the core's order.

    RFC4193 / 6PLANE first, then each ``ipAssignments`` entry that lies inside a managed
    route, with the netmask of the most specific such route.
    """
    out = managed_v6_addresses(network, member, nwid, address)
    routes = routes_of(network)
    assigned = member.get("ipAssignments")
    for v in assigned if isinstance(assigned, list) else []:
        if not isinstance(v, str):
            continue
        try:
            ip = ipaddress.ip_address(v.split("/", 1)[0])
        except ValueError:
            continue
        bits = _longest_route_bits(ip, routes)
        if bits is not None:
            out.append(f"{ip}/{bits}")
    return out


def _pick_v4(
    start: int, end: int, address: int, routes: list[tuple[IPNet, IPAddr | None]], taken: set[IPAddr]
) -> ipaddress.IPv4Address | None:
    span = end - start
    counter = address & 0xFFFFFFFF
    v4routes = [t for t, _via in routes if t.version == 4]
    for _ in range(min(span + 1, _V4_TRIALS_MAX)):
        ip_int = start + (counter % span) if span > 0 else start
        counter = (counter + 1) & 0xFFFFFFFF
        if (ip_int & 0xFF) == 0xFF:
            continue
        ip = ipaddress.IPv4Address(ip_int)
        # The first route containing the candidate decides; a /0 does not count as managed.
        bits = next((t.prefixlen for t in v4routes if ip in t), -1)
        if bits > 0 and ip not in taken:
            return ip
    return None


def _pick_v6(
    start: int,
    end: int,
    address: int,
    routes: list[tuple[IPNet, IPAddr | None]],
    taken: set[IPAddr],
    randbits: Callable[[int], int],
) -> ipaddress.IPv6Address | None:
    s_hi, s_lo = start >> 64, start & _U64
    e_hi, e_lo = end >> 64, end & _U64
    local_routes = [t for t, via in routes if t.version == 6 and via is None]
    for trial in range(_V6_TRIALS):
        if trial == 0 and e_lo > s_lo and (e_lo - s_lo) >= 0xFFFFFFFFFF:
            # Wide enough: put the member's address in the low bits of the range start.
            hi, lo = s_hi, (s_lo + address) & _U64
        else:
            r_hi = randbits(64) % (e_hi - s_hi) if e_hi > s_hi else 0
            r_lo = randbits(64) % (e_lo - s_lo) if e_lo > s_lo else 0
            hi, lo = (s_hi + r_hi) & _U64, (s_lo + r_lo) & _U64
        ip = ipaddress.IPv6Address((hi << 64) | lo)
        bits = 0
        for t in local_routes:
            if ip in t:
                bits = t.prefixlen
        if bits > 0 and ip not in taken:
            return ip
    return None


def auto_assign(
    network: Mapping[str, Any],
    member: Mapping[str, Any],
    address: int,
    taken: Iterable[str] | Callable[[], Iterable[str]],
    randbits: Callable[[int], int] = secrets.randbits,
) -> list[str]:
    """The member's ``ipAssignments`` after pool auto-assignment (a new list; unchanged if none applies).

    `taken` holds the addresses other members of the network already have (strings as
    stored in their ``ipAssignments``), or is a function returning them: it is then
    called only when an address must actually be picked, which keeps repeat config
    requests of members that already have addresses independent of the network's size.
    """
    current = member.get("ipAssignments")
    assigned: list[str] = [v for v in current if isinstance(v, str)] if isinstance(current, list) else []
    if member.get("noAutoAssignIps") is True:
        return assigned
    pools = network.get("ipAssignmentPools")
    if not isinstance(pools, list) or not pools:
        return assigned
    routes = routes_of(network)
    have = {4: False, 6: False}
    for ip in _parse_ips(assigned):
        if _longest_route_bits(ip, routes) is not None:
            have[ip.version] = True

    want = {6: _flag(network.get("v6AssignMode"), "zt"), 4: _flag(network.get("v4AssignMode"), "zt")}
    if not any(want[f] and not have[f] for f in (4, 6)):
        return assigned
    taken_set = _parse_ips(taken() if callable(taken) else taken) | _parse_ips(assigned)
    for family in (6, 4):  # the core assigns IPv6 before IPv4
        if not want[family] or have[family]:
            continue
        for pool in pools:
            if not isinstance(pool, Mapping):
                continue
            try:
                s = ipaddress.ip_address(str(pool.get("ipRangeStart", "")))
                e = ipaddress.ip_address(str(pool.get("ipRangeEnd", "")))
            except ValueError:
                continue
            if s.version != family or e.version != family:
                continue
            if family == 4:
                if int(e) < int(s) or int(s) == 0:
                    continue
                picked: IPAddr | None = _pick_v4(int(s), int(e), address, routes, taken_set)
            else:
                picked = _pick_v6(int(s), int(e), address, routes, taken_set, randbits)
            if picked is not None:
                assigned.append(str(picked))
                taken_set.add(picked)
                break
    return assigned
