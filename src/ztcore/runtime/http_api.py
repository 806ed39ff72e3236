"""The local HTTP JSON API, compatible with zerotier-one's control plane.

Owns the HTTP side of what ``zerotier-cli`` and controller UIs (ztncui, zero-ui,
ztnet, ...) talk to: an aiohttp server bound to 127.0.0.1 and ::1, the
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
`StoreControllerBackend` implements the latter over `ztcore.controller.store`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from ztcore.controller import ipam
from ztcore.controller.model import (
    API_VERSION,
    ApiError,
    format_address,
    now_ms,
    parse_address,
    parse_body,
    parse_nwid,
    update_member,
    update_network,
)
from ztcore.controller.store import ControllerStore
from ztcore.errors import ZTError, report_unexpected
from ztcore.runtime import pcap

__all__ = [
    "ControllerBackend",
    "ControllerListener",
    "HttpApiServer",
    "NodeApi",
    "StoreControllerBackend",
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


class ControllerListener(Protocol):
    """Told after a change is committed; the live controller pushes configs / revokes from here.

    `old` / `new` are the records before and after (None = absent). A network deletion
    is reported as a member change to None for each of its members, then the network's.
    """

    def on_network_changed(
        self, nwid: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None: ...

    def on_member_changed(
        self, nwid: str, address: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None: ...


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


class StoreControllerBackend:
    """`ControllerBackend` over a `ControllerStore` and the model functions alone.

    Authorizing a member (or updating an authorized one without giving
    ``ipAssignments``) runs pool auto-assignment right away, so the address shows up
    in the API before the member's next config request. Change hooks go to the
    listeners added with `add_listener`; a failing listener is logged, not raised, since
    the change is already committed.
    """

    def __init__(
        self,
        store: ControllerStore,
        controller_address: int | str,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        addr = controller_address if isinstance(controller_address, int) else int(controller_address, 16)
        self._address = addr
        self._clock = clock
        self._listeners: list[ControllerListener] = []

    @property
    def controller_address(self) -> str:
        return format_address(self._address)

    def add_listener(self, listener: ControllerListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ControllerListener) -> None:
        self._listeners.remove(listener)

    def ready(self) -> bool:
        return True

    def list_networks(self) -> list[str]:
        return self.store.list_networks()

    def get_network(self, nwid: str) -> dict[str, Any] | None:
        return self.store.get_network(nwid)

    def member_counts(self, nwid: str) -> tuple[int, int]:
        return self.store.member_counts(nwid)

    def create_network(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            nwid = self.store.free_network_id(self._address)
            record = update_network(None, body, int(nwid, 16), self._clock())
            stored, _ = self.store.put_network(record)
        self.on_network_changed(nwid, None, stored)
        return stored

    def post_network(self, nwid: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            old = self.store.get_network(nwid)
            if old is None:
                # Creating: only under this controller's address. A record already stored
                # (e.g. by an older version) can still be updated or deleted.
                _check_own_network(nwid, self.controller_address)
            record = update_network(old, body, int(nwid, 16), self._clock())
            stored, changed = self.store.put_network(record)
        if changed:
            self.on_network_changed(nwid, old, stored)
        return stored

    def delete_network(self, nwid: str) -> dict[str, Any] | None:
        with self.store.transaction():
            members = self.store.list_members(nwid)
            old = self.store.delete_network(nwid)
        if old is not None:
            for m in members:
                self.on_member_changed(nwid, str(m.get("id")), m, None)
            self.on_network_changed(nwid, old, None)
        return old

    def list_members(self, nwid: str) -> list[dict[str, Any]] | None:
        with self.store.transaction():
            if not self.store.has_network(nwid):
                return None
            return self.store.list_members(nwid)

    def member_revisions(self, nwid: str) -> dict[str, int] | None:
        with self.store.transaction():
            if not self.store.has_network(nwid):
                return None
            return self.store.member_revisions(nwid)

    def get_member(self, nwid: str, address: str) -> dict[str, Any] | None:
        return self.store.get_member(nwid, address)

    def post_member(self, nwid: str, address: str, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            network = self.store.get_network(nwid)
            if network is None:
                raise ApiError(404, f"network {nwid} not found")
            old = self.store.get_member(nwid, address)
            record = update_member(old, body, int(nwid, 16), int(address, 16), self._clock(), network=network)
            if record.get("authorized") is True and "ipAssignments" not in body:
                record["ipAssignments"] = ipam.auto_assign(
                    network,
                    record,
                    int(address, 16),
                    lambda: self.store.allocated_ips(nwid, exclude_address=address),
                )
            stored, changed = self.store.put_member(record)
        if changed:
            self.on_member_changed(nwid, address, old, stored)
        return stored

    def delete_member(self, nwid: str, address: str) -> dict[str, Any] | None:
        old = self.store.delete_member(nwid, address)
        if old is not None:
            self.on_member_changed(nwid, address, old, None)
        return old

    def on_network_changed(self, nwid: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for listener in list(self._listeners):
            try:
                listener.on_network_changed(nwid, old, new)
            except Exception as e:
                report_unexpected(log, "controller backend: listener on a network change", e)

    def on_member_changed(
        self, nwid: str, address: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        for listener in list(self._listeners):
            try:
                listener.on_member_changed(nwid, address, old, new)
            except Exception as e:
                report_unexpected(log, "controller backend: listener on a member change", e)


def _check_own_network(nwid: str, controller_address: str) -> None:
    """A controller serves only network ids that start with its own address (members
    send their config requests to the address in the id), so it refuses to create any
    other: such a network could be stored but never served."""
    if nwid[:10].lower() != controller_address.lower():
        raise ApiError(
            400,
            f"network {nwid} belongs to controller {nwid[:10]}, not to this one ({controller_address})",
        )


# ------------------------------------------------------------------------------------------------
# HTTP plumbing

_NODE_KEY = web.AppKey("ztcore_node", object)
_CONTROLLER_KEY = web.AppKey("ztcore_controller", object)
_TOKEN_KEY = web.AppKey("ztcore_token", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(obj, separators=(",", ":")), status=status, content_type="application/json"
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message, "status": status}, status)


def _token_ok(request: web.Request, token: str) -> bool:
    def same(presented: str) -> bool:
        return hmac.compare_digest(presented.strip().encode(), token.encode())

    # Same precedence as zerotier-one: the header if present, else ?auth=, else a bearer token.
    if "X-ZT1-Auth" in request.headers:
        return same(request.headers["X-ZT1-Auth"])
    if "auth" in request.query:
        return same(request.query["auth"])
    authz = request.headers.get("Authorization", "")
    if authz[:7].lower() == "bearer ":
        return same(authz[7:])
    return False


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Token check, then turn every failure into a JSON error answer."""
    if not _token_ok(request, request.app[_TOKEN_KEY]):
        return _error(401, "missing or wrong auth token (X-ZT1-Auth header or ?auth=)")
    try:
        return await handler(request)
    except ApiError as e:
        return _error(e.status, e.message)
    except ZTError as e:
        # Every error of ours raised on purpose is about the request (a bad id, a state the
        # request does not fit): the client gets a 400 that says why, never a 500.
        log.info("HTTP API refused %s %s: %s", request.method, request.path, e)
        return _error(400, str(e) or type(e).__name__)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _error(e.status, e.reason)
    except Exception as e:
        # A bug, not bad input: still answer in JSON and keep serving.
        report_unexpected(log, f"HTTP API: {request.method} {request.path}", e)
        return _error(500, f"internal error: {type(e).__name__}")


