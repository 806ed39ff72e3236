"""Draining a UDP socket per wake-up, and a packet's pieces in one send: the runtime's
batched UDP I/O.

`recv_batch(sock, max_count)` returns the datagrams queued on a non-blocking
socket, at most `max_count`, as ``(data, (host, port))`` pairs, the host as
``socket.recvfrom`` formats it. It uses the C extension `ztcore.runtime._udpio`
(one recvmmsg call) when it was built, and a ``recvfrom`` loop otherwise; both
stop at the first "nothing queued". A socket error with nothing read yet is
raised as OSError; an error after some datagrams is raised by the next call.

`send_batch(sock, datagrams, (host, port))` sends a tuple of datagrams (the head and
fragments of one VL1 packet) to one numeric address in order: one sendmmsg call with
the extension, a ``sendto`` loop otherwise. It returns how many went (fewer when the
socket's buffer filled); an error before the first is raised (BlockingIOError when full).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

__all__ = [
    "HAVE_RECVMMSG",
    "MAX_DATAGRAM",
    "recv_batch",
    "recv_batch_python",
    "send_batch",
    "send_batch_python",
]

MAX_DATAGRAM = 65536  # every UDP payload fits

Datagrams = list[tuple[bytes, tuple[str, int]]]


def recv_batch_python(sock: socket.socket, max_count: int) -> Datagrams:
    """The pure-Python drain (used when the extension is not built)."""
    out: Datagrams = []
    recvfrom = sock.recvfrom
    try:
        while len(out) < max_count:
            data, addr = recvfrom(MAX_DATAGRAM)
            out.append((data, (addr[0], addr[1])))
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        if not out:
            raise
        # Reported again by the kernel on the next read; deliver what was read first.
    return out


def send_batch_python(sock: socket.socket, datagrams: tuple[bytes, ...], addr: tuple[str, int]) -> int:
    """The pure-Python send (used when the extension is not built)."""
    sent = 0
    for d in datagrams:
        try:
            sock.sendto(d, addr)
        except OSError:
            if not sent:
                raise
            break
        sent += 1
    return sent


try:
    from ztcore.runtime import _udpio  # type: ignore[attr-defined]
except ImportError:
    _udpio = None

_c_recv_batch: Callable[[int, int], Datagrams] | None = _udpio.recv_batch if _udpio is not None else None
_c_send_batch: Callable[[int, tuple[bytes, ...], str, int], int] | None = (
    getattr(_udpio, "send_batch", None) if _udpio is not None else None
)
HAVE_RECVMMSG = _c_recv_batch is not None


def recv_batch(sock: socket.socket, max_count: int) -> Datagrams:
    if _c_recv_batch is None:
        return recv_batch_python(sock, max_count)
    return _c_recv_batch(sock.fileno(), max_count)


def send_batch(sock: socket.socket, datagrams: tuple[bytes, ...], addr: tuple[str, int]) -> int:
    if _c_send_batch is None or "%" in addr[0]:
        return send_batch_python(sock, datagrams, addr)
    return _c_send_batch(sock.fileno(), datagrams, addr[0], addr[1])
