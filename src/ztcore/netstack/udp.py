"""Datagram sockets on the virtual network, served by a ``Responder``.

A ``VirtualUdpSocket`` is a port binding plus an inbound queue: the responder
pushes datagrams in from ``handle_frame`` and the socket hands them to a
callback, a waiting ``recvfrom`` coroutine, or its queue, in that order of
preference. Sending goes back through the responder, which resolves the
neighbour's MAC and builds the frames. No I/O, no threads: like the
responder, a socket must be used from one thread.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ztcore.errors import report_unexpected

log = logging.getLogger(__name__)

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address], None]

DEFAULT_QUEUE_LIMIT = 1024


class _UdpStack(Protocol):
    """What a socket needs from the responder that owns it."""

    def _udp_send(self, sock: VirtualUdpSocket, data: bytes, addr: Address, now: int | None) -> None: ...

    def _udp_close(self, sock: VirtualUdpSocket) -> None: ...

    def _udp_local_ip(self, v6: bool) -> str: ...


class VirtualUdpSocket:
    """A UDP port bound on the node's virtual-network addresses (one family)."""

    def __init__(self, stack: _UdpStack, port: int, v6: bool, *, queue_limit: int = DEFAULT_QUEUE_LIMIT):
        self._stack = stack
        self.port = port
        self.v6 = v6
        self.closed = False
        self.queue_limit = queue_limit
        self.dropped = 0  # datagrams lost to a full queue
        self.handler_errors = 0  # exceptions raised by the application's callbacks (logged)
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._handler: DatagramHandler | None = None
        self._waiters: deque[asyncio.Future[tuple[bytes, Address]]] = deque()
        self.on_close: Callable[[], None] | None = None  # told once when the socket closes

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<VirtualUdpSocket {'udp6' if self.v6 else 'udp4'} port {self.port} {state}>"

    @property
    def local_address(self) -> Address:
        """(first assigned address of this family, or the wildcard; port)."""
        return (self._stack._udp_local_ip(self.v6), self.port)

    def sendto(self, data: bytes, addr: Address, *, now: int | None = None) -> None:
        """Send one datagram; it waits in the responder's queue if the
        neighbour's MAC is not known yet. ``now`` defaults to the last time
        the responder was told about."""
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")
        self._stack._udp_send(self, bytes(data), addr, now)

    def recvfrom_nowait(self) -> tuple[bytes, Address] | None:
        return self._queue.popleft() if self._queue else None

    def set_handler(self, cb: DatagramHandler | None) -> None:
        """Callback mode: every datagram arriving from now on goes to ``cb``
        (called from within ``Responder.handle_frame``). Already queued ones
        stay queued."""
        self._handler = cb

    async def recvfrom(self, timeout: float | None = None) -> tuple[bytes, Address]:
        """Wait for the next datagram; raises ``TimeoutError`` after ``timeout`` s."""
        if self._queue:
            return self._queue.popleft()
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")
        fut: asyncio.Future[tuple[bytes, Address]] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            if timeout is None:
                return await fut
            try:
                return await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                # Distinct from the builtin before Python 3.11; callers catch the builtin.
                raise TimeoutError("no datagram within the timeout") from None
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._stack._udp_close(self)
        self._handler = None
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(OSError(errno.EBADF, "socket is closed"))
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            try:
                on_close()
            except Exception as e:
                self.handler_errors += 1
                report_unexpected(log, "netstack: UDP socket close callback", e)

    def _deliver(self, data: bytes, addr: Address) -> bool:
        """Hand an inbound datagram over; False if it had to be dropped."""
        if self.closed:
            return False
        if self._handler is not None:
            try:
                self._handler(data, addr)
            except Exception as e:
                # An application bug must not break frame processing for everyone else.
                self.handler_errors += 1
                report_unexpected(log, "netstack: UDP datagram handler", e)
            return True
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result((data, addr))
                return True
        if len(self._queue) >= self.queue_limit:
            self.dropped += 1
            return False
        self._queue.append((data, addr))
        return True
