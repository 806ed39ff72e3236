"""`ztnode controller`: manage the networks of a running node's embedded controller.

Owns the command-line front of the controller half of the local JSON API
(``/controller/...``), for people who would otherwise use curl: creating,
updating, listing, showing and deleting networks, and listing, showing,
authorizing, deauthorizing, updating and deleting members, and setting a
network's rules from a rule script (``--rules-file``). Output is rich
tables by default and the API's JSON with ``-j``. The node is found as
`ztnode cli` finds it (``--home`` / ``-p`` / ``-T``).

Conveniences beyond the raw API, all on the client side: a pool may be given as
a CIDR (``10.1.0.0/24`` = its usable hosts) and then also becomes a route when
a network is created without ``--route``; giving IPv4 (IPv6) pools turns on
v4 (v6) auto-assignment unless ``--no-v4-auto`` (``--no-v6-auto``) says not to.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import click

from ztcore.cli.client import (
    ApiClient,
    ApiSettings,
    api_options,
    dump_json,
    json_flag,
    make_settings,
    nwid_arg,
    settings_of,
)

__all__ = ["controller", "parse_pool", "parse_route", "parse_tag"]

F = TypeVar("F", bound=Callable[..., Any])
NEW_NETWORK_SUFFIX = "______"
_HEX = frozenset("0123456789abcdefABCDEF")


# ------------------------------------------------------------------------------------------
# Parsing of option values


def parse_pool(text: str) -> tuple[dict[str, str], str | None]:
    """``START-END`` or a CIDR -> (an ipAssignmentPools entry, the CIDR or None)."""
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if net.version == 4 and net.prefixlen < 31:
                # Leave out the network and broadcast addresses.
                start, end = net.network_address + 1, net.broadcast_address - 1
            else:
                start, end = net.network_address, net.broadcast_address
            return {"ipRangeStart": str(start), "ipRangeEnd": str(end)}, str(net)
        first, sep, last = text.partition("-")
        if not sep:
            raise ValueError("want START-END or a CIDR")
        s, e = ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="--pool") from None
    if s.version != e.version:
        raise click.BadParameter(
            f"{text!r}: start and end of different address families", param_hint="--pool"
        )
    if int(e) < int(s):
        raise click.BadParameter(f"{text!r}: end is below start", param_hint="--pool")
    return {"ipRangeStart": str(s), "ipRangeEnd": str(e)}, None


def parse_route(text: str) -> dict[str, Any]:
    """``CIDR`` or ``CIDR@VIA`` -> a routes entry ``{"target", "via"}``."""
    target, _, via = text.partition("@")
    try:
        net = ipaddress.ip_network(target.strip(), strict=False)
        gw = ipaddress.ip_address(via.strip()) if via.strip() else None
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="--route") from None
    if gw is not None and gw.version != net.version:
        raise click.BadParameter(f"{text!r}: gateway of another address family", param_hint="--route")
    return {"target": str(net), "via": str(gw) if gw is not None else None}


def parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is JSON if it parses as JSON, else a string."""
    out: dict[str, Any] = {}
    for item in values:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r}: want KEY=VALUE", param_hint="--set")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def parse_tag(text: str) -> list[Any]:
    """``TAG=VALUE`` -> a member tags entry; names stay names (the controller resolves
    them through the network's rulesSource), numbers become numbers."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise click.BadParameter(
            f"{text!r}: expected TAG=VALUE, e.g. department=engineering", param_hint="--tag"
        )
    return [int(x) if x.isdigit() else x for x in (key.strip(), value.strip())]


def address_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if len(value) != 10 or not _HEX.issuperset(value):
        raise click.BadParameter(f"invalid ZeroTier address {value[:40]!r} (want 10 hex digits)")
    return value.lower()


# ------------------------------------------------------------------------------------------
# Output


def _console() -> Any:
    from rich.console import Console

    # Not a terminal (pipes, tests): wide enough that ids are never wrapped.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, dict)):
        return json.dumps(v) if v else "-"
    return str(v)


def _time(ms: Any) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool) or ms <= 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pools_text(nw: dict[str, Any]) -> str:
    pools = nw.get("ipAssignmentPools") or []
    return (
        ", ".join(f"{p.get('ipRangeStart')}-{p.get('ipRangeEnd')}" for p in pools if isinstance(p, dict))
        or "-"
    )


def _routes_text(nw: dict[str, Any]) -> str:
    routes = nw.get("routes") or []
    return (
        ", ".join(
            f"{r.get('target')}" + (f" via {r['via']}" if r.get("via") else "")
            for r in routes
            if isinstance(r, dict)
        )
        or "-"
    )


def _modes_text(modes: Any) -> str:
    if not isinstance(modes, dict):
        return "-"
    on = [k for k, v in modes.items() if v is True]
    return ", ".join(on) if on else "off"


def _kv_table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for k, v in rows:
        table.add_row(k, v)
    _console().print(table)


def _source_text(source: Any) -> str:
    if not isinstance(source, str) or not source.strip():
        return "-"
    return f"{len(source.splitlines())} lines (ztnode rules show NWID)"


def _show_network(nw: dict[str, Any]) -> None:
    dns = nw.get("dns")
    dns_text = (
        f"{dns.get('domain') or '-'} ({', '.join(dns.get('servers') or []) or 'no servers'})"
        if isinstance(dns, dict)
        else "-"
    )
    rows = [
        ("id", _fmt(nw.get("id"))),
        ("name", _fmt(nw.get("name")) if nw.get("name") else "-"),
        ("access", "private" if nw.get("private", True) else "public"),
        ("mtu", _fmt(nw.get("mtu"))),
        ("broadcast", _fmt(nw.get("enableBroadcast"))),
        ("multicast limit", _fmt(nw.get("multicastLimit"))),
        ("IPv4 auto-assign", _modes_text(nw.get("v4AssignMode"))),
        ("IPv6 auto-assign", _modes_text(nw.get("v6AssignMode"))),
        ("pools", _pools_text(nw)),
        ("routes", _routes_text(nw)),
        ("dns", dns_text),
        ("rules", str(len(nw.get("rules") or []))),
        ("rules source", _source_text(nw.get("rulesSource"))),
        ("revision", _fmt(nw.get("revision"))),
        ("created", _time(nw.get("creationTime"))),
    ]
    _kv_table(f"network {nw.get('id')}", rows)


def _version(m: dict[str, Any]) -> str:
    v = (m.get("vMajor"), m.get("vMinor"), m.get("vRev"))
    if not all(isinstance(x, int) for x in v) or v[0] < 0:  # type: ignore[operator]
        return "-"
    return f"{v[0]}.{v[1]}.{v[2]}"


def _show_member(m: dict[str, Any]) -> None:
    rows = [
        ("address", _fmt(m.get("address", m.get("id")))),
        ("network", _fmt(m.get("nwid"))),
        ("name", _fmt(m.get("name")) if m.get("name") else "-"),
        ("authorized", _fmt(m.get("authorized"))),
        ("IPs", ", ".join(m.get("ipAssignments") or []) or "-"),
        ("no auto-assign", _fmt(m.get("noAutoAssignIps"))),
        ("bridge", _fmt(m.get("activeBridge"))),
        ("version", _version(m)),
        ("tags", _fmt(m.get("tags"))),
        ("capabilities", _fmt(m.get("capabilities"))),
        ("last authorized", _time(m.get("lastAuthorizedTime"))),
        ("last deauthorized", _time(m.get("lastDeauthorizedTime"))),
        ("revision", _fmt(m.get("revision"))),
        ("created", _time(m.get("creationTime"))),
    ]
    _kv_table(f"member {m.get('address', m.get('id'))} of {m.get('nwid')}", rows)


def _emit(s: ApiSettings, obj: Any, show: Callable[[Any], None]) -> None:
    if s.json:
        click.echo(dump_json(obj))
    else:
        show(obj)


# ------------------------------------------------------------------------------------------
# Groups


@click.group("controller")
@api_options
@click.pass_context
def controller(
    ctx: click.Context,
    home: Path | None,
    port: int | None,
    token: str | None,
    host: str,
    json_output: bool,
    timeout: float,
) -> None:
    """Manage the networks and members of a running node's controller.

    Every `ztnode run` node is the controller for networks whose id starts with
    its address. The node is found through --home (or -p/-T), as for `ztnode cli`.
    """
    ctx.obj = make_settings(home, port, token, host, json_output, timeout)


def _client(ctx: click.Context, json_output: bool) -> tuple[ApiSettings, ApiClient]:
    s = settings_of(ctx, json_output)
    return s, s.client()


@controller.command("info")
@json_flag
@click.pass_context
def info(ctx: click.Context, json_output: bool) -> None:
    """Is the controller up; its address and API version."""
    s, c = _client(ctx, json_output)
    status = c.get("/status")
    ctl = c.get("/controller")
    out = {**ctl, "address": status.get("address")} if isinstance(status, dict) else ctl
    _emit(
        s,
        out,
        lambda o: _kv_table(
            "controller",
            [
                ("address", _fmt(o.get("address"))),
                ("apiVersion", _fmt(o.get("apiVersion"))),
                ("databaseReady", _fmt(o.get("databaseReady"))),
                ("new network ids", f"{o.get('address')}xxxxxx"),
            ],
        ),
    )


@controller.group("network")
def network() -> None:
    """Create, change, list, show and delete networks."""


@controller.group("member")
def member() -> None:
    """List, show, authorize, deauthorize, update and delete members."""


# ------------------------------------------------------------------------------------------
# network ...


def _network_options(f: F) -> F:
    opts = [
        click.option("--name", default=None, help="Network name."),
        click.option(
            "--private/--public",
            "private",
            default=None,
            help="Private: members need authorization (the default for new networks).",
        ),
        click.option(
            "--pool",
            "pools",
            multiple=True,
            metavar="START-END|CIDR",
            help="IP assignment pool (repeatable; replaces the pools when updating).",
        ),
        click.option(
            "--route",
            "routes",
            multiple=True,
            metavar="CIDR[@VIA]",
            help="Managed route (repeatable; replaces the routes when updating).",
        ),
        click.option(
            "--v4-auto/--no-v4-auto",
            "v4_auto",
            default=None,
            help="Auto-assign IPv4 addresses from the pools (default: on when IPv4 pools are given).",
        ),
        click.option(
            "--v6-auto/--no-v6-auto",
            "v6_auto",
            default=None,
            help="Auto-assign IPv6 addresses from the pools (default: on when IPv6 pools are given).",
        ),
        click.option("--6plane/--no-6plane", "sixplane", default=None, help="Give members 6PLANE addresses."),
        click.option(
            "--rfc4193/--no-rfc4193", "rfc4193", default=None, help="Give members RFC4193 addresses."
        ),
        click.option("--mtu", type=click.IntRange(1280, 10000), default=None, help="MTU (1280..10000)."),
        click.option("--broadcast/--no-broadcast", "broadcast", default=None, help="Ethernet broadcast."),
        click.option("--multicast-limit", type=click.IntRange(0, 2**32 - 1), default=None),
        click.option("--dns-domain", default=None, help="DNS search domain pushed to members."),
        click.option(
            "--dns-server", "dns_servers", multiple=True, help="DNS server (repeatable, at most 4)."
        ),
        click.option(
            "--rules-file",
            metavar="FILE",
            default=None,
            help="Rule script (rules language, - for stdin) the controller compiles into the network's rules.",
        ),
        click.option(
            "--set",
            "extra",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any other API field; VALUE is JSON if it parses (e.g. --set 'rules=[...]').",
        ),
    ]
    for d in reversed(opts):
        f = d(f)
    return f


def _network_body(opts: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if opts["name"] is not None:
        body["name"] = opts["name"]
    if opts["private"] is not None:
        body["private"] = opts["private"]
    pool_cidrs: list[str] = []
    if opts["pools"]:
        pools = []
        for text in opts["pools"]:
            pool, cidr = parse_pool(text)
            pools.append(pool)
            if cidr is not None:
                pool_cidrs.append(cidr)
        body["ipAssignmentPools"] = pools
    elif opts.get("clear_pools"):
        body["ipAssignmentPools"] = []
    if opts["routes"]:
        body["routes"] = [parse_route(r) for r in opts["routes"]]
    elif opts.get("clear_routes"):
        body["routes"] = []
    elif creating and pool_cidrs:
        body["routes"] = [{"target": c, "via": None} for c in pool_cidrs]
    families = {ipaddress.ip_address(p["ipRangeStart"]).version for p in body.get("ipAssignmentPools", [])}
    v4 = opts["v4_auto"] if opts["v4_auto"] is not None else (True if 4 in families else None)
    if v4 is not None:
        body["v4AssignMode"] = {"zt": v4}
    v6: dict[str, bool] = {}
    v6_auto = opts["v6_auto"] if opts["v6_auto"] is not None else (True if 6 in families else None)
    if v6_auto is not None:
        v6["zt"] = v6_auto
    if opts["sixplane"] is not None:
        v6["6plane"] = opts["sixplane"]
    if opts["rfc4193"] is not None:
        v6["rfc4193"] = opts["rfc4193"]
    if v6:
        body["v6AssignMode"] = v6
    if opts["mtu"] is not None:
        body["mtu"] = opts["mtu"]
    if opts["broadcast"] is not None:
        body["enableBroadcast"] = opts["broadcast"]
    if opts["multicast_limit"] is not None:
        body["multicastLimit"] = opts["multicast_limit"]
    if opts["dns_domain"] is not None or opts["dns_servers"]:
        if len(opts["dns_servers"]) > 4:
            raise click.BadParameter("at most 4 servers", param_hint="--dns-server")
        for srv in opts["dns_servers"]:
            try:
                ipaddress.ip_address(srv)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--dns-server") from None
        body["dns"] = {"domain": opts["dns_domain"] or "", "servers": list(opts["dns_servers"])}
    if opts.get("rules_file") is not None:
        body["rulesSource"] = _rules_source(opts["rules_file"])
    body.update(parse_set(opts["extra"]))
    return body


def _rules_source(path: str) -> str:
    """The script's text, checked here first so an error names the file (the controller
    compiles it again; like the controller, no include files are read)."""
    from ztcore.cli.rules_lang import compile_error, read_rules_file
    from ztcore.vl2.rules.compiler import RulesCompileError, compile_rules

    text = read_rules_file(path)
    if text.strip():
        try:
            compile_rules(text)
        except RulesCompileError as e:
            raise compile_error(path, e) from None
    return text


@network.command("create")
@_network_options
@json_flag
@click.pass_context
def network_create(ctx: click.Context, json_output: bool, **opts: Any) -> None:
    """Create a network under this controller (id: its address + 6 random hex digits).

    \b
    Example:
      ztnode controller network create --name lab --pool 10.147.17.0/24
    """
    body = _network_body(opts, creating=True)
    s, c = _client(ctx, json_output)
    status = c.get("/status")
    address = status.get("address") if isinstance(status, dict) else None
    if not isinstance(address, str) or len(address) != 10:
        raise click.ClickException("the node's /status has no address")
    nw = c.post(f"/controller/network/{address}{NEW_NETWORK_SUFFIX}", body)
    _emit(s, nw, _show_network)


@network.command("update")
@click.argument("nwid", callback=nwid_arg)
@_network_options
@click.option("--clear-pools", is_flag=True, help="Remove all IP assignment pools.")
@click.option("--clear-routes", is_flag=True, help="Remove all managed routes.")
@json_flag
@click.pass_context
def network_update(ctx: click.Context, nwid: str, json_output: bool, **opts: Any) -> None:
    """Change settings of network NWID; only the options given change (alias: set).

    \b
    Example:
      ztnode controller network set NWID --rules-file office.ztrules
    """
    body = _network_body(opts, creating=False)
    s, c = _client(ctx, json_output)
    # POST on an unknown id would create it: refuse here, updating is not creating.
    c.get(f"/controller/network/{nwid}")
    nw = c.post(f"/controller/network/{nwid}", body)
    _emit(s, nw, _show_network)


network.add_command(network_update, "set")


@network.command("list")
@json_flag
@click.pass_context
def network_list(ctx: click.Context, json_output: bool) -> None:
    """List this controller's networks with their member counts."""
    s, c = _client(ctx, json_output)
    data = c.get("/unstable/controller/network")
    networks = data.get("data", []) if isinstance(data, dict) else []

    def show(nets: list[dict[str, Any]]) -> None:
        from rich.table import Table

        table = Table(title=f"{len(nets)} network(s)", title_justify="left")
        for col in ("network", "name", "access", "members (auth/total)", "pools", "routes"):
            table.add_column(col, no_wrap=col in ("network", "access"))
        for nw in nets:
            meta = nw.get("meta") or {}
            table.add_row(
                str(nw.get("id")),
                str(nw.get("name") or "-"),
                "private" if nw.get("private", True) else "public",
                f"{meta.get('authorizedMemberCount', '?')}/{meta.get('totalMemberCount', '?')}",
                _pools_text(nw),
                _routes_text(nw),
            )
        _console().print(table)

    _emit(s, networks, show)


