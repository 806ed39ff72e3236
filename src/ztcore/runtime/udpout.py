"""The runtime's datagram output: what NodeService does with the datagrams its node
sends. One named socket, or every socket of the address family when none is named (as
zerotier-one does); the pieces of one packet in one sendmmsg (`udpio.send_batch`); low-TTL
sends that open NAT mappings; and, while a socket's kernel buffer is full, a bounded
queue per socket that goes out in order once it is writable (beyond SEND_QUEUE_LIMIT
datagrams are dropped and counted). Receiving is the service's own (`_on_readable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ztcore.runtime.udpio import send_batch
from ztcore.runtime.udpsockets import family_of

log = logging.getLogger("ztcore.runtime")

# Datagrams waiting, per socket, for room in a full send buffer; beyond it they are dropped
# and counted (ServiceCounters.send_dropped).
SEND_QUEUE_LIMIT = 1024


class _Counters(Protocol):
    packets_out: int
    bytes_out: int
    send_errors: int
    send_dropped: int


@dataclass(eq=False)
class Binding:
    """One bound UDP socket, served through loop.add_reader / add_writer."""

    local_socket: int
    family: int
    address: tuple[str, int]
    sock: socket.socket
    secondary: bool
    # (datagram, (host, port), ttl) waiting for the socket to become writable again
    pending: deque[tuple[bytes, tuple[str, int], int]] = field(default_factory=deque)


class DatagramOutput:
    """The sending half of NodeService (a mixin: the service owns the sockets and counters)."""

    _bindings: dict[int, Binding]
    _by_family: dict[int, tuple[Binding, ...]]
    _stopped: bool
    _loop: asyncio.AbstractEventLoop | None
    _wire_listeners: list[Any]
    counters: _Counters
    _dispatch: Callable[..., None]

    def _send(self, local_socket: int, remote: tuple[str, int], data: bytes, ttl: int = 0) -> bool:
        try:
            host, port = remote
        except (TypeError, ValueError):
            self.counters.send_errors += 1
            return False
        family = family_of(host)
        if family is None or type(port) is not int or not 0 < port < 65536 or self._stopped:
            self.counters.send_errors += 1
            return False
        chosen = self._bindings.get(local_socket)
        if chosen is not None and chosen.family == family:
            return self._send_on(chosen, data, remote, ttl)
        # No usable socket named: send from every socket of the family, as zerotier-one does.
        targets = self._by_family.get(family, ())
        if not targets:
            self.counters.send_errors += 1
            return False
        sent = False
        for b in targets:
            sent = self._send_on(b, data, remote, ttl) or sent
        return sent

    def _send_many(self, local_socket: int, remote: tuple[str, int], datagrams: tuple[bytes, ...]) -> bool:
        """`_send` for the pieces of one packet: one sendmmsg where it can (udpio.send_batch)."""
        b = self._bindings.get(local_socket)
        try:
            family = family_of(remote[0])
        except (TypeError, IndexError):
            family = None
        if b is None or b.pending or b.family != family or self._stopped:
            sent = False
            for data in datagrams:
                sent = self._send(local_socket, remote, data) or sent
            return sent
        try:
            n = send_batch(b.sock, datagrams, remote)
        except (BlockingIOError, InterruptedError):
            n = 0
        except (OSError, ValueError) as e:
            self.counters.send_errors += 1
            log.debug("send to %s failed: %s", remote, e)
            return False
        for data in datagrams[:n]:
            self._sent(b, data, remote)
        for data in datagrams[n:]:  # the buffer filled: the rest waits its turn
            self._enqueue(b, data, remote, 0)
        return True

    def _send_on(self, b: Binding, data: bytes, addr: tuple[str, int], ttl: int) -> bool:
        if b.pending:  # keep the order: behind what is already waiting
            return self._enqueue(b, data, addr, ttl)
        try:
            if ttl > 0:
                self._sendto(b, data, addr, ttl)
            else:
                b.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            return self._enqueue(b, data, addr, ttl)
        except (OSError, ValueError) as e:
            self.counters.send_errors += 1
            log.debug("send to %s failed: %s", addr, e)
            return False
        self._sent(b, data, addr)
        return True

    @staticmethod
    def _sendto(b: Binding, data: bytes, addr: tuple[str, int], ttl: int) -> None:
        if ttl > 0 and b.family == socket.AF_INET:
            # Low-TTL sends open NAT mappings without reaching the peer.
            sock = b.sock
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            try:
                sock.sendto(data, addr)
            finally:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        else:
            b.sock.sendto(data, addr)

    def _sent(self, b: Binding, data: bytes, addr: tuple[str, int]) -> None:
        counters = self.counters
        counters.packets_out += 1
        counters.bytes_out += len(data)
        if self._wire_listeners:
            self._dispatch(self._wire_listeners, "out", b.address, addr, data)

    def _enqueue(self, b: Binding, data: bytes, addr: tuple[str, int], ttl: int) -> bool:
        if len(b.pending) >= SEND_QUEUE_LIMIT or self._loop is None:
            self.counters.send_dropped += 1
            log.debug("socket %d send queue full: dropped a datagram to %s", b.local_socket, addr)
            return False
        if not b.pending:
            self._loop.add_writer(b.sock.fileno(), self._on_writable, b)
        b.pending.append((data, addr, ttl))
        return True

    def _on_writable(self, b: Binding) -> None:
        """Room in the socket's send buffer again: send what waited, in order."""
        pending = b.pending
        while pending:
            data, addr, ttl = pending[0]
            try:
                self._sendto(b, data, addr, ttl)
            except (BlockingIOError, InterruptedError):
                return
            except (OSError, ValueError) as e:
                self.counters.send_errors += 1
                log.debug("send to %s failed: %s", addr, e)
            else:
                self._sent(b, data, addr)
            pending.popleft()
        if self._loop is not None:
            self._loop.remove_writer(b.sock.fileno())
