"""`ztnode cli`: zerotier-cli for a running `ztnode run` (or zerotier-one) node.

Owns the command-line client of the local JSON API: finding the node (the port
in ``zerotier-one.port`` and the token in ``authtoken.secret`` of its home
directory, or ``-p`` / ``-T``), the HTTP calls, and zerotier-cli's output
formats: ``200 info <address> <version> ONLINE``, ``200 listpeers ...``, the
``peers`` table, ``200 listnetworks ...``, ``200 join OK``, ``200 leave OK``;
``-j`` prints the API's JSON instead, as zerotier-cli does. A failed request
prints ``<status> <command> <body>`` and exits 1, again as zerotier-cli.
A command starting with ``/`` GETs that API path and prints the answer.

`ApiSettings`, `ApiClient` and `api_options` are shared with `ztnode controller`.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "ApiClient",
    "ApiResponse",
    "ApiSettings",
    "ConnectError",
    "RequestError",
    "api_options",
    "cli",
    "default_home",
    "dump_json",
]

HOME_ENV = "ZTCORE_HOME"
DEFAULT_HOME = "~/.ztcore"
PORT_FILE = "zerotier-one.port"
AUTHTOKEN_FILE = "authtoken.secret"
DEFAULT_TIMEOUT = 30.0
# Settings `set` may change (zerotier-one's per-network local settings).
NETWORK_SETTINGS = ("allowManaged", "allowGlobal", "allowDefault", "allowDNS")
_HEX = frozenset("0123456789abcdefABCDEF")

F = TypeVar("F", bound=Callable[..., Any])


def default_home() -> Path:
    """``$ZTCORE_HOME``, else ``~/.ztcore``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def dump_json(obj: Any) -> str:
    """JSON as zerotier-cli prints it (nlohmann's dump(1): one-space indent)."""
    return json.dumps(obj, indent=1, ensure_ascii=False)


class ConnectError(click.ClickException):
    """The node could not be reached (not running, wrong port); exit status 1."""

    exit_code = 1


@dataclass
class ApiResponse:
    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; `RequestError` if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise RequestError(self, "invalid JSON response") from None

    @property
    def error_message(self) -> str:
        """The API's ``error`` text if the body carries one, else the raw body."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return self.body.strip()
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return data["error"]
        return self.body.strip()


class RequestError(click.ClickException):
    """A request the node refused (4xx/5xx) or answered with something unusable; exit status 1."""

    exit_code = 1

    def __init__(self, response: ApiResponse, message: str | None = None) -> None:
        self.response = response
        super().__init__(f"{response.status}: {message or response.error_message or 'no details'}")


class ApiClient:
    """Blocking HTTP client of the local JSON API (one connection per request)."""

    def __init__(self, host: str, port: int, token: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> ApiResponse:
        """Send one request; raises `ConnectError` if the node cannot be reached."""
        headers = {"X-ZT1-Auth": self.token, "Accept": "application/json"}
        payload: bytes | None = None
        if body is not None or method in ("POST", "PUT"):
            payload = json.dumps({} if body is None else body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return ApiResponse(resp.status, data.decode("utf-8", "replace"))
        except (OSError, http.client.HTTPException) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
            raise ConnectError(
                f"cannot connect to the node's API at {self.host} port {self.port}: {reason}\n\n"
                "Please check that the node is running (ztnode run --home HOME) and that "
                f"TCP port {self.port} can be contacted via {self.host}."
            ) from None
        finally:
            conn.close()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """`request`, then the JSON answer; raises `RequestError` for non-2xx answers."""
        resp = self.request(method, path, body)
        if not resp.ok:
            raise RequestError(resp)
        return resp.json()

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, {} if body is None else body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


@dataclass
class ApiSettings:
    """Where the node's API is and how to authenticate, as given on the command line."""

    home: Path
    host: str = "127.0.0.1"
    port: int | None = None
    token: str | None = None
    json: bool = False
    timeout: float = DEFAULT_TIMEOUT

    def resolve_port(self) -> int:
        if self.port is not None:
            return self.port
        path = self.home / PORT_FILE
        try:
            text = path.read_text("ascii", errors="replace").strip()
        except FileNotFoundError:
            raise ConnectError(
                f"missing port and {PORT_FILE} not found in {self.home}: is a node running with "
                f"this home directory (ztnode run --home {self.home})? Or give -p PORT."
            ) from None
        except OSError as e:
            raise ConnectError(f"{path}: cannot read ({e.strerror})") from None
        try:
            port = int(text)
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise ConnectError(f"{path}: not a port number ({text[:20]!r})")
        return port

    def resolve_token(self) -> str:
        if self.token:
            return self.token
        path = self.home / AUTHTOKEN_FILE
        try:
            token = path.read_text("utf-8", errors="replace").strip()
        except FileNotFoundError:
            token = ""
        except OSError as e:
            raise ConnectError(
                f"missing authentication token and {path} is not readable ({e.strerror}); give -T TOKEN."
            ) from None
        if not token:
            raise ConnectError(
                f"missing authentication token and {AUTHTOKEN_FILE} not found in {self.home}; give -T TOKEN."
            )
        return token

    def client(self) -> ApiClient:
        return ApiClient(self.host, self.resolve_port(), self.resolve_token(), self.timeout)


