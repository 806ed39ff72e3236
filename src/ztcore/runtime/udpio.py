"""Draining a UDP socket per wake-up: the runtime's batched receive.

`recv_batch(sock, max_count)` returns the datagrams queued on a non-blocking
socket, at most `max_count`, as ``(data, (host, port))`` pairs, the host as
``socket.recvfrom`` formats it. It uses the C extension `ztcore.runtime._udpio`
(one recvmmsg call) when it was built, and a ``recvfrom`` loop otherwise; both
stop at the first "nothing queued". A socket error with nothing read yet is
raised as OSError; an error after some datagrams is raised by the next call.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

__all__ = ["HAVE_RECVMMSG", "MAX_DATAGRAM", "recv_batch", "recv_batch_python"]

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


def _load_c() -> Callable[[int, int], Datagrams] | None:
    try:
        from ztcore.runtime import _udpio  # type: ignore[attr-defined]
    except ImportError:
        return None
    fn: Callable[[int, int], Datagrams] = _udpio.recv_batch
    return fn


_c_recv_batch = _load_c()
HAVE_RECVMMSG = _c_recv_batch is not None


def recv_batch(sock: socket.socket, max_count: int) -> Datagrams:
    if _c_recv_batch is None:
        return recv_batch_python(sock, max_count)
    return _c_recv_batch(sock.fileno(), max_count)
