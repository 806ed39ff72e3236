"""asyncio sockets on a node's virtual networks: TCP streams and UDP datagrams
served by ztcore's userspace stack (``ztcore.netstack``), no TAP device.

``NetworkSockets`` is mixed into ``NodeService``; inside the node's event loop::

    reader, writer = await node.open_connection("10.147.17.2", 8080, network=nwid)
    server = await node.start_server(handle_client, 8080, network=nwid)
    transport, protocol = await node.create_connection(MyProtocol, "fd12::2", 80)
    transport, protocol = await node.create_datagram_endpoint(MyDatagramProtocol, local_port=5000)

The streams are asyncio's own ``StreamReader`` / ``StreamWriter`` and the
transports implement ``asyncio.Transport`` / ``asyncio.DatagramTransport``,
so protocol code written for asyncio (h11, wsproto, ...) runs unchanged.
``network`` may be left out when the node is on exactly one network, or
when the destination address lies in one network's assigned subnet. Hosts
are IP literals (there is no DNS on a virtual network). Failures raise:
``ConnectionRefusedError``, ``TimeoutError``, ``OSError`` (ENETUNREACH when
the network is not joined or has no address of the family, EADDRINUSE).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ztcore.api import EventType
from ztcore.errors import report_unexpected
from ztcore.netstack.tcp import EventKind, TcpConnection, TcpEvent

log = logging.getLogger("ztcore.runtime.sockets")

# Failures caught at the boundary to application code (protocol callbacks, factories)
# or in the TCP timer, by kind; each is also logged.
errors: Counter[str] = Counter()

DEFAULT_CONNECT_TIMEOUT = 30.0
WRITE_HIGH_WATER = 1 << 20
WRITE_LOW_WATER = 1 << 18
STREAM_LIMIT = 1 << 16

ClientConnected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], "Awaitable[None] | None"]


def parse_network_id(network: int | str) -> int:
    if isinstance(network, str):
        return int(network, 16)
    return int(network)


class _TcpTimer:
    """Runs the stacks' TCP timers of one service at the deadlines they ask for."""

    def __init__(self, service: Any) -> None:
        self._service = service
        self._handle: asyncio.TimerHandle | None = None
        self._at: int | None = None

    def wakeup(self, deadline: int) -> None:
        if self._at is None or deadline < self._at:
            self._arm(deadline)

    def _arm(self, deadline: int) -> None:
        loop = self._service._loop
        if loop is None or loop.is_closed():
            return
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        delay = max(0, deadline - self._service.clock()) / 1000.0
        self._handle = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._at = None
        stacks = self._service.netstack
        if stacks is None or not self._service.running:
            return
        now = self._service.clock()
        for responder in list(stacks.responders.values()):
            try:
                responder.tcp.expire(now)
            except Exception as e:
                errors["timer"] += 1
                report_unexpected(log, "sockets: TCP timers", e)
        deadline = stacks.next_deadline()
        if deadline is not None:
            self._arm(deadline)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._at = None


