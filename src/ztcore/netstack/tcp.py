"""One TCP connection as a sans-I/O state machine (RFC 9293).

``TcpConnection`` takes segments, application calls and the time (``now`` in
ms) and produces segments to transmit (``take_segments``) and events for the
application (``take_events``); ``next_deadline`` says when it next wants
``on_timer``. It never touches sockets, threads or a clock, so the runtime,
the simulator and unit tests drive the very same code.

What it does: the three-way handshake (active, passive, simultaneous),
retransmission with RTO estimation and Karn's rule (RFC 6298), flow control
with receiver and sender silly-window avoidance, window scaling (RFC 7323),
NewReno congestion control (RFC 5681, RFC 6582) with limited transmit
(RFC 3042) and an initial window of ten segments (RFC 6928), delayed ACKs,
zero-window probing, keepalive (RFC 1122), orderly close with half-close,
abort, TIME_WAIT, and RST / SYN handling hardened as RFC 5961 asks
(challenge ACKs), and SACK (RFC 2018) with SACK-based loss recovery after
RFC 6675. Not done: timestamps, urgent data, ECN.

Sequence numbers are kept as unbounded integers internally (``iss`` plus the
distance travelled) and only reduced mod 2**32 on the wire, which keeps
comparisons plain.
"""

from __future__ import annotations

import errno

from ztcore.netstack.tcprecovery import Retransmission
from ztcore.netstack.tcpsack import SackSender, Scoreboard, receiver_blocks
from ztcore.netstack.tcptypes import CAN_RECEIVE as _CAN_RECEIVE
from ztcore.netstack.tcptypes import CAN_SEND as _CAN_SEND
from ztcore.netstack.tcptypes import SYNCHRONIZED as _SYNCHRONIZED
from ztcore.netstack.tcptypes import (
    EventKind,
    State,
    TcpConfig,
    TcpEvent,
)
from ztcore.netstack.tcpwire import ACK, FIN, PSH, RST, SYN, TcpSegment

__all__ = ["EventKind", "State", "TcpConfig", "TcpConnection", "TcpEvent"]

MASK = 0xFFFFFFFF
HALF = 0x80000000

DEFAULT_MSS_V4 = 536  # RFC 9293 3.7.1: assumed when the peer sends no MSS option
DEFAULT_MSS_V6 = 1220  # RFC 8200 8.3


def _seq_abs(ref: int, wire: int) -> int:
    """The unbounded sequence number nearest ``ref`` whose low 32 bits are ``wire``."""
    return ref + (((wire - ref) + HALF) & MASK) - HALF


def _choose_wscale(rcv_buf: int) -> int:
    shift = 0
    while shift < 14 and (0xFFFF << shift) < rcv_buf:
        shift += 1
    return shift