async def _body(request: web.Request) -> dict[str, Any]:
    return parse_body(await request.read())


def _node(request: web.Request) -> NodeApi:
    node = request.app[_NODE_KEY]
    if node is None:
        raise ApiError(404, "no node behind this API")
    return node  # type: ignore[return-value]


def _controller(request: web.Request) -> ControllerBackend:
    ctl = request.app[_CONTROLLER_KEY]
    if ctl is None:
        raise ApiError(404, "this node runs no network controller")
    return ctl  # type: ignore[return-value]


def _nwid_param(request: web.Request) -> str:
    return f"{parse_nwid(request.match_info['nwid']):016x}"


def _address_param(request: web.Request) -> str:
    return format_address(parse_address(request.match_info["address"]))


# ---- node routes


async def _status(request: web.Request) -> web.Response:
    return _json(_node(request).status())


async def _peer_list(request: web.Request) -> web.Response:
    return _json(_node(request).peers())


async def _peer_get(request: web.Request) -> web.Response:
    address = _address_param(request)
    for p in _node(request).peers():
        if str(p.get("address", "")).lower() == address:
            return _json(p)
    raise ApiError(404, f"no peer {address}")


async def _network_list(request: web.Request) -> web.Response:
    return _json(_node(request).networks())


async def _network_get(request: web.Request) -> web.Response:
    nwid = _nwid_param(request)
    nw = _node(request).network(int(nwid, 16))
    if nw is None:
        raise ApiError(404, f"not a member of network {nwid}")
    return _json(nw)


