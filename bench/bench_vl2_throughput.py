"""UDP throughput between two ztcore nodes over a virtual network on loopback.

One process, one asyncio loop, real UDP sockets on 127.0.0.1: a throw-away
planet with an in-process root, a controller node hosting a private network
(IPv4 pool), and two leaves A and B that join, are authorized and get
addresses. Once A and B talk directly, A sends for --seconds:

* raw frames: 1,400-byte IPv4/UDP packets built by hand (UDP checksum 0, which
  IPv4 allows) handed to ``Node.process_virtual_network_frame`` with B's MAC as
  destination; counted at B's frame listener (``NodeService.add_frame_listener``);
* userspace UDP: the same size of IP packet (1,372-byte UDP payload) sent with
  ``responder.udp_socket().sendto`` and counted by a handler on B's socket.

Payloads are random (LZ4 cannot shrink them), so each 1,400-byte frame becomes
a 1,438-byte VL1 packet: two UDP datagrams on the wire (physical MTU 1,432),
as with the real core. Sending is closed loop by default: at most --window
frames in flight (sent, not yet delivered), so the figure is what the stack
sustains, not what the kernel drops; --window 0 sends open loop in bursts of
--burst frames per loop iteration and shows loss instead.

Both nodes share this process and its one core: the figure is the end-to-end
cost of one send plus one receive. Target from the issue: >= 200 Mbit/s.

Run: python bench/bench_vl2_throughput.py [--seconds 5] [--window 64] [--variants raw,udp] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ipaddress
import os
import platform
import pstats
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_echo import HOST, start_world  # the same offline world (root + leaves on 127.0.0.1)
from ztcore.api import VirtualFrame
from ztcore.controller.live import EmbeddedController
from ztcore.controller.store import ControllerStore
from ztcore.runtime import MemoryState, NodeService, Runtime
from ztcore.runtime.http_api import StoreControllerBackend

FRAME_SIZE = 1400  # bytes of Ethernet payload (the IPv4 packet)
ETHERTYPE_IPV4 = 0x0800
UDP_PORT = 9999
MAGIC = b"ZTB1"
STALL_S = 0.1  # in-flight frames without progress for this long are written off as lost


def ipv4_udp_frame(src: bytes, dst: bytes, seq: int, filler: bytes) -> bytes:
    """A FRAME_SIZE-byte IPv4/UDP packet with a valid header checksum and no UDP checksum."""
    udp_len = FRAME_SIZE - 20
    hdr = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, FRAME_SIZE, seq & 0xFFFF, 0, 64, 17, 0, src, dst))
    s = sum(struct.unpack(">10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into(">H", hdr, 10, ~s & 0xFFFF)
    udp = struct.pack(">HHHH", 40000, UDP_PORT, udp_len, 0)
    body = MAGIC + struct.pack(">Q", seq) + filler[: udp_len - 8 - 12]
    return bytes(hdr) + udp + body


@dataclass
class Counter:
    sent: int = 0
    delivered: int = 0
    bytes: int = 0
    out_of_order: int = 0
    last_seq: int = -1

    def seen(self, seq: int, size: int) -> None:
        self.delivered += 1
        self.bytes += size
        if seq < self.last_seq:
            self.out_of_order += 1
        self.last_seq = max(self.last_seq, seq)


@dataclass
class Result:
    variant: str
    seconds: float
    sent: int
    delivered: int
    bytes: int
    lost: int  # sent but never delivered, counted after a short drain
    out_of_order: int
    datagrams_out: int
    relayed: int


async def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return bool(predicate())


async def make_network(
    runtime: Runtime, root: NodeService, leaves: list[NodeService], tmp: Path
) -> tuple[int, StoreControllerBackend]:
    """A controller node with a private network; the leaves join and are authorized."""
    ctl = await runtime.add_node(MemoryState(), port=0, bind=[HOST], planet=root.planet, allow_loopback=True)
    store = ControllerStore(tmp)
    controller = EmbeddedController(store)
    ctl.node.set_controller(controller)
    backend = StoreControllerBackend(store, int(ctl.address))
    backend.add_listener(controller)
    network = backend.create_network(
        {
            "name": "bench",
            "private": True,
            "ipAssignmentPools": [{"ipRangeStart": "10.147.20.1", "ipRangeEnd": "10.147.20.254"}],
            "routes": [{"target": "10.147.20.0/24"}],
            "v4AssignMode": {"zt": True},
        }
    )
    nwid = int(network["id"], 16)
    for svc in leaves:
        backend.post_member(network["id"], svc.address_hex, {"authorized": True})
        svc.join(nwid)

    def ready(svc: NodeService) -> bool:
        info = svc.node.network(nwid) or {}
        return info.get("status") == "OK" and bool(info.get("assignedAddresses"))

    if not await _wait(lambda: all(ready(s) for s in leaves), 30.0):
        raise SystemExit(f"members did not get their configs: {[s.node.network(nwid) for s in leaves]}")
    return nwid, backend


def _v4(svc: NodeService, nwid: int) -> bytes:
    info = svc.node.network(nwid)
    assert info is not None
    for a in info["assignedAddresses"]:
        iface = ipaddress.ip_interface(a)
        if iface.version == 4:
            return iface.ip.packed
    raise SystemExit("no IPv4 address assigned")


async def _pump(counter: Counter, send_one, seconds: float, window: int, burst: int) -> float:  # type: ignore[no-untyped-def]
    """Call send_one() as fast as the window allows for `seconds`; returns the elapsed time.

    Frames in flight that make no progress for STALL_S count as lost, so a lost
    frame cannot close the window for good."""
    start = time.perf_counter()
    end = start + seconds
    written_off = 0
    last_delivered, last_progress = counter.delivered, start
    while True:
        now = time.perf_counter()
        if window > 0:
            if counter.delivered != last_delivered:
                last_delivered, last_progress = counter.delivered, now
            elif now - last_progress > STALL_S:
                written_off = counter.sent - counter.delivered
                last_progress = now
            n = window - (counter.sent - counter.delivered - written_off)
        else:
            n = burst
        for _ in range(n):
            send_one()
        if now >= end:
            break
        await asyncio.sleep(0)
    return time.perf_counter() - start


async def _first_delivery(counter: Counter, send_one) -> None:  # type: ignore[no-untyped-def]
    """Send one frame at a time until one arrives (peer lookup, credentials, ARP are done then)."""
    deadline = time.monotonic() + 15.0
    while counter.delivered == 0:
        if time.monotonic() > deadline:
            raise SystemExit("no frame ever arrived")
        send_one()
        await _wait(lambda: counter.delivered > 0, 0.25)


async def run_raw(
    a: NodeService, b: NodeService, root: NodeService, nwid: int, args: argparse.Namespace
) -> Result:
    net_a, net_b = a.node.get_network(nwid), b.node.get_network(nwid)
    src_ip, dst_ip = _v4(a, nwid), _v4(b, nwid)
    filler = os.urandom(FRAME_SIZE)
    counter = Counter()

    def on_frame(frame: VirtualFrame) -> None:
        d = frame.data
        if frame.network_id == nwid and len(d) == FRAME_SIZE and d[28:32] == MAGIC:
            counter.seen(int.from_bytes(d[32:40]), len(d))

    remove = b.add_frame_listener(on_frame)
    node, src_mac, dst_mac = a.node, int(net_a.mac), int(net_b.mac)
    clock = a.clock

    def send_one() -> None:
        frame = ipv4_udp_frame(src_ip, dst_ip, counter.sent, filler)
        counter.sent += 1
        node.process_virtual_network_frame(clock(), nwid, src_mac, dst_mac, ETHERTYPE_IPV4, 0, frame)

    try:
        return await _measure("raw frames", counter, send_one, a, root, args)
    finally:
        remove()


async def run_udp(
    a: NodeService, b: NodeService, root: NodeService, nwid: int, args: argparse.Namespace
) -> Result:
    ra, rb = a.responder(nwid), b.responder(nwid)
    if ra is None or rb is None:
        raise SystemExit("no userspace responder on the network")
    dst = (str(ipaddress.ip_address(_v4(b, nwid))), UDP_PORT)
    rx = rb.udp_socket(UDP_PORT)
    tx = ra.udp_socket()
    counter = Counter()
    filler = os.urandom(FRAME_SIZE)
    size = FRAME_SIZE - 28

    def on_datagram(data: bytes, _addr: tuple[str, int]) -> None:
        if len(data) == size and data[:4] == MAGIC:
            counter.seen(int.from_bytes(data[4:12]), len(data) + 28)

    rx.set_handler(on_datagram)
    clock = a.clock

    def send_one() -> None:
        tx.sendto(MAGIC + counter.sent.to_bytes(8) + filler[: size - 12], dst, now=clock())
        counter.sent += 1

    try:
        return await _measure("userspace UDP", counter, send_one, a, root, args)
    finally:
        rx.close()
        tx.close()


async def _measure(  # type: ignore[no-untyped-def]
    name: str, counter: Counter, send_one, a: NodeService, root: NodeService, args: argparse.Namespace
) -> Result:
    # Warm up (peer lookup, credentials, ARP, direct path) before the timed run.
    await _first_delivery(counter, send_one)
    await _pump(counter, send_one, 0.3, args.window or 64, args.burst)
    await asyncio.sleep(0.2)
    counter.sent = counter.delivered = counter.bytes = counter.out_of_order = 0
    counter.last_seq = -1
    relayed0 = root.node.switch.stats["relayed"]
    out0 = a.counters.packets_out
    prof = cProfile.Profile() if args.profile else None
    if prof is not None:
        prof.enable()
    elapsed = await _pump(counter, send_one, args.seconds, args.window, args.burst)
    if prof is not None:
        prof.disable()
        out = Path(f"{args.profile}.{name.split()[0]}")
        prof.dump_stats(out)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile_top)
    # Deliveries after the clock stopped don't count for the rate, but do for loss.
    delivered, nbytes = counter.delivered, counter.bytes
    await asyncio.sleep(0.3)
    return Result(
        variant=name,
        seconds=elapsed,
        sent=counter.sent,
        delivered=delivered,
        bytes=nbytes,
        lost=counter.sent - counter.delivered,
        out_of_order=counter.out_of_order,
        datagrams_out=a.counters.packets_out - out0,
        relayed=root.node.switch.stats["relayed"] - relayed0,
    )


async def run(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="ztcore-bench-vl2-") as tmp:
        async with Runtime() as runtime:
            root, (a, b) = await start_world(runtime, 2)
            nwid, _backend = await make_network(runtime, root, [a, b], Path(tmp))
            print(f"network {nwid:016x}: {a.address_hex} -> {b.address_hex} on {HOST}")
            for variant in args.variants:
                runner = {"raw": run_raw, "udp": run_udp}[variant]
                results.append(await runner(a, b, root, nwid, args))
                await asyncio.sleep(0.2)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description="UDP throughput over a ztcore virtual network on loopback.")
    ap.add_argument("--seconds", type=float, default=5.0, help="time per variant")
    ap.add_argument("--window", type=int, default=64, help="frames in flight (0: open loop in bursts)")
    ap.add_argument("--burst", type=int, default=32, help="frames per loop iteration when --window 0")
    ap.add_argument(
        "--variants", default="raw,udp", help="comma-separated: raw (frames), udp (userspace socket)"
    )
    ap.add_argument("--profile", default=None, help="cProfile the timed runs; stats go to FILE.<variant>")
    ap.add_argument("--profile-top", type=int, default=25, help="rows of the profile to print")
    args = ap.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not args.variants or not set(args.variants) <= {"raw", "udp"}:
        ap.error("--variants takes raw and/or udp")
    if args.window < 0 or args.burst < 1:
        ap.error("--window must be >= 0 and --burst >= 1")

    print(f"Python {platform.python_version()} ({sys.implementation.name}) on {platform.machine()}")
    t0 = time.perf_counter()
    results = asyncio.run(run(args))
    mode = f"window {args.window}" if args.window else f"open loop, bursts of {args.burst}"
    print(f"{FRAME_SIZE}-byte frames, {mode}, {args.seconds:.0f} s each")
    print(
        f"{'variant':15} {'frames/s':>9} {'Mbit/s':>7} {'sent':>8} {'lost':>6} {'reordered':>9} {'datagrams/frame':>15} {'relayed':>7}"
    )
    for r in results:
        fps = r.delivered / r.seconds
        mbit = r.bytes * 8 / r.seconds / 1e6
        dpf = r.datagrams_out / r.sent if r.sent else 0.0
        print(
            f"{r.variant:15} {fps:9,.0f} {mbit:7.1f} {r.sent:8,} {r.lost:6,} {r.out_of_order:9,} {dpf:15.2f} {r.relayed:7}"
        )
    print("target: >= 200 Mbit/s")
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
