"""The runtime's batched UDP I/O: the recvmmsg extension and its pure-Python fallback give
the same datagrams and source addresses; NodeService drains sockets in batches, queues
sends on a full socket (bounded, counted drops) and hands frames over once per drain."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import pytest
from tests.test_service import FakeNode, have_ipv6, run, until

from ztcore.api import VirtualFrame
from ztcore.runtime import service as service_mod
from ztcore.runtime import udpio, udpout
from ztcore.runtime.home import MemoryState
from ztcore.runtime.service import Runtime


def _c_recv_batch(sock: socket.socket, max_count: int) -> udpio.Datagrams:
    from ztcore.runtime import _udpio  # type: ignore[attr-defined]  # built by pip install

    result: udpio.Datagrams = _udpio.recv_batch(sock.fileno(), max_count)
    return result


READERS = {"recvmmsg": _c_recv_batch, "python": udpio.recv_batch_python}


def _pair(family: int, host: str) -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(family, socket.SOCK_DGRAM)
    rx.bind((host, 0))
    rx.setblocking(False)
    tx = socket.socket(family, socket.SOCK_DGRAM)
    tx.bind((host, 0))
    return rx, tx


def _drain_all(reader: Any, rx: socket.socket, max_count: int) -> list[udpio.Datagrams]:
    batches = []
    while batch := reader(rx, max_count):
        batches.append(batch)
    return batches


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_both_readers_give_the_same_datagrams_and_addresses(family: int, host: str) -> None:
    if family == socket.AF_INET6 and not have_ipv6():
        pytest.skip("IPv6 UNAVAILABLE: this kernel cannot bind ::1, IPv6 receive not tested")
    payloads = [b"", b"x", bytes(range(256)) * 6, b"\xff" * 9000] + [i.to_bytes(4, "big") for i in range(10)]
    seen: dict[str, list[udpio.Datagrams]] = {}
    for name, reader in READERS.items():
        rx, tx = _pair(family, host)
        tx2 = socket.socket(family, socket.SOCK_DGRAM)
        tx2.bind((host, 0))
        with rx, tx, tx2:
            assert reader(rx, 8) == []  # nothing queued: an empty batch, never blocking
            for i, p in enumerate(payloads):
                (tx2 if i % 3 == 0 else tx).sendto(p, rx.getsockname()[:2])
            batches = _drain_all(reader, rx, 5)
            # Batches are bounded by max_count and nothing is lost or reordered.
            assert [len(b) for b in batches] == [5, 5, 4]
            flat = [d for b in batches for d in b]
            assert [d for d, _ in flat] == payloads
            srcs = [tx2.getsockname()[:2] if i % 3 == 0 else tx.getsockname()[:2] for i in range(len(payloads))]
            assert [a for _, a in flat] == srcs
            assert all(type(a) is tuple and len(a) == 2 for _, a in flat)
            seen[name] = [[(d, (a[0], a[1] - (tx2.getsockname()[1] if i % 3 == 0 else tx.getsockname()[1])))
                           for i, (d, a) in enumerate(flat)]]
    # Same datagrams, same host strings, port offsets alike (each reader had its own sockets).
    assert seen["recvmmsg"] == seen["python"]


@pytest.mark.parametrize("name", list(READERS))
def test_socket_errors_are_raised_not_swallowed(name: str) -> None:
    rx, tx = _pair(socket.AF_INET, "127.0.0.1")
    tx.close()
    fake = socket.socket(fileno=rx.detach())
    fake.close()  # the descriptor is gone: EBADF
    with pytest.raises(OSError) as info:
        READERS[name](fake, 4)
    assert info.value.errno == errno.EBADF


def test_recvmmsg_extension_is_used() -> None:
    assert udpio.HAVE_RECVMMSG  # the package builds it (pyproject.toml ext-modules)
    with pytest.raises(ValueError):
        _c_recv_batch(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), 0)


@pytest.mark.parametrize("reader", ["recvmmsg", "python"])
def test_service_drains_a_burst_in_order(monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    monkeypatch.setattr(service_mod, "recv_batch", udpio.recv_batch if reader == "recvmmsg" else udpio.recv_batch_python)
    count = 3 * service_mod.RECV_BATCH + 7

    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            b = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            seen: list[tuple[str, bytes]] = []
            b.add_wire_listener(lambda d, _local, _remote, data: seen.append((d, data)))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.bind(("127.0.0.1", 0))
                for i in range(count):
                    tx.sendto(b"data%d" % i, ("127.0.0.1", b.primary_port))
                await until(lambda: len(b.node.received) == count)
                assert [d for _, _, d in b.node.received] == [b"data%d" % i for i in range(count)]
                assert {r for _, r, _ in b.node.received} == {tx.getsockname()}
                assert seen == [("in", b"data%d" % i) for i in range(count)]
                assert b.counters.packets_in == count
                # The service still answers after the burst.
                tx.sendto(b"ping!", ("127.0.0.1", b.primary_port))
                await until(lambda: len(b.node.received) == count + 1)
                tx.settimeout(3)  # the node answered in its call: the reply is queued already
                assert tx.recvfrom(100)[0] == b"pong!"

    run(main)


def test_socket_errors_are_counted_and_reading_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    fail = [True]

    def flaky(sock: socket.socket, max_count: int) -> udpio.Datagrams:
        if fail[0]:
            fail[0] = False
            raise ConnectionRefusedError(errno.ECONNREFUSED, "port unreachable (ICMP)")
        return udpio.recv_batch(sock, max_count)

    monkeypatch.setattr(service_mod, "recv_batch", flaky)

    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            b = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.sendto(b"one", ("127.0.0.1", b.primary_port))
                await until(lambda: len(b.node.received) == 1)
            assert b.counters.send_errors == 1 and b.counters.node_errors == 0
            assert b.running

    run(main)


class _FullSocket:
    """A bound socket whose send buffer is 'full' (EAGAIN) until told otherwise."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.full = True
        self.sent: list[tuple[bytes, Any]] = []
        self.ttls: list[int] = []

    def fileno(self) -> int:
        return self.real.fileno()

    def sendto(self, data: bytes, addr: Any) -> int:
        if self.full:
            raise BlockingIOError(errno.EAGAIN, "send buffer full")
        self.sent.append((data, addr))
        return self.real.sendto(data, addr)

    def setsockopt(self, level: int, opt: int, value: int) -> None:
        if opt == socket.IP_TTL:
            self.ttls.append(value)
        self.real.setsockopt(level, opt, value)

    def close(self) -> None:
        self.real.close()