async def _network_join(request: web.Request) -> web.Response:
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


async def _network_leave(request: web.Request) -> web.Response:
    nwid = _nwid_param(request)
    if not _node(request).leave(int(nwid, 16)):
        raise ApiError(404, f"not a member of network {nwid}")
    return _json({"result": True})


# ---- controller routes


async def _controller_get(request: web.Request) -> web.Response:
    ready = _controller(request).ready()
    out = {"controller": True, "apiVersion": API_VERSION, "clock": now_ms(), "databaseReady": ready}
    return _json(out, 200 if ready else 503)


async def _ctl_network_list(request: web.Request) -> web.Response:
    return _json(_controller(request).list_networks())


async def _ctl_network_create(request: web.Request) -> web.Response:
    ctl = _controller(request)
    return _json(ctl.create_network(await _body(request)))


async def _ctl_network_get(request: web.Request) -> web.Response:
    nwid = _nwid_param(request)
    nw = _controller(request).get_network(nwid)
    if nw is None:
        raise ApiError(404, f"network {nwid} not found")
    return _json(nw)


async def _ctl_network_post(request: web.Request) -> web.Response:
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


async def _ctl_network_delete(request: web.Request) -> web.Response:
    nwid = _nwid_param(request)
    old = _controller(request).delete_network(nwid)
    if old is None:
        raise ApiError(404, f"network {nwid} not found")
    return _json(old)


async def _ctl_member_list(request: web.Request) -> web.Response:
    nwid = _nwid_param(request)
    revs = _controller(request).member_revisions(nwid)
    if revs is None:
        raise ApiError(404, f"network {nwid} not found")
    return _json(revs)


async def _ctl_member_get(request: web.Request) -> web.Response:
    nwid, address = _nwid_param(request), _address_param(request)
    m = _controller(request).get_member(nwid, address)
    if m is None:
        raise ApiError(404, f"member {address} of network {nwid} not found")
    return _json(m)


async def _ctl_member_post(request: web.Request) -> web.Response:
    nwid, address = _nwid_param(request), _address_param(request)
    body = await _body(request)
    return _json(_controller(request).post_member(nwid, address, body))


async def _ctl_member_delete(request: web.Request) -> web.Response:
    nwid, address = _nwid_param(request), _address_param(request)
    old = _controller(request).delete_member(nwid, address)
    if old is None:
        raise ApiError(404, f"member {address} of network {nwid} not found")
    return _json(old)


async def _unstable_network_list(request: web.Request) -> web.Response:
    ctl = _controller(request)
    data = []
    for nwid in ctl.list_networks():
        nw = ctl.get_network(nwid)
        if nw is None:  # deleted meanwhile
            continue
        total, authorized = ctl.member_counts(nwid)
        data.append({**nw, "meta": {"totalMemberCount": total, "authorizedMemberCount": authorized}})
    return _json({"data": data, "meta": {"networkCount": len(data)}})


async def _unstable_member_list(request: web.Request) -> web.Response:
    nwid = _nwid_param(request)
    members = _controller(request).list_members(nwid)
    if members is None:
        raise ApiError(404, f"network {nwid} not found")
    authorized = sum(1 for m in members if m.get("authorized") is True)
    return _json({"data": members, "meta": {"totalCount": len(members), "authorizedCount": authorized}})


CAPTURE_QUEUE = 4096  # packets buffered for a slow capture client before drops


