"""TCP between two ztcore nodes in two processes over a virtual network on loopback.

The first process runs a throw-away planet's root, a controller with a private
network, and node A; node B runs in a second (spawned) process. Both use their
userspace stacks (``ztcore.netstack``) through the asyncio API
(``NodeService.open_connection`` / ``start_server``). Printed:

* connection set-up: --connects sequential connects from B to A (SYN to
  established, as ``open_connection`` returns), median and p90;
* throughput B -> A and A -> B: --megabytes of random bytes over one
  connection, timed from the first write until the receiver confirmed it has
  every byte (upload) or the last byte arrived (download);
* memory per idle connection: A's side of --idle established connections
  (``tracemalloc``, everything the runtime allocates for a connection: the
  TCP state machine, transport, StreamReader/StreamWriter).

Target from the issue: >= 100 Mbit/s ztcore <-> ztcore.

Run: python bench/bench_tcp.py [--megabytes 20] [--connects 50] [--idle 500]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import statistics
import tempfile
import time
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import machine  # bench/machine.py: command, interpreter and load average around the figures
from bench_echo import HOST, start_world  # the same offline world (root + leaves on 127.0.0.1)
from bench_vl2_throughput import _ready, _recv, _v4, make_network
from ztcore.runtime import MemoryState, NodeService, Runtime
from ztcore.runtime.offline import wait_until
from ztcore.vl1.world import World

UPLOAD_PORT = 5001
DOWNLOAD_PORT = 5002
IDLE_PORT = 5003
CONNECT_PORT = 5004
CHUNK = 1 << 16


def _ip(packed: bytes) -> str:
    return ".".join(str(b) for b in packed)


# --- node B, in the second process ------------------------------------------------------------


def child_process(conn: Connection) -> None:
    asyncio.run(_child_main(conn))


async def _child_main(conn: Connection) -> None:
    planet, _ = World.from_bytes(await _recv(conn))
    svc = NodeService(MemoryState(), port=0, bind=[HOST], planet=planet, allow_loopback=True)
    await svc.start()
    idle: list[Any] = []
    try:
        conn.send(svc.address_hex)
        nwid = await _recv(conn)
        svc.join(nwid)
        if not await wait_until(lambda: _ready(svc, nwid), 30.0):
            raise SystemExit("node B did not get its config")
        conn.send(_v4(svc, nwid))
        a_ip = await _recv(conn)
        while True:
            cmd = await _recv(conn, timeout=3600)
            if cmd[0] == "stop":
                break
            if cmd[0] == "connects":
                times = []
                for _ in range(cmd[1]):
                    t0 = time.perf_counter()
                    _r, w = await svc.open_connection(a_ip, CONNECT_PORT, network=nwid, timeout=10)
                    times.append(time.perf_counter() - t0)
                    w.close()
                conn.send(times)
            elif cmd[0] == "upload":
                data = os.urandom(cmd[1])
                r, w = await svc.open_connection(a_ip, UPLOAD_PORT, network=nwid, timeout=10)
                await r.readexactly(2)  # the server says "go" once it counts
                t0 = time.perf_counter()
                for i in range(0, len(data), CHUNK):
                    w.write(data[i : i + CHUNK])
                    await w.drain()
                w.write_eof()
                await asyncio.wait_for(r.read(), 600)  # the byte count, then EOF
                conn.send(time.perf_counter() - t0)
                w.close()
            elif cmd[0] == "download":
                r, w = await svc.open_connection(a_ip, DOWNLOAD_PORT, network=nwid, timeout=10)
                n = 0
                t0 = time.perf_counter()
                while chunk := await r.read(1 << 20):
                    n += len(chunk)
                conn.send((n, time.perf_counter() - t0))
                w.close()
            elif cmd[0] == "idle":
                for _ in range(cmd[1]):
                    idle.append(await svc.open_connection(a_ip, IDLE_PORT, network=nwid, timeout=10))
                conn.send(len(idle))
            elif cmd[0] == "idle_close":
                for _r, w in idle:
                    w.close()
                idle.clear()
                conn.send(True)
    finally:
        await svc.stop()


# --- node A and the measurements -------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=child_process, args=(child_conn,), daemon=True)
    with tempfile.TemporaryDirectory(prefix="ztcore-bench-tcp-") as tmp:
        async with Runtime() as runtime:
            try:
                root, (a,) = await start_world(runtime, 1)
                proc.start()
                conn.send(root.planet.to_bytes())
                b_hex = await _recv(conn)
                nwid = await make_network(runtime, root, [a], [b_hex], Path(tmp))
                conn.send(nwid)
                b_ip = _ip(await _recv(conn))
                a_ip = _ip(_v4(a, nwid))
                conn.send(a_ip)
                print(f"network {nwid:016x}: A {a.address_hex} ({a_ip}) here, B {b_hex} ({b_ip}) in a second process")
                await _measure(a, nwid, conn, args)
            finally:
                if proc.is_alive():
                    conn.send(("stop",))
                    await asyncio.get_running_loop().run_in_executor(None, proc.join, 10.0)
                    if proc.is_alive():
                        proc.kill()


async def _measure(a: NodeService, nwid: int, conn: Connection, args: argparse.Namespace) -> None:
    size = args.megabytes * 1024 * 1024

    async def upload_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"go")
        n = 0
        while chunk := await reader.read(1 << 20):
            n += len(chunk)
        writer.write(str(n).encode())
        writer.close()

    async def download_source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = os.urandom(size)
        for i in range(0, size, CHUNK):
            writer.write(data[i : i + CHUNK])
            await writer.drain()
        writer.close()

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    connects = await a.start_server(close_at_once, CONNECT_PORT, network=nwid)
    up = await a.start_server(upload_sink, UPLOAD_PORT, network=nwid)
    down = await a.start_server(download_source, DOWNLOAD_PORT, network=nwid)

    conn.send(("connects", args.connects))
    times = sorted(await _recv(conn, timeout=600))
    print(
        f"connection set-up (B -> A, {len(times)} connects): median {statistics.median(times) * 1000:.2f} ms, "
        f"p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms"
    )
    conn.send(("upload", size))
    elapsed = await _recv(conn, timeout=600)
    print(f"throughput B -> A: {args.megabytes} MiB in {elapsed:.2f} s = {size * 8 / elapsed / 1e6:.1f} Mbit/s")
    conn.send(("download",))
    n, elapsed = await _recv(conn, timeout=600)
    print(f"throughput A -> B: {n / 1048576:.0f} MiB in {elapsed:.2f} s = {n * 8 / elapsed / 1e6:.1f} Mbit/s")
    up.close()
    down.close()
    connects.close()

    held: list[Any] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append((reader, writer))

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    idle = await a.start_server(hold, IDLE_PORT, network=nwid)
    conn.send(("idle", args.idle))
    await _recv(conn, timeout=600)
    await wait_until(lambda: len(held) >= args.idle, 30.0)
    await asyncio.sleep(0.5)  # let handshakes' last ACKs and timers settle
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    print(f"memory per idle connection (A's side, {len(held)} connections): {grown / max(len(held), 1):,.0f} bytes")
    conn.send(("idle_close",))
    await _recv(conn, timeout=60)
    idle.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megabytes", type=int, default=20, help="MiB sent each way (default 20)")
    ap.add_argument("--connects", type=int, default=50, help="sequential connects timed (default 50)")
    ap.add_argument("--idle", type=int, default=500, help="idle connections for the memory figure (default 500)")
    args = ap.parse_args()
    machine.header()
    print(f"bench_tcp: {HOST}")
    asyncio.run(run(args))
    machine.footer()


if __name__ == "__main__":
    main()
