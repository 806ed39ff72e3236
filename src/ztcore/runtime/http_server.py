"""A small HTTP/1.1 server on asyncio streams, for the local JSON API.

Owns the HTTP plumbing under `ztcore.runtime.http_api`: connections, framing (the
``h11`` state machine does the parsing and the keep-alive / chunked / close
rules), a routing table of ``METHOD /path/{param}`` patterns, request bodies up
to a size limit, timeouts for idle and slow clients, a cap on open connections,
and streamed answers (for the pcap capture). It knows nothing of ZeroTier: an
application is one coroutine, ``dispatch(request) -> Response | ResponseStream``.

Why not aiohttp: the daemon's API is a handful of JSON routes on loopback, and
aiohttp (with multidict, yarl, frozenlist, attrs, its client and ``ssl``) was
about a sixth of an idle ``ztnode run``'s memory.

Limits (zerotier-one's own server is no more generous): a request head of at
most `MAX_HEAD` bytes (431 beyond), `REQUEST_TIMEOUT` seconds from a request's
first byte to its last (a client that sends slower is disconnected),
`KEEPALIVE_TIMEOUT` seconds idle between requests, `WRITE_TIMEOUT` for a client
that stops reading, `MAX_CONNECTIONS` open at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from ztcore.errors import report_unexpected

__all__ = [
    "HttpError",
    "HttpServer",
    "Request",
    "Response",
    "ResponseStream",
    "Router",
    "json_response",
]

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
REQUEST_TIMEOUT = 30.0
KEEPALIVE_TIMEOUT = 75.0
WRITE_TIMEOUT = 30.0
MAX_CONNECTIONS = 128
_READ_SIZE = 64 * 1024

# Reason phrases: in status lines, and as the `error` text of the errors the server makes
# itself (the phrases aiohttp used, so those answers do not change).
REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(when: float | None = None) -> str:
    """RFC 9110 IMF-fixdate, independent of the locale."""
    t = time.gmtime(when)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


class HttpError(Exception):
    """Refuse a request with `status`; `message` defaults to the reason phrase."""

    def __init__(self, status: int, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message or REASONS.get(status, "Error")
        self.headers = headers or {}
        super().__init__(self.message)


class Response:
    """A whole answer: status, body, headers (Content-Length and Date are added)."""

    __slots__ = ("status", "body", "headers")

    def __init__(
        self,
        body: bytes = b"",
        status: int = 200,
        content_type: str = "application/json; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = {"Content-Type": content_type, **(headers or {})}


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, separators=(",", ":")).encode(), status)


class Request:
    """One request: `method`, `path` (undecoded), `query` (first value of each
    name, decoded), `headers` (lower-case names, first value), `match_info` (the
    route's decoded parameters). The body is read on demand with `read`."""

    def __init__(self, conn: _Connection, event: h11.Request) -> None:
        self._conn = conn
        self.method = event.method.decode("ascii", "replace").upper()
        target = event.target.decode("ascii", "replace")
        if not target.startswith("/"):
            # absolute-form ("http://host/path?q") is legal; anything else gets the root
            target = (urlsplit(target).path or "/") + (f"?{urlsplit(target).query}" if "?" in target else "")
        self.path, _, qs = target.partition("?")
        self.query: dict[str, str] = {}
        for k, v in parse_qsl(qs, keep_blank_values=True):
            self.query.setdefault(k, v)
        self.headers: dict[str, str] = {}
        for name, value in event.headers:
            self.headers.setdefault(name.decode("ascii").lower(), value.decode("latin-1"))
        self.match_info: dict[str, str] = {}
        self.app: Any = None  # set by the application's dispatch, for its handlers
        self.http_version = event.http_version.decode("ascii")

    async def read(self, limit: int) -> bytes:
        """The whole body; HttpError 413 if it exceeds `limit` bytes."""
        return await self._conn.read_body(limit)

    def client_gone(self) -> bool:
        """True once the client closed its side (or the connection broke)."""
        return self._conn.writer.is_closing() or self._conn.reader.at_eof()

    async def stream(self, status: int = 200, headers: dict[str, str] | None = None) -> ResponseStream:
        """Start a streamed answer (chunked on HTTP/1.1); the handler returns it when done."""
        await self._conn.send_head(status, headers or {})
        return ResponseStream(self._conn)


class ResponseStream:
    """An answer being streamed: `write` pieces, then `write_eof`."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.finished = False

    async def write(self, data: bytes) -> None:
        if data and not self._conn.is_head:  # an answer to HEAD is the head alone
            await self._conn.send(h11.Data(data=data))

    async def write_eof(self) -> None:
        if not self.finished:
            self.finished = True
            await self._conn.send(h11.EndOfMessage())


Handler = Callable[[Request], Awaitable["Response | ResponseStream"]]


class Router:
    """``METHOD /a/{param}/b`` patterns to handlers. A parameter matches one
    non-empty path segment, percent-decoded. GET routes answer HEAD too."""

    def __init__(self) -> None:
        self._routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        parts = tuple(pattern.strip("/").split("/")) if pattern != "/" else ()
        for p, methods in self._routes:
            if p == parts:
                methods[method] = handler
                return
        self._routes.append((parts, {method: handler}))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and parameters; HttpError 404 (no such path) or 405 (not that method)."""
        segments = path[1:].split("/") if path != "/" else []
        for parts, methods in self._routes:
            if len(parts) != len(segments):
                continue
            params: dict[str, str] = {}
            for want, got in zip(parts, segments, strict=True):
                if want[:1] == "{" and want[-1:] == "}":
                    if not got:
                        break
                    params[want[1:-1]] = unquote(got)
                elif unquote(got) != want:
                    break
            else:
                handler = methods.get("GET" if method == "HEAD" else method)
                if handler is None:
                    allowed = sorted({*methods, *(("HEAD",) if "GET" in methods else ())})
                    raise HttpError(405, headers={"Allow": ",".join(allowed)})
                return handler, params
        raise HttpError(404)


class _Connection:
    """One client connection: the h11 state machine between a stream reader and writer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.deadline: float | None = None  # end of the current request's reading time
        self.head_sent = False
        self.body_done = False
        self.is_head = False

    async def next_event(self) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.deadline is None and self.h11.their_state is h11.IDLE and not self.h11.trailing_data[0]:
                timeout = KEEPALIVE_TIMEOUT  # waiting for the next request
            else:
                if self.deadline is None:
                    self.deadline = loop.time() + REQUEST_TIMEOUT
                timeout = self.deadline - loop.time()
            if timeout <= 0:
                raise asyncio.TimeoutError
            data = await asyncio.wait_for(self.reader.read(_READ_SIZE), timeout)
            if data and self.deadline is None:
                self.deadline = loop.time() + REQUEST_TIMEOUT
            self.h11.receive_data(data)

    async def read_body(self, limit: int) -> bytes:
        if self.body_done:
            return b""
        if self.h11.client_is_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[], reason="Continue"))
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self.next_event()
            if isinstance(event, h11.EndOfMessage):
                self.body_done = True
                return b"".join(chunks)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise HttpError(413)
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("client closed the connection mid-body")

    async def send(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)

    async def send_head(self, status: int, headers: dict[str, str]) -> None:
        hdrs = [("Date", http_date()), ("Server", "ztcore"), *headers.items()]
        self.head_sent = True
        await self.send(h11.Response(status_code=status, headers=hdrs, reason=REASONS.get(status, "")))

    async def send_response(self, resp: Response) -> None:
        headers = [("Date", http_date()), ("Server", "ztcore"), *resp.headers.items()]
        headers.append(("Content-Length", str(len(resp.body))))
        self.head_sent = True
        # One write for the whole answer: no small segments for Nagle to hold back.
        head = h11.Response(status_code=resp.status, headers=headers, reason=REASONS.get(resp.status, ""))
        out = [self.h11.send(head) or b""]
        if resp.body and not self.is_head:
            out.append(self.h11.send(h11.Data(data=resp.body)) or b"")
        out.append(self.h11.send(h11.EndOfMessage()) or b"")
        self.writer.write(b"".join(out))
        await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)


class HttpServer:
    """Serves `dispatch` on listening sockets until `close`."""

    def __init__(self, dispatch: Handler, *, body_limit: int) -> None:
        self._dispatch = dispatch
        self._body_limit = body_limit
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, sock: Any) -> None:
        self._servers.append(await asyncio.start_server(self._client, sock=sock, limit=_READ_SIZE))

    async def close(self) -> None:
        for s in self._servers:
            s.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for s in self._servers:
            await s.wait_closed()
        self._servers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._tasks) >= MAX_CONNECTIONS:
            log.info("HTTP API: %d connections open, refusing another", len(self._tasks))
            writer.close()
            return
        assert task is not None
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Streamed answers are written piece by piece; do not let Nagle delay them.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._serve(_Connection(reader, writer))
        except (asyncio.TimeoutError, ConnectionError):
            pass  # a slow, idle or vanished client: just hang up
        except asyncio.CancelledError:
            pass  # the server is closing
        except Exception as e:
            # A bug (h11 refusing what we tried to send, ...): drop this connection, keep serving.
            report_unexpected(log, "HTTP API: serving a connection", e)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, c: _Connection) -> None:
        while True:
            try:
                event = await c.next_event()
            except h11.RemoteProtocolError as e:
                await self._refuse(c, e.error_status_hint, str(e))
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed (or a stray event after an error)
            if not await self._one(c, event):
                return
            if c.h11.our_state is not h11.DONE or c.h11.their_state is not h11.DONE:
                return
            c.h11.start_next_cycle()
            c.deadline, c.head_sent, c.body_done = None, False, False

    async def _one(self, c: _Connection, event: h11.Request) -> bool:
        """Answer one request; False when the connection must close."""
        # h11 bounds only a head that arrives in pieces; one read can bring a whole big one.
        if len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers) > MAX_HEAD:
            await self._refuse(c, 431, "request head too large")
            return False
        req = Request(c, event)
        c.is_head = req.method == "HEAD"
        try:
            result = await self._dispatch(req)
        except HttpError as e:
            result = _error_response(e.status, e.message, e.headers)
        except h11.RemoteProtocolError as e:  # a malformed body (bad chunking, ...)
            if c.head_sent:
                return False
            await self._refuse(c, e.error_status_hint, str(e))
            return False
        if isinstance(result, ResponseStream):
            if not result.finished:
                return False
        elif not c.head_sent:
            if result.status == 413:
                result.headers["Connection"] = "close"  # not worth reading the rest
            await c.send_response(result)
        else:
            return False
        if c.h11.our_state is not h11.DONE:
            return False  # MUST_CLOSE: HTTP/1.0, "Connection: close", or a 413
        if not c.body_done and c.h11.their_state is h11.SEND_BODY:
            # Answered without reading the body: skip it to keep the connection usable.
            try:
                await c.read_body(self._body_limit)
            except HttpError:
                return False
        return True

    async def _refuse(self, c: _Connection, status: int, detail: str) -> None:
        if c.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE) or c.head_sent:
            return
        log.debug("HTTP API: bad request: %s", detail)
        if status >= 500:
            status = 400  # (h11 hints 501 for an unknown transfer coding) bad input is never a 5xx
        resp = _error_response(status, REASONS.get(status, "Bad Request"))
        resp.headers["Connection"] = "close"
        try:
            await c.send_response(resp)
        except h11.LocalProtocolError:
            pass  # nothing sensible can be sent on this connection any more


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    resp = json_response({"error": message, "status": status}, status)
    resp.headers.update(headers or {})
    return resp