def api_options(f: F) -> F:
    """The connection options shared by `ztnode cli` and `ztnode controller` (for their groups)."""
    decorators = [
        click.option(
            "--home",
            "-D",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help=f"The node's home directory (port and token are read from it). "
            f"Default: ${HOME_ENV} or {DEFAULT_HOME}.",
        ),
        click.option(
            "-p", "--port", type=click.IntRange(1, 65535), default=None, help="API port (default: from HOME)."
        ),
        click.option("-T", "--token", default=None, help="API auth token (default: from HOME)."),
        click.option(
            "-H", "--host", default="127.0.0.1", show_default=True, help="Address the API listens on."
        ),
        click.option("-j", "--json", "json_output", is_flag=True, help="Print the API's raw JSON."),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 3600),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="Seconds to wait for the node.",
        ),
    ]
    for d in reversed(decorators):
        f = d(f)
    return f


def make_settings(
    home: Path | None, port: int | None, token: str | None, host: str, json_output: bool, timeout: float
) -> ApiSettings:
    return ApiSettings(
        home=home.expanduser() if home is not None else default_home(),
        host=host,
        port=port,
        token=token,
        json=json_output,
        timeout=timeout,
    )


def json_flag(f: F) -> F:
    """``-j`` after the sub-command as well as before it."""
    return click.option("-j", "--json", "json_output", is_flag=True, help="Print the API's raw JSON.")(f)


def settings_of(ctx: click.Context, json_output: bool = False) -> ApiSettings:
    s = ctx.find_object(ApiSettings)
    assert s is not None, "api_options group did not run"
    if json_output:
        s.json = True
    return s


def nwid_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Click callback: a 16-hex-digit network ID, lowercased; usage error (exit 2) otherwise."""
    if len(value) != 16 or not _HEX.issuperset(value):
        raise click.BadParameter(f"invalid network id {value[:40]!r} (want 16 hex digits)")
    return value.lower()


def _echo(text: str) -> None:
    click.echo(text)


def _fail(resp: ApiResponse, command: str) -> None:
    """zerotier-cli's failure line on stdout, a hint on stderr, exit 1."""
    _echo(f"{resp.status} {command} {resp.body.strip()}")
    if resp.status == 401:
        click.echo("(the auth token was refused: see authtoken.secret in the node's home, or -T)", err=True)
    sys.exit(1)


def _get_json(s: ApiSettings, command: str, path: str) -> Any:
    resp = s.client().request("GET", path)
    if not resp.ok:
        _fail(resp, command)
    try:
        return json.loads(resp.body)
    except ValueError as e:
        _echo(f"{resp.status} {command} invalid JSON response ({e})")
        sys.exit(1)


def _version_of(p: dict[str, Any]) -> str:
    try:
        vmaj, vmin, vrev = int(p["versionMajor"]), int(p["versionMinor"]), int(p["versionRev"])
    except (KeyError, TypeError, ValueError):
        return "-"
    return f"{vmaj}.{vmin}.{vrev}" if vmaj >= 0 else "-"


