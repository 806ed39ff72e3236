"""The vocabulary of ``ztcore.netstack.tcp``: connection states (RFC 9293 3.3.2),
the events a connection reports to its application, and its tunables."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.Enum):
    CLOSED = "CLOSED"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"


SYNCHRONIZED = {
    State.ESTABLISHED,
    State.FIN_WAIT_1,
    State.FIN_WAIT_2,
    State.CLOSE_WAIT,
    State.CLOSING,
    State.LAST_ACK,
    State.TIME_WAIT,
}
CAN_SEND = {State.ESTABLISHED, State.CLOSE_WAIT}
CAN_RECEIVE = {State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2}


class EventKind(enum.Enum):
    CONNECTED = "connected"  # handshake complete
    DATA = "data"  # in-order bytes for the application (``data``)
    EOF = "eof"  # the peer sent FIN: no more data will come
    WRITABLE = "writable"  # acknowledged data left the send buffer
    CLOSED = "closed"  # done; ``error`` is None after an orderly close


@dataclass
class TcpEvent:
    kind: EventKind
    data: bytes = b""
    error: OSError | None = None

    def __repr__(self) -> str:
        extra = f" {len(self.data)} bytes" if self.data else ""
        extra += f" {self.error}" if self.error else ""
        return f"<TcpEvent {self.kind.value}{extra}>"


@dataclass
class TcpConfig:
    """Tunables; defaults follow Linux where an RFC leaves the choice open."""

    mss: int = 1460  # what we receive: the network MTU minus IP and TCP headers
    rcv_buf: int = 1 << 20
    nodelay: bool = True  # no Nagle by default, like asyncio's TCP transports
    window_scaling: bool = True
    sack: bool = True
    initial_window_segments: int = 10  # RFC 6928
    rto_initial_ms: int = 1000  # RFC 6298 2.1
    rto_min_ms: int = 200  # Linux; RFC 6298 suggests 1 s, far too slow for a LAN-like network
    rto_max_ms: int = 120_000
    syn_retries: int = 6
    synack_retries: int = 5
    retries: int = 15  # then the connection times out (Linux tcp_retries2)
    delayed_ack_ms: int = 40
    time_wait_ms: int = 60_000  # 2 * MSL, MSL = 30 s as Linux
    fin_wait_2_ms: int = 60_000  # for connections the application has let go of
    keepalive: bool = False
    keepalive_idle_ms: int = 7_200_000
    keepalive_interval_ms: int = 75_000
    keepalive_count: int = 9
