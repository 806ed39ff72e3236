"""Blocking, socket-like TCP and UDP on a virtual network, for scripts and the
REPL: the thread facade's counterpart of ``ztcore.runtime.sockets``.

Obtained from a ``NodeHandle``::

    with handle.connect("10.147.17.2", 8080, network=nwid) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        print(s.recv(4096))

    with handle.listen(8080, network=nwid) as srv:
        conn, peer = srv.accept(timeout=30)

    u = handle.udp_socket(5000, network=nwid)
    u.sendto(b"ping", ("10.147.17.2", 5000)); data, addr = u.recvfrom(timeout=5)

Every call runs in the runtime's event loop and blocks the calling thread
until done; a timeout (``settimeout`` or per call, seconds; None waits for
ever) raises ``TimeoutError``; a closed or reset connection raises
``OSError`` (``ConnectionResetError``, ``BrokenPipeError``, ...).
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ztcore.runtime.sockets import DEFAULT_CONNECT_TIMEOUT

if TYPE_CHECKING:
    from ztcore.runtime.service import NodeService

T = TypeVar("T")


class LoopRunner(Protocol):
    """What these sockets need from `ztcore.runtime.facade.ThreadedRuntime` (named here so
    the facade, which hands its sockets out, is not imported back)."""

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T: ...

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T: ...

_FOREVER = 10.0**9  # the facade needs a bound; the socket's own timeout is the real one
_UNSET: Any = object()


async def _bounded(aw: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
    if timeout is None:
        return await aw
    try:
        return await asyncio.wait_for(aw, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"{what} timed out after {timeout} s") from None


class _Blocking:
    def __init__(self, rt: LoopRunner, timeout: float | None) -> None:
        self._rt = rt
        self._timeout = timeout

    def settimeout(self, timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 or None")
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        outer = _FOREVER if timeout is None else timeout + 5.0
        return self._rt.run(_bounded(coro, timeout, what), timeout=outer)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class ZtSocket(_Blocking):
    """A connected TCP stream (the blocking face of a StreamReader/StreamWriter pair)."""

    def __init__(
        self,
        rt: LoopRunner,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float | None,
    ) -> None:
        super().__init__(rt, timeout)
        self._reader = reader
        self._writer = writer
        self._closed = False

    def __repr__(self) -> str:
        return f"<ZtSocket {self.getsockname()} -> {self.getpeername()}{' closed' if self._closed else ''}>"

    def getpeername(self) -> tuple[str, int]:
        return self._writer.get_extra_info("peername")

    def getsockname(self) -> tuple[str, int]:
        return self._writer.get_extra_info("sockname")

    def _check(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "socket is closed")

    def sendall(self, data: bytes, timeout: float | None = _UNSET) -> None:
        """Send every byte (waits while the send buffer is full)."""
        self._check()
        t = self._timeout if timeout is _UNSET else timeout

        async def go() -> None:
            if self._writer.transport.is_closing():
                raise BrokenPipeError(errno.EPIPE, "connection closed")
            self._writer.write(bytes(data))
            await self._writer.drain()

        self._run(go(), t, "send")

    def send(self, data: bytes, timeout: float | None = _UNSET) -> int:
        self.sendall(data, timeout)
        return len(data)

    def recv(self, bufsize: int, timeout: float | None = _UNSET) -> bytes:
        """Up to ``bufsize`` bytes; b"" once the peer closed its side."""
        self._check()
        t = self._timeout if timeout is _UNSET else timeout
        return self._run(self._reader.read(bufsize), t, "recv")

    def recv_exactly(self, n: int, timeout: float | None = _UNSET) -> bytes:
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` if the stream ends first."""
        self._check()
        t = self._timeout if timeout is _UNSET else timeout
        return self._run(self._reader.readexactly(n), t, "recv")

    def set_keepalive(
        self,
        enabled: bool = True,
        *,
        idle: float | None = None,
        interval: float | None = None,
        count: int | None = None,
    ) -> None:
        """TCP keepalive (seconds); see ``TcpTransport.set_keepalive``."""
        self._check()
        transport: Any = self._writer.transport
        self._rt.call(lambda: transport.set_keepalive(enabled, idle=idle, interval=interval, count=count))

    def shutdown_write(self) -> None:
        """Half-close: the peer reads end-of-stream, we can still receive."""
        self._check()
        self._rt.call(self._writer.write_eof)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def go() -> None:
            self._writer.close()
            try:
                await asyncio.wait_for(self._writer.wait_closed(), 5)
            except (OSError, asyncio.TimeoutError):
                pass  # already reset, or the loop is shutting down

        try:
            self._rt.run(go(), timeout=10)
        except RuntimeError:
            pass  # runtime already closed: the connection went with it


class ZtListener(_Blocking):
    """A listening TCP port; ``accept`` returns connected ``ZtSocket``s."""

    def __init__(
        self, rt: LoopRunner, service: NodeService, port: int, network: Any, backlog: int
    ) -> None:
        super().__init__(rt, None)
        self._queue: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None

        async def start() -> Any:
            self._queue = asyncio.Queue()
            queue = self._queue

            def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                queue.put_nowait((reader, writer))

            return await service.start_server(on_client, port, network=network, backlog=backlog)

        self._server = rt.run(start())
        self.port: int = self._server.port
        self.network_id: int = self._server.network_id

    def accept(self, timeout: float | None = _UNSET) -> tuple[ZtSocket, tuple[str, int]]:
        t = self._timeout if timeout is _UNSET else timeout
        assert self._queue is not None
        if not self._server.is_serving() and self._queue.empty():
            raise OSError(errno.EBADF, "listener is closed")
        reader, writer = self._run(self._queue.get(), t, "accept")
        sock = ZtSocket(self._rt, reader, writer, None)
        return sock, sock.getpeername()

    def close(self) -> None:
        try:
            self._rt.call(self._server.close)
        except RuntimeError:
            pass


class _DatagramQueue(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue(maxsize=1024)
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        if self.queue.full():
            self.dropped += 1
            return
        self.queue.put_nowait((data, addr))


class ZtDatagramSocket(_Blocking):
    """A UDP port on a virtual network."""

    def __init__(self, rt: LoopRunner, service: NodeService, port: int, network: Any, v6: bool) -> None:
        super().__init__(rt, None)

        async def start() -> Any:
            return await service.create_datagram_endpoint(
                _DatagramQueue, port, network=network, family=6 if v6 else 4
            )

        self._transport, self._protocol = rt.run(start())
        self.port: int = self._transport.get_extra_info("sockname")[1]

    def getsockname(self) -> tuple[str, int]:
        return self._transport.get_extra_info("sockname")

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self._rt.call(self._transport.sendto, bytes(data), (str(addr[0]), int(addr[1])))
        return len(data)

    def recvfrom(self, timeout: float | None = _UNSET) -> tuple[bytes, tuple[str, int]]:
        t = self._timeout if timeout is _UNSET else timeout
        return self._run(self._protocol.queue.get(), t, "recvfrom")

    def close(self) -> None:
        try:
            self._rt.call(self._transport.close)
        except RuntimeError:
            pass


def connect(
    rt: LoopRunner,
    service: NodeService,
    host: str,
    port: int,
    network: Any,
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
) -> ZtSocket:
    async def go() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await service.open_connection(host, port, network=network, timeout=timeout)

    outer = _FOREVER if timeout is None else timeout + 5.0
    reader, writer = rt.run(go(), timeout=outer)
    return ZtSocket(rt, reader, writer, None)