async def _capture(request: web.Request) -> web.StreamResponse:
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
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.tcpdump.pcap"})
        await resp.prepare(request)
        await resp.write(pcap.file_header(pcap.LINKTYPE_RAW if nwid is None else pcap.LINKTYPE_ETHERNET))
        while not count or written < count:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            if request.transport is None or request.transport.is_closing():
                break  # the client went away while the node was quiet
            try:
                # Wake up at least every second to notice a client that left.
                packet, when = await asyncio.wait_for(queue.get(), timeout=min(left or 1.0, 1.0))
            except asyncio.TimeoutError:
                continue
            await resp.write(pcap.record(packet, when))
            written += 1
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError):
        log.info("capture client went away after %d packets", written)
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


def _int_query(request: web.Request, name: str, default: int | None) -> int | None:
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


async def _trace_list(request: web.Request) -> web.Response:
    getter = getattr(_node(request), "traces", None)
    if getter is None:
        raise ApiError(501, "this node keeps no traces")
    after = _int_query(request, "after", 0) or 0
    limit = min(_int_query(request, "limit", 1000) or 0, _TRACE_LIMIT_MAX)
    return _json(getter(after, limit))


async def _ctl_trace_list(request: web.Request) -> web.Response:
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


def _add_trace_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/trace", _trace_list)
    r.add_get("/controller/network/{nwid}/trace", _ctl_trace_list)


def make_app(node: NodeApi | None, controller: ControllerBackend | None, auth_token: str) -> web.Application:
    """The aiohttp application serving the API (no sockets yet: see `HttpApiServer`)."""
    if not auth_token:
        raise ValueError("an auth token is required")
    app = web.Application(middlewares=[_middleware], client_max_size=MAX_BODY)
    app[_NODE_KEY] = node
    app[_CONTROLLER_KEY] = controller
    app[_TOKEN_KEY] = auth_token
    r = app.router
    r.add_get("/status", _status)
    r.add_get("/peer", _peer_list)
    r.add_get("/peer/{address}", _peer_get)
    r.add_get("/network", _network_list)
    r.add_get("/network/{nwid}", _network_get)
    r.add_post("/network/{nwid}", _network_join)
    r.add_put("/network/{nwid}", _network_join)
    r.add_delete("/network/{nwid}", _network_leave)
    r.add_get("/controller", _controller_get)
    r.add_get("/controller/network", _ctl_network_list)
    r.add_post("/controller/network", _ctl_network_create)
    r.add_put("/controller/network", _ctl_network_create)
    r.add_get("/controller/network/{nwid}", _ctl_network_get)
    r.add_post("/controller/network/{nwid}", _ctl_network_post)
    r.add_put("/controller/network/{nwid}", _ctl_network_post)
    r.add_delete("/controller/network/{nwid}", _ctl_network_delete)
    r.add_get("/controller/network/{nwid}/member", _ctl_member_list)
    r.add_get("/controller/network/{nwid}/member/{address}", _ctl_member_get)
    r.add_post("/controller/network/{nwid}/member/{address}", _ctl_member_post)
    r.add_put("/controller/network/{nwid}/member/{address}", _ctl_member_post)
    r.add_delete("/controller/network/{nwid}/member/{address}", _ctl_member_delete)
    r.add_get("/unstable/controller/network", _unstable_network_list)
    r.add_get("/unstable/controller/network/{nwid}/member", _unstable_member_list)
    r.add_get("/unstable/capture", _capture)
    _add_trace_routes(r)
    return app


class HttpApiServer:
    """The API listening on loopback: 127.0.0.1 always, ::1 too when the host has IPv6.

    ``port=0`` picks a free port (see `port` after `start`); ::1 then uses the same one.
    """

    def __init__(
        self,
        node: NodeApi | None,
        controller: ControllerBackend | None,
        auth_token: str,
        port: int,
        hosts: tuple[str, ...] = ("127.0.0.1", "::1"),
    ) -> None:
        self.app = make_app(node, controller, auth_token)
        self._requested_port = port
        self._hosts = hosts
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.bound: list[str] = []

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
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
                except OSError:
                    sock.close()
                    if i == 0:
                        raise
                    # A host without IPv6 still serves on 127.0.0.1.
                    log.info("HTTP API: could not bind %s port %d", host, port)
                    continue
                port = sock.getsockname()[1]
                await web.SockSite(runner, sock).start()
                self.bound.append(host)
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HttpApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
