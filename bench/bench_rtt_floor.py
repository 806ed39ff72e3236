"""The round trip a minimal Python echo gets on this machine: what any Python data path pays.

Two processes, each in its own network namespace on a bridge (the layout of
`bench_vs_libzt.py`), run an asyncio loop with one UDP socket. A sends a 56-byte ICMP echo
request inside an IPv4 packet inside a FRAME-shaped payload, armored with AES-GMAC-SIV by
ztcore's C kernel; B dearmors it, swaps the IP addresses, re-armors it and sends it back;
A dearmors the reply. That is the least a Python ZeroTier node must do per echo (socket
wake-up, two syscalls and two cipher calls per side) and nothing of ztcore's own switch,
so the gap between this figure and ztcore's RTT in `bench_vs_libzt.py` is ztcore's own
per-packet code, and this figure next to libzt's is what the event loop and the
interpreter cost.

Echoes are timed with perf_counter from before the request is built to the reply being
dearmored, back to back and then --gap ms apart (the spacing `bench_vs_libzt.py` uses).

It then times single operations in this process, back to back and each --gap ms after the
previous one: after a pause this machine runs every distinct piece of code it has not run
since several times slower (a Python call that takes 0.1 us back to back takes several us
after a 20 ms sleep), so a packet path costs in proportion to how many different
operations it goes through, not only to how many bytecodes it executes.

Run (as root, from the repository root): python bench/bench_rtt_floor.py [--pings 60] [--gap 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import machine  # bench/machine.py: command, interpreter and load average around the figures

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO / "src", REPO):  # ztcore, and tests.interop.harness
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from ztcore.vl1.packet import derive_aes_keys  # noqa: E402

PORT = 7390
FRAME = 0x0E
SUITE3 = 3 << 3
NWID = 0x8056C2E21C000001
_HEAD = struct.Struct(">QH")


def _cipher() -> object:
    siv = derive_aes_keys(bytes(range(48))).siv
    return siv._c if siv._c is not None else siv  # the C kernel when built, as ztcore uses it


def _echo_request(seq: int) -> bytes:
    icmp = bytes((8, 0, 0, 0, 0, 1)) + seq.to_bytes(2, "big") + bytes(56)
    ip = bytes((0x45, 0, 0, 84, 0, 0, 0, 0, 64, 1, 0, 0)) + bytes((10, 0, 0, 1)) + bytes((10, 0, 0, 2))
    return _HEAD.pack(NWID, 0x0800) + ip + icmp


async def serve(port: int, seconds: float) -> None:
    cipher = _cipher()
    ids = itertools.count(1 << 40)  # packet IDs (one key, never repeated: enough for a bench)
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.setblocking(False)

    def readable() -> None:
        data, addr = s.recvfrom(4096)
        opened = cipher.dearmor(data)  # type: ignore[attr-defined]
        if type(opened) is int:
            return
        _verb, p = opened
        ip = p[10:]
        reply = ip[:12] + ip[16:20] + ip[12:16] + b"\x00" + ip[21:]
        wire = cipher.armor(next(ids), 1, 2, SUITE3, FRAME, p[:10] + reply)  # type: ignore[attr-defined]
        s.sendto(wire, addr)

    loop.add_reader(s.fileno(), readable)
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.sleep(seconds)


async def client(ip: str, port: int, pings: int, gap_ms: float) -> dict[str, float]:
    cipher = _cipher()
    ids = itertools.count(1)
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    waiting: list[asyncio.Future[float]] = []

    def readable() -> None:
        data, _ = s.recvfrom(4096)
        opened = cipher.dearmor(data)  # type: ignore[attr-defined]
        if type(opened) is not int and waiting and not waiting[0].done():
            waiting[0].set_result(time.perf_counter())

    loop.add_reader(s.fileno(), readable)

    async def one(seq: int) -> float:
        fut = loop.create_future()
        waiting[:] = [fut]
        t0 = time.perf_counter()
        wire = cipher.armor(next(ids), 2, 1, SUITE3, FRAME, _echo_request(seq))  # type: ignore[attr-defined]
        s.sendto(wire, (ip, port))
        t1 = await asyncio.wait_for(fut, 2.0)
        return (t1 - t0) * 1000

    for seq in range(20):  # ARP and first-use costs out of the way
        await one(seq)
    b2b = [await one(seq) for seq in range(pings * 4)]
    gaps = []
    for seq in range(pings):
        await asyncio.sleep(gap_ms / 1000)
        gaps.append(await one(seq))
    return {
        "b2b_median": statistics.median(b2b),
        "b2b_min": min(b2b),
        "gap_median": statistics.median(gaps),
        "gap_min": min(gaps),
        "gap_max": max(gaps),
    }


def cold_operations(gap_ms: float, rounds: int) -> list[tuple[str, float, float]]:
    """(operation, median us back to back, median us each `gap_ms` after the previous one)."""
    cipher = _cipher()
    wire = cipher.armor(1, 2, 1, SUITE3, FRAME, _echo_request(1))  # type: ignore[attr-defined]
    head = struct.Struct(">QH")
    ops: list[tuple[str, object]] = [
        ("a Python call that does nothing", lambda: None),
        ("int.to_bytes(2)", lambda: (12345).to_bytes(2, "big")),
        ("struct pack of a FRAME head", lambda: head.pack(NWID, 0x0800)),
        ("int.from_bytes of 64 bytes", lambda: int.from_bytes(wire[:64], "big")),
        ("suite-3 dearmor of an echo (C)", lambda: cipher.dearmor(wire)),  # type: ignore[attr-defined]
        ("suite-3 armor of an echo (C)", lambda: cipher.armor(7, 2, 1, SUITE3, FRAME, _echo_request(2))),  # type: ignore[attr-defined]
    ]
    from ztcore.crypto import armor as kernel_binding

    if kernel_binding.HAVE_AESNI and kernel_binding.HAVE_OPENSSL_AES:
        # The same two calls on the kernel's other AES path (OpenSSL EVP): `cipher` is AES-NI.
        evp = kernel_binding.Siv(bytes(range(32)), bytes(range(32, 64)), aesni=False)  # type: ignore[misc]
        evp_wire = evp.armor(1, 2, 1, SUITE3, FRAME, _echo_request(1))
        ops += [
            ("... the same dearmor on OpenSSL EVP", lambda: evp.dearmor(evp_wire)),
            ("... the same armor on OpenSSL EVP", lambda: evp.armor(7, 2, 1, SUITE3, FRAME, _echo_request(2))),
        ]
    out = []
    for name, fn in ops:
        timed = []
        for pause in (0.0, gap_ms / 1000):
            samples = []
            for _ in range(rounds):
                if pause:
                    time.sleep(pause)
                t0 = time.perf_counter()
                fn()  # type: ignore[operator]
                samples.append((time.perf_counter() - t0) * 1e6)
            timed.append(statistics.median(samples))
        out.append((name, timed[0], timed[1]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pings", type=int, default=60, help="echoes with gaps (4x as many back to back)")
    p.add_argument("--gap", type=float, default=20.0, help="ms between the spaced echoes (default 20)")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--client", nargs=2, metavar=("IP", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if not 1 <= args.pings <= 1000 or not 0 <= args.gap <= 1000:
        p.error("--pings 1..1000, --gap 0..1000")
    if args.serve is not None:
        asyncio.run(serve(args.serve, 120.0))
        return 0
    if args.client is not None:
        r = asyncio.run(client(args.client[0], int(args.client[1]), args.pings, args.gap))
        print(json.dumps(r), flush=True)
        return 0
    if os.geteuid() != 0:
        print("bench_rtt_floor needs root (it creates two network namespaces)", file=sys.stderr)
        return 2
    from tests.interop.harness import Lan, cleanup_stale

    cleanup_stale()
    machine.header()
    me = str(Path(__file__).resolve())
    with Lan(2) as lan:
        a, b = lan.hosts
        server = b.popen_python([me, "--serve", str(PORT)], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            if "ready" not in server.stdout.readline():
                print("the echo server did not start", file=sys.stderr)
                return 1
            out = a.run(
                [sys.executable, me, "--client", b.ip, str(PORT), "--pings", str(args.pings), "--gap", f"{args.gap:g}"],
                timeout=120,
            )
        finally:
            server.kill()
            server.wait(5)
    if out.returncode != 0:
        print(f"the client failed: {out.stderr.strip()}", file=sys.stderr)
        return 1
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"minimal Python echo (asyncio, one socket, C AES-GMAC-SIV), A and B in two namespaces: "
        f"back to back median {r['b2b_median']:.3f} ms (min {r['b2b_min']:.3f}), "
        f"{args.gap:g} ms apart median {r['gap_median']:.3f} ms (min {r['gap_min']:.3f}, max {r['gap_max']:.3f})"
    )
    print(f"single operations in this process, median of 40 (us): back to back | {args.gap:g} ms after the previous one")
    for name, warm, cold in cold_operations(args.gap, 40):
        print(f"  {name:<34} {warm:8.2f} | {cold:8.2f}")
    machine.footer()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