@network.command("show")
@click.argument("nwid", callback=nwid_arg)
@json_flag
@click.pass_context
def network_show(ctx: click.Context, nwid: str, json_output: bool) -> None:
    """Show network NWID."""
    s, c = _client(ctx, json_output)
    _emit(s, c.get(f"/controller/network/{nwid}"), _show_network)


@network.command("delete")
@click.argument("nwid", callback=nwid_arg)
@json_flag
@click.pass_context
def network_delete(ctx: click.Context, nwid: str, json_output: bool) -> None:
    """Delete network NWID and all its members."""
    s, c = _client(ctx, json_output)
    old = c.delete(f"/controller/network/{nwid}")
    _emit(s, old, lambda o: click.echo(f"deleted network {o.get('id', nwid)}"))


# ------------------------------------------------------------------------------------------
# member ...


@member.command("list")
@click.argument("nwid", callback=nwid_arg)
@json_flag
@click.pass_context
def member_list(ctx: click.Context, nwid: str, json_output: bool) -> None:
    """List the members of network NWID."""
    s, c = _client(ctx, json_output)
    data = c.get(f"/unstable/controller/network/{nwid}/member")
    members = data.get("data", []) if isinstance(data, dict) else []

    def show(ms: list[dict[str, Any]]) -> None:
        from rich.table import Table

        authorized = sum(1 for m in ms if m.get("authorized") is True)
        table = Table(title=f"network {nwid}: {authorized}/{len(ms)} authorized", title_justify="left")
        for col in ("member", "name", "authorized", "IPs", "version", "bridge"):
            table.add_column(col, no_wrap=col in ("member", "authorized"))
        for m in sorted(ms, key=lambda m: str(m.get("address", m.get("id")))):
            table.add_row(
                str(m.get("address", m.get("id"))),
                str(m.get("name") or "-"),
                _fmt(m.get("authorized")),
                ", ".join(m.get("ipAssignments") or []) or "-",
                _version(m),
                _fmt(m.get("activeBridge")),
            )
        _console().print(table)

    _emit(s, members, show)