class TcpConnection(Retransmission, SackSender):
    """One connection; see the module docstring. ``local`` and ``remote`` are
    opaque to the machine (the endpoint table keys connections by them)."""

    def __init__(
        self,
        local: tuple[str, int],
        remote: tuple[str, int],
        iss: int,
        config: TcpConfig | None = None,
        *,
        v6: bool = False,
    ) -> None:
        self.local = local
        self.remote = remote
        self.config = config or TcpConfig()
        self.v6 = v6
        self.state = State.CLOSED
        self.error: OSError | None = None
        self.orphaned = False  # the application closed and will not read any more
        self._segments: list[TcpSegment] = []
        self._events: list[TcpEvent] = []
        self._closed_reported = False
        # send side
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wnd_max = 0
        self._snd_wl1 = 0
        self._snd_wl2 = 0
        self.snd_wscale = 0
        self.send_mss = DEFAULT_MSS_V6 if v6 else DEFAULT_MSS_V4
        self._sndq = bytearray()  # bytes from snd_una (or from the first byte, before the SYN is acked)
        self._fin_seq: int | None = None  # sequence number of our FIN once the application closed
        # receive side
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0  # right edge of the window we last advertised
        self.rcv_wscale = 0
        self._rcv_wscale_offer = _choose_wscale(self.config.rcv_buf) if self.config.window_scaling else 0
        self.unread = 0  # delivered to the application, not consumed yet
        self._ooo: dict[int, bytes] = {}
        self._ooo_bytes = 0
        self._ooo_fin: int | None = None
        self._unacked_segments = 0
        # RTT / RTO (RFC 6298)
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = self.config.rto_initial_ms
        self._rtt_seq: int | None = None
        self._min_rtt: int | None = None
        self._rtt_time = 0
        self._retries = 0
        # congestion control (NewReno)
        self.cwnd = 0
        self.ssthresh = 1 << 30
        self._dupacks = 0
        self._recover = iss  # fast recovery ends when this is acknowledged
        self._rto_recover = iss  # RFC 6582 3.2 step 2: no fast retransmit for data sent before an RTO
        self._in_recovery = False
        self._ws_ok = False
        self._sack_ok = False
        self._scoreboard = Scoreboard()
        self._high_rxt = iss  # RFC 6675 HighRxt: retransmitted up to here in this recovery
        self._last_ooo: int | None = None
        self._rxt_marks: dict[int, int] = {}  # hole retransmitted -> snd_max at that moment
        self._pto_at: int | None = None  # tail loss probe (RFC 8985 7)
        self._tlp_out = False
        # timers (absolute ms, None = off)
        self._rto_at: int | None = None
        self._delack_at: int | None = None
        self._persist_at: int | None = None
        self._persist_backoff = 0
        self._keepalive_at: int | None = None
        self._keepalive_probes = 0
        self._state_timer_at: int | None = None  # TIME_WAIT or FIN_WAIT_2
        self.counters = {"retransmits": 0, "timeouts": 0, "fast_retransmits": 0, "dropped": 0}

    def __repr__(self) -> str:
        return f"<TcpConnection {self.local} -> {self.remote} {self.state.value}>"

    # --- outputs ---------------------------------------------------------------------------------

    def take_segments(self) -> list[TcpSegment]:
        out, self._segments = self._segments, []
        return out

    def take_events(self) -> list[TcpEvent]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> int | None:
        times = [
            t
            for t in (
                self._rto_at,
                self._pto_at,
                self._delack_at,
                self._persist_at,
                self._keepalive_at,
                self._state_timer_at,
            )
            if t is not None
        ]
        return min(times) if times else None

    @property
    def send_buffered(self) -> int:
        """Bytes given to ``send`` and not acknowledged yet."""
        return len(self._sndq)

    @property
    def established(self) -> bool:
        return self.state in _SYNCHRONIZED

    # --- opening ---------------------------------------------------------------------------------

    def open_active(self, now: int) -> None:
        """Send a SYN (CLOSED -> SYN_SENT)."""
        if self.state is not State.CLOSED:
            raise OSError(errno.EISCONN, "connection already open")
        self.state = State.SYN_SENT
        self.snd_nxt = self.snd_max = self.iss + 1
        self._send_syn(now)
        self._rtt_seq, self._rtt_time = self.iss + 1, now
        self._rto_at = now + self.rto

    def open_passive(self, syn: TcpSegment, now: int) -> None:
        """Answer a SYN that arrived at a listener (-> SYN_RECEIVED)."""
        self.state = State.SYN_RECEIVED
        self._take_syn_options(syn)
        self.snd_wnd = syn.window  # never scaled in a SYN
        self.snd_nxt = self.snd_max = self.iss + 1
        self._send_syn(now)
        self._rtt_seq, self._rtt_time = self.iss + 1, now
        self._rto_at = now + self.rto
        self._keepalive_touch(now)

    def _take_syn_options(self, syn: TcpSegment) -> None:
        self.irs = syn.seq
        self.rcv_nxt = self.rcv_adv = syn.seq + 1
        peer_mss = syn.mss if syn.mss else (DEFAULT_MSS_V6 if self.v6 else DEFAULT_MSS_V4)
        self.send_mss = max(64, min(peer_mss, self.config.mss))
        self._ws_ok = syn.wscale is not None and self.config.window_scaling
        self._sack_ok = syn.sack_permitted and self.config.sack
        if self._ws_ok:
            self.snd_wscale = syn.wscale or 0
            self.rcv_wscale = self._rcv_wscale_offer
        else:
            self.snd_wscale = self.rcv_wscale = 0
        iw = self.config.initial_window_segments * self.send_mss
        self.cwnd = (
            min(iw, max(2 * self.send_mss, 14600)) if self.config.initial_window_segments >= 10 else iw
        )

    def _send_syn(self, now: int) -> None:
        seg = TcpSegment(self.local[1], self.remote[1], self.iss & MASK, 0, SYN, 0, mss=self.config.mss)
        if self.state is State.SYN_RECEIVED:
            seg.flags |= ACK
            seg.ack = self.rcv_nxt & MASK
            if self._ws_ok:  # RFC 7323 1.3: only answer a window scale option with one
                seg.wscale = self.rcv_wscale
            seg.sack_permitted = self._sack_ok
        else:
            if self.config.window_scaling:
                seg.wscale = self._rcv_wscale_offer
            seg.sack_permitted = self.config.sack
        seg.window = min(self.config.rcv_buf - self.unread, 0xFFFF)  # never scaled in a SYN
        if self.state is State.SYN_RECEIVED:
            self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + seg.window)
        self._segments.append(seg)

    # --- application calls -----------------------------------------------------------------------

    def send(self, data: bytes, now: int) -> None:
        """Queue bytes for sending (the caller bounds what it queues by ``send_buffered``)."""
        if self._fin_seq is not None or self.state not in (_CAN_SEND | {State.SYN_SENT, State.SYN_RECEIVED}):
            raise OSError(errno.EPIPE, f"cannot send in state {self.state.value}")
        if data:
            self._sndq += data
            self._output(now)

    def shutdown(self, now: int) -> None:
        """No more data from us: FIN after what is queued (a half-close)."""
        if self._fin_seq is not None or self.state is State.CLOSED:
            return
        if self.state not in _CAN_SEND and self.state not in (State.SYN_SENT, State.SYN_RECEIVED):
            return
        self._fin_seq = self._data_seq(len(self._sndq))
        if self.state is State.CLOSE_WAIT:
            self.state = State.LAST_ACK
        elif self.state is State.ESTABLISHED:
            self.state = State.FIN_WAIT_1
        # (in SYN_SENT / SYN_RECEIVED the FIN waits for the handshake to complete)
        self._output(now)

    def close(self, now: int) -> None:
        """The application is done with the connection (shutdown + orphan); before the
        handshake completed, the connection is simply dropped (RFC 9293 3.10.4)."""
        self.orphaned = True
        if self.state is State.SYN_SENT:
            self._finish(None)
            return
        self.shutdown(now)
        if self.state is State.FIN_WAIT_2 and self._state_timer_at is None:
            self._state_timer_at = now + self.config.fin_wait_2_ms

    def abort(self, now: int) -> None:
        """Reset the connection (RFC 9293 3.10.5 ABORT)."""
        if self.state in (
            State.SYN_RECEIVED,
            State.ESTABLISHED,
            State.FIN_WAIT_1,
            State.FIN_WAIT_2,
            State.CLOSE_WAIT,
        ):
            self._segments.append(TcpSegment(self.local[1], self.remote[1], self.snd_nxt & MASK, 0, RST, 0))
        self._finish(None)

    def destroy(self, error: OSError | None) -> None:
        """Drop the connection without a word to the peer (the network is gone)."""
        if self.state is not State.CLOSED:
            self._finish(error)

    def consumed(self, n: int, now: int) -> None:
        """The application took ``n`` delivered bytes: the window may open again."""
        before = self.rcv_adv - self.rcv_nxt
        self.unread = max(0, self.unread - n)
        if self.state not in _CAN_RECEIVE:
            return
        # Tell the peer when the window grew enough to matter (RFC 9293 3.8.6.2.2).
        grown = self._receive_space() - before
        if grown >= min(self.config.rcv_buf // 2, 2 * self.config.mss):
            self._send_ack(now)

    # --- timers ----------------------------------------------------------------------------------

    def on_timer(self, now: int) -> None:
        if self._state_timer_at is not None and now >= self._state_timer_at:
            self._state_timer_at = None
            if self.state in (State.TIME_WAIT, State.FIN_WAIT_2):
                self._finish(None)
                return
        if self._rto_at is not None and now >= self._rto_at:
            self._rto_at = self._pto_at = None
            self._on_rto(now)
        if self._pto_at is not None and now >= self._pto_at:
            self._pto_at = None
            self._on_pto(now)
        if self._delack_at is not None and now >= self._delack_at:
            self._delack_at = None
            self._send_ack(now)
        if self._persist_at is not None and now >= self._persist_at:
            self._persist_at = None
            self._on_persist(now)
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive_at = None
            self._on_keepalive(now)

    def _on_persist(self, now: int) -> None:
        if self.state not in _SYNCHRONIZED or self.snd_wnd > 0 or not self._unsent():
            return
        # A probe one byte left of the window draws an ACK carrying the current window.
        self._segments.append(self._seg(ACK, self.snd_una - 1))
        self._persist_backoff = min(self._persist_backoff + 1, 10)
        self._persist_at = now + min(self.rto << self._persist_backoff, self.config.rto_max_ms)

    def _on_keepalive(self, now: int) -> None:
        if not self.config.keepalive or self.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
            return
        if self.snd_una < self.snd_max:  # data in flight: retransmission covers liveness
            self._keepalive_at = now + self.config.keepalive_interval_ms
            return
        if self._keepalive_probes >= self.config.keepalive_count:
            self._finish(OSError(errno.ETIMEDOUT, "keepalive timed out"))
            return
        self._keepalive_probes += 1
        self.counters["keepalive_probes"] = self.counters.get("keepalive_probes", 0) + 1
        self._segments.append(self._seg(ACK, self.snd_una - 1))
        self._keepalive_at = now + self.config.keepalive_interval_ms

    def set_keepalive(
        self,
        enabled: bool,
        now: int,
        *,
        idle_ms: int | None = None,
        interval_ms: int | None = None,
        count: int | None = None,
    ) -> None:
        """Turn keepalive probes on or off (SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT)."""
        cfg = self.config
        if idle_ms is not None:
            cfg.keepalive_idle_ms = max(1, idle_ms)
        if interval_ms is not None:
            cfg.keepalive_interval_ms = max(1, interval_ms)
        if count is not None:
            cfg.keepalive_count = max(1, count)
        cfg.keepalive = enabled
        if enabled:
            self._keepalive_touch(now)
        else:
            self._keepalive_at = None

    def _keepalive_touch(self, now: int) -> None:
        if self.config.keepalive:
            self._keepalive_probes = 0
            self._keepalive_at = now + self.config.keepalive_idle_ms

    # --- input -----------------------------------------------------------------------------------

    def segment_arrived(self, seg: TcpSegment, now: int) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.SYN_SENT:
            self._input_syn_sent(seg, now)
            return
        self._keepalive_touch(now)
        seq = _seq_abs(self.rcv_nxt, seg.seq)
        payload = seg.payload
        seg_len = len(payload) + (1 if seg.flags & FIN else 0) + (1 if seg.flags & SYN else 0)
        wnd = self.rcv_adv - self.rcv_nxt
        if self.state is State.SYN_RECEIVED and seg.flags & SYN and not seg.flags & ACK and seq == self.irs:
            self._send_syn(now)  # our SYN-ACK was lost
            return
        # 1. sequence number acceptable? (RFC 9293 3.10.7.4)
        if seg_len == 0:
            ok = seq == self.rcv_nxt if wnd == 0 else self.rcv_nxt <= seq < self.rcv_nxt + wnd
        elif wnd == 0:
            ok = False
        else:
            end = seq + seg_len - 1
            ok = self.rcv_nxt <= seq < self.rcv_nxt + wnd or self.rcv_nxt <= end < self.rcv_nxt + wnd
        if not ok:
            if seg.flags & RST:
                return
            if wnd == 0 and seq == self.rcv_nxt and seg.flags & ACK:
                # A window probe (lwIP sends one byte at rcv_nxt): take its ACK, drop its data,
                # and answer with the current (zero) window.
                payload = b""
                seg = TcpSegment(
                    seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags & ~(FIN | SYN), seg.window
                )
                self.counters["dropped"] += 1
                self._send_ack(now)
            else:
                self.counters["dropped"] += 1
                if self.state is State.TIME_WAIT and seg.flags & FIN:
                    self._state_timer_at = now + self.config.time_wait_ms
                self._send_ack(now)
                return
        # 2. RST (RFC 5961 3.2: only an exact match resets; in-window draws a challenge ACK)
        if seg.flags & RST:
            if seq == self.rcv_nxt:
                quiet = self.state in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT)
                self._finish(None if quiet else OSError(errno.ECONNRESET, "connection reset by peer"))
            else:
                self._send_ack(now)
            return
        # 3. SYN in a synchronized state: challenge ACK (RFC 5961 4.2)
        if seg.flags & SYN:
            self._send_ack(now)
            return
        # 4. ACK
        if not seg.flags & ACK:
            return
        ack = _seq_abs(self.snd_una, seg.ack)
        if self.state is State.SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_max:
                self._segments.append(TcpSegment(self.local[1], self.remote[1], seg.ack, 0, RST, 0))
                return
            self.state = State.ESTABLISHED if self._fin_seq is None else State.FIN_WAIT_1
            self._snd_wl1, self._snd_wl2 = seq, ack
            self._set_snd_wnd(seg.window << self.snd_wscale)
            self._events.append(TcpEvent(EventKind.CONNECTED))
        if ack > self.snd_max:
            self._send_ack(now)  # acknowledges something never sent
            return
        window = seg.window << self.snd_wscale
        if self._sack_ok and seg.sack_blocks and ack >= self.snd_una:
            blocks = [(_seq_abs(ack, left), _seq_abs(ack, right)) for left, right in seg.sack_blocks]
            self._scoreboard.add(blocks, ack, self.snd_max)
        if ack > self.snd_una:
            self._new_ack(ack, now)
        elif (
            ack == self.snd_una
            and not payload
            and not seg.flags & FIN
            and window == self.snd_wnd
            and self.snd_max > self.snd_una
        ):
            self._dup_ack(now)
        if self._snd_wl1 < seq or (self._snd_wl1 == seq and self._snd_wl2 <= ack):
            self._snd_wl1, self._snd_wl2 = seq, ack
            self._set_snd_wnd(window)
        if self._sack_ok and self._scoreboard:
            # After a tail loss probe any SACK above a hole means the hole is lost (RFC 8985 7.4).
            if not self._in_recovery and (self._tlp_out or self._sack_loss_detected()):
                self._enter_recovery(now)
            elif self._in_recovery:
                self._mark_lost_retransmissions()
        fin_acked = self._fin_seq is not None and self.snd_una > self._fin_seq
        if self.state is State.FIN_WAIT_1 and fin_acked:
            self.state = State.FIN_WAIT_2
            if self.orphaned:
                self._state_timer_at = now + self.config.fin_wait_2_ms
        elif self.state is State.CLOSING and fin_acked:
            self._enter_time_wait(now)
        elif self.state is State.LAST_ACK and fin_acked:
            self._finish(None)
            return
        # 5. data
        if payload and self.state in _CAN_RECEIVE:
            self._receive(seq, payload, now)
        # 6. FIN
        if seg.flags & FIN:
            fin_seq = seq + len(payload)
            if fin_seq == self.rcv_nxt:
                self._receive_fin(now)
            elif fin_seq > self.rcv_nxt and self.state in _CAN_RECEIVE:
                self._ooo_fin = fin_seq
        self._output(now)

    def _input_syn_sent(self, seg: TcpSegment, now: int) -> None:
        ack = _seq_abs(self.snd_una, seg.ack)
        if seg.flags & ACK and not self.iss < ack <= self.snd_max:
            if not seg.flags & RST:
                self._segments.append(TcpSegment(self.local[1], self.remote[1], seg.ack, 0, RST, 0))
            return
        if seg.flags & RST:
            if seg.flags & ACK:
                self._finish(OSError(errno.ECONNREFUSED, "connection refused"))
            return
        if not seg.flags & SYN:
            return
        self._take_syn_options(seg)
        self._keepalive_touch(now)
        if seg.flags & ACK:
            self.state = State.ESTABLISHED if self._fin_seq is None else State.FIN_WAIT_1
            self._snd_wl1, self._snd_wl2 = seg.seq, ack
            self._set_snd_wnd(seg.window)  # a SYN's window is never scaled
            self._new_ack(ack, now)
            self._events.append(TcpEvent(EventKind.CONNECTED))
            self._send_ack(now)
            self._output(now)
        else:
            # Simultaneous open: SYN_RECEIVED, answer with SYN-ACK.
            self.state = State.SYN_RECEIVED
            self._send_syn(now)

    def _set_snd_wnd(self, window: int) -> None:
        self.snd_wnd = window
        self.snd_wnd_max = max(self.snd_wnd_max, window)

    def _new_ack(self, ack: int, now: int) -> None:
        acked = ack - self.snd_una
        data_acked = acked
        if self.snd_una == self.iss:
            data_acked -= 1  # the SYN
        if self._fin_seq is not None and ack > self._fin_seq:
            data_acked -= 1  # the FIN
        data_acked = min(max(data_acked, 0), len(self._sndq))
        if data_acked:
            del self._sndq[:data_acked]
            self._events.append(TcpEvent(EventKind.WRITABLE))
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        self._scoreboard.advance(ack)
        if self._rtt_seq is not None and ack >= self._rtt_seq:
            self._rtt_sample(now - self._rtt_time)
            self._rtt_seq = None
        self._retries = 0
        self._persist_backoff = 0
        self._tlp_out = False
        mss = self.send_mss
        if self._in_recovery:
            if ack >= self._recover:
                # Full ACK: leave fast recovery (RFC 6582 3.2 step 3).
                self.cwnd = min(self.ssthresh, max(self.snd_max - self.snd_una, mss) + mss)
                self._in_recovery = False
                self._dupacks = 0
            elif self._sack_ok:
                self._rto_at = now + self.rto  # holes are resent from _output, as the pipe allows
            else:
                # Partial ACK: retransmit the next hole, deflate the window.
                self._retransmit_first(now)
                self.cwnd = max(self.cwnd - acked + (mss if acked >= mss else 0), mss)
                self._rto_at = now + self.rto
        else:
            self._dupacks = 0
            if self.cwnd < self.ssthresh:
                self.cwnd += min(acked, mss)
            else:
                self.cwnd += max(1, mss * mss // self.cwnd)
            # An application-limited sender must not inflate cwnd without bound (RFC 7661).
            self.cwnd = min(self.cwnd, max(2 * self.snd_wnd_max, 64 * mss))
        if self.snd_una >= self.snd_max:
            self._rto_at = None
        else:
            self._rto_at = now + self.rto

    def _receive(self, seq: int, payload: bytes, now: int) -> None:
        # Trim to what the window admits.
        if seq < self.rcv_nxt:
            payload = payload[self.rcv_nxt - seq :]
            seq = self.rcv_nxt
        limit = self.rcv_adv - seq
        if len(payload) > limit:
            payload = payload[: max(limit, 0)]
        if not payload:
            self._send_ack(now)
            return
        if seq > self.rcv_nxt:
            # Out of order: keep it (bounded by the window) and say what we miss at once.
            self._last_ooo = seq
            if seq not in self._ooo or len(self._ooo[seq]) < len(payload):
                self._ooo_bytes += len(payload) - len(self._ooo.get(seq, b""))
                self._ooo[seq] = payload
            self._send_ack(now)
            return
        filled_hole = bool(self._ooo)
        self._deliver(payload)
        if self._ooo:
            for s in sorted(self._ooo):
                if s > self.rcv_nxt:
                    break
                data = self._ooo.pop(s)
                self._ooo_bytes -= len(data)
                if s + len(data) > self.rcv_nxt:
                    self._deliver(data[self.rcv_nxt - s :])
        if self._ooo_fin is not None and self._ooo_fin == self.rcv_nxt:
            self._ooo_fin = None
            self._receive_fin(now)
            return
        self._unacked_segments += 1
        if filled_hole or self._unacked_segments >= 2:
            self._send_ack(now)
        elif self._delack_at is None:
            self._delack_at = now + self.config.delayed_ack_ms

    def _deliver(self, data: bytes) -> None:
        self.rcv_nxt += len(data)
        self.unread += len(data)
        self._events.append(TcpEvent(EventKind.DATA, data))

    def _receive_fin(self, now: int) -> None:
        self.rcv_nxt += 1
        self._ooo.clear()
        self._ooo_bytes = 0
        self._events.append(TcpEvent(EventKind.EOF))
        if self.state in (State.ESTABLISHED, State.SYN_RECEIVED):
            self.state = State.CLOSE_WAIT
        elif self.state is State.FIN_WAIT_1:
            if self._fin_seq is not None and self.snd_una > self._fin_seq:
                self._enter_time_wait(now)
            else:
                self.state = State.CLOSING
        elif self.state is State.FIN_WAIT_2:
            self._enter_time_wait(now)
        self._send_ack(now)

    def _enter_time_wait(self, now: int) -> None:
        self.state = State.TIME_WAIT
        self._rto_at = self._persist_at = self._keepalive_at = self._delack_at = None
        self._state_timer_at = now + self.config.time_wait_ms
        self._report_closed(None)

    def _finish(self, error: OSError | None) -> None:
        self.state = State.CLOSED
        self._rto_at = self._persist_at = self._keepalive_at = self._delack_at = self._state_timer_at = None
        self._sndq.clear()
        self._ooo.clear()
        self.error = error
        self._report_closed(error)

    def _report_closed(self, error: OSError | None) -> None:
        if not self._closed_reported:
            self._closed_reported = True
            self._events.append(TcpEvent(EventKind.CLOSED, error=error))

    # --- output ----------------------------------------------------------------------------------

    def _data_seq(self, offset: int) -> int:
        """Sequence number of the byte at ``offset`` in the send queue."""
        return self.snd_una + offset + (1 if self.snd_una == self.iss else 0)

    def _unsent(self) -> int:
        end = self._data_seq(len(self._sndq))
        return max(0, end - self.snd_nxt)

    def _receive_space(self) -> int:
        return max(0, min(self.config.rcv_buf - self.unread, 0xFFFF << self.rcv_wscale))

    def _window_field(self) -> int:
        space = self._receive_space()
        right = self.rcv_nxt + space
        # Never shrink the window; open it only in worthwhile steps (receiver SWS avoidance).
        if right - self.rcv_adv < min(self.config.rcv_buf // 2, self.config.mss):
            right = max(self.rcv_adv, self.rcv_nxt)
        field = min((right - self.rcv_nxt) >> self.rcv_wscale, 0xFFFF)
        self.rcv_adv = max(self.rcv_adv, self.rcv_nxt + (field << self.rcv_wscale))
        return field

    def _seg(self, flags: int, seq: int, payload: bytes = b"") -> TcpSegment:
        self._delack_at = None
        self._unacked_segments = 0
        seg = TcpSegment(
            self.local[1],
            self.remote[1],
            seq & MASK,
            self.rcv_nxt & MASK,
            flags,
            self._window_field(),
            payload,
        )
        if self._sack_ok and self._ooo:
            seg.sack_blocks = [(s & MASK, e & MASK) for s, e in receiver_blocks(self._ooo, self._last_ooo)]
        return seg

    def _send_ack(self, now: int) -> None:
        if self.state is State.CLOSED or self.state is State.SYN_SENT:
            return
        self._segments.append(self._seg(ACK, self.snd_nxt))

    def _output(self, now: int, *, force_one: bool = False) -> None:
        """Send what the windows allow: new data, then the FIN."""
        if self.state not in _SYNCHRONIZED or self.state is State.TIME_WAIT:
            return
        mss = self.send_mss
        allowance = min(self._dupacks, 2) * mss if not self._in_recovery else 0  # RFC 3042
        sack_recovery = self._in_recovery and self._sack_ok
        if sack_recovery:
            self._retransmit_holes(now)
        sent_any = False
        while True:
            if self._scoreboard and self.snd_nxt < self.snd_max:
                skip_to = self._scoreboard.covering(self.snd_nxt)
                if skip_to is not None:  # resending after an RTO: the peer has this part
                    self.snd_nxt = skip_to
                    continue
            window = min(self.cwnd + allowance, self.snd_wnd)
            if force_one and not sent_any:
                window = max(window, min(mss, max(self.snd_wnd, 1)))
            usable = self.snd_una + window - self.snd_nxt
            if sack_recovery:
                usable = min(self.cwnd - self._pipe(), self.snd_una + self.snd_wnd - self.snd_nxt)
            offset = self.snd_nxt - self._data_seq(0)
            available = len(self._sndq) - offset
            if available > 0:
                n = min(mss, available, usable)
                if n <= 0:
                    break
                if n < mss and n < available and self.snd_nxt > self.snd_una:
                    break  # window-limited runt: wait for the window to open (sender SWS)
                if n < mss and not self.config.nodelay and self.snd_nxt > self.snd_una:
                    break  # Nagle
                payload = bytes(self._sndq[offset : offset + n])
                flags = ACK | (PSH if n == available else 0)
                seq = self.snd_nxt
                if self._fin_seq is not None and seq + n == self._fin_seq:
                    flags |= FIN  # the FIN rides on the last data segment
                self._segments.append(self._seg(flags, seq, payload))
                if self._rtt_seq is None and seq >= self.snd_max:
                    self._rtt_seq, self._rtt_time = seq + n, now
                self.snd_nxt = seq + n + (1 if flags & FIN else 0)
                sent_any = True
            elif self._fin_seq is not None and self.snd_nxt == self._fin_seq:
                self._segments.append(self._seg(ACK | FIN, self._fin_seq))
                self.snd_nxt = self._fin_seq + 1
                sent_any = True
            else:
                break
            if self.snd_nxt > self.snd_max:
                self.snd_max = self.snd_nxt
        if self.snd_una < self.snd_max and self._rto_at is None:
            self._rto_at = now + self.rto
        self._arm_pto(now)
        if self.snd_wnd == 0 and self._unsent() and self.snd_nxt == self.snd_una:
            if self._persist_at is None:
                self._persist_at = now + self.rto
        else:
            self._persist_at = None
