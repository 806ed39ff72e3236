"""TCP and UDP between ztcore nodes over a real (offline, loopback) ZeroTier
network: the asyncio API of NodeService and the blocking one of NodeHandle."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
import time
from collections.abc import Awaitable, Callable

import pytest
from tests.vnet import VNet, start_vnet, until

from ztcore.runtime import NodeService, ThreadedRuntime
from ztcore.runtime.facade import NodeHandle


def run(coro_fn: Callable[[], Awaitable[None]], timeout: float = 120) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout))  # type: ignore[arg-type]


def lossy(svc: NodeService, rng: random.Random, loss: float, reorder: float) -> dict[str, int]:
    """Drop ``loss`` of the node's outgoing UDP datagrams and hold back ``reorder``
    of them by 1-6 ms, so later ones overtake them (this kernel has no netem)."""
    loop = asyncio.get_running_loop()
    # The node hands its datagrams to this callback (bound to NodeService._send).
    orig = svc._callbacks.wire_packet_send
    stats = {"dropped": 0, "delayed": 0}

    def send(local_socket: int, remote: tuple[str, int], data: bytes, ttl: int) -> bool:
        x = rng.random()
        if x < loss:
            stats["dropped"] += 1
            return True
        if x < loss + reorder:
            stats["delayed"] += 1
            loop.call_later(rng.uniform(0.001, 0.006), orig, local_socket, remote, data, ttl)
            return True
        return orig(local_socket, remote, data, ttl)

    def send_many(local_socket: int, remote: tuple[str, int], datagrams: tuple[bytes, ...]) -> bool:
        return all([send(local_socket, remote, d, 0) for d in datagrams])

    svc._callbacks.wire_packet_send = send
    svc._callbacks.wire_packets_send = send_many  # the pieces of one packet (Node.lane_send)
    return stats


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_tcp_streams_over_ipv4_rfc4193_and_6plane() -> None:
    async def main() -> None:
        v = await start_vnet(2)
        try:
            a, b = v.members
            server = await b.start_server(_echo, 7, network=v.nwid)
            assert server.is_serving()
            for host in (v.ipv4(b), v.rfc4193(b), v.sixplane(b)):
                reader, writer = await a.open_connection(host, 7, network=v.nwid, timeout=10)
                assert writer.get_extra_info("peername") == (host, 7)
                payload = random.Random(host).randbytes(200_000)
                writer.write(payload)
                await writer.drain()
                writer.write_eof()  # half-close: the echo server sees EOF, echoes, closes
                echoed = await asyncio.wait_for(reader.read(-1), 20)
                assert echoed == payload
                writer.close()
                await writer.wait_closed()
            # network may be left out: the destination picks it (or the only one).
            reader, writer = await a.open_connection(v.ipv4(b), 7)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
            writer.close()
            server.close()
            await server.wait_closed()
            assert not server.is_serving()
        finally:
            await v.close()

    run(main)


def test_many_nodes_in_one_process_all_pairs() -> None:
    """Four members in one event loop, each serving and each connecting to every other:
    every node has its own stack (same port everywhere, no cross-talk)."""

    async def main() -> None:
        v = await start_vnet(4, sixplane=False)
        try:
            for m in v.members:

                async def greet(
                    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, me: str = m.address_hex
                ) -> None:
                    name = await reader.readline()
                    writer.write(b"hello " + name.strip() + b" from " + me.encode() + b"\n")
                    await writer.drain()
                    writer.close()

                await m.start_server(greet, 7000, network=v.nwid)

            async def ask(src: NodeService, dst: NodeService) -> bytes:
                reader, writer = await src.open_connection(v.ipv4(dst), 7000, network=v.nwid)
                writer.write(src.address_hex.encode() + b"\n")
                line = await asyncio.wait_for(reader.readline(), 10)
                writer.close()
                return line

            pairs = [(s, d) for s in v.members for d in v.members if s is not d]
            answers = await asyncio.gather(*(ask(s, d) for s, d in pairs))
            for (s, d), line in zip(pairs, answers, strict=True):
                assert line == f"hello {s.address_hex} from {d.address_hex}\n".encode()
        finally:
            await v.close()

    run(main)


def test_connect_refused_unreachable_and_bad_network() -> None:
    async def main() -> None:
        v = await start_vnet(2, sixplane=False)
        try:
            a, b = v.members
            with pytest.raises(ConnectionRefusedError):
                await a.open_connection(v.ipv4(b), 9, network=v.nwid, timeout=10)
            with pytest.raises(TimeoutError):
                await a.open_connection("10.147.17.254", 9, network=v.nwid, timeout=1.5)
            with pytest.raises(OSError) as ei:
                await a.open_connection(v.ipv4(b), 9, network=0x1122334455667788, timeout=1)
            assert ei.value.errno == errno.ENETUNREACH
            server = await b.start_server(_echo, 7, network=v.nwid)
            with pytest.raises(OSError) as ei:
                await b.start_server(_echo, 7, network=v.nwid)
            assert ei.value.errno == errno.EADDRINUSE
            server.close()
        finally:
            await v.close()

    run(main)


def test_transport_protocol_api_with_half_close_and_reset() -> None:
    class Collect(asyncio.Protocol):
        def __init__(self) -> None:
            self.data = bytearray()
            self.eof = asyncio.get_running_loop().create_future()
            self.lost = asyncio.get_running_loop().create_future()
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.data += data

        def eof_received(self) -> bool:
            self.eof.set_result(bytes(self.data))
            return True  # keep our side open to answer

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.lost.done():
                self.lost.set_result(exc)

    async def main() -> None:
        v = await start_vnet(2, sixplane=False)
        try:
            a, b = v.members
            accepted: list[Collect] = []

            def factory() -> Collect:
                p = Collect()
                accepted.append(p)
                return p

            server = await b.create_server(factory, 8000, network=v.nwid)
            transport, client = await a.create_connection(Collect, v.ipv4(b), 8000, network=v.nwid)
            assert isinstance(client, Collect) and client.transport is transport
            assert transport.can_write_eof()
            transport.write(b"request")
            transport.write_eof()
            await until(lambda: bool(accepted), 5, "accept")
            srv = accepted[0]
            assert await asyncio.wait_for(srv.eof, 5) == b"request"
            assert srv.transport is not None
            assert srv.transport.get_extra_info("peername")[0] == v.ipv4(a)
            srv.transport.write(b"response")
            srv.transport.close()
            assert await asyncio.wait_for(client.eof, 5) == b"response"
            assert await asyncio.wait_for(client.lost, 5) is None
            # An abort reaches the peer as a reset.
            transport2, client2 = await a.create_connection(Collect, v.ipv4(b), 8000, network=v.nwid)
            await until(lambda: len(accepted) == 2, 5, "second accept")
            assert accepted[1].transport is not None
            accepted[1].transport.abort()
            exc = await asyncio.wait_for(client2.lost, 5)
            assert isinstance(exc, ConnectionResetError)
            server.close()
        finally:
            await v.close()

    run(main)


def test_connection_survives_the_path_changing_from_relayed_to_direct() -> None:
    """While direct datagrams between the two members are dropped, the root relays their
    traffic; once let through (and a HELLO sent at the other's address), they talk directly.
    The TCP connection carries on across the change, byte-exact."""

    async def main() -> None:
        from ztcore.vl1.inetaddress import InetAddress

        v = await start_vnet(2, sixplane=False)
        try:
            a, b = v.members
            root = v.runtime.services[0]
            blocked = {"on": True}
            for svc, other in ((a, b), (b, a)):
                orig = svc._callbacks.wire_packet_send  # the node's datagrams go through it

                def send(
                    ls: int,
                    remote: tuple[str, int],
                    data: bytes,
                    ttl: int,
                    orig=orig,
                    port=other.primary_port,
                ) -> bool:
                    if blocked["on"] and int(remote[1]) == port:
                        return True
                    return orig(ls, remote, data, ttl)

                svc._callbacks.wire_packet_send = send
                svc._callbacks.wire_packets_send = lambda ls, remote, datagrams, send=send: all(  # type: ignore[misc]
                    [send(ls, remote, d, 0) for d in datagrams]
                )
            got = bytearray()
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                while chunk := await reader.read(65536):
                    got.extend(chunk)
                done.set_result(None)

            await b.start_server(sink, 9, network=v.nwid)
            reader, writer = await a.open_connection(v.ipv4(b), 9, network=v.nwid, timeout=10)
            sent = bytearray()

            async def push(n: int) -> None:
                for _ in range(n):
                    chunk = random.randbytes(65536)
                    sent.extend(chunk)
                    writer.write(chunk)
                    await writer.drain()

            relayed0 = root.node.switch.stats["relayed"]
            await push(16)
            await until(lambda: len(got) == len(sent), 10, "relayed data")
            peer = a.node.peer(int(b.address))
            assert peer is not None and not peer.direct
            assert root.node.switch.stats["relayed"] - relayed0 > 100
            blocked["on"] = False
            hello_to = InetAddress.parse(f"127.0.0.1/{b.primary_port}")
            a.node.switch.send_hello(a.clock(), a.node.topology.get_peer(b.address), 0, hello_to)
            await push(4)

            def direct() -> bool:
                pa, pb = a.node.peer(int(b.address)), b.node.peer(int(a.address))
                return bool(pa and pa.direct and pb and pb.direct)

            while not direct():  # each side's first direct HELLO teaches the other the path
                await push(1)
                await until(lambda: len(got) == len(sent), 10, "data during the change")
            assert direct()
            relayed1 = root.node.switch.stats["relayed"]
            await push(16)
            writer.write_eof()
            await asyncio.wait_for(done, 30)
            assert bytes(got) == bytes(sent)
            assert root.node.switch.stats["relayed"] - relayed1 < 50  # the bulk went direct
            writer.close()
        finally:
            await v.close()

    run(main)


def test_keepalive_detects_a_silent_peer_and_port_zero_servers() -> None:
    async def main() -> None:
        v = await start_vnet(2, sixplane=False)
        try:
            a, b = v.members
            server = await b.start_server(_echo, 0, network=v.nwid)
            assert server.port >= 49152
            reader, writer = await a.open_connection(v.ipv4(b), server.port, network=v.nwid)
            writer.write(b"hi")
            assert await asyncio.wait_for(reader.readexactly(2), 5) == b"hi"
            writer.transport.set_keepalive(idle=0.3, interval=0.2, count=3)  # type: ignore[attr-defined]
            await asyncio.sleep(1.0)
            conn = writer.get_extra_info("tcp_connection")
            assert conn.counters["keepalive_probes"] >= 2  # sent while idle, and answered:
            assert conn.state.value == "ESTABLISHED" and not reader.at_eof()
            lossy(b, random.Random(0), 1.0, 0.0)  # b falls silent
            t0 = time.monotonic()
            with pytest.raises(OSError) as ei:
                await asyncio.wait_for(reader.read(10), 10)
            assert ei.value.errno == errno.ETIMEDOUT and time.monotonic() - t0 < 5
        finally:
            await v.close()

    run(main)


def test_leaving_the_network_ends_connections_and_sockets() -> None:
    class Lost(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost.set_result(exc)

    async def main() -> None:
        v = await start_vnet(2, sixplane=False)
        try:
            a, b = v.members
            await b.start_server(_echo, 7, network=v.nwid)
            reader, writer = await a.open_connection(v.ipv4(b), 7, network=v.nwid)
            _t, udp = await a.create_datagram_endpoint(Lost, 5000, network=v.nwid)
            pending = asyncio.ensure_future(reader.read(10))
            await asyncio.sleep(0.05)
            a.leave(v.nwid)
            with pytest.raises(OSError) as ei:
                await asyncio.wait_for(pending, 5)
            assert ei.value.errno == errno.ENETDOWN
            exc = await asyncio.wait_for(udp.lost, 5)
            assert isinstance(exc, OSError) and exc.errno == errno.ENETDOWN
            with pytest.raises(OSError) as ei:
                await a.open_connection(v.ipv4(b), 7, network=v.nwid, timeout=1)
            assert ei.value.errno == errno.ENETUNREACH  # the network is gone
            writer.close()
        finally:
            await v.close()

    run(main)


def test_udp_datagrams_up_to_8k_both_ways_ipv4_and_ipv6() -> None:
    class Queue(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.q: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
            self.q.put_nowait((data, addr))

    async def main() -> None:
        v = await start_vnet(2, sixplane=False)
        try:
            a, b = v.members
            for family, addr_of in ((4, v.ipv4), (6, v.rfc4193)):
                ta, pa = await a.create_datagram_endpoint(Queue, 5000, network=v.nwid, family=family)
                tb, pb = await b.create_datagram_endpoint(Queue, 5000, network=v.nwid, family=family)
                for size in (1, 1400, 2772, 2773, 4000, 8192):
                    msg = random.Random(size).randbytes(size)
                    ta.sendto(msg, (addr_of(b), 5000))
                    data, src = await asyncio.wait_for(pb.q.get(), 5)
                    assert data == msg and src == (addr_of(a), 5000)
                    tb.sendto(msg[::-1], src)
                    data, src = await asyncio.wait_for(pa.q.get(), 5)
                    assert data == msg[::-1] and src == (addr_of(b), 5000)
                ta.close()
                tb.close()
            ra = a.responder(v.nwid)
            assert ra.reassembler.counters["reassembled"] >= 6
        finally:
            await v.close()

    run(main)


def test_ten_megabytes_byte_exact_with_loss_and_reordering() -> None:
    size = 10 * 1024 * 1024

    async def main() -> None:
        v = await start_vnet(2, sixplane=False)
        try:
            a, b = v.members
            digest: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()

            async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                h = hashlib.sha256()
                n = 0
                while chunk := await reader.read(1 << 16):
                    h.update(chunk)
                    n += len(chunk)
                digest.set_result((n, h.digest()))
                writer.close()

            await b.start_server(sink, 9000, network=v.nwid)
            rng = random.Random(5)
            stats = [lossy(m, rng, 0.05, 0.05) for m in (a, b)]
            reader, writer = await a.open_connection(v.ipv4(b), 9000, network=v.nwid, timeout=20)
            data = random.Random(1).randbytes(size)
            for i in range(0, size, 1 << 16):
                writer.write(data[i : i + (1 << 16)])
                await writer.drain()
            writer.write_eof()
            n, got = await asyncio.wait_for(digest, 240)
            assert n == size and got == hashlib.sha256(data).digest()
            assert all(s["dropped"] > 100 and s["delayed"] > 100 for s in stats)
            conn = writer.get_extra_info("tcp_connection")
            assert conn.counters["retransmits"] > 0
            writer.close()
        finally:
            await v.close()

    run(main, timeout=300)


def test_blocking_sockets_through_the_thread_facade() -> None:
    rt = ThreadedRuntime()
    v: VNet | None = None
    try:
        v = rt.run(start_vnet(2, sixplane=False), timeout=60)
        ha, hb = NodeHandle(rt, v.members[0]), NodeHandle(rt, v.members[1])
        ip_a, ip_b = v.ipv4(v.members[0]), v.ipv4(v.members[1])
        with hb.listen(7100, network=v.nwid) as listener:
            with pytest.raises(TimeoutError):
                listener.accept(timeout=0.2)
            client = ha.connect(ip_b, 7100, network=v.nwid, timeout=10)
            conn, peer = listener.accept(timeout=10)
            assert peer[0] == ip_a and client.getpeername() == (ip_b, 7100)
            client.sendall(b"x" * 100_000)
            got = b""
            while len(got) < 100_000:
                got += conn.recv(65536, timeout=10)
            assert got == b"x" * 100_000
            client.settimeout(0.2)
            with pytest.raises(TimeoutError):
                client.recv(10)
            conn.send(b"bye")
            conn.close()
            assert client.recv_exactly(3, timeout=5) == b"bye"
            assert client.recv(10, timeout=5) == b""  # end of stream
            client.close()
            with pytest.raises(OSError) as ei:
                client.recv(1)
            assert ei.value.errno == errno.EBADF
        with pytest.raises(OSError) as ei:
            listener.accept(timeout=1)  # closed
        assert ei.value.errno == errno.EBADF
        with pytest.raises(ConnectionRefusedError):
            ha.connect(ip_b, 7100, network=v.nwid, timeout=10)
        ua, ub = ha.udp_socket(6000, network=v.nwid), hb.udp_socket(6000, network=v.nwid)
        ua.sendto(b"u" * 8000, (ip_b, 6000))
        data, addr = ub.recvfrom(timeout=5)
        assert data == b"u" * 8000 and addr == (ip_a, 6000)
        with pytest.raises(TimeoutError):
            ua.recvfrom(timeout=0.2)
        ua.close()
        ub.close()
    finally:
        if v is not None:
            rt.run(v.close(), timeout=30)
        rt.close()