class TcpTransport(asyncio.Transport):
    """An ``asyncio.Transport`` over one virtual-network TCP connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, service: Any, table: Any, network_id: int) -> None:
        super().__init__()
        self._loop = loop
        self._service = service
        self._table = table
        self._network_id = network_id
        self._conn: TcpConnection | None = None
        self._protocol: asyncio.BaseProtocol | None = None
        self._connected: asyncio.Future[None] | None = None
        self._backlog: list[TcpEvent] = []  # events before a protocol is attached or while paused
        self._reading_paused = False
        self._writing_paused = False
        self._eof_written = False
        self._closing = False
        self._lost = False
        self._high = WRITE_HIGH_WATER
        self._low = WRITE_LOW_WATER

    def __repr__(self) -> str:
        return f"<TcpTransport {self._conn!r}>"

    # -- set-up ------------------------------------------------------------------------------

    def _attach(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        protocol.connection_made(self)
        backlog, self._backlog = self._backlog, []
        for event in backlog:
            self._handle(event)

    # -- TcpHandler --------------------------------------------------------------------------

    def tcp_event(self, conn: TcpConnection, event: TcpEvent) -> None:
        if event.kind is EventKind.CONNECTED:
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(None)
            return
        if event.kind is EventKind.CLOSED and self._connected is not None and not self._connected.done():
            self._connected.set_exception(event.error or ConnectionAbortedError("connection closed"))
            self._lost = True
            return
        if self._protocol is None:
            self._backlog.append(event)
        elif event.kind is EventKind.WRITABLE:
            self._handle(event)  # the writer must hear of room even while reading is paused
        elif self._backlog or self._reading_paused:
            self._backlog.append(event)  # after data already held back, in order
        else:
            self._handle(event)

    def _handle(self, event: TcpEvent) -> None:
        protocol = self._protocol
        assert protocol is not None
        conn = self._conn
        if event.kind is EventKind.DATA:
            if self._reading_paused:
                self._backlog.append(event)
                return
            if conn is not None:
                self._table.consumed(conn, len(event.data), self._service.clock())
            try:
                protocol.data_received(event.data)  # type: ignore[attr-defined]
            except Exception as e:
                self._fatal(e, "data_received")
        elif event.kind is EventKind.EOF:
            if self._reading_paused:
                self._backlog.append(event)
                return
            try:
                keep_open = protocol.eof_received()  # type: ignore[attr-defined]
            except Exception as e:
                self._fatal(e, "eof_received")
                return
            if not keep_open:
                self.close()
        elif event.kind is EventKind.WRITABLE:
            if self._writing_paused and self.get_write_buffer_size() <= self._low:
                self._writing_paused = False
                try:
                    protocol.resume_writing()
                except Exception as e:
                    self._fatal(e, "resume_writing")
        elif event.kind is EventKind.CLOSED:
            self._connection_lost(event.error)

    def _fatal(self, exc: Exception, where: str) -> None:
        """The application's protocol raised in a callback: report it and abort."""
        errors[where] += 1
        report_unexpected(log, f"sockets: protocol {where} (connection aborted)", exc)
        self.abort()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        protocol = self._protocol
        if protocol is not None:
            try:
                protocol.connection_lost(exc)
            except Exception as e:
                errors["connection_lost"] += 1
                report_unexpected(log, "sockets: protocol connection_lost", e)

    # -- asyncio.Transport ---------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        conn = self._conn
        if conn is None:
            return default
        info = {
            "peername": conn.remote,
            "sockname": conn.local,
            "network": self._network_id,
            "tcp_connection": conn,
        }
        return info.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._conn is not None and not self._lost:
            self._table.close(self._conn, self._service.clock())  # data still queued is delivered
        self._loop.call_soon(self._connection_lost, None)

    def abort(self) -> None:
        if self._lost:
            return
        self._closing = True
        if self._conn is not None:
            self._table.abort(self._conn, self._service.clock())
        self._loop.call_soon(self._connection_lost, None)

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    def pause_reading(self) -> None:
        # Delivered data stays unconsumed: the advertised window closes and the peer stops.
        self._reading_paused = True

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        self._loop.call_soon(self._drain_backlog)

    def _drain_backlog(self) -> None:
        while self._backlog and not self._reading_paused and self._protocol is not None:
            self._handle(self._backlog.pop(0))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high = WRITE_HIGH_WATER if high is None else high
        low = high // 4 if low is None else low
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def get_write_buffer_size(self) -> int:
        return self._conn.send_buffered if self._conn is not None else 0

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._closing or self._lost or self._conn is None:
            log.debug("write on a closed TCP transport ignored")
            return
        try:
            self._table.send(self._conn, bytes(data), self._service.clock())
        except OSError as e:
            log.debug("TCP send failed: %s", e)
            return
        if (
            not self._writing_paused
            and self.get_write_buffer_size() > self._high
            and self._protocol is not None
        ):
            self._writing_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as e:
                self._fatal(e, "pause_writing")

    def set_keepalive(
        self,
        enabled: bool = True,
        *,
        idle: float | None = None,
        interval: float | None = None,
        count: int | None = None,
    ) -> None:
        """TCP keepalive for this connection (times in seconds; defaults as Linux:
        2 h idle, 75 s between probes, 9 probes). A dead peer then ends the
        connection with ``TimeoutError`` (ETIMEDOUT) in ``connection_lost``."""
        if self._conn is None or self._lost:
            raise OSError(errno.ENOTCONN, "connection is closed")
        self._table.set_keepalive(
            self._conn,
            enabled,
            self._service.clock(),
            idle_ms=None if idle is None else int(idle * 1000),
            interval_ms=None if interval is None else int(interval * 1000),
            count=count,
        )

    def write_eof(self) -> None:
        if self._eof_written:
            return
        self._eof_written = True
        if self._conn is not None and not self._lost:
            self._table.shutdown(self._conn, self._service.clock())

    def can_write_eof(self) -> bool:
        return True

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol


class _Acceptor:
    """Listener handler: a transport and a protocol for every accepted connection."""

    def __init__(self, server: ZtServer, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._server = server
        self._factory = factory

    def tcp_accept(self, conn: TcpConnection) -> TcpTransport | None:
        server = self._server
        transport = TcpTransport(server._loop, server._service, server._table, server.network_id)
        transport._conn = conn
        try:
            protocol = self._factory()
        except Exception as e:
            errors["protocol_factory"] += 1
            report_unexpected(log, "sockets: protocol factory (connection refused)", e)
            return None
        transport._attach(protocol)
        server._connections += 1
        return transport


class ZtServer:
    """What ``create_server`` / ``start_server`` return (the shape of ``asyncio.Server``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, service: Any, table: Any, network_id: int, port: int):
        self._loop = loop
        self._service = service
        self._table = table
        self.network_id = network_id
        self.port = port
        self._listener: Any = None
        self._closed = loop.create_future()
        self._connections = 0

    def __repr__(self) -> str:
        return f"<ZtServer network {self.network_id:016x} port {self.port} serving={self.is_serving()}>"

    @property
    def sockets(self) -> tuple[()]:
        return ()  # no OS sockets behind a virtual-network server

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._listener is not None and not self._listener.closed

    def close(self) -> None:
        """Stop accepting; established connections carry on."""
        if self._listener is not None:
            self._listener.close()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def start_serving(self) -> None:
        return None  # serving starts at creation

    async def serve_forever(self) -> None:
        await self.wait_closed()

    async def __aenter__(self) -> ZtServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


class UdpTransport(asyncio.DatagramTransport):
    """An ``asyncio.DatagramTransport`` over a ``VirtualUdpSocket``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        service: Any,
        sock: Any,
        network_id: int,
        remote: tuple[str, int] | None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._service = service
        self._sock = sock
        self._network_id = network_id
        self._remote = remote
        self._protocol: asyncio.DatagramProtocol | None = None
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info = {"sockname": self._sock.local_address, "peername": self._remote, "network": self._network_id}
        return info.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:  # type: ignore[override]
        if self._closing:
            raise OSError(errno.EBADF, "transport is closed")
        if addr is None:
            if self._remote is None:
                raise ValueError("no destination: pass addr or create the endpoint with remote_addr")
            addr = self._remote
        elif self._remote is not None and tuple(addr) != self._remote:
            raise ValueError(f"invalid address: must be None or {self._remote}")
        self._sock.sendto(bytes(data), (str(addr[0]), int(addr[1])), now=self._service.clock())

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._sock.on_close = None
        self._sock.close()
        if self._protocol is not None:
            self._loop.call_soon(self._protocol.connection_lost, None)

    def _socket_closed(self) -> None:
        """The stack closed the socket (network left, node stopped)."""
        if not self._closing:
            self._closing = True
            if self._protocol is not None:
                self._loop.call_soon(
                    self._protocol.connection_lost, OSError(errno.ENETDOWN, "the network went away")
                )

    def abort(self) -> None:
        self.close()

    def _deliver(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._protocol is None or self._closing:
            return
        if self._remote is not None and addr != self._remote:
            return  # a "connected" endpoint only hears its peer
        self._protocol.datagram_received(data, addr)


class NetworkSockets:
    """The socket API of ``NodeService`` (mixed in; runs in the node's event loop)."""

    netstack: Any
    _loop: asyncio.AbstractEventLoop | None
    clock: Callable[[], int]
    add_event_listener: Callable[[Callable[[Any], None]], Callable[[], None]]  # NodeService's

    def _tcp_timer(self) -> _TcpTimer:
        timer = getattr(self, "_sockets_timer", None)
        if timer is None:
            timer = _TcpTimer(self)
            self._sockets_timer = timer
            self.netstack.set_wakeup(timer.wakeup)
            self.add_event_listener(self._sockets_on_event)
        return timer

    def _sockets_on_event(self, event: Any) -> None:
        if event.type == EventType.DOWN and self.netstack is not None:
            self.netstack.close_all(OSError(errno.ENETDOWN, "the node stopped"))
            timer = getattr(self, "_sockets_timer", None)
            if timer is not None:
                timer.cancel()

    def _route(self, host: str | None, network: int | str | None) -> tuple[int, Any]:
        """(network id, responder) to use for ``host`` on ``network``."""
        if self.netstack is None:
            raise OSError(errno.ENETDOWN, "the node runs without its userspace network stack")
        responders: dict[int, Any] = self.netstack.responders
        if network is not None:
            nwid = parse_network_id(network)
            responder = responders.get(nwid)
            if responder is None:
                raise OSError(
                    errno.ENETUNREACH, f"network {nwid:016x} is not joined or has no configuration yet"
                )
            return nwid, responder
        if not responders:
            raise OSError(errno.ENETUNREACH, "the node has no configured network")
        if host is not None:
            dest = ipaddress.ip_address(host)
            matches = [
                (nwid, r) for nwid, r in responders.items() if any(dest in a.network for a in r.addresses)
            ]
            if len(matches) == 1:
                return matches[0]
        if len(responders) == 1:
            return next(iter(responders.items()))
        raise ValueError("the node is on several networks: pass network=")

    async def create_connection(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        *,
        network: int | str | None = None,
        timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        local_port: int = 0,
    ) -> tuple[TcpTransport, asyncio.BaseProtocol]:
        """Open a TCP connection on a virtual network; (transport, protocol) like
        ``loop.create_connection``. Raises ``ConnectionRefusedError``, ``TimeoutError``
        (after ``timeout`` seconds) or ``OSError``."""
        loop = asyncio.get_running_loop()
        nwid, responder = self._route(host, network)
        dest = ipaddress.ip_address(host)
        src = responder._source_for(dest)
        self._tcp_timer()
        transport = TcpTransport(loop, self, responder.tcp, nwid)
        transport._connected = loop.create_future()
        conn = responder.tcp.connect(
            src, dest.packed, int(port), transport, self.clock(), local_port=local_port
        )
        transport._conn = conn
        try:
            if timeout is None:
                await transport._connected
            else:
                await asyncio.wait_for(asyncio.shield(transport._connected), timeout)
        except asyncio.TimeoutError:
            responder.tcp.abort(conn, self.clock())
            raise TimeoutError(f"no answer from {host} port {port} within {timeout} s") from None
        except asyncio.CancelledError:
            responder.tcp.abort(conn, self.clock())
            raise
        protocol = protocol_factory()
        transport._attach(protocol)
        return transport, protocol

    async def open_connection(
        self,
        host: str,
        port: int,
        *,
        network: int | str | None = None,
        timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        limit: int = STREAM_LIMIT,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Like ``asyncio.open_connection``, over a virtual network."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await self.create_connection(
            lambda: protocol, host, port, network=network, timeout=timeout
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return reader, writer

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        port: int,
        *,
        network: int | str | None = None,
        backlog: int = 128,
    ) -> ZtServer:
        """Accept TCP connections on ``port`` on every address the node has on the network."""
        loop = asyncio.get_running_loop()
        nwid, responder = self._route(None, network)
        self._tcp_timer()
        server = ZtServer(loop, self, responder.tcp, nwid, int(port))
        server._listener = responder.tcp.listen(
            int(port), _Acceptor(server, protocol_factory), backlog=backlog
        )
        server.port = server._listener.port  # the one chosen when port was 0
        return server

    async def start_server(
        self,
        client_connected_cb: ClientConnected,
        port: int,
        *,
        network: int | str | None = None,
        backlog: int = 128,
        limit: int = STREAM_LIMIT,
    ) -> ZtServer:
        """Like ``asyncio.start_server``: ``client_connected_cb(reader, writer)`` per connection."""
        loop = asyncio.get_running_loop()

        def factory() -> asyncio.BaseProtocol:
            reader = asyncio.StreamReader(limit=limit, loop=loop)
            return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

        return await self.create_server(factory, port, network=network, backlog=backlog)

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_port: int = 0,
        *,
        remote_addr: tuple[str, int] | None = None,
        network: int | str | None = None,
        family: int = 4,
    ) -> tuple[UdpTransport, asyncio.DatagramProtocol]:
        """A UDP endpoint on a virtual network (``family`` 4 or 6; taken from
        ``remote_addr`` when given); (transport, protocol) like the loop's method."""
        loop = asyncio.get_running_loop()
        if remote_addr is not None:
            remote_addr = (str(remote_addr[0]), int(remote_addr[1]))
            family = ipaddress.ip_address(remote_addr[0]).version
        if family not in (4, 6):
            raise ValueError("family must be 4 or 6")
        nwid, responder = self._route(remote_addr[0] if remote_addr else None, network)
        self._tcp_timer()  # also subscribes to the node's DOWN, which closes every socket
        sock = responder.udp_socket(local_port, v6=family == 6)
        transport = UdpTransport(loop, self, sock, nwid, remote_addr)
        try:
            protocol = protocol_factory()
        except BaseException:
            sock.close()
            raise
        transport._protocol = protocol
        sock.set_handler(transport._deliver)
        sock.on_close = transport._socket_closed
        protocol.connection_made(transport)
        return transport, protocol
