"""ztcore's userspace TCP against the Linux kernel's TCP, frame for frame.

A namespace created by the test holds a TAP device with the kernel's IP stack on it
(10.99.0.1/24, fd99::1/64, MTU 2800 like a ZeroTier network); ztcore's ``Responder``
(10.99.0.2, fd99::2) reads and writes that TAP's Ethernet frames from this process. This
is what a zerotier-one member looks like from a ztcore node: kernel TCP behind a TAP.
Checked, over IPv4 and IPv6: a kernel client sends 10 MB to a ztcore listener and a
ztcore client 10 MB to a kernel listener, byte-exact (SHA-256 on both ends); and both
again over IPv4 with 5 % of the frames dropped and 5 % reordered each way.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import hashlib
import ipaddress
import os
import random
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from ztcore.netstack import frames as f
from ztcore.netstack.responder import Responder
from ztcore.netstack.tcp import EventKind, TcpConnection, TcpEvent

from .harness import Netns

pytestmark = pytest.mark.interop

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
KERNEL_V4, ZT_V4 = "10.99.0.1", "10.99.0.2"
KERNEL_V6, ZT_V6 = "fd99::1", "fd99::2"
ZT_MAC = 0x02AB00000002
MTU = 2800
NBYTES = 10 * 1024 * 1024

KERNEL_SCRIPT = r"""
import hashlib, os, socket, sys, time
mode, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
if mode == "send":
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect((host, port))
    h = hashlib.sha256()
    left = n
    while left:
        d = os.urandom(min(65536, left))
        h.update(d)
        s.sendall(d)
        left -= len(d)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    print(h.hexdigest(), flush=True)
else:
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(1)
    print("listening", flush=True)
    ls.settimeout(60)
    c, _ = ls.accept()
    c.settimeout(60)
    h = hashlib.sha256()
    got = 0
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        h.update(d)
        got += len(d)
    c.close()
    print(got, h.hexdigest(), flush=True)