@member.command("show")
@click.argument("nwid", callback=nwid_arg)
@click.argument("address", callback=address_arg)
@json_flag
@click.pass_context
def member_show(ctx: click.Context, nwid: str, address: str, json_output: bool) -> None:
    """Show member ADDRESS of network NWID."""
    s, c = _client(ctx, json_output)
    _emit(s, c.get(f"/controller/network/{nwid}/member/{address}"), _show_member)


def _member_post(
    ctx: click.Context, nwid: str, address: str, json_output: bool, body: dict[str, Any]
) -> None:
    s, c = _client(ctx, json_output)
    _emit(s, c.post(f"/controller/network/{nwid}/member/{address}", body), _show_member)


def _member_options(f: F) -> F:
    opts = [
        click.option("--name", default=None, help="Member name."),
        click.option(
            "--ip",
            "ips",
            multiple=True,
            metavar="IP",
            help="Assigned IP address (repeatable; replaces the member's addresses).",
        ),
        click.option("--bridge/--no-bridge", "bridge", default=None, help="Allow the member to bridge."),
        click.option(
            "--auto-assign/--no-auto-assign",
            "auto_assign",
            default=None,
            help="Let the controller assign addresses from the pools.",
        ),
        click.option(
            "--tag",
            "tags",
            multiple=True,
            metavar="TAG=VALUE",
            help="Tag by id or name, value by number or enum/flag name (repeatable; replaces the member's tags).",
        ),
        click.option(
            "--set", "extra", multiple=True, metavar="KEY=VALUE", help="Any other API field (JSON)."
        ),
    ]
    for d in reversed(opts):
        f = d(f)
    return f


