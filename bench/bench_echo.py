"""VL1 ECHO round trips per second between two ztcore nodes on loopback.

Builds an offline world in one process (a throw-away planet whose only root is
an in-process node on 127.0.0.1, plus two leaves, all on real UDP sockets run
by `ztcore.runtime.Runtime`), waits until the leaves talk directly (the root
introduces them), then keeps a window of ECHOs outstanding from leaf A to
leaf B (`Node.echo`) for a few seconds per window size and prints round trips
per second and RTTs (measured with perf_counter around each echo).

Each measurement runs twice: as shipped, where a path answers at most 50
ECHOs per second (`Path.rate_gate_echo`), and with that gate lifted for the
run, which shows what the packet path itself costs. An echo without a reply
after --timeout ms counts as lost and its window slot is reused.

Run: python bench/bench_echo.py [--seconds 3] [--windows 1,32] [--gate both|on|off]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field

import machine  # bench/machine.py: command, interpreter and load average around the figures
from ztcore.runtime import MemoryState, NodeService, Runtime
from ztcore.runtime.offline import start_offline_root, wait_until
from ztcore.vl1.path import Path

HOST = "127.0.0.1"


async def start_world(runtime: Runtime, leaves: int) -> tuple[NodeService, list[NodeService]]:
    """A root on 127.0.0.1 under a fresh planet, and `leaves` leaf services online through it."""
    planet, root = await start_offline_root(runtime, HOST)
    out = [
        await runtime.add_node(MemoryState(), port=0, bind=[HOST], planet=planet, allow_loopback=True)
        for _ in range(leaves)
    ]
    if not await wait_until(lambda: all(s.node.online for s in out), 20.0):
        raise SystemExit("leaves did not come online through the root")
    return root, out


async def make_direct(a: NodeService, b: NodeService) -> None:
    """Echo once each way (relayed by the root, which sends RENDEZVOUS) until both see a direct path."""

    def direct() -> bool:
        pa, pb = a.node.peer(int(b.address)), b.node.peer(int(a.address))
        return pa is not None and pa.direct and pb is not None and pb.direct

    deadline = time.monotonic() + 20.0
    while not direct():
        if time.monotonic() > deadline:
            raise SystemExit("the leaves did not get a direct path")
        a.node.echo(a.clock(), int(b.address))
        b.node.echo(b.clock(), int(a.address))
        await asyncio.sleep(0.1)


@dataclass
class Result:
    window: int
    gate: bool
    seconds: float
    replies: int = 0
    lost: int = 0
    rtts: list[float] = field(default_factory=list)  # ms
    relayed: int = 0  # packets the root relayed during the run (0 = all direct)


async def measure(
    root: NodeService,
    a: NodeService,
    b: NodeService,
    window: int,
    seconds: float,
    timeout_ms: float,
    gate: bool,
) -> Result:
    res = Result(window, gate, seconds)
    relayed_before = root.node.switch.stats["relayed"]
    dest = int(b.address)
    outstanding: dict[int, float] = {}  # slot -> perf_counter at send
    generation = [0] * window  # a late reply for a slot already declared lost is ignored
    running = True

    def fire(slot: int) -> None:
        gen = generation[slot]
        started = time.perf_counter()
        outstanding[slot] = started

        def on_reply(_rtt_ms: int, slot: int = slot, gen: int = gen, started: float = started) -> None:
            if generation[slot] != gen:
                return
            res.rtts.append((time.perf_counter() - started) * 1000)
            res.replies += 1
            generation[slot] += 1
            del outstanding[slot]
            if running:
                fire(slot)

        a.node.echo(a.clock(), dest, on_reply)

    start = time.perf_counter()
    for slot in range(window):
        fire(slot)
    end = start + seconds
    while (now := time.perf_counter()) < end:
        await asyncio.sleep(0.01)
        for slot, t in list(outstanding.items()):
            if (now - t) * 1000 > timeout_ms:
                res.lost += 1
                generation[slot] += 1
                del outstanding[slot]
                fire(slot)
    running = False
    res.seconds = time.perf_counter() - start
    await asyncio.sleep(timeout_ms / 1000)  # let stragglers land before the next run
    res.relayed = root.node.switch.stats["relayed"] - relayed_before
    return res


async def run(args: argparse.Namespace) -> list[Result]:
    gates = {"both": [True, False], "on": [True], "off": [False]}[args.gate]
    original_gate = Path.rate_gate_echo
    results: list[Result] = []
    async with Runtime() as runtime:
        root, (a, b) = await start_world(runtime, 2)
        await make_direct(a, b)
        print(f"leaves {a.address_hex} -> {b.address_hex} direct on {HOST}")
        try:
            for gate in gates:
                if not gate:
                    Path.rate_gate_echo = lambda self, now: True  # type: ignore[method-assign,assignment]
                else:
                    Path.rate_gate_echo = original_gate  # type: ignore[method-assign]
                for w in args.windows:
                    results.append(await measure(root, a, b, w, args.seconds, args.timeout, gate))
        finally:
            Path.rate_gate_echo = original_gate  # type: ignore[method-assign]
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description="VL1 ECHO round trips per second between two nodes on loopback.")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--windows", default="1,32", help="comma-separated numbers of outstanding echoes")
    ap.add_argument(
        "--gate", choices=("both", "on", "off"), default="both", help="ECHO rate gate on/off/both"
    )
    ap.add_argument("--timeout", type=float, default=250.0, help="ms after which an echo counts as lost")
    args = ap.parse_args()
    args.windows = [int(w) for w in args.windows.split(",") if w.strip()]
    if not args.windows or min(args.windows) < 1:
        ap.error("--windows needs positive integers")

    machine.header()
    t0 = time.perf_counter()
    results = asyncio.run(run(args))
    print(
        f"{'rate gate':10} {'window':>6} {'round trips/s':>14} {'median RTT ms':>14} {'p99 RTT ms':>11} {'lost':>6} {'relayed':>8}"
    )
    for r in results:
        med = statistics.median(r.rtts) if r.rtts else float("nan")
        p99 = statistics.quantiles(r.rtts, n=100)[98] if len(r.rtts) >= 2 else float("nan")
        gate = "50/s" if r.gate else "lifted"
        print(
            f"{gate:10} {r.window:6} {r.replies / r.seconds:14.0f} {med:14.3f} {p99:11.3f} {r.lost:6} {r.relayed:8}"
        )
    print(f"total {time.perf_counter() - t0:.1f} s")
    machine.footer()


if __name__ == "__main__":
    main()
