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

By default both nodes share this process and its one core, so the figure is
the end-to-end cost of one send plus one receive; --split runs B in a second
process (spawned, own interpreter), as two real nodes would be. The root and
the controller stay idle in the first process. Target from the issue:
>= 200 Mbit/s.

--rules also measures with a 22-entry ruleset using tags and a capability (the
bench traffic runs through every base rule, matches none, and is accepted by the
sender's capability, at both ends), and with the accept-all table on the general
path (``Node.disable_lane`` on both nodes): frames under rules never take the
node's fast lane (ztcore.lane), so the rules' cost is the difference between
those two. Target from the issue: within 15 % of accept-all on the same path.

Run: python bench/bench_vl2_throughput.py [--seconds 5] [--window 64] [--split]
     [--frame-size 1400] [--variants raw,udp] [--window 0 --burst 32] [--profile FILE]
     [--rules]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ipaddress
import multiprocessing
import os
import pstats
import struct
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import machine  # bench/machine.py: command, interpreter and load average around the figures
from bench_echo import HOST, start_world  # the same offline world (root + leaves on 127.0.0.1)
from ztcore.api import VirtualFrame
from ztcore.runtime import MemoryState, NodeService, Runtime
from ztcore.runtime.offline import start_controller, wait_until
from ztcore.vl1.world import World

FRAME_SIZE = 1400  # default bytes of Ethernet payload (the IPv4 packet); --frame-size changes it
ETHERTYPE_IPV4 = 0x0800
UDP_PORT = 9999  # userspace UDP variant (a bound socket on the receiver)
RAW_PORT = 9998  # raw frame variant (nothing bound: the receiver's responder drops them)
MAGIC = b"ZTB1"
STALL_S = 0.1  # in-flight frames without progress for this long are written off as lost


DEPT, ROLE, CAP_BENCH = 100, 101, 1


def _m(rule_type: str, **kw: Any) -> dict[str, Any]:
    return {"type": rule_type, "not": False, "or": False, **kw}


# 22 entries: what a real network's rules look like (ethertype whitelist, SSH and
# private-range drops, department tags, TCP flags). The bench's UDP frames pass
# every set without matching and are accepted by capability CAP_BENCH.
BENCH_RULES: list[dict[str, Any]] = [
    {**_m("MATCH_ETHERTYPE", etherType=0x0800), "not": True},
    {**_m("MATCH_ETHERTYPE", etherType=0x0806), "not": True},
    {**_m("MATCH_ETHERTYPE", etherType=0x86DD), "not": True},
    {"type": "ACTION_DROP"},
    _m("MATCH_ETHERTYPE", etherType=0x0806),
    {"type": "ACTION_ACCEPT"},
    _m("MATCH_IP_PROTOCOL", ipProtocol=6),
    _m("MATCH_IP_DEST_PORT_RANGE", start=22, end=22),
    {"type": "ACTION_DROP"},
    _m("MATCH_IPV4_SOURCE", ip="192.168.0.0/16"),
    {"type": "ACTION_DROP"},
    _m("MATCH_TAGS_DIFFERENCE", id=DEPT, value=0),
    _m("MATCH_IP_PROTOCOL", ipProtocol=17),
    {"type": "ACTION_ACCEPT"},
    _m("MATCH_CHARACTERISTICS", mask="0000000000000002"),
    {**_m("MATCH_CHARACTERISTICS", mask="0000000000000010"), "not": True},
    {"type": "ACTION_DROP"},
    _m("MATCH_TAG_SENDER", id=ROLE, value=5),
    {"type": "ACTION_ACCEPT"},
    _m("MATCH_IP_DEST_PORT_RANGE", start=0, end=1023),
    _m("MATCH_IP_PROTOCOL", ipProtocol=17),
    {"type": "ACTION_DROP"},
]
BENCH_CAPABILITY = {
    "id": CAP_BENCH,
    "rules": [
        _m("MATCH_IP_PROTOCOL", ipProtocol=17),
        _m("MATCH_IP_DEST_PORT_RANGE", start=9998, end=9999),
        {"type": "ACTION_ACCEPT"},
    ],
}


def ipv4_udp_frame(src: bytes, dst: bytes, seq: int, filler: bytes, size: int = FRAME_SIZE) -> bytes:
    """A `size`-byte IPv4/UDP packet with a valid header checksum and no UDP checksum."""
    udp_len = size - 20
    hdr = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, size, seq & 0xFFFF, 0, 64, 17, 0, src, dst))
    s = sum(struct.unpack(">10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into(">H", hdr, 10, ~s & 0xFFFF)
    udp = struct.pack(">HHHH", 40000, RAW_PORT, udp_len, 0)
    body = MAGIC + struct.pack(">Q", seq) + filler[: udp_len - 8 - 12]
    return bytes(hdr) + udp + body


# Per-variant receive counts live in one array (a list in process, a shared RawArray
# with --split) that the receiving side updates and the sender reads.
RAW, UDP = 0, 4  # base index of each variant's slots
DELIVERED, BYTES, REORDERED, LAST_SEQ = range(4)


def record(counts, base: int, seq: int, size: int) -> None:  # type: ignore[no-untyped-def]
    counts[base + DELIVERED] += 1
    counts[base + BYTES] += size
    if seq < counts[base + LAST_SEQ]:
        counts[base + REORDERED] += 1
    else:
        counts[base + LAST_SEQ] = seq


class Tally:
    """The sender's view of one variant: frames sent, and what the receiver counted since reset()."""

    def __init__(self, counts, base: int) -> None:  # type: ignore[no-untyped-def]
        self.counts = counts
        self.base = base
        self.seq = 0  # never reset, so the receiver's reorder check stays valid
        self.sent = 0
        self._off = (0, 0, 0)
        self.reset()

    def reset(self) -> None:
        c, b = self.counts, self.base
        self.sent = 0
        self._off = (c[b + DELIVERED], c[b + BYTES], c[b + REORDERED])

    @property
    def delivered(self) -> int:
        return int(self.counts[self.base + DELIVERED]) - self._off[0]

    @property
    def bytes(self) -> int:
        return int(self.counts[self.base + BYTES]) - self._off[1]

    @property
    def reordered(self) -> int:
        return int(self.counts[self.base + REORDERED]) - self._off[2]


@dataclass
class Result:
    variant: str
    seconds: float
    sent: int
    delivered: int
    bytes: int
    lost: int  # sent but never delivered, counted after a short drain
    reordered: int
    datagrams_out: int
    relayed: int


async def _recv(conn: Connection, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not conn.poll():
        if time.monotonic() > deadline:
            raise SystemExit("the receiver process did not answer")
        await asyncio.sleep(0.01)
    return conn.recv()


def _ready(svc: NodeService, nwid: int) -> bool:
    info = svc.node.network(nwid) or {}
    return info.get("status") == "OK" and bool(info.get("assignedAddresses"))


def _v4(svc: NodeService, nwid: int) -> bytes:
    info = svc.node.network(nwid)
    assert info is not None
    for a in info["assignedAddresses"]:
        iface = ipaddress.ip_interface(a)
        if iface.version == 4:
            return iface.ip.packed
    raise SystemExit("no IPv4 address assigned")


async def make_network(
    runtime: Runtime,
    root: NodeService,
    leaves: list[NodeService],
    others: list[str],
    tmp: Path,
    with_rules: bool = False,
) -> int:
    """A controller node with a private network; `leaves` (local) and `others` (addresses of
    nodes elsewhere) are authorized, the local leaves join and get their configs. With
    `with_rules` the network has BENCH_RULES; the first leaf (the sender) gets department 1
    and the capability, the others department 2."""
    ctl, backend = await start_controller(runtime, root.planet, tmp, HOST)
    body: dict[str, Any] = {
        "name": "bench",
        "private": True,
        "ipAssignmentPools": [{"ipRangeStart": "10.147.20.1", "ipRangeEnd": "10.147.20.254"}],
        "routes": [{"target": "10.147.20.0/24"}],
        "v4AssignMode": {"zt": True},
    }
    if with_rules:
        body["rules"] = BENCH_RULES
        body["capabilities"] = [BENCH_CAPABILITY]
        body["tags"] = [{"id": DEPT, "default": 0}, {"id": ROLE, "default": 0}]
    network = backend.create_network(body)
    nwid = int(network["id"], 16)
    for i, address in enumerate([s.address_hex for s in leaves] + others):
        member: dict[str, Any] = {"authorized": True}
        if with_rules:
            member["tags"] = [[DEPT, 1 if i == 0 else 2]]
            member["capabilities"] = [CAP_BENCH] if i == 0 else []
        backend.post_member(network["id"], address, member)
    for svc in leaves:
        svc.join(nwid)
    if not await wait_until(lambda: all(_ready(s, nwid) for s in leaves), 30.0):
        raise SystemExit(f"members did not get their configs: {[s.node.network(nwid) for s in leaves]}")
    return nwid


def attach_receiver(svc: NodeService, nwid: int, counts, frame_size: int) -> None:  # type: ignore[no-untyped-def]
    """Count raw frames at the frame listener and userspace UDP datagrams at a bound socket."""
    raw_port = RAW_PORT.to_bytes(2, "big")

    def on_frame(frame: VirtualFrame) -> None:
        d = frame.data
        if len(d) == frame_size and d[22:24] == raw_port and d[28:32] == MAGIC and frame.network_id == nwid:
            record(counts, RAW, int.from_bytes(d[32:40], "big"), len(d))

    svc.add_frame_listener(on_frame)
    responder = svc.responder(nwid)
    if responder is None:
        raise SystemExit("no userspace responder on the network")
    size = frame_size - 28

    def on_datagram(data: bytes, _addr: tuple[str, int]) -> None:
        if len(data) == size and data[:4] == MAGIC:
            record(counts, UDP, int.from_bytes(data[4:12], "big"), len(data) + 28)

    responder.udp_socket(UDP_PORT).set_handler(on_datagram)


def receiver_process(conn: Connection, counts, frame_size: int, lane: bool) -> None:  # type: ignore[no-untyped-def]
    """--split: node B in its own process (own interpreter, own core)."""
    asyncio.run(_receiver_main(conn, counts, frame_size, lane))


async def _receiver_main(conn: Connection, counts, frame_size: int, lane: bool) -> None:  # type: ignore[no-untyped-def]
    planet, _ = World.from_bytes(await _recv(conn))
    svc = NodeService(MemoryState(), port=0, bind=[HOST], planet=planet, allow_loopback=True)
    await svc.start()
    if not lane:
        svc.node.disable_lane()
    try:
        conn.send(svc.address_hex)
        nwid = await _recv(conn)
        svc.join(nwid)
        if not await wait_until(lambda: _ready(svc, nwid), 30.0):
            raise SystemExit("the receiver did not get its config")
        attach_receiver(svc, nwid, counts, frame_size)
        conn.send((_v4(svc, nwid), int(svc.node.get_network(nwid).mac)))
        await _recv(conn, timeout=3600)  # "stop"
    finally:
        await svc.stop()


async def _pump(tally: Tally, send_one, seconds: float, window: int, burst: int) -> float:  # type: ignore[no-untyped-def]
    """Call send_one() as fast as the window allows for `seconds`; returns the elapsed time.

    Frames in flight that make no progress for STALL_S count as lost, so a lost
    frame cannot close the window for good."""
    start = time.perf_counter()
    end = start + seconds
    written_off = 0
    last_delivered, last_progress = tally.delivered, start
    while True:
        now = time.perf_counter()
        if window > 0:
            delivered = tally.delivered
            if delivered != last_delivered:
                last_delivered, last_progress = delivered, now
            elif now - last_progress > STALL_S:
                written_off = tally.sent - delivered
                last_progress = now
            n = window - (tally.sent - delivered - written_off)
        else:
            n = burst
        for _ in range(n):
            send_one()
        if now >= end:
            break
        await asyncio.sleep(0)
    return time.perf_counter() - start


async def _first_delivery(tally: Tally, send_one) -> None:  # type: ignore[no-untyped-def]
    """Send one frame at a time until one arrives (peer lookup, credentials, ARP are done then)."""
    deadline = time.monotonic() + 15.0
    while tally.delivered == 0:
        if time.monotonic() > deadline:
            raise SystemExit("no frame ever arrived")
        send_one()
        await wait_until(lambda: tally.delivered > 0, 0.25)


def raw_sender(a: NodeService, nwid: int, dst_ip: bytes, dst_mac: int, tally: Tally, size: int):  # type: ignore[no-untyped-def]
    node, clock = a.node, a.clock
    src_ip, src_mac = _v4(a, nwid), int(node.get_network(nwid).mac)
    filler = os.urandom(size)

    def send_one() -> None:
        frame = ipv4_udp_frame(src_ip, dst_ip, tally.seq, filler, size)
        tally.seq += 1
        tally.sent += 1
        node.process_virtual_network_frame(clock(), nwid, src_mac, dst_mac, ETHERTYPE_IPV4, 0, frame)

    return send_one


def udp_sender(a: NodeService, nwid: int, dst_ip: bytes, tally: Tally, size: int):  # type: ignore[no-untyped-def]
    responder = a.responder(nwid)
    if responder is None:
        raise SystemExit("no userspace responder on the network")
    tx = responder.udp_socket()
    dst = (str(ipaddress.ip_address(dst_ip)), UDP_PORT)
    payload_size = size - 28
    filler = os.urandom(payload_size)
    clock = a.clock

    def send_one() -> None:
        tx.sendto(MAGIC + tally.seq.to_bytes(8, "big") + filler[: payload_size - 12], dst, now=clock())
        tally.seq += 1
        tally.sent += 1

    return send_one


async def measure(  # type: ignore[no-untyped-def]
    name: str, tally: Tally, send_one, a: NodeService, root: NodeService, args: argparse.Namespace
) -> Result:
    # Warm up (peer lookup, credentials, ARP, direct path) before the timed run.
    await _first_delivery(tally, send_one)
    await _pump(tally, send_one, 0.3, args.window or 64, args.burst)
    await asyncio.sleep(0.2)
    tally.reset()
    relayed0 = root.node.switch.stats["relayed"]
    out0 = a.counters.packets_out
    prof = cProfile.Profile() if args.profile else None
    if prof is not None:
        prof.enable()
    elapsed = await _pump(tally, send_one, args.seconds, args.window, args.burst)
    if prof is not None:
        prof.disable()
        prof.dump_stats(Path(f"{args.profile}.{name.split()[0]}"))
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile_top)
    # Deliveries after the clock stopped don't count for the rate, but do for loss.
    delivered, nbytes = tally.delivered, tally.bytes
    await asyncio.sleep(0.3)
    return Result(
        variant=name,
        seconds=elapsed,
        sent=tally.sent,
        delivered=delivered,
        bytes=nbytes,
        lost=tally.sent - tally.delivered,
        reordered=tally.reordered,
        datagrams_out=a.counters.packets_out - out0,
        relayed=root.node.switch.stats["relayed"] - relayed0,
    )


async def run(args: argparse.Namespace, with_rules: bool = False, lane: bool = True) -> list[Result]:
    results: list[Result] = []
    proc: Any = None
    conn: Connection | None = None
    with tempfile.TemporaryDirectory(prefix="ztcore-bench-vl2-") as tmp:
        async with Runtime() as runtime:
            try:
                if args.split:
                    root, (a,) = await start_world(runtime, 1)
                    if not lane:
                        a.node.disable_lane()
                    ctx = multiprocessing.get_context("spawn")
                    conn, child_conn = ctx.Pipe()
                    counts: Any = ctx.RawArray("q", 8)
                    proc = ctx.Process(
                        target=receiver_process, args=(child_conn, counts, args.frame_size, lane), daemon=True
                    )
                    proc.start()
                    conn.send(root.planet.to_bytes())
                    b_hex = await _recv(conn)
                    nwid = await make_network(runtime, root, [a], [b_hex], Path(tmp), with_rules)
                    conn.send(nwid)
                    dst_ip, dst_mac = await _recv(conn)
                    where = f"{b_hex} in another process"
                else:
                    root, (a, b) = await start_world(runtime, 2)
                    if not lane:
                        a.node.disable_lane()
                        b.node.disable_lane()
                    nwid = await make_network(runtime, root, [a, b], [], Path(tmp), with_rules)
                    counts = [0] * 8
                    attach_receiver(b, nwid, counts, args.frame_size)
                    dst_ip, dst_mac = _v4(b, nwid), int(b.node.get_network(nwid).mac)
                    where = f"{b.address_hex} in this process"
                print(f"network {nwid:016x}: {a.address_hex} -> {where}, on {HOST}")
                for variant in args.variants:
                    if variant == "raw":
                        tally = Tally(counts, RAW)
                        sender = raw_sender(a, nwid, dst_ip, dst_mac, tally, args.frame_size)
                        results.append(await measure("raw frames", tally, sender, a, root, args))
                    else:
                        tally = Tally(counts, UDP)
                        sender = udp_sender(a, nwid, dst_ip, tally, args.frame_size)
                        results.append(await measure("userspace UDP", tally, sender, a, root, args))
                    await asyncio.sleep(0.2)
            finally:
                if proc is not None and conn is not None:
                    conn.send("stop")
                    await asyncio.get_running_loop().run_in_executor(None, proc.join, 5.0)
                    if proc.is_alive():
                        proc.kill()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description="UDP throughput over a ztcore virtual network on loopback.")
    ap.add_argument("--seconds", type=float, default=5.0, help="time per variant")
    ap.add_argument("--window", type=int, default=64, help="frames in flight (0: open loop in bursts)")
    ap.add_argument(
        "--frame-size", type=int, default=FRAME_SIZE, help="bytes of IP packet per frame (64..2800)"
    )
    ap.add_argument("--burst", type=int, default=32, help="frames per loop iteration when --window 0")
    ap.add_argument(
        "--variants", default="raw,udp", help="comma-separated: raw (frames), udp (userspace socket)"
    )
    ap.add_argument("--split", action="store_true", help="run the receiving node in a second process")
    ap.add_argument("--profile", default=None, help="cProfile the timed runs; stats go to FILE.<variant>")
    ap.add_argument("--profile-top", type=int, default=25, help="rows of the profile to print")
    ap.add_argument(
        "--rules",
        action="store_true",
        help="also measure with a 22-entry ruleset using tags and a capability; print both",
    )
    args = ap.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not args.variants or not set(args.variants) <= {"raw", "udp"}:
        ap.error("--variants takes raw and/or udp")
    if not 64 <= args.frame_size <= 2800:
        ap.error("--frame-size must be 64..2800 (the network MTU)")
    if args.window < 0 or args.burst < 1:
        ap.error("--window must be >= 0 and --burst >= 1")

    machine.header()
    t0 = time.perf_counter()
    runs = [("accept-all", asyncio.run(run(args)))]
    ruled = f"{len(BENCH_RULES)} rules + tags + capability"
    if args.rules:
        runs.append((ruled, asyncio.run(run(args, with_rules=True))))
        runs.append(("accept-all, general path", asyncio.run(run(args, lane=False))))
    mode = f"window {args.window}" if args.window else f"open loop, bursts of {args.burst}"
    mode += ", receiver in a second process" if args.split else ", one process"
    print(f"{args.frame_size}-byte frames, {mode}, {args.seconds:.0f} s each")
    print(
        f"{'rules':32} {'variant':15} {'frames/s':>9} {'Mbit/s':>7} {'sent':>8} {'lost':>6} {'reordered':>9} {'datagrams/frame':>15} {'relayed':>7}"
    )
    rates: dict[tuple[str, str], float] = {}
    for label, results in runs:
        for r in results:
            fps = r.delivered / r.seconds
            mbit = r.bytes * 8 / r.seconds / 1e6
            rates[(label, r.variant)] = mbit
            dpf = r.datagrams_out / r.sent if r.sent else 0.0
            print(
                f"{label:32} {r.variant:15} {fps:9,.0f} {mbit:7.1f} {r.sent:8,} {r.lost:6,} {r.reordered:9,} {dpf:15.2f} {r.relayed:7}"
            )
    print("target: >= 200 Mbit/s")
    if args.rules:
        for variant in args.variants:
            name = "raw frames" if variant == "raw" else "userspace UDP"
            general = rates.get(("accept-all, general path", name), 0.0)
            lane = rates.get(("accept-all", name), 0.0)
            with_rules = rates.get((ruled, name), 0.0)
            if general and lane:
                print(
                    f"{name}: with rules {with_rules / general * 100:.0f} % of accept-all on the general path "
                    f"(target: >= 85 %); {with_rules / lane * 100:.0f} % of accept-all in the fast lane"
                )
    print(f"total {time.perf_counter() - t0:.1f} s")
    machine.footer()


if __name__ == "__main__":
    main()