def _member_body(opts: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if opts["name"] is not None:
        body["name"] = opts["name"]
    if opts["ips"]:
        for ip in opts["ips"]:
            try:
                ipaddress.ip_address(ip)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--ip") from None
        body["ipAssignments"] = list(opts["ips"])
    if opts["bridge"] is not None:
        body["activeBridge"] = opts["bridge"]
    if opts["auto_assign"] is not None:
        body["noAutoAssignIps"] = not opts["auto_assign"]
    if opts["tags"]:
        body["tags"] = [parse_tag(t) for t in opts["tags"]]
    body.update(parse_set(opts["extra"]))
    return body


@member.command("authorize")
@click.argument("nwid", callback=nwid_arg)
@click.argument("address", callback=address_arg)
@_member_options
@json_flag
@click.pass_context
def member_authorize(ctx: click.Context, nwid: str, address: str, json_output: bool, **opts: Any) -> None:
    """Authorize member ADDRESS on network NWID (it may not have asked yet)."""
    _member_post(ctx, nwid, address, json_output, {**_member_body(opts), "authorized": True})


@member.command("deauthorize")
@click.argument("nwid", callback=nwid_arg)
@click.argument("address", callback=address_arg)
@json_flag
@click.pass_context
def member_deauthorize(ctx: click.Context, nwid: str, address: str, json_output: bool) -> None:
    """Deauthorize member ADDRESS on network NWID."""
    _member_post(ctx, nwid, address, json_output, {"authorized": False})


@member.command("update")
@click.argument("nwid", callback=nwid_arg)
@click.argument("address", callback=address_arg)
@_member_options
@json_flag
@click.pass_context
def member_update(ctx: click.Context, nwid: str, address: str, json_output: bool, **opts: Any) -> None:
    """Change member ADDRESS of network NWID; only the options given change."""
    _member_post(ctx, nwid, address, json_output, _member_body(opts))


@member.command("delete")
@click.argument("nwid", callback=nwid_arg)
@click.argument("address", callback=address_arg)
@json_flag
@click.pass_context
def member_delete(ctx: click.Context, nwid: str, address: str, json_output: bool) -> None:
    """Delete member ADDRESS of network NWID (it comes back, unauthorized, if it asks again)."""
    s, c = _client(ctx, json_output)
    old = c.delete(f"/controller/network/{nwid}/member/{address}")
    _emit(s, old, lambda o: click.echo(f"deleted member {address} of network {nwid}"))
