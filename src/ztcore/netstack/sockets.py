"""The TCP endpoint table of one node on one network: listeners, connections
by address and port, ephemeral ports, initial sequence numbers, timers, and
RSTs for segments nobody owns.

``TcpEndpoints`` is sans-I/O like the connections it holds: the responder
feeds it parsed segments (``input``) and the time, and it hands finished
segments to ``output(src_ip, dst_ip, tcp_bytes)``. Applications attach a
``TcpHandler`` to each connection (and a ``TcpListenerHandler`` to each
listener); their callbacks run after the machine has finished a step, never
in the middle of one, so a handler may call back into the table (send,
close, consumed) freely. ``wakeup(deadline_ms)`` tells the runner when the
table next needs ``expire``.
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import ipaddress
import itertools
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable
from typing import Protocol

from ztcore.errors import report_unexpected
from ztcore.netstack.tcp import EventKind, State, TcpConfig, TcpConnection, TcpEvent
from ztcore.netstack.tcpwire import ACK, RST, SYN, TcpSegment, build_tcp

log = logging.getLogger(__name__)

EPHEMERAL_FIRST = 49152
EPHEMERAL_LAST = 65535
DEFAULT_BACKLOG = 128

Key = tuple[bytes, int, bytes, int]  # local ip, local port, remote ip, remote port
Output = Callable[[bytes, bytes, bytes], None]


class TcpHandler(Protocol):
    """Receives a connection's events. For DATA the handler reports what the application
    took with ``TcpEndpoints.consumed``: until it does, those bytes count against the
    receive window (that is the flow control)."""

    def tcp_event(self, conn: TcpConnection, event: TcpEvent) -> None: ...


class TcpListenerHandler(Protocol):
    def tcp_accept(self, conn: TcpConnection) -> TcpHandler | None:
        """A connection completed its handshake; return its handler (None refuses it with a RST)."""
        ...


class TcpListener:
    """A port accepting connections on every address of the network (both families)."""

    def __init__(self, table: TcpEndpoints, port: int, handler: TcpListenerHandler, backlog: int) -> None:
        self.table = table
        self.port = port
        self.handler = handler
        self.backlog = backlog
        self.pending = 0  # embryonic connections (SYN_RECEIVED)
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.table._listeners.pop(self.port, None)


def _ip_str(ip: bytes) -> str:
    return str(ipaddress.ip_address(ip))


class TcpEndpoints:
    def __init__(
        self,
        output: Output,
        *,
        is_local: Callable[[bytes], bool],
        mtu: int,
        config: TcpConfig | None = None,
    ) -> None:
        self.output = output
        self.is_local = is_local
        self.mtu = mtu
        self.config = config or TcpConfig()
        self.wakeup: Callable[[int], None] | None = None
        self.counters: Counter[str] = Counter()
        self._listeners: dict[int, TcpListener] = {}
        self._conns: dict[Key, TcpConnection] = {}
        self._keys: dict[int, Key] = {}  # id(conn) -> key
        self._handlers: dict[int, TcpHandler] = {}
        self._listener_of: dict[int, TcpListener] = {}  # embryonic conn -> its listener
        self._heap: list[tuple[int, int, TcpConnection]] = []
        self._scheduled: dict[int, int] = {}
        self._tiebreak = itertools.count()
        self._dirty: deque[TcpConnection] = deque()
        self._loopback: deque[tuple[bytes, bytes, TcpSegment]] = deque()
        self._busy = False
        self._secret = secrets.token_bytes(16)
        self._next_port = EPHEMERAL_FIRST + secrets.randbelow(EPHEMERAL_LAST - EPHEMERAL_FIRST)
        self._now = 0

    # --- queries ---------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        """The latest time the table was given."""
        return self._now

    def connections(self) -> list[TcpConnection]:
        return list(self._conns.values())

    def listener(self, port: int) -> TcpListener | None:
        return self._listeners.get(port)

    def mss_for(self, v6: bool) -> int:
        return max(64, self.mtu - (60 if v6 else 40))

    def _config_for(self, v6: bool) -> TcpConfig:
        cfg = TcpConfig(**vars(self.config))
        cfg.mss = self.mss_for(v6)
        return cfg

    def _iss(self, key: Key, now: int) -> int:
        # RFC 6528: a keyed hash of the connection's addresses plus a 4-microsecond clock.
        h = hashlib.blake2s(repr(key).encode(), key=self._secret, digest_size=4).digest()
        return (int.from_bytes(h, "big") + now * 250) & 0xFFFFFFFF

    # --- application side ------------------------------------------------------------------------

    def listen(
        self, port: int, handler: TcpListenerHandler, *, backlog: int = DEFAULT_BACKLOG
    ) -> TcpListener:
        """Accept connections on ``port`` (0: a free ephemeral port, see ``listener.port``)."""
        if not 0 <= port <= 0xFFFF:
            raise ValueError("port must be 0..65535")
        if port == 0:
            port = self._free_listen_port()
        if port in self._listeners:
            raise OSError(errno.EADDRINUSE, f"TCP port {port} already listening")
        listener = TcpListener(self, port, handler, max(1, backlog))
        self._listeners[port] = listener
        return listener

    def connect(
        self,
        local_ip: bytes,
        remote_ip: bytes,
        remote_port: int,
        handler: TcpHandler,
        now: int,
        *,
        local_port: int = 0,
    ) -> TcpConnection:
        """Open a connection (sends the SYN); ``handler`` sees CONNECTED or CLOSED."""
        if not 0 < remote_port <= 0xFFFF:
            raise ValueError("port must be 1..65535")
        if local_port == 0:
            local_port = self._free_port(local_ip, remote_ip, remote_port)
        key = (local_ip, local_port, remote_ip, remote_port)
        if key in self._conns:
            raise OSError(errno.EADDRINUSE, "connection already exists")
        conn = self._new_conn(key, now)
        self._handlers[id(conn)] = handler
        self._now = now
        conn.open_active(now)
        self._after(conn)
        return conn

    def send(self, conn: TcpConnection, data: bytes, now: int) -> None:
        self._now = now
        conn.send(data, now)
        self._after(conn)

    def shutdown(self, conn: TcpConnection, now: int) -> None:
        self._now = now
        conn.shutdown(now)
        self._after(conn)

    def close(self, conn: TcpConnection, now: int) -> None:
        """The application lets go: orderly close, and nobody hears of the connection again."""
        self._now = now
        self._handlers.pop(id(conn), None)
        conn.close(now)
        self._after(conn)

    def abort(self, conn: TcpConnection, now: int) -> None:
        self._now = now
        self._handlers.pop(id(conn), None)
        conn.abort(now)
        self._after(conn)

    def close_all(self, error: OSError) -> None:
        """Close every listener and end every connection with ``error`` (network left, node stopped)."""
        for listener in list(self._listeners.values()):
            listener.close()
        for conn in list(self._conns.values()):
            conn.destroy(error)
            self._mark(conn)
        self._run()

    def consumed(self, conn: TcpConnection, n: int, now: int) -> None:
        self._now = now
        conn.consumed(n, now)
        self._after(conn)

    # --- network side ----------------------------------------------------------------------------

    def input(self, src: bytes, dst: bytes, seg: TcpSegment, now: int) -> bool:
        """A segment for one of our addresses; True if a connection or listener took it."""
        self._now = now
        taken = self._input(src, dst, seg, now)
        self._run()
        return taken

    def _input(self, src: bytes, dst: bytes, seg: TcpSegment, now: int) -> bool:
        key = (dst, seg.dst_port, src, seg.src_port)
        conn = self._conns.get(key)
        if conn is not None and conn.state is State.TIME_WAIT and seg.flags & SYN and not seg.flags & ACK:
            # A new incarnation of a connection in TIME_WAIT (RFC 9293 3.6.1, as Linux accepts it).
            if ((seg.seq - conn.rcv_nxt) & 0x80000000) == 0 and seg.seq != conn.rcv_nxt & 0xFFFFFFFF:
                self._remove(conn)
                conn = None
        if conn is not None:
            if conn.orphaned and seg.payload and conn.state in (State.FIN_WAIT_1, State.FIN_WAIT_2):
                # Data for a connection the application closed: nobody will read it (RFC 9293 3.10.7.4 / Linux).
                conn.abort(now)
                self.counters["data_after_close"] += 1
                self._mark(conn)
                return True
            conn.segment_arrived(seg, now)
            self._mark(conn)
            return True
        listener = self._listeners.get(seg.dst_port)
        if listener is not None and seg.flags & (SYN | ACK | RST) == SYN:
            if listener.pending >= listener.backlog:
                self.counters["syn_backlog_full"] += 1
                return False  # dropped: the peer retries, as with a full Linux SYN queue
            conn = self._new_conn(key, now)
            self._listener_of[id(conn)] = listener
            listener.pending += 1
            conn.open_passive(seg, now)
            self._mark(conn)
            return True
        self._reset_unknown(src, dst, seg)
        return False

    def _reset_unknown(self, src: bytes, dst: bytes, seg: TcpSegment) -> None:
        """RFC 9293 3.10.7.1: answer a segment for no connection with a RST (never a RST for a RST)."""
        if seg.flags & RST:
            return
        self.counters["reset_sent"] += 1
        if seg.flags & ACK:
            rst = TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
        else:
            rst = TcpSegment(
                seg.dst_port, seg.src_port, 0, (seg.seq + seg.seg_len) & 0xFFFFFFFF, RST | ACK, 0
            )
        self._emit(dst, src, rst)

    # --- timers ----------------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        while self._heap:
            t, _, conn = self._heap[0]
            if self._scheduled.get(id(conn)) == t:
                return t
            heapq.heappop(self._heap)
        return None

    def expire(self, now: int) -> None:
        self._now = now
        while self._heap and self._heap[0][0] <= now:
            t, _, conn = heapq.heappop(self._heap)
            if self._scheduled.get(id(conn)) != t:
                continue
            del self._scheduled[id(conn)]
            conn.on_timer(now)
            self._mark(conn)
        self._run()

    # --- plumbing --------------------------------------------------------------------------------

    def _new_conn(self, key: Key, now: int) -> TcpConnection:
        v6 = len(key[0]) == 16
        conn = TcpConnection(
            (_ip_str(key[0]), key[1]),
            (_ip_str(key[2]), key[3]),
            self._iss(key, now),
            self._config_for(v6),
            v6=v6,
        )
        self._conns[key] = conn
        self._keys[id(conn)] = key
        return conn

    def _free_listen_port(self) -> int:
        for _ in range(EPHEMERAL_LAST - EPHEMERAL_FIRST + 1):
            port = self._next_port
            self._next_port = port + 1 if port < EPHEMERAL_LAST else EPHEMERAL_FIRST
            if port not in self._listeners and not any(k[1] == port for k in self._conns):
                return port
        raise OSError(errno.EADDRINUSE, "no free ephemeral TCP port")

    def set_keepalive(self, conn: TcpConnection, enabled: bool, now: int, **options: int | None) -> None:
        self._now = now
        conn.set_keepalive(enabled, now, **options)
        self._after(conn)

    def _free_port(self, local_ip: bytes, remote_ip: bytes, remote_port: int) -> int:
        span = EPHEMERAL_LAST - EPHEMERAL_FIRST + 1
        for _ in range(span):
            port = self._next_port
            self._next_port = port + 1 if port < EPHEMERAL_LAST else EPHEMERAL_FIRST
            if port not in self._listeners and (local_ip, port, remote_ip, remote_port) not in self._conns:
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral TCP port")

    def _mark(self, conn: TcpConnection) -> None:
        self._dirty.append(conn)

    def _after(self, conn: TcpConnection) -> None:
        self._mark(conn)
        self._run()

    def _run(self) -> None:
        """Flush segments, reschedule timers and deliver events until nothing is left; not re-entrant."""
        if self._busy:
            return
        self._busy = True
        try:
            while self._dirty or self._loopback:
                while self._dirty:
                    self._process(self._dirty.popleft())
                if self._loopback:
                    src, dst, seg = self._loopback.popleft()
                    self._input(src, dst, seg, self._now)
        finally:
            self._busy = False

    def _process(self, conn: TcpConnection) -> None:
        key = self._keys.get(id(conn))
        if key is None:
            return  # already removed
        for seg in conn.take_segments():
            self._emit(key[0], key[2], seg)
        for event in conn.take_events():
            self._dispatch(conn, event)
        if conn.state is State.CLOSED:
            self._remove(conn)
            return
        deadline = conn.next_deadline()
        if deadline is not None and self._scheduled.get(id(conn)) != deadline:
            self._scheduled[id(conn)] = deadline
            heapq.heappush(self._heap, (deadline, next(self._tiebreak), conn))
            if len(self._heap) > 64 + 4 * len(self._conns):
                self._compact()
            if self.wakeup is not None:
                self.wakeup(deadline)

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if self._scheduled.get(id(e[2])) == e[0]]
        heapq.heapify(self._heap)

    def _dispatch(self, conn: TcpConnection, event: TcpEvent) -> None:
        listener = self._listener_of.get(id(conn))
        if listener is not None and event.kind in (EventKind.CONNECTED, EventKind.CLOSED):
            del self._listener_of[id(conn)]
            listener.pending -= 1
            if event.kind is EventKind.CLOSED:
                return  # an embryo that died: the application never knew it
            if listener.closed:
                conn.abort(self._now)
                self._mark(conn)
                return
            try:
                handler = listener.handler.tcp_accept(conn)
            except Exception as e:
                report_unexpected(log, "netstack: TCP accept handler", e)
                self.counters["handler_error"] += 1
                handler = None
            if handler is None:
                conn.abort(self._now)
                self._mark(conn)
                return
            self._handlers[id(conn)] = handler
        handler = self._handlers.get(id(conn))
        if handler is None:
            if event.kind is EventKind.DATA:
                conn.consumed(len(event.data), self._now)  # orphaned: discard
                self._mark(conn)
            return
        try:
            handler.tcp_event(conn, event)
        except Exception as e:
            report_unexpected(log, f"netstack: TCP event handler ({event.kind.name})", e)
            self.counters["handler_error"] += 1

    def _remove(self, conn: TcpConnection) -> None:
        key = self._keys.pop(id(conn), None)
        if key is not None and self._conns.get(key) is conn:
            del self._conns[key]
        self._handlers.pop(id(conn), None)
        self._scheduled.pop(id(conn), None)
        listener = self._listener_of.pop(id(conn), None)
        if listener is not None:
            listener.pending -= 1

    def _emit(self, src: bytes, dst: bytes, seg: TcpSegment) -> None:
        if self.is_local(dst):
            self._loopback.append((src, dst, seg))  # processed by _run, never recursively
            return
        try:
            self.output(src, dst, build_tcp(src, dst, seg))
        except OSError as e:
            self.counters["output_error"] += 1
            log.debug("TCP output to %s failed: %s", _ip_str(dst), e)