def _json_str(v: Any, default: str = "-") -> str:
    """A JSON value as zerotier-cli's jsonString shows it: strings, numbers, booleans; else `default`."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    return default


def _json_int(v: Any, default: int = 0) -> int:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


def _preferred_path(p: dict[str, Any]) -> dict[str, Any] | None:
    paths = p.get("paths")
    if isinstance(paths, list):
        for path in paths:
            if isinstance(path, dict) and path.get("preferred"):
                return path
    return None


def _age(now: int, t: Any) -> int:
    """ms since `t`, or -1 for a path that never sent/received (t == 0), as zerotier-cli shows."""
    t = _json_int(t)
    return now - t if t else -1


class _ClientGroup(click.Group):
    """zerotier-cli also takes an API path (``/status``) as its command: GET it and print the answer."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name.startswith("/"):
            return _raw_get_command(cmd_name)
        return cmd

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0].startswith("/"):
            return args[0], _raw_get_command(args[0]), args[1:]
        return super().resolve_command(ctx, args)


def _raw_get_command(path: str) -> click.Command:
    @click.command(path)
    @click.pass_context
    def raw(ctx: click.Context) -> None:
        s = settings_of(ctx)
        resp = s.client().request("GET", path)
        if not resp.ok:
            _fail(resp, path)
        click.echo(resp.body, nl=not resp.body.endswith("\n"))

    return raw


@click.group("cli", cls=_ClientGroup)
@api_options
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path | None,
    port: int | None,
    token: str | None,
    host: str,
    json_output: bool,
    timeout: float,
) -> None:
    """zerotier-cli for a running node: query it, join and leave networks.

    The node is found through its home directory (zerotier-one.port and
    authtoken.secret), or -p/-T. Output is zerotier-cli's; -j prints JSON.
    A command starting with / GETs that API path (e.g. `ztnode cli /status`).
    """
    ctx.obj = make_settings(home, port, token, host, json_output, timeout)


@cli.command("info")
@json_flag
@click.pass_context
def info(ctx: click.Context, json_output: bool) -> None:
    """Show the node's address, version and whether it is online."""
    s = settings_of(ctx, json_output)
    j = _get_json(s, "info", "/status")
    if s.json:
        _echo(dump_json(j))
    elif isinstance(j, dict):
        state = "TUNNELED" if j.get("tcpFallbackActive") else "ONLINE" if j.get("online") else "OFFLINE"
        _echo(f"200 info {_json_str(j.get('address'))} {_json_str(j.get('version'))} {state}")


cli.add_command(click.Command("status", callback=info.callback, params=info.params, help="Same as info."))


@cli.command("listpeers")
@json_flag
@click.pass_context
def listpeers(ctx: click.Context, json_output: bool) -> None:
    """List peers: address, best path, latency, version, role."""
    s = settings_of(ctx, json_output)
    j = _get_json(s, "listpeers", "/peer")
    if s.json:
        _echo(dump_json(j))
        return
    _echo("200 listpeers <ztaddr> <path> <latency> <version> <role>")
    now = int(time.time() * 1000)
    for p in j if isinstance(j, list) else []:
        if not isinstance(p, dict):
            continue
        best = _preferred_path(p)
        path = (
            f"{_json_str(best.get('address'))};{_age(now, best.get('lastSend'))};"
            f"{_age(now, best.get('lastReceive'))}"
            if best is not None
            else "-"
        )
        _echo(
            f"200 listpeers {_json_str(p.get('address'))} {path} {_json_int(p.get('latency'))} "
            f"{_version_of(p)} {_json_str(p.get('role'))}"
        )


@cli.command("peers")
@json_flag
@click.pass_context
def peers(ctx: click.Context, json_output: bool) -> None:
    """List peers as a table (zerotier-cli peers)."""
    s = settings_of(ctx, json_output)
    j = _get_json(s, "peers", "/peer")
    if s.json:
        _echo(dump_json(j))
        return
    _echo("200 peers\n<ztaddr>   <ver>  <role> <lat> <link>   <lastTX> <lastRX> <path>")
    now = int(time.time() * 1000)
    for p in j if isinstance(j, list) else []:
        if not isinstance(p, dict):
            continue
        best = _preferred_path(p)
        if best is None:
            link = "RELAY"
        else:
            tx, rx = _age(now, best.get("lastSend")), _age(now, best.get("lastReceive"))
            link = f"DIRECT   {tx:<8d} {rx:<8d} {_json_str(best.get('address'))}"
        _echo(
            f"{_json_str(p.get('address'))} {_version_of(p):<6s} {_json_str(p.get('role')):<6s} "
            f"{_json_int(p.get('latency')):5d} {link}"
        )


