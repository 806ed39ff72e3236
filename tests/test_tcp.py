"""The sans-I/O TCP state machine (ztcore.netstack.tcp) and its wire format.

Two ``TcpConnection``s are wired back to back through a small simulated link
(latency, loss, reordering under the test's control, simulated time), and
scapy is the oracle for what the segments look like on the wire.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import random

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from ztcore.errors import InvalidFormatError
from ztcore.netstack.frames import ChecksumError
from ztcore.netstack.tcp import EventKind, State, TcpConfig, TcpConnection, TcpEvent
from ztcore.netstack.tcpwire import ACK, FIN, PSH, RST, SYN, TcpSegment, build_tcp, parse_tcp

A4 = ipaddress.ip_address("10.9.0.1").packed
B4 = ipaddress.ip_address("10.9.0.2").packed
A6 = ipaddress.ip_address("fd00::1").packed
B6 = ipaddress.ip_address("fd00::2").packed


# --- wire format, with scapy as the oracle -----------------------------------------------------


def test_build_matches_scapy_v4_and_v6() -> None:
    seg = TcpSegment(40000, 80, 0xFFFFFFF0, 12345, SYN, 65535, mss=2760, wscale=7)
    raw = build_tcp(A4, B4, seg)
    t = IP(bytes(IP(src="10.9.0.1", dst="10.9.0.2", proto=6) / raw))[TCP]
    assert (t.sport, t.dport, t.seq, t.flags) == (40000, 80, 0xFFFFFFF0, "S")
    assert {k: v for k, v in t.options if k in ("MSS", "WScale")} == {"MSS": 2760, "WScale": 7}
    # scapy builds the same segment, checksum included, from scratch.
    ref = IP(src="10.9.0.1", dst="10.9.0.2") / TCP(
        sport=40000, dport=80, seq=0xFFFFFFF0, ack=12345, flags="S", window=65535, options=t.options
    )
    assert bytes(IP(bytes(ref))[TCP]) == raw
    data = build_tcp(A6, B6, TcpSegment(1, 2, 3, 4, ACK | PSH, 100, b"hello"))
    ref6 = (
        IPv6(src="fd00::1", dst="fd00::2")
        / TCP(sport=1, dport=2, seq=3, ack=4, flags="PA", window=100)
        / b"hello"
    )
    assert bytes(IPv6(bytes(ref6))[TCP]) == data


def test_parse_scapy_segments() -> None:
    ref = IP(src="10.9.0.2", dst="10.9.0.1") / TCP(
        sport=80,
        dport=40000,
        seq=7,
        ack=9,
        flags="SA",
        window=1000,
        options=[("MSS", 1400), ("SAckOK", b""), ("Timestamp", (1, 2)), ("NOP", None), ("WScale", 20)],
    )
    raw = bytes(IP(bytes(ref))[TCP])
    seg = parse_tcp(B4, A4, raw)
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags) == (80, 40000, 7, 9, SYN | ACK)
    assert seg.mss == 1400 and seg.sack_permitted and seg.timestamps == (1, 2)
    assert seg.wscale == 14  # RFC 7323: shifts above 14 are taken as 14
    with pytest.raises(ChecksumError):
        parse_tcp(B4, bytes([10, 9, 0, 3]), raw)  # another destination: wrong pseudo-header
    bad = bytearray(raw)
    bad[12] = 0x10  # data offset 4 words: shorter than the header
    with pytest.raises(InvalidFormatError):
        parse_tcp(B4, A4, bytes(bad))
    with pytest.raises(InvalidFormatError):
        parse_tcp(B4, A4, raw[:10])


def test_fuzzed_segments_never_raise_anything_else() -> None:
    rng = random.Random(7)
    base = build_tcp(A4, B4, TcpSegment(1, 2, 3, 4, SYN, 5, mss=1000, wscale=3, sack_permitted=True))
    for _ in range(2000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            parse_tcp(A4, B4, bytes(data))
        except InvalidFormatError:
            pass


# --- a back-to-back link ------------------------------------------------------------------------


class Link:
    """Two connections, a one-way latency, optional loss and reordering, simulated time."""

    def __init__(
        self,
        *,
        latency: int = 5,
        loss: float = 0.0,
        reorder: float = 0.0,
        seed: int = 1,
        a_cfg: TcpConfig | None = None,
        b_cfg: TcpConfig | None = None,
    ) -> None:
        self.now = 1_000_000
        self.latency = latency
        self.loss = loss
        self.reorder = reorder
        self.rng = random.Random(seed)
        self.a = TcpConnection(
            ("10.9.0.1", 40000), ("10.9.0.2", 80), 0xFFFFF000, a_cfg or TcpConfig(mss=1000)
        )
        self.b = TcpConnection(
            ("10.9.0.2", 80), ("10.9.0.1", 40000), 0x7FFFFF00, b_cfg or TcpConfig(mss=1000)
        )
        self.in_flight: list[tuple[int, int, TcpConnection, bytes]] = []
        self.events: dict[str, list[TcpEvent]] = {"a": [], "b": []}
        self.wire: list[tuple[str, TcpSegment]] = []  # everything sent, parsed back from bytes
        self.drop_next: list[object] = []  # predicates (seg) -> bool: drop the first match
        self.received = {"a": bytearray(), "b": bytearray()}
        self._seq = 0

    def _collect(self) -> None:
        for name, conn, peer, src, dst in (("a", self.a, self.b, A4, B4), ("b", self.b, self.a, B4, A4)):
            for seg in conn.take_segments():
                raw = build_tcp(src, dst, seg)
                parsed = parse_tcp(src, dst, raw)
                self.wire.append((name, parsed))
                if self._should_drop(parsed):
                    continue
                delay = self.latency
                if self.reorder and self.rng.random() < self.reorder:
                    delay += self.rng.randint(1, 3 * self.latency)
                self._seq += 1
                self.in_flight.append((self.now + delay, self._seq, peer, raw))
            for ev in conn.take_events():
                self.events[name].append(ev)
                if ev.kind is EventKind.DATA:
                    self.received[name] += ev.data
                    conn.consumed(len(ev.data), self.now)

    def _should_drop(self, seg: TcpSegment) -> bool:
        for i, pred in enumerate(self.drop_next):
            if pred(seg):  # type: ignore[operator]
                del self.drop_next[i]
                return True
        return bool(self.loss) and self.rng.random() < self.loss

    def step(self) -> bool:
        self._collect()
        times = [t for t, *_ in self.in_flight]
        times += [d for d in (self.a.next_deadline(), self.b.next_deadline()) if d is not None]
        if not times:
            return False
        self.now = max(self.now, min(times))
        due = sorted(x for x in self.in_flight if x[0] <= self.now)
        self.in_flight = [x for x in self.in_flight if x[0] > self.now]
        for _, _, conn, raw in due:
            src, dst = (A4, B4) if conn is self.b else (B4, A4)
            conn.segment_arrived(parse_tcp(src, dst, raw), self.now)
        for conn in (self.a, self.b):
            d = conn.next_deadline()
            if d is not None and d <= self.now:
                conn.on_timer(self.now)
        self._collect()
        return True

    def run_until(self, pred, limit_ms: int = 600_000) -> bool:  # type: ignore[no-untyped-def]
        end = self.now + limit_ms
        while self.now < end:
            if pred():
                return True
            if not self.step():
                return bool(pred())
        return bool(pred())

    def handshake(self) -> None:
        self.a.open_active(self.now)
        self._collect()
        # b is a listener's child: it is born from the first SYN.
        syn = next(s for n, s in self.wire if n == "a" and s.flags & SYN)
        self.in_flight.clear()
        self.now += self.latency
        self.b.open_passive(syn, self.now)
        assert self.run_until(lambda: self.a.state is State.ESTABLISHED and self.b.state is State.ESTABLISHED)

    def kinds(self, name: str) -> list[EventKind]:
        return [e.kind for e in self.events[name]]


def test_handshake_options_and_states() -> None:
    link = Link(a_cfg=TcpConfig(mss=1000, rcv_buf=1 << 20), b_cfg=TcpConfig(mss=800, rcv_buf=60_000))
    link.handshake()
    syn = link.wire[0][1]
    synack = next(s for n, s in link.wire if n == "b")
    assert syn.flags == SYN and syn.mss == 1000 and syn.wscale == 5  # 1 MiB needs a shift of 5
    assert synack.flags == SYN | ACK and synack.ack == (syn.seq + 1) & 0xFFFFFFFF and synack.mss == 800
    assert synack.wscale == 0  # 60 kB needs no shift, but the option is still sent (scaling on)
    assert link.a.send_mss == link.b.send_mss == 800
    assert link.a.snd_wscale == 0 and link.b.snd_wscale == 5
    assert link.kinds("a") == [EventKind.CONNECTED] and link.kinds("b") == [EventKind.CONNECTED]


def test_no_window_scaling_when_the_peer_does_not_offer_it() -> None:
    link = Link(a_cfg=TcpConfig(mss=1000, window_scaling=False))
    link.handshake()
    synack = next(s for n, s in link.wire if n == "b")
    assert synack.wscale is None and link.b.rcv_wscale == 0 and link.b.snd_wscale == 0


def _payload(n: int, seed: int = 3) -> bytes:
    return (
        random.Random(seed).randbytes(n)
        if hasattr(random.Random, "randbytes")
        else bytes(random.Random(seed).getrandbits(8) for _ in range(n))
    )


def test_transfer_both_ways_and_orderly_close() -> None:
    link = Link()
    link.handshake()
    data_a, data_b = _payload(300_000, 1), _payload(123_457, 2)
    link.a.send(data_a, link.now)
    link.b.send(data_b, link.now)
    assert link.run_until(
        lambda: len(link.received["b"]) == len(data_a) and len(link.received["a"]) == len(data_b)
    )
    assert bytes(link.received["b"]) == data_a and bytes(link.received["a"]) == data_b
    assert link.a.counters["retransmits"] == 0
    # a closes first: FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT; b: CLOSE_WAIT -> LAST_ACK -> CLOSED.
    link.a.shutdown(link.now)
    assert link.run_until(lambda: link.b.state is State.CLOSE_WAIT and link.a.state is State.FIN_WAIT_2)
    assert EventKind.EOF in link.kinds("b")
    link.b.send(b"after half-close", link.now)
    assert link.run_until(lambda: link.received["a"].endswith(b"after half-close"))
    link.b.shutdown(link.now)
    assert link.run_until(lambda: link.b.state is State.CLOSED and link.a.state is State.TIME_WAIT)
    assert link.events["b"][-1].kind is EventKind.CLOSED and link.events["b"][-1].error is None
    assert link.events["a"][-1].kind is EventKind.CLOSED
    t = link.now
    assert link.run_until(lambda: link.a.state is State.CLOSED)
    assert link.now - t >= TcpConfig().time_wait_ms - 2 * link.latency  # entered a hop before t
    with pytest.raises(OSError) as ei:
        link.a.send(b"x", link.now)
    assert ei.value.errno == errno.EPIPE


def test_simultaneous_close_goes_through_closing() -> None:
    link = Link()
    link.handshake()
    link.a.shutdown(link.now)
    link.b.shutdown(link.now)
    assert link.a.state is State.FIN_WAIT_1 and link.b.state is State.FIN_WAIT_1
    link.step()
    assert link.a.state is State.CLOSING or link.a.state is State.TIME_WAIT
    assert link.run_until(lambda: link.a.state is State.TIME_WAIT and link.b.state is State.TIME_WAIT)


def test_lost_syn_is_retransmitted_with_backoff() -> None:
    link = Link()
    link.a.open_active(link.now)
    link._collect()
    link.in_flight.clear()  # the SYN is lost
    t0 = link.now
    link.run_until(lambda: len([s for n, s in link.wire if n == "a"]) >= 3)
    syns = [s for n, s in link.wire if n == "a"]
    assert all(s.flags == SYN and s.seq == syns[0].seq for s in syns)
    assert link.now - t0 >= 1000 + 2000  # RFC 6298: 1 s initial RTO, doubled


def test_connect_gives_up_after_syn_retries() -> None:
    link = Link(a_cfg=TcpConfig(mss=1000, syn_retries=2))
    link.loss = 1.0
    link.a.open_active(link.now)
    assert link.run_until(lambda: link.a.state is State.CLOSED)
    assert link.events["a"][-1].error is not None and link.events["a"][-1].error.errno == errno.ETIMEDOUT


def test_rst_answer_to_syn_refuses_connection() -> None:
    a = TcpConnection(("10.9.0.1", 40000), ("10.9.0.2", 80), 1000)
    a.open_active(0)
    syn = a.take_segments()[0]
    a.segment_arrived(TcpSegment(80, 40000, 0, (syn.seq + 1) & 0xFFFFFFFF, RST | ACK, 0), 5)
    ev = a.take_events()
    assert a.state is State.CLOSED and ev[-1].error is not None and ev[-1].error.errno == errno.ECONNREFUSED


def test_rst_handling_exact_and_challenge() -> None:
    link = Link()
    link.handshake()
    rcv = link.a.rcv_nxt
    # In the window but not exact: a challenge ACK, the connection survives (RFC 5961).
    link.a.segment_arrived(TcpSegment(80, 40000, (rcv + 100) & 0xFFFFFFFF, 0, RST, 0), link.now)
    out = link.a.take_segments()
    assert link.a.state is State.ESTABLISHED and len(out) == 1 and out[0].flags == ACK
    # Out of the window: silently ignored.
    link.a.segment_arrived(TcpSegment(80, 40000, (rcv - 5000) & 0xFFFFFFFF, 0, RST, 0), link.now)
    assert link.a.take_segments() == [] and link.a.state is State.ESTABLISHED
    # A SYN on an established connection: challenge ACK, too.
    link.a.segment_arrived(TcpSegment(80, 40000, rcv & 0xFFFFFFFF, 0, SYN, 1000), link.now)
    assert [s.flags for s in link.a.take_segments()] == [ACK] and link.a.state is State.ESTABLISHED
    # Exact: reset.
    link.a.segment_arrived(TcpSegment(80, 40000, rcv & 0xFFFFFFFF, 0, RST, 0), link.now)
    ev = link.a.take_events()
    assert (
        link.a.state is State.CLOSED and ev[-1].error is not None and ev[-1].error.errno == errno.ECONNRESET
    )


def test_abort_sends_rst_and_peer_resets() -> None:
    link = Link()
    link.handshake()
    link.a.abort(link.now)
    assert link.a.state is State.CLOSED
    assert link.run_until(lambda: link.b.state is State.CLOSED)
    assert link.wire[-1][1].flags == RST
    assert link.events["b"][-1].error is not None and link.events["b"][-1].error.errno == errno.ECONNRESET


def test_fast_retransmit_on_three_duplicate_acks() -> None:
    link = Link()
    link.handshake()
    data = _payload(40_000)
    first_data = []

    def lose_first_data(seg: TcpSegment) -> bool:
        if seg.payload and not first_data:
            first_data.append(seg.seq)
            return True
        return False

    link.drop_next.append(lose_first_data)
    link.a.send(data, link.now)
    t0 = link.now
    assert link.run_until(lambda: bytes(link.received["b"]) == data)
    assert link.a.counters["fast_retransmits"] == 1 and link.a.counters["timeouts"] == 0
    assert link.now - t0 < 200  # well before any RTO
    assert link.a.cwnd <= link.a.ssthresh + 3 * link.a.send_mss or not link.a._in_recovery


def test_rto_estimation_and_timeout_retransmission() -> None:
    link = Link(latency=30)
    link.handshake()
    for i in range(5):
        link.a.send(b"x" * 100, link.now)
        assert link.run_until(lambda i=i: len(link.received["b"]) == 100 * (i + 1))
        link.run_until(lambda: link.a.snd_una == link.a.snd_max)
    assert link.a.srtt is not None and 55 <= link.a.srtt <= 110  # 60 ms round trip (+ delayed ACKs)
    assert link.a.rto == TcpConfig().rto_min_ms  # the floor applies on a fast path
    # The only segment of a burst is lost and nothing follows: a tail loss probe (RFC 8985)
    # resends it after about two round trips, well before the RTO.
    link.drop_next.append(lambda s: bool(s.payload))
    link.a.send(b"y" * 100, link.now)
    t0 = link.now
    assert link.run_until(lambda: link.received["b"].endswith(b"y" * 100))
    assert link.a.counters["tail_loss_probes"] == 1 and link.a.counters["timeouts"] == 0
    link.run_until(lambda: link.a.snd_una == link.a.snd_max)
    # Segment and probe both lost: the RTO fires and doubles.
    link.drop_next += [lambda s: bool(s.payload), lambda s: bool(s.payload)]
    link.a.send(b"z" * 100, link.now)
    t0 = link.now
    assert link.run_until(lambda: link.received["b"].endswith(b"z" * 100))
    assert link.a.counters["timeouts"] == 1 and link.now - t0 >= 200


def test_connection_times_out_when_the_peer_vanishes() -> None:
    link = Link(a_cfg=TcpConfig(mss=1000, retries=3))
    link.handshake()
    link.loss = 1.0
    link.a.send(b"z" * 10, link.now)
    assert link.run_until(lambda: link.a.state is State.CLOSED)
    assert link.events["a"][-1].error is not None and link.events["a"][-1].error.errno == errno.ETIMEDOUT


def test_flow_control_zero_window_and_probe() -> None:
    link = Link(b_cfg=TcpConfig(mss=1000, rcv_buf=8000))
    link.handshake()
    # b's application does not read: the window closes at 8000 bytes.
    link.b.consumed = lambda n, now: None  # type: ignore[method-assign]
    real_consumed = TcpConnection.consumed
    data = _payload(20_000)
    link.a.send(data, link.now)
    link.run_until(lambda: False, limit_ms=3000)
    assert len(link.received["b"]) == 8000 and link.a.snd_wnd == 0
    probes = [
        s for n, s in link.wire if n == "a" and not s.payload and s.seq == (link.a.snd_una - 1) & 0xFFFFFFFF
    ]
    assert probes, "zero-window probes are sent"
    assert link.a.state is State.ESTABLISHED
    # The application reads: the window opens (a window update), the rest flows.
    del link.b.consumed
    real_consumed(link.b, 8000, link.now)
    assert link.run_until(lambda: bytes(link.received["b"]) == data)


def test_receiver_never_shrinks_its_window() -> None:
    link = Link(b_cfg=TcpConfig(mss=1000, rcv_buf=20000))
    link.handshake()
    link.b.consumed = lambda n, now: None  # type: ignore[method-assign]
    link.a.send(_payload(50_000), link.now)
    link.run_until(lambda: False, limit_ms=2000)
    rights = []
    base = link.a.iss
    for name, s in link.wire:
        if name == "b" and s.flags & ACK and not s.flags & SYN:
            rights.append(((s.ack - base) & 0xFFFFFFFF) + (s.window << link.b.rcv_wscale))
    assert rights == sorted(rights)


def test_keepalive_probes_and_timeout() -> None:
    cfg = TcpConfig(
        mss=1000, keepalive=True, keepalive_idle_ms=10_000, keepalive_interval_ms=1000, keepalive_count=3
    )
    link = Link(a_cfg=cfg)
    link.handshake()
    n = len(link.wire)
    link.run_until(lambda: False, limit_ms=25_000)
    probes = [s for name, s in link.wire[n:] if name == "a"]
    assert len(probes) >= 2 and link.a.state is State.ESTABLISHED  # answered each time
    link.loss = 1.0
    assert link.run_until(lambda: link.a.state is State.CLOSED, limit_ms=60_000)
    assert link.events["a"][-1].error is not None and link.events["a"][-1].error.errno == errno.ETIMEDOUT


def test_time_wait_answers_a_retransmitted_fin() -> None:
    link = Link()
    link.handshake()
    link.a.shutdown(link.now)
    assert link.run_until(lambda: link.a.state is State.FIN_WAIT_2)
    link.drop_next.append(lambda s: s.flags == ACK and s.ack == (link.b.snd_max) & 0xFFFFFFFF)
    link.b.shutdown(link.now)
    # a's ACK of b's FIN is lost: b retransmits its FIN, a (in TIME_WAIT) ACKs again.
    assert link.run_until(lambda: link.b.state is State.CLOSED)
    assert link.a.state is State.TIME_WAIT
    assert link.b.counters["timeouts"] + link.b.counters.get("tail_loss_probes", 0) >= 1


@pytest.mark.parametrize("seed", [1, 2])
def test_lossy_reordering_link_delivers_byte_exact(seed: int) -> None:
    link = Link(loss=0.05, reorder=0.1, seed=seed)
    link.handshake()
    data = _payload(1_000_000, seed)
    link.a.send(data, link.now)
    link.a.shutdown(link.now)
    assert link.run_until(lambda: EventKind.EOF in link.kinds("b"), limit_ms=3_600_000)
    assert hashlib.sha256(bytes(link.received["b"])).digest() == hashlib.sha256(data).digest()
    assert link.a.counters["retransmits"] > 0


def test_sequence_numbers_wrap() -> None:
    link = Link()  # a's ISS is 0xFFFFF000: the stream crosses 2**32 after 4 KiB
    link.handshake()
    data = _payload(50_000)
    link.a.send(data, link.now)
    assert link.run_until(lambda: bytes(link.received["b"]) == data)
    assert any(s.seq < 0x1000 for n, s in link.wire if n == "a" and s.payload)


def test_fin_rides_on_the_last_data_segment() -> None:
    link = Link()
    link.handshake()
    data = _payload(30_000)
    link.a.send(data, link.now)  # more than the initial window: the tail waits
    link.a.shutdown(link.now)
    assert link.run_until(lambda: EventKind.EOF in link.kinds("b"))
    assert bytes(link.received["b"]) == data
    last = [seg for n, seg in link.wire if n == "a" and seg.payload][-1]
    assert last.flags & FIN and not [seg for n, seg in link.wire if n == "a" and seg.flags == FIN | ACK]


def test_sack_negotiated_and_blocks_reported_per_rfc_2018() -> None:
    link = Link()
    link.handshake()
    syn, synack = link.wire[0][1], next(s for n, s in link.wire if n == "b")
    assert syn.sack_permitted and synack.sack_permitted
    # The second data segment is lost: b's duplicate ACKs carry SACK blocks for what it holds.
    seen: list[TcpSegment] = []
    link.drop_next.append(lambda s: bool(s.payload) and not seen and not seen.append(s))  # type: ignore[func-returns-value]
    link.a.send(_payload(8000), link.now)
    assert link.run_until(lambda: len(link.received["b"]) == 8000)
    sacks = [s for n, s in link.wire if n == "b" and s.sack_blocks]
    assert sacks, "out-of-order data is SACKed"
    first = sacks[0]
    lost_end = (seen[0].seq + len(seen[0].payload)) & 0xFFFFFFFF
    assert first.ack == seen[0].seq and first.sack_blocks[0][0] == lost_end
    # scapy reads the same option off the wire.
    raw = build_tcp(B4, A4, first)
    opts = dict(TCP(raw).options)
    assert opts["SAck"][:2] == first.sack_blocks[0]


def test_sack_recovers_several_losses_in_one_window_without_timeout() -> None:
    link = Link(latency=10)
    link.handshake()
    link.a.send(_payload(20_000, 9), link.now)  # warm up cwnd
    assert link.run_until(lambda: len(link.received["b"]) == 20_000)
    link.run_until(lambda: link.a.snd_una == link.a.snd_max)
    sent = [0]

    def lose_3rd_5th_9th(seg: TcpSegment) -> bool:
        if seg.payload and sent[0] < 9:
            sent[0] += 1
            return sent[0] in (3, 5, 9)
        return False

    link._should_drop = lose_3rd_5th_9th  # type: ignore[method-assign]
    data = _payload(30_000, 10)
    link.a.send(data, link.now)
    assert link.run_until(lambda: bytes(link.received["b"][20_000:]) == data)
    # One recovery episode resends all three holes; no RTO.
    assert link.a.counters["timeouts"] == 0 and link.a.counters["fast_retransmits"] == 1
    assert link.a.counters["retransmits"] == 3


def test_tail_loss_probe_turns_a_silent_tail_into_sack_recovery() -> None:
    link = Link(latency=10)
    link.handshake()
    link.a.send(_payload(20_000, 11), link.now)  # an RTT estimate, a warm window
    assert link.run_until(lambda: len(link.received["b"]) == 20_000)
    link.run_until(lambda: link.a.snd_una == link.a.snd_max)
    sent = [0]

    def lose_first_four(seg: TcpSegment) -> bool:
        if seg.payload and sent[0] < 4:
            sent[0] += 1
            return True
        return False

    link._should_drop = lose_first_four  # type: ignore[method-assign]
    data = _payload(5000, 12)  # five segments, the first four lost, then silence
    link.a.send(data, link.now)
    t0 = link.now
    assert link.run_until(lambda: bytes(link.received["b"][20_000:]) == data)
    # One SACKed segment is too little for fast recovery; the probe's answer (RFC 8985 7.4)
    # starts it instead of an RTO.
    c = link.a.counters
    assert c["timeouts"] == 0 and c["tail_loss_probes"] == 1 and c["fast_retransmits"] == 1
    assert link.now - t0 < TcpConfig().rto_min_ms


def test_zero_window_probe_with_data_is_answered() -> None:
    link = Link(b_cfg=TcpConfig(mss=1000, rcv_buf=4000))
    link.handshake()
    link.b.consumed = lambda n, now: None  # type: ignore[method-assign]  # b's application sleeps
    link.a.send(_payload(4000), link.now)
    link.run_until(lambda: len(link.received["b"]) == 4000)
    link.run_until(lambda: link.a.snd_una == link.a.snd_max)
    assert link.a.snd_wnd == 0
    # A probe carrying one byte at rcv_nxt, as lwIP sends them.
    n = len(link.wire)
    probe = TcpSegment(40000, 80, link.b.rcv_nxt & 0xFFFFFFFF, link.b.snd_nxt & 0xFFFFFFFF, ACK, 65535, b"x")
    link.b.segment_arrived(probe, link.now)
    link._collect()
    answers = [s for name, s in link.wire[n:] if name == "b"]
    assert len(answers) == 1 and answers[0].window == 0 and answers[0].ack == link.b.rcv_nxt & 0xFFFFFFFF
    assert len(link.received["b"]) == 4000  # the probe's byte was not taken


def test_hystart_leaves_slow_start_when_delay_builds() -> None:
    conn = TcpConnection(("10.9.0.1", 1), ("10.9.0.2", 2), 0, TcpConfig(mss=1000))
    conn.send_mss, conn.cwnd = 1000, 8000
    conn._rtt_sample(10)
    conn._rtt_sample(40)  # a small window: HyStart does not act below 16 segments
    assert conn.ssthresh == 1 << 30
    conn.cwnd = 32_000
    conn._rtt_sample(12)  # within min_rtt + eta (4 ms at least): still slow start
    assert conn.ssthresh == 1 << 30
    conn._rtt_sample(15)  # min_rtt 10 + 4: the queue shows
    assert conn.ssthresh == 32_000 and conn.counters["hystart_exits"] == 1