def test_full_socket_queues_in_order_then_drops_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udpout, "SEND_QUEUE_LIMIT", 4)

    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            a = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            b = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            (binding,) = a._bindings.values()
            stub = _FullSocket(binding.sock)
            binding.sock = stub  # type: ignore[assignment]
            out: list[bytes] = []
            a.add_wire_listener(lambda d, _l, _r, data: out.append(data) if d == "out" else None)
            dest = ("127.0.0.1", b.primary_port)
            send = a.node.cb.wire_packet_send
            assert send(-1, dest, b"q1") and send(-1, dest, b"q2", 3) and send(-1, dest, b"q3")
            assert a.counters.packets_out == 0 and out == []  # waiting, not sent, not dropped
            assert send(-1, dest, b"q4") is True
            assert send(-1, dest, b"q5") is False  # the queue is full: dropped, and counted
            assert a.counters.send_dropped == 1
            stub.full = False  # the socket becomes writable: the queue goes out in order
            await until(lambda: a.counters.packets_out == 4)
            assert [d for d, _ in stub.sent] == [b"q1", b"q2", b"q3", b"q4"] == out
            assert stub.ttls == [3, 255]  # the low-TTL datagram kept its TTL while queued
            await until(lambda: len(b.node.received) == 4)
            assert [d for _, _, d in b.node.received] == [b"q1", b"q2", b"q3", b"q4"]
            # Writable again: later sends go straight out.
            assert send(-1, dest, b"q6") and a.counters.packets_out == 5
            stub.full = True
            assert send(-1, dest, b"lost-at-stop")
            await rt.remove_node(a)
            assert a.counters.send_dropped == 2  # what was still queued at stop is counted too

    run(main)


def test_frames_of_one_drain_are_handed_over_together_after_it() -> None:
    """Frames the node emits while a socket is drained reach the listeners after the node's
    calls have returned (never from inside one), in order, without a loop iteration each."""

    class FrameNode(FakeNode):
        in_call = False

        def process_wire_packet(self, now: int, local_socket: int, remote: tuple[str, int], data: bytes) -> None:
            self.in_call = True
            try:
                self.cb.virtual_network_frame(VirtualFrame(1, 2, 3, 0x0800, 0, data))
            finally:
                self.in_call = False

    async def main() -> None:
        async with Runtime(node_factory=FrameNode) as rt:
            b = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            got: list[tuple[bytes, bool, int]] = []
            b.add_frame_listener(lambda f: got.append((f.data, b.node.in_call, b.counters.packets_in)))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                for i in range(10):
                    tx.sendto(b"f%d" % i, ("127.0.0.1", b.primary_port))
                await asyncio.sleep(0.05)  # all ten are queued before the service reads
                await until(lambda: len(got) == 10)
            assert [d for d, _, _ in got] == [b"f%d" % i for i in range(10)]
            assert not any(inside for _, inside, _ in got)
            assert {n for _, _, n in got} == {10}  # one drain read them all, then the frames went

            # A frame emitted outside a drain (e.g. by a listener's own send) still waits for
            # the loop: it never re-enters the listener that caused it.
            depth = [0, 0]

            def reentrant(frame: VirtualFrame) -> None:
                depth[0] += 1
                depth[1] = max(depth[1], depth[0])
                if frame.data == b"again":
                    b._callbacks.virtual_network_frame(VirtualFrame(1, 2, 3, 0x0800, 0, b"echo"))
                depth[0] -= 1

            b.add_frame_listener(reentrant)
            b._callbacks.virtual_network_frame(VirtualFrame(1, 2, 3, 0x0800, 0, b"again"))
            await until(lambda: [d for d, _, _ in got][-2:] == [b"again", b"echo"])
            assert depth[1] == 1

    run(main)