@cli.command("listnetworks")
@json_flag
@click.pass_context
def listnetworks(ctx: click.Context, json_output: bool) -> None:
    """List joined networks: id, name, MAC, status, type, device, assigned IPs."""
    s = settings_of(ctx, json_output)
    j = _get_json(s, "listnetworks", "/network")
    if s.json:
        _echo(dump_json(j))
        return
    _echo("200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>")
    for n in j if isinstance(j, list) else []:
        if not isinstance(n, dict):
            continue
        addrs = n.get("assignedAddresses")
        ips = ",".join(a for a in addrs if isinstance(a, str)) if isinstance(addrs, list) else ""
        # Exactly zerotier-cli: a missing field shows as "-", an empty name as nothing.
        fields = [_json_str(n.get(k)) for k in ("nwid", "name", "mac", "status", "type", "portDeviceName")]
        _echo(f"200 listnetworks {' '.join(fields)} {ips or '-'}")


@cli.command("join")
@click.argument("nwid", callback=nwid_arg)
@json_flag
@click.pass_context
def join(ctx: click.Context, nwid: str, json_output: bool) -> None:
    """Join network NWID (16 hex digits)."""
    s = settings_of(ctx, json_output)
    resp = s.client().request("POST", f"/network/{nwid}", {})
    if not resp.ok:
        _fail(resp, "join")
    _echo(resp.body.rstrip("\n") if s.json else "200 join OK")


@cli.command("leave")
@click.argument("nwid", callback=nwid_arg)
@json_flag
@click.pass_context
def leave(ctx: click.Context, nwid: str, json_output: bool) -> None:
    """Leave network NWID."""
    s = settings_of(ctx, json_output)
    resp = s.client().request("DELETE", f"/network/{nwid}")
    if not resp.ok:
        _fail(resp, "leave")
    _echo(resp.body.rstrip("\n") if s.json else "200 leave OK")


@cli.command("set")
@click.argument("nwid", callback=nwid_arg)
@click.argument("setting", metavar="SETTING=VALUE")
@click.pass_context
def set_(ctx: click.Context, nwid: str, setting: str) -> None:
    """Set a local network setting: allowManaged, allowGlobal, allowDefault or allowDNS (=1/0, true/false)."""
    s = settings_of(ctx)
    name, eq, value = setting.partition("=")
    if not eq or name not in NETWORK_SETTINGS:
        raise click.BadParameter(
            f"{setting!r}: want NAME=VALUE with NAME one of {', '.join(NETWORK_SETTINGS)}",
            param_hint="SETTING=VALUE",
        )
    # zerotier-cli: "t..." or "1" means true, anything else false.
    enabled = value[:1] in ("t", "1")
    resp = s.client().request("POST", f"/network/{nwid}", {name: enabled})
    if not resp.ok:
        _fail(resp, "set")
    _echo(resp.body.rstrip("\n"))


@cli.command("get")
@click.argument("nwid", callback=nwid_arg)
@click.argument("setting")
@click.pass_context
def get(ctx: click.Context, nwid: str, setting: str) -> None:
    """Print one property of a joined network (a listnetworks -j key, or ip, ip4, ip6, ip6plane, ip6prefix)."""
    s = settings_of(ctx)
    j = _get_json(s, "get", "/network")
    for n in j if isinstance(j, list) else []:
        if not isinstance(n, dict) or str(n.get("id", n.get("nwid", ""))).lower() != nwid:
            continue
        if setting not in ("ip", "ip4", "ip6", "ip6plane", "ip6prefix"):
            v = _json_str(n.get(setting), "")
            if not v:
                click.echo("error, unknown property name", err=True)
                sys.exit(1)
            _echo(v)
            return
        addrs = [a for a in n.get("assignedAddresses") or [] if isinstance(a, str)]
        out = []
        for a in addrs:
            ip = a.split("/", 1)[0]
            if setting == "ip4" and "." not in ip or setting.startswith("ip6") and ":" not in ip:
                continue
            if setting in ("ip6plane", "ip6prefix"):
                if not ip.startswith("fc"):  # 6PLANE addresses live in fc00::/8
                    continue
                if setting == "ip6prefix":
                    ip = ip[:24]
            out.append(ip)
        _echo("\n".join(out))
        return
    click.echo("unknown network ID, check that you are a member of the network", err=True)
    sys.exit(1)
