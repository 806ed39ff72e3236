"""Many ztcore nodes in one process: how long until all are online on 127.0.0.1.

Builds an offline world (a throw-away planet whose only root is an in-process
node on 127.0.0.1) and starts N leaf nodes in the same `Runtime`, all on real
UDP sockets on 127.0.0.1, then waits until every leaf has heard from the root.

Identity generation is the costly part (the memory-hard hashcash, ~60 ms each)
and is timed apart: identities are made in a process pool (both cores) and kept
in --cache, so later runs only load them. Loaded identities are validated once
in this process (timed apart too): that is what lets the root skip its per-IP
verification gate for them, the way a process that generated its nodes' own
identities would.

Printed: identity generation / load + validation times, time to start the
services, time until all are online (the figure the goal is about), RSS.

With --sim the nodes run in the deterministic simulator instead (no sockets,
simulated time): after all are online, every leaf sends a USER_MESSAGE to the
next one round the ring (first relayed by the root, which needs WHOIS for most),
and the bench prints how many arrived, the simulated and wall time, and the
root's table sizes against their bounds.

Run: python bench/bench_many_nodes.py [--nodes 1000] [--sim] [--cache /tmp/ztcore-bench-ids.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import resource
import sys
import time
from pathlib import Path

from ztcore.identity import Identity
from ztcore.runtime import Runtime
from ztcore.runtime.offline import identity_state, start_offline_root, wait_until

HOST = "127.0.0.1"


def _generate(_: int) -> str:
    return Identity.generate().to_string(include_private=True)


def load_identities(n: int, cache: Path) -> tuple[list[Identity], float, float]:
    """(identities, seconds generating, seconds validating in this process)."""
    have = cache.read_text().split() if cache.exists() else []
    t0 = time.perf_counter()
    if len(have) < n:
        with multiprocessing.Pool(os.cpu_count() or 2) as pool:
            have += pool.map(_generate, range(n - len(have)), chunksize=8)
        cache.write_text("\n".join(have) + "\n")
    generated = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = [Identity.from_string(s) for s in have[:n]]
    if not all(i.validate() for i in out):
        raise SystemExit(f"{cache}: an identity does not validate")
    return out, generated, time.perf_counter() - t1


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def run(n: int, identities: list[Identity], timeout: float) -> None:
    async with Runtime() as runtime:
        planet, _root = await start_offline_root(runtime, HOST)
        rss0 = rss_mib()
        t0 = time.perf_counter()
        leaves = [
            await runtime.add_node(
                identity_state(i),
                port=0,
                bind=[HOST],
                secondary_port=None,
                planet=planet,
                allow_loopback=True,
            )
            for i in identities
        ]
        started = time.perf_counter() - t0
        ok = await wait_until(lambda: all(s.node.online for s in leaves), timeout, interval=0.05)
        online = time.perf_counter() - t0
        count = sum(s.node.online for s in leaves)
        print(f"  started {n} services in {started:.2f} s")
        print(f"  {count}/{n} online {online:.2f} s after the first started" + ("" if ok else " (TIMED OUT)"))
        print(f"  RSS {rss_mib():.0f} MiB ({(rss_mib() - rss0) * 1024 / n:.0f} KiB per node)")


def run_sim(identities: list[Identity]) -> None:
    from ztcore.api import EventType
    from ztcore.simulation import SimNetwork, make_planet

    n = len(identities)
    net = SimNetwork()
    root_id = Identity.generate()
    ep = net.allocate_endpoint("10.0.0.1")
    planet, _ = make_planet([(root_id, [ep])])
    root = net.add_node(identity=root_id, planet=planet, endpoint=ep)
    t0, sim0 = time.perf_counter(), net.now
    leaves = [
        net.add_node(identity=i, planet=planet, ip=f"10.{1 + k // 65000}.{(k // 250) % 250}.{1 + k % 250}")
        for k, i in enumerate(identities)
    ]
    ok = net.run_until(lambda: all(h.node.online for h in leaves), timeout_ms=120_000)
    online_wall, online_sim = time.perf_counter() - t0, net.now - sim0
    print(
        f"  {sum(h.node.online for h in leaves)}/{n} online after {online_sim / 1000:.1f} s simulated ({online_wall:.1f} s wall)"
        + ("" if ok else " (TIMED OUT)")
    )
    t1 = time.perf_counter()
    for k, h in enumerate(leaves):
        h.node.send_user_message(net.now, int(leaves[(k + 1) % n].node.address), 1, b"ring")

    def arrived() -> int:
        return sum(1 for h in leaves if any(e.type == EventType.USER_MESSAGE for e in h.events))

    net.run_until(lambda: arrived() == n, timeout_ms=60_000)
    print(f"  ring of USER_MESSAGEs: {arrived()}/{n} arrived ({time.perf_counter() - t1:.1f} s wall)")
    sizes = root.node.switch.table_sizes()
    print(
        "  root tables (entries / bound): "
        + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(sizes.items()))
    )
    print(f"  root drops: {dict(root.node.switch.drops) or 'none'}; RSS {rss_mib():.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/ztcore-bench-identities.txt"))
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--sim", action="store_true", help="run the nodes in the simulator instead")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.nodes + 64
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    identities, generated, validated = load_identities(args.nodes, args.cache)
    where = "the simulator" if args.sim else "127.0.0.1"
    print(f"{args.nodes} nodes, one process, {where}")
    print(
        f"  identities: {generated:.2f} s generating (process pool, cached in {args.cache}), {validated:.2f} s validating here"
    )
    if args.sim:
        run_sim(identities)
    else:
        asyncio.run(run(args.nodes, identities, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