def _c_send_batch(sock: socket.socket, datagrams: tuple[bytes, ...], addr: tuple[str, int]) -> int:
    from ztcore.runtime import _udpio  # type: ignore[attr-defined]  # built by pip install

    sent: int = _udpio.send_batch(sock.fileno(), datagrams, addr[0], addr[1])
    return sent


SENDERS = {"sendmmsg": _c_send_batch, "python": udpio.send_batch_python}


@pytest.mark.parametrize("name", list(SENDERS))
@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_both_senders_deliver_a_packets_pieces_in_order(name: str, family: int, host: str) -> None:
    if family == socket.AF_INET6 and not have_ipv6():
        pytest.skip("IPv6 UNAVAILABLE: this kernel cannot bind ::1, IPv6 send not tested")
    rx, tx = _pair(family, host)
    with rx, tx:
        pieces = (bytes(range(256)) * 5, b"second", b"\x00" * 1416, b"")
        assert SENDERS[name](tx, pieces, rx.getsockname()[:2]) == 4
        got = _drain_all(udpio.recv_batch_python, rx, 10)
        assert [d for d, _ in got[0]] == list(pieces)
        assert all(a == tx.getsockname()[:2] for _, a in got[0])
    assert udpio.send_batch is not None


def test_sendmmsg_refuses_what_it_cannot_send() -> None:
    rx, tx = _pair(socket.AF_INET, "127.0.0.1")
    with rx, tx:
        dest = rx.getsockname()
        for bad in (("example.org", 9993), ("fe80::1%lo", 9993), ("127.0.0.1", 0)):
            with pytest.raises(ValueError):
                _c_send_batch(tx, (b"x",), bad)
        with pytest.raises(ValueError):
            _c_send_batch(tx, tuple(b"x" for _ in range(17)), dest)
        with pytest.raises(TypeError):
            _c_send_batch(tx, ("not bytes",), dest)  # type: ignore[arg-type]
        assert udpio.send_batch(tx, (b"a", b"b"), dest) == 2
    from ztcore.runtime import _udpio  # type: ignore[attr-defined]

    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = gone.fileno()
    gone.close()  # the descriptor is gone: EBADF
    with pytest.raises(OSError) as info:
        _udpio.send_batch(fd, (b"x",), "127.0.0.1", 9)
    assert info.value.errno == errno.EBADF


def test_service_sends_a_packets_pieces_together_and_queues_what_does_not_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> None:
        async with Runtime(node_factory=FakeNode) as rt:
            a = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            b = await rt.add_node(MemoryState(), bind=["127.0.0.1"])
            (ls,) = a._bindings
            out: list[bytes] = []
            a.add_wire_listener(lambda d, _l, _r, data: out.append(data) if d == "out" else None)
            dest = ("127.0.0.1", b.primary_port)
            send_many = a._callbacks.wire_packets_send
            assert send_many(ls, dest, (b"p1", b"p2", b"p3"))
            assert a.counters.packets_out == 3 and out == [b"p1", b"p2", b"p3"]
            await until(lambda: len(b.node.received) == 3)
            assert [d for _, _, d in b.node.received] == [b"p1", b"p2", b"p3"]
            # The socket's buffer fills after one: the rest is queued, in order, and goes later.
            calls: list[int] = []

            def one_then_full(sock: socket.socket, datagrams: tuple[bytes, ...], addr: tuple[str, int]) -> int:
                calls.append(len(datagrams))
                return udpio.send_batch(sock, datagrams[:1], addr)

            monkeypatch.setattr(udpout, "send_batch", one_then_full)
            assert send_many(ls, dest, (b"q1", b"q2", b"q3"))
            assert calls == [3]
            await until(lambda: len(b.node.received) == 6)
            assert [d for _, _, d in b.node.received][3:] == [b"q1", b"q2", b"q3"]
            assert out[3:] == [b"q1", b"q2", b"q3"] and a.counters.packets_out == 6
            # No usable socket named: one by one, the way _send picks sockets.
            assert send_many(99, dest, (b"r1", b"r2"))
            await until(lambda: len(b.node.received) == 8)

    run(main)
