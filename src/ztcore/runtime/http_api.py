"""The local HTTP JSON API, compatible with zerotier-one's control plane.

Owns the HTTP side of what ``zerotier-cli`` and controller UIs (ztncui, zero-ui,
ztnet, ...) talk to: a server bound to 127.0.0.1 and ::1 (`ztcore.runtime.http_server`), the
``X-ZT1-Auth`` / ``?auth=`` / ``Authorization: Bearer`` token check (401
without it), and these routes, with zerotier-one's JSON shapes:

* node: ``/status``, ``/peer``, ``/peer/{address}``, ``/network``,
  ``/network/{nwid}`` (GET, POST/PUT = join, DELETE = leave);
* controller: ``/controller``, ``/controller/network`` (GET list, POST create),
  ``/controller/network/{nwid}`` (GET, POST/PUT create-or-update, DELETE; an id of
  the controller's address followed by ``______`` creates with a free number),
  ``/controller/network/{nwid}/member`` (``{address: revision}``),
  ``/controller/network/{nwid}/member/{address}`` (GET, POST/PUT, DELETE), and the
  ``/unstable/controller/...`` listings with member counts;
* ``/unstable/capture`` (ztcore's own): a pcap stream of the node's UDP traffic or of
  a joined network's frames, for ``ztnode capture``.

Every answer is ``application/json``; bad requests (bad JSON, bad ids, unknown
network) get a 4xx with ``{"error": ..., "status": ...}``. The API depends on the
node only through `NodeApi` and on the controller through `ControllerBackend`;
`StoreControllerBackend` (`ztcore.runtime.controller_backend`, importable from here
but loaded on first use) implements the latter over `ztcore.controller.store`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import h11

from ztcore.controller.model import (
    API_VERSION,
    ApiError,
    format_address,
    now_ms,
    parse_address,
    parse_body,
    parse_nwid,
)
from ztcore.errors import ZTError, report_unexpected
from ztcore.runtime import pcap
from ztcore.runtime.http_server import (
    Handler,
    HttpError,
    HttpServer,
    Request,
    Response,
    ResponseStream,
    Router,
    json_response,
)

__all__ = [
    "ControllerBackend",
    "ControllerListener",  # noqa: F822
    "HttpApiServer",
    "ApiApp",
    "NodeApi",
    "StoreControllerBackend",  # noqa: F822 (loaded on first use, see __getattr__)
    "make_app",
]

log = logging.getLogger(__name__)

NEW_NETWORK_SUFFIX = "______"
# Per-network settings a POST /network/{nwid} body may carry (zerotier-one's NetworkSettings).
NETWORK_SETTINGS = ("allowManaged", "allowGlobal", "allowDefault", "allowDNS")
# Request bodies larger than this are refused (413); real ones are a few KiB.
MAX_BODY = 4 * 1024 * 1024


# ------------------------------------------------------------------------------------------------
# What the API needs from the node and from the controller


@runtime_checkable
class NodeApi(Protocol):
    """The node side of the API. Dicts are already in zerotier-one's JSON shapes.

    * `status`: ``address`` (10 hex), ``publicIdentity``, ``online``, ``version``,
      ``versionMajor/Minor/Rev``, ``clock``, ``config``, ``planetWorldId``, ...
    * `peers`: ``address``, ``latency``, ``version``, ``versionMajor/Minor/Rev``, ``role``
      (LEAF/MOON/PLANET), ``paths`` [``address`` "ip/port", ``active``, ``expired``,
      ``preferred``, ``lastSend``, ``lastReceive``, ...]
    * `networks` / `network` / `join`: ``id``, ``nwid``, ``mac``, ``name``, ``status``,
      ``type``, ``mtu``, ``assignedAddresses``, ``routes``, ``portDeviceName``,
      ``allowManaged``, ... as ``zerotier-cli listnetworks -j`` shows them.
    """

    def status(self) -> dict[str, Any]: ...

    def peers(self) -> list[dict[str, Any]]: ...

    def networks(self) -> list[dict[str, Any]]: ...

    def network(self, nwid: int) -> dict[str, Any] | None: ...

    def join(self, nwid: int) -> dict[str, Any]:
        """Join (or keep) the network; returns its network object."""
        ...

    def leave(self, nwid: int) -> bool:
        """Leave the network; False if it was not joined."""
        ...


class NetworkSettingsApi(Protocol):
    """Optional extra a node may offer: per-network local settings (allowManaged, ...)."""

    def set_network_settings(self, nwid: int, settings: Mapping[str, bool]) -> None: ...


class ControllerBackend(Protocol):
    """The controller side of the API: the store and the model's update rules.

    Ids are lowercase hex strings (16 digits for networks, 10 for members), already
    validated by the HTTP layer. Methods raise `ApiError` for requests to refuse.
    """

    @property
    def controller_address(self) -> str:
        """This controller's ZeroTier address (10 hex digits)."""
        ...

    def ready(self) -> bool: ...

    def list_networks(self) -> list[str]: ...

    def get_network(self, nwid: str) -> dict[str, Any] | None: ...

    def member_counts(self, nwid: str) -> tuple[int, int]:
        """(total, authorized) members of the network."""
        ...

    def create_network(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a network under a free random network number of this controller."""
        ...

    def post_network(self, nwid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update (partial merge) a network."""
        ...

    def delete_network(self, nwid: str) -> dict[str, Any] | None: ...

    def list_members(self, nwid: str) -> list[dict[str, Any]] | None:
        """Member records, or None if the network does not exist."""
        ...

    def member_revisions(self, nwid: str) -> dict[str, int] | None:
        """``{address: revision}``, or None if the network does not exist."""
        ...

    def get_member(self, nwid: str, address: str) -> dict[str, Any] | None: ...

    def post_member(self, nwid: str, address: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update (partial merge) a member; ApiError 404 if the network does not exist."""
        ...

    def delete_member(self, nwid: str, address: str) -> dict[str, Any] | None: ...

    def on_network_changed(
        self, nwid: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None: ...

    def on_member_changed(
        self, nwid: str, address: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None: ...


# ------------------------------------------------------------------------------------------------
# HTTP plumbing


def _json(obj: Any, status: int = 200) -> Response:
    return json_response(obj, status)


def _error(status: int, message: str) -> Response:
    return _json({"error": message, "status": status}, status)


def _token_ok(request: Request, token: str) -> bool:
    def same(presented: str) -> bool:
        return hmac.compare_digest(presented.strip().encode(), token.encode())

    # Same precedence as zerotier-one: the header if present, else ?auth=, else a bearer token.
    if "x-zt1-auth" in request.headers:
        return same(request.headers["x-zt1-auth"])
    if "auth" in request.query:
        return same(request.query["auth"])
    authz = request.headers.get("authorization", "")
    if authz[:7].lower() == "bearer ":
        return same(authz[7:])
    return False


class ApiApp:
    """The API without sockets: the routing table, the node and controller behind it,
    and the token. `dispatch` answers one request (see `HttpApiServer` for the sockets)."""

    def __init__(self, node: NodeApi | None, controller: ControllerBackend | None, auth_token: str) -> None:
        if not auth_token:
            raise ValueError("an auth token is required")
        self.node = node
        self.controller = controller
        self.token = auth_token
        self.router = Router()

    async def dispatch(self, request: Request) -> Response | ResponseStream:
        """Token check, routing, then turn every failure into a JSON error answer."""
        request.app = self
        if not _token_ok(request, self.token):
            return _error(401, "missing or wrong auth token (X-ZT1-Auth header or ?auth=)")
        try:
            handler, request.match_info = self.router.resolve(request.method, request.path)
            return await handler(request)
        except HttpError as e:
            resp = _error(e.status, e.message)
            resp.headers.update(e.headers)
            return resp
        except ApiError as e:
            return _error(e.status, e.message)
        except ZTError as e:
            # Every error of ours raised on purpose is about the request (a bad id, a state the
            # request does not fit): the client gets a 400 that says why, never a 500.
            log.info("HTTP API refused %s %s: %s", request.method, request.path, e)
            return _error(400, str(e) or type(e).__name__)
        except (ConnectionError, asyncio.TimeoutError, h11.ProtocolError):
            raise  # the connection's problem, not the request's: the server hangs up
        except Exception as e:
            # A bug, not bad input: still answer in JSON and keep serving.
            report_unexpected(log, f"HTTP API: {request.method} {request.path}", e)
            return _error(500, f"internal error: {type(e).__name__}")


async def _body(request: Request) -> dict[str, Any]:
    return parse_body(await request.read(MAX_BODY))


def _node(request: Request) -> NodeApi:
    node = request.app.node
    if node is None:
        raise ApiError(404, "no node behind this API")
    return node  # type: ignore[no-any-return]


def _controller(request: Request) -> ControllerBackend:
    ctl = request.app.controller
    if ctl is None:
        raise ApiError(404, "this node runs no network controller")
    return ctl  # type: ignore[no-any-return]


def _nwid_param(request: Request) -> str:
    return f"{parse_nwid(request.match_info['nwid']):016x}"


def _address_param(request: Request) -> str:
    return format_address(parse_address(request.match_info["address"]))


# ---- node routes


async def _status(request: Request) -> Response:
    return _json(_node(request).status())


async def _peer_list(request: Request) -> Response:
    return _json(_node(request).peers())


async def _peer_get(request: Request) -> Response:
    address = _address_param(request)
    for p in _node(request).peers():
        if str(p.get("address", "")).lower() == address:
            return _json(p)
    raise ApiError(404, f"no peer {address}")


async def _network_list(request: Request) -> Response:
    return _json(_node(request).networks())


async def _network_get(request: Request) -> Response:
    nwid = _nwid_param(request)
    nw = _node(request).network(int(nwid, 16))
    if nw is None:
        raise ApiError(404, f"not a member of network {nwid}")
    return _json(nw)


async def _network_join(request: Request) -> Response:
    nwid = int(_nwid_param(request), 16)
    body = await _body(request)
    settings: dict[str, bool] = {}
    for k in NETWORK_SETTINGS:
        if k in body:
            if not isinstance(body[k], bool):
                raise ApiError(400, f"{k}: expected a boolean")
            settings[k] = body[k]
    if nwid == 0:
        raise ApiError(400, "network id 0000000000000000 is not a valid network")
    node = _node(request)
    result = node.join(nwid)
    if settings:
        setter = getattr(node, "set_network_settings", None)
        if setter is None:
            raise ApiError(501, "this node does not support per-network settings")
        setter(nwid, settings)
        result = node.network(nwid) or result
    return _json(result)


async def _network_leave(request: Request) -> Response:
    nwid = _nwid_param(request)
    if not _node(request).leave(int(nwid, 16)):
        raise ApiError(404, f"not a member of network {nwid}")
    return _json({"result": True})


# ---- controller routes


async def _controller_get(request: Request) -> Response:
    ready = _controller(request).ready()
    out = {"controller": True, "apiVersion": API_VERSION, "clock": now_ms(), "databaseReady": ready}
    return _json(out, 200 if ready else 503)


async def _ctl_network_list(request: Request) -> Response:
    return _json(_controller(request).list_networks())


async def _ctl_network_create(request: Request) -> Response:
    ctl = _controller(request)
    return _json(ctl.create_network(await _body(request)))


async def _ctl_network_get(request: Request) -> Response:
    nwid = _nwid_param(request)
    nw = _controller(request).get_network(nwid)
    if nw is None:
        raise ApiError(404, f"network {nwid} not found")
    return _json(nw)


async def _ctl_network_post(request: Request) -> Response:
    ctl = _controller(request)
    raw = request.match_info["nwid"]
    body = await _body(request)
    if raw.endswith(NEW_NETWORK_SUFFIX):
        prefix = raw[: -len(NEW_NETWORK_SUFFIX)]
        if prefix.lower() != ctl.controller_address:
            raise ApiError(
                400, f"{prefix[:20]!r} is not this controller's address ({ctl.controller_address})"
            )
        return _json(ctl.create_network(body))
    return _json(ctl.post_network(_nwid_param(request), body))


async def _ctl_network_delete(request: Request) -> Response:
    nwid = _nwid_param(request)
    old = _controller(request).delete_network(nwid)
    if old is None:
        raise ApiError(404, f"network {nwid} not found")
    return _json(old)


async def _ctl_member_list(request: Request) -> Response:
    nwid = _nwid_param(request)
    revs = _controller(request).member_revisions(nwid)
    if revs is None:
        raise ApiError(404, f"network {nwid} not found")
    return _json(revs)


async def _ctl_member_get(request: Request) -> Response:
    nwid, address = _nwid_param(request), _address_param(request)
    m = _controller(request).get_member(nwid, address)
    if m is None:
        raise ApiError(404, f"member {address} of network {nwid} not found")
    return _json(m)


async def _ctl_member_post(request: Request) -> Response:
    nwid, address = _nwid_param(request), _address_param(request)
    body = await _body(request)
    return _json(_controller(request).post_member(nwid, address, body))


async def _ctl_member_delete(request: Request) -> Response:
    nwid, address = _nwid_param(request), _address_param(request)
    old = _controller(request).delete_member(nwid, address)
    if old is None:
        raise ApiError(404, f"member {address} of network {nwid} not found")
    return _json(old)


async def _unstable_network_list(request: Request) -> Response:
    ctl = _controller(request)
    data = []
    for nwid in ctl.list_networks():
        nw = ctl.get_network(nwid)
        if nw is None:  # deleted meanwhile
            continue
        total, authorized = ctl.member_counts(nwid)
        data.append({**nw, "meta": {"totalMemberCount": total, "authorizedMemberCount": authorized}})
    return _json({"data": data, "meta": {"networkCount": len(data)}})


async def _unstable_member_list(request: Request) -> Response:
    nwid = _nwid_param(request)
    members = _controller(request).list_members(nwid)
    if members is None:
        raise ApiError(404, f"network {nwid} not found")
    authorized = sum(1 for m in members if m.get("authorized") is True)
    return _json({"data": members, "meta": {"totalCount": len(members), "authorizedCount": authorized}})


CAPTURE_QUEUE = 4096  # packets buffered for a slow capture client before drops


async def _capture(request: Request) -> ResponseStream:
    """GET /unstable/capture[?network=NWID][&count=N][&seconds=S]: a pcap stream of the
    node's UDP datagrams (raw IP) or of a joined network's frames (Ethernet)."""
    node = _node(request)
    subscribe = getattr(node, "capture", None)
    if subscribe is None:
        raise ApiError(501, "this node cannot capture")
    q = request.query
    try:
        nwid = parse_nwid(q["network"]) if "network" in q else None
        count = int(q.get("count", "0"))
        seconds = float(q.get("seconds", "0"))
    except ValueError:
        raise ApiError(400, "network must be 16 hex digits, count an integer, seconds a number") from None
    if count < 0 or not 0 <= seconds <= 86400:
        raise ApiError(400, "count and seconds must not be negative (seconds at most a day)")
    queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue(CAPTURE_QUEUE)
    dropped = 0

    def sink(packet: bytes, when: float) -> None:
        nonlocal dropped
        if queue.full():
            dropped += 1
        else:
            queue.put_nowait((packet, when))

    stop = subscribe(nwid, sink)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds if seconds else None
    written = 0
    try:
        resp = await request.stream(200, {"Content-Type": "application/vnd.tcpdump.pcap"})
        await resp.write(pcap.file_header(pcap.LINKTYPE_RAW if nwid is None else pcap.LINKTYPE_ETHERNET))
        while not count or written < count:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            if request.client_gone():
                break  # the client went away while the node was quiet
            try:
                # Wake up at least every second to notice a client that left.
                packet, when = await asyncio.wait_for(queue.get(), timeout=min(left or 1.0, 1.0))
            except asyncio.TimeoutError:
                continue
            await resp.write(pcap.record(packet, when))
            written += 1
        await resp.write_eof()
    except (ConnectionError, asyncio.TimeoutError):
        log.info("capture client went away after %d packets", written)
        raise
    finally:
        stop()
        if dropped:
            log.warning("capture: %d packets dropped (client too slow)", dropped)
    return resp


# ---- trace routes (ztcore's own: zerotier-one serves no traces over its API)
#
# GET /trace?after=SEQ&limit=N: the node's own recent trace events (its ring buffer),
#   a JSON array of events, each with its sequence number ``seq``; poll with the last
#   ``seq`` seen as ``after``.
# GET /controller/network/{nwid}/trace?node=ADDR&since=MS&until=MS&after=SEQ&limit=N:
#   the remote traces this controller collected for the network, as zerotier-one's
#   controller records them (``objtype: "trace"``, ``nodeId``, ``ts``, ...); header
#   ``X-ZT-Trace-Seq`` gives the sequence number to pass as ``after`` next time.

_TRACE_LIMIT_MAX = 10000


def _int_query(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw, 10)
    except ValueError:
        raise ApiError(400, f"{name}: expected a decimal integer") from None
    if v < 0:
        raise ApiError(400, f"{name}: must not be negative")
    return v


async def _trace_list(request: Request) -> Response:
    getter = getattr(_node(request), "traces", None)
    if getter is None:
        raise ApiError(501, "this node keeps no traces")
    after = _int_query(request, "after", 0) or 0
    limit = min(_int_query(request, "limit", 1000) or 0, _TRACE_LIMIT_MAX)
    return _json(getter(after, limit))


async def _ctl_trace_list(request: Request) -> Response:
    from ztcore.controller.store import ControllerStore
    from ztcore.controller.traces import TraceStore

    nwid = _nwid_param(request)
    ctl = _controller(request)
    store = getattr(ctl, "store", None)
    if not isinstance(store, ControllerStore):
        raise ApiError(501, "this controller keeps no traces")
    if ctl.get_network(nwid) is None:
        raise ApiError(404, f"network {nwid} not found")
    node = request.query.get("node")
    if node is not None:
        node = format_address(parse_address(node))
    rows = TraceStore(store).query(
        nwid=nwid,
        node=node,
        since_ts=_int_query(request, "since", None),
        until_ts=_int_query(request, "until", None),
        after_seq=_int_query(request, "after", 0) or 0,
        limit=min(_int_query(request, "limit", 1000) or 0, _TRACE_LIMIT_MAX),
    )
    resp = _json([rec for _, rec in rows])
    resp.headers["X-ZT-Trace-Seq"] = str(rows[-1][0] if rows else (_int_query(request, "after", 0) or 0))
    return resp


def make_app(node: NodeApi | None, controller: ControllerBackend | None, auth_token: str) -> ApiApp:
    """The API application (no sockets yet: see `HttpApiServer`)."""
    app = ApiApp(node, controller, auth_token)
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/status", _status),
        ("GET", "/peer", _peer_list),
        ("GET", "/peer/{address}", _peer_get),
        ("GET", "/network", _network_list),
        ("GET", "/network/{nwid}", _network_get),
        ("POST", "/network/{nwid}", _network_join),
        ("PUT", "/network/{nwid}", _network_join),
        ("DELETE", "/network/{nwid}", _network_leave),
        ("GET", "/controller", _controller_get),
        ("GET", "/controller/network", _ctl_network_list),
        ("POST", "/controller/network", _ctl_network_create),
        ("PUT", "/controller/network", _ctl_network_create),
        ("GET", "/controller/network/{nwid}", _ctl_network_get),
        ("POST", "/controller/network/{nwid}", _ctl_network_post),
        ("PUT", "/controller/network/{nwid}", _ctl_network_post),
        ("DELETE", "/controller/network/{nwid}", _ctl_network_delete),
        ("GET", "/controller/network/{nwid}/member", _ctl_member_list),
        ("GET", "/controller/network/{nwid}/member/{address}", _ctl_member_get),
        ("POST", "/controller/network/{nwid}/member/{address}", _ctl_member_post),
        ("PUT", "/controller/network/{nwid}/member/{address}", _ctl_member_post),
        ("DELETE", "/controller/network/{nwid}/member/{address}", _ctl_member_delete),
        ("GET", "/unstable/controller/network", _unstable_network_list),
        ("GET", "/unstable/controller/network/{nwid}/member", _unstable_member_list),
        ("GET", "/unstable/capture", _capture),
        ("GET", "/trace", _trace_list),
        ("GET", "/controller/network/{nwid}/trace", _ctl_trace_list),
    ]
    for method, pattern, handler in routes:
        app.router.add(method, pattern, handler)
    return app


class HttpApiServer:
    """The API listening on loopback: 127.0.0.1 always, ::1 too when the host has IPv6.

    ``port=0`` picks a free port (see `port` after `start`); ::1 then uses the same one.
    An `app` made by `make_app` may be given instead of node, controller and token.
    """

    def __init__(
        self,
        node: NodeApi | None,
        controller: ControllerBackend | None,
        auth_token: str,
        port: int,
        hosts: tuple[str, ...] = ("127.0.0.1", "::1"),
        *,
        app: ApiApp | None = None,
    ) -> None:
        self.app = app if app is not None else make_app(node, controller, auth_token)
        self._requested_port = port
        self._hosts = hosts
        self._server: HttpServer | None = None
        self.port: int | None = None
        self.bound: list[str] = []

    async def start(self) -> None:
        server = HttpServer(self.app.dispatch, body_limit=MAX_BODY)
        port = self._requested_port
        try:
            for i, host in enumerate(self._hosts):
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((host, port))
                    sock.listen(128)
                except OSError:
                    sock.close()
                    if i == 0:
                        raise
                    # A host without IPv6 still serves on 127.0.0.1.
                    log.info("HTTP API: could not bind %s port %d", host, port)
                    continue
                port = sock.getsockname()[1]
                await server.listen(sock)
                self.bound.append(host)
        except BaseException:
            await server.close()
            raise
        self._server = server
        self.port = port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> HttpApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def __getattr__(name: str) -> Any:
    # Kept importable from here, but loaded (with the controller and SQLite) only when used.
    if name in ("StoreControllerBackend", "ControllerListener"):
        from ztcore.runtime import controller_backend

        return getattr(controller_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
