"""Retransmission and congestion control for ``ztcore.netstack.tcp.TcpConnection``
(mixed in): RTO estimation and timeouts (RFC 6298, Karn), fast retransmit and
recovery entry for NewReno (RFC 5681, RFC 6582) or SACK (RFC 6675), tail loss
probes (RFC 8985 7), and HyStart's delay-based exit from slow start (RFC 9406). The connection owns the state; this module owns
what the sender does when segments go missing.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from ztcore.netstack.tcptypes import SYNCHRONIZED, State, TcpConfig
from ztcore.netstack.tcpwire import ACK, FIN, PSH


class Retransmission:
    # Provided by TcpConnection.
    state: State
    config: TcpConfig
    snd_una: int
    snd_nxt: int
    snd_max: int
    snd_wnd: int
    send_mss: int
    cwnd: int
    ssthresh: int
    rto: int
    srtt: float | None
    rttvar: float
    counters: dict[str, int]
    _segments: list[Any]
    _sndq: bytearray
    _fin_seq: int | None
    _sack_ok: bool
    _scoreboard: Any
    _high_rxt: int
    _rxt_marks: dict[int, int]
    _in_recovery: bool
    _recover: int
    _rto_recover: int
    _dupacks: int
    _retries: int
    _rtt_seq: int | None
    _rto_at: int | None
    _pto_at: int | None
    _tlp_out: bool
    _min_rtt: int | None

    if TYPE_CHECKING:  # TcpConnection's; declared for the type checker only

        def _finish(self, error: OSError | None) -> None: ...

        def _send_syn(self, now: int) -> None: ...

        def _output(self, now: int, *, force_one: bool = False) -> None: ...

        def _unsent(self) -> int: ...

        def _data_seq(self, offset: int) -> int: ...

        def _seg(self, flags: int, seq: int, payload: bytes = b"") -> Any: ...

    def _on_rto(self, now: int) -> None:
        if self.state is State.CLOSED or self.snd_una >= self.snd_max:
            return
        self._retries += 1
        limit = {State.SYN_SENT: self.config.syn_retries, State.SYN_RECEIVED: self.config.synack_retries}.get(
            self.state, self.config.retries
        )
        if self._retries > limit:
            self._finish(OSError(errno.ETIMEDOUT, "connection timed out"))
            return
        self.counters["timeouts"] += 1
        self.rto = min(self.rto * 2, self.config.rto_max_ms)
        self._rtt_seq = None  # Karn: no samples from retransmitted data
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED):
            self._send_syn(now)
            self._rto_at = now + self.rto
            return
        if self._retries == 1 or not self._in_recovery:
            flight = self.snd_max - self.snd_una
            if self._sack_ok:
                flight = min(flight, self.cwnd)
            self.ssthresh = max(flight // 2, 2 * self.send_mss)
        self.cwnd = self.send_mss
        self._rto_recover = self.snd_max
        self._high_rxt = self.snd_una
        self._rxt_marks.clear()
        self._in_recovery = False
        self._dupacks = 0
        self.snd_nxt = self.snd_una  # go back N
        self.counters["retransmits"] += 1
        self._output(now, force_one=True)
        self._rto_at = now + self.rto

    def _arm_pto(self, now: int) -> None:
        """Schedule a tail loss probe (RFC 8985 7.2) while data is outstanding; during SACK
        recovery the same timer stands in for RACK's reordering timer (a retransmission
        that draws no ACK within two round trips is presumed lost)."""
        if (
            (self._in_recovery and not self._sack_ok)
            or self._tlp_out
            or self.snd_una >= self.snd_max
            or self.srtt is None
            or self.state not in SYNCHRONIZED
        ):
            self._pto_at = None
            return
        one_segment = self.snd_max - self.snd_una <= self.send_mss and not self._in_recovery
        pto = max(int(2 * self.srtt + (self.config.delayed_ack_ms if one_segment else 0)), 10)
        if self._rto_at is not None and now + pto >= self._rto_at:
            self._pto_at = None
            return
        self._pto_at = now + pto

    def _on_pto(self, now: int) -> None:
        """Send new data if the window allows, else the last segment again, to draw an ACK
        (with SACK) that turns a silent tail loss into fast recovery instead of an RTO."""
        if self.snd_una >= self.snd_max or self.state not in SYNCHRONIZED:
            return
        self._tlp_out = True
        if self._in_recovery:
            if self._sack_ok:
                # Silence in recovery: the hole at snd_una was resent and that copy is lost too.
                self._rxt_marks.clear()
                self._retransmit_first(now)
                self._high_rxt = self.snd_una + max(1, min(self.send_mss, len(self._sndq)))
                self.counters["recovery_probes"] = self.counters.get("recovery_probes", 0) + 1
            return
        before = len(self._segments)
        if self._unsent() and self.snd_nxt == self.snd_max and self.snd_una + self.snd_wnd > self.snd_nxt:
            saved, self.cwnd = self.cwnd, max(self.cwnd, self.snd_nxt - self.snd_una + self.send_mss)
            self._output(now)
            self.cwnd = saved
        if len(self._segments) == before:
            data_end = min(self._data_seq(len(self._sndq)), self.snd_max)
            last = max(self.snd_una, data_end - self.send_mss)
            offset = last - self._data_seq(0)
            n = data_end - last
            if n > 0:
                fin = FIN if self._fin_seq is not None and last + n == self._fin_seq else 0
                self._segments.append(
                    self._seg(ACK | PSH | fin, last, bytes(self._sndq[offset : offset + n]))
                )
            elif self._fin_seq is not None:
                self._segments.append(self._seg(ACK | FIN, self._fin_seq))
        self.counters["tail_loss_probes"] = self.counters.get("tail_loss_probes", 0) + 1
        self._rto_at = now + self.rto

    def _dup_ack(self, now: int) -> None:
        self._dupacks += 1
        post_rto = self.snd_una < self._rto_recover and not self._sack_ok
        if self._dupacks == 3 and not self._in_recovery and not post_rto:
            self._enter_recovery(now)
        elif self._in_recovery and not self._sack_ok:
            self.cwnd += self.send_mss  # NewReno inflation; SACK recovery counts the pipe instead

    def _enter_recovery(self, now: int) -> None:
        mss = self.send_mss
        flight = self.snd_max - self.snd_una
        if self._sack_ok:
            flight = min(flight, self.cwnd)  # shortly after an RTO the flight is mostly SACKed
        self.ssthresh = max(flight // 2, 2 * mss)
        self._rxt_marks.clear()
        self._recover = self.snd_max
        self._in_recovery = True
        self.counters["fast_retransmits"] += 1
        self._retransmit_first(now)
        if self._sack_ok:
            self.cwnd = self.ssthresh
            self._high_rxt = self.snd_una + min(mss, len(self._sndq))
            self._rxt_marks[self.snd_una] = self.snd_max
        else:
            self.cwnd = self.ssthresh + 3 * mss

    def _rtt_sample(self, r: int) -> None:
        r = max(r, 1)
        # HyStart's delay test (RFC 9406 4.2), on the one Karn-safe sample per round trip:
        # leave slow start once the queue we are building shows up as delay.
        min_rtt = self._min_rtt
        if min_rtt is not None and self.cwnd < self.ssthresh and self.cwnd >= 16 * self.send_mss:
            eta = min(max(min_rtt // 8, 4), 16)
            if r >= min_rtt + eta:
                self.ssthresh = self.cwnd
                self.counters["hystart_exits"] = self.counters.get("hystart_exits", 0) + 1
        self._min_rtt = r if min_rtt is None else min(min_rtt, r)
        if self.srtt is None:
            self.srtt, self.rttvar = float(r), r / 2.0
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        rto = int(self.srtt + max(1.0, 4 * self.rttvar))
        self.rto = min(max(rto, self.config.rto_min_ms), self.config.rto_max_ms)

    def _retransmit_first(self, now: int) -> None:
        """Resend the segment at snd_una (fast retransmit / partial ACK)."""
        self.counters["retransmits"] += 1
        self._rtt_seq = None
        n = min(self.send_mss, len(self._sndq))
        if n:
            self._segments.append(self._seg(ACK | PSH, self.snd_una, bytes(self._sndq[:n])))
        elif self._fin_seq is not None and self.snd_una == self._fin_seq:
            self._segments.append(self._seg(ACK | FIN, self._fin_seq))