"""


def open_tap_in(ns: Netns, name: str) -> int:
    """Create a TAP device inside ``ns`` (from a thread that joins the namespace, so nothing
    ever exists in the root namespace) and return its file descriptor."""
    result: dict[str, object] = {}

    def worker() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            nsfd = os.open(f"/var/run/netns/{ns.name}", os.O_RDONLY)
            try:
                if libc.setns(nsfd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(nsfd)
            fd = os.open("/dev/net/tun", os.O_RDWR)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
            result["fd"] = fd
        except BaseException as e:
            result["error"] = e

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return int(result["fd"])  # type: ignore[call-overload]


@pytest.fixture
def tap() -> Iterator[tuple[Netns, int]]:
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("KERNEL TCP INTEROP SKIPPED: /dev/net/tun is missing")
    with Netns.create("ktcp") as ns:
        fd = open_tap_in(ns, "ztap0")
        try:
            ns.ip("link", "set", "ztap0", "mtu", str(MTU))
            ns.ip("addr", "add", f"{KERNEL_V4}/24", "dev", "ztap0")
            ns.ip("-6", "addr", "add", f"{KERNEL_V6}/64", "dev", "ztap0", "nodad")
            ns.ip("link", "set", "ztap0", "up")
            yield ns, fd
        finally:
            os.close(fd)


class Sink:
    """Hashes what a connection delivers and keeps the window open."""

    def __init__(self, table: object) -> None:
        self.table = table
        self.digest = hashlib.sha256()
        self.received = 0
        self.kinds: list[EventKind] = []
        self.conns: list[TcpConnection] = []

    def tcp_accept(self, conn: TcpConnection) -> Sink:
        self.conns.append(conn)
        return self

    def tcp_event(self, conn: TcpConnection, event: TcpEvent) -> None:
        self.kinds.append(event.kind)
        if event.kind is EventKind.DATA:
            self.digest.update(event.data)
            self.received += len(event.data)
            self.table.consumed(conn, len(event.data), self.table.now)  # type: ignore[attr-defined]


class Wire:
    """The TAP, optionally lossy: drops ``loss`` of the frames each way and holds back
    ``reorder`` of them by 1-5 ms (seeded)."""

    def __init__(self, fd: int, loss: float = 0.0, reorder: float = 0.0, seed: int = 1) -> None:
        self.fd, self.loss, self.reorder = fd, loss, reorder
        self.rng = random.Random(seed)
        self.dropped = 0

    def _fate(self) -> float | None:
        """None: drop; else the delay in seconds (0: now)."""
        x = self.rng.random()
        if x < self.loss:
            self.dropped += 1
            return None
        return self.rng.uniform(0.001, 0.005) if x < self.loss + self.reorder else 0.0

    def send(self, dest: int, src: int, ethertype: int, payload: bytes) -> None:
        frame = f.build_ethernet(dest, src, ethertype, payload)
        delay = self._fate() if ethertype != f.ETHERTYPE_ARP else 0.0
        if delay is None:
            return
        if delay:
            asyncio.get_running_loop().call_later(delay, os.write, self.fd, frame)
        else:
            os.write(self.fd, frame)


async def drive(wire: Wire, responder: Responder, until: asyncio.Future[None], timeout: float) -> None:
    """Pump frames between the TAP and the responder and run its timers until ``until``."""
    loop = asyncio.get_running_loop()
    clock = time.monotonic
    fd = wire.fd

    def deliver(frame: bytes) -> None:
        e = f.parse_ethernet(frame)
        responder.handle_frame(e.source_mac, e.dest_mac, e.ethertype, e.payload, int(clock() * 1000))

    def readable() -> None:
        for _ in range(64):
            try:
                frame = os.read(fd, 65536)
            except BlockingIOError:
                return
            if len(frame) < 14:
                continue
            delay = wire._fate() if frame[12:14] != b"\x08\x06" else 0.0
            if delay is None:
                continue
            if delay:
                loop.call_later(delay, deliver, frame)
            else:
                deliver(frame)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        deadline = clock() + timeout
        while not until.done():
            if clock() > deadline:
                raise TimeoutError("transfer did not finish")
            responder.expire(int(clock() * 1000))
            await asyncio.sleep(0.005)
    finally:
        loop.remove_reader(fd)


def make_responder(wire: Wire) -> Responder:
    r = Responder(ZT_MAC, wire.send, mtu=MTU)
    r.set_addresses([ipaddress.ip_interface(f"{ZT_V4}/24"), ipaddress.ip_interface(f"{ZT_V6}/64")])
    return r


CASES = [("v4", 0.0), ("v6", 0.0), ("v4", 0.05)]


@pytest.mark.parametrize(("family", "loss"), CASES)
def test_kernel_client_to_ztcore_server_10_mb(tap: tuple[Netns, int], family: str, loss: float) -> None:
    ns, fd = tap
    wire = Wire(fd, loss, loss)
    r = make_responder(wire)
    sink = Sink(r.tcp)
    r.tcp.listen(9300, sink)
    host = ZT_V4 if family == "v4" else ZT_V6

    async def main() -> str:
        proc = ns.popen(
            [sys.executable, "-c", KERNEL_SCRIPT, "send", host, "9300", str(NBYTES)],
            stdout=subprocess.PIPE,
            text=True,
        )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def check() -> None:
            if EventKind.EOF in sink.kinds and not done.done():
                sink_conn = sink.conns[0]
                r.tcp.close(sink_conn, r.tcp.now)
                done.set_result(None)
            else:
                asyncio.get_running_loop().call_later(0.01, check)

        check()
        await drive(wire, r, done, 120)
        out, _ = await asyncio.get_running_loop().run_in_executor(None, proc.communicate, None, 30)
        return out.strip()

    sent_digest = asyncio.run(main())
    assert sink.received == NBYTES
    assert sink.digest.hexdigest() == sent_digest
    assert sink.conns[0].send_mss == MTU - (40 if family == "v4" else 60)
    assert (wire.dropped > 100) == (loss > 0)


@pytest.mark.parametrize(("family", "loss"), CASES)
def test_ztcore_client_to_kernel_server_10_mb(tap: tuple[Netns, int], family: str, loss: float) -> None:
    ns, fd = tap
    wire = Wire(fd, loss, loss)
    r = make_responder(wire)
    host = KERNEL_V4 if family == "v4" else KERNEL_V6
    proc = ns.popen(
        [sys.executable, "-c", KERNEL_SCRIPT, "recv", host, "9400", str(NBYTES)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
    data = random.Random(family).randbytes(NBYTES)
    client = Sink(r.tcp)

    async def main() -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        src = ipaddress.ip_address(ZT_V4 if family == "v4" else ZT_V6).packed
        conn = r.tcp.connect(
            src, ipaddress.ip_address(host).packed, 9400, client, int(time.monotonic() * 1000)
        )

        sent = False

        def check() -> None:
            nonlocal sent
            if EventKind.CONNECTED in client.kinds and not sent:
                sent = True
                r.tcp.send(conn, data, r.tcp.now)
                r.tcp.shutdown(conn, r.tcp.now)
            if EventKind.CLOSED in client.kinds or EventKind.EOF in client.kinds:
                if not done.done():
                    done.set_result(None)
                return
            asyncio.get_running_loop().call_later(0.01, check)

        check()
        await drive(wire, r, done, 120)

    asyncio.run(main())
    out, _ = proc.communicate(timeout=30)
    got, digest = out.split()
    assert int(got) == NBYTES and digest == hashlib.sha256(data).hexdigest()
