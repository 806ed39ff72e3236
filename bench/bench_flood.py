"""Floods against a ztcore node: what unauthenticated traffic from distinct sources costs.

One deterministic simulated world (`ztcore.simulation`, no sockets): a root and a leaf
that is online through it. The leaf then receives, per flood kind, --packets datagrams,
each from a different source endpoint (100.64.0.0/10, never contacted: the node answers
through callbacks), delivered at --rate packets per simulated second with the node's
timers running between them:

* junk: random bytes of 1 to 120 bytes;
* forged-source: well-formed packets to the leaf from random unknown ZeroTier addresses
  (each one a WHOIS the leaf would like to send to its root);
* forged-HELLO: HELLOs MAC'd correctly under fresh keys claiming addresses their keys do
  not hash to (each one would cost a key agreement and a memory-hard identity check).
  A pool of --hello-pool distinct HELLOs is replayed from distinct endpoints.

Printed per kind: packets/s absorbed and µs per packet spent in the node (wall clock
around delivery and timers), CPU µs per packet (process time, making the packets included),
RSS growth in MiB (VmRSS after the flood and a garbage collection, minus before), WHOIS
sent to the root (and per simulated second), identity checks run, and the largest
per-remote table afterwards versus its bound.

Run: python bench/bench_flood.py [--packets 200000] [--kinds junk,forged-source,forged-hello]
     [--rate 100000] [--hello-pool 2000]
The issue's goal is measured with --packets 1000000: RSS growth < 20 MiB and WHOIS sent
within the fixed budget (ztcore.vl1.switch.WHOIS_GLOBAL_RATE per second).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import machine  # bench/machine.py: command, interpreter and load average around the figures
from flood import distinct_endpoint, forged_hellos, forged_source, junk  # noqa: E402
from ztcore.identity import Identity  # noqa: E402
from ztcore.simulation import SimHost, SimNetwork, make_planet  # noqa: E402
from ztcore.vl1.switch import WHOIS_GLOBAL_RATE  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def world(root_id: Identity, leaf_id: Identity) -> tuple[SimNetwork, SimHost]:
    net = SimNetwork()
    ep = net.allocate_endpoint("10.0.0.1")
    planet, _ = make_planet([(root_id, [ep])])
    net.add_node(identity=root_id, planet=planet, endpoint=ep)
    leaf = net.add_node(identity=leaf_id, planet=planet, ip="10.0.1.1")
    assert net.run_until(lambda: leaf.node.online, 10_000)
    return net, leaf


def replay_hellos(count: int, pool: list[bytes]) -> Iterator[tuple[tuple[str, int], bytes]]:
    for i, data in zip(range(count), itertools.cycle(pool)):
        yield distinct_endpoint(i), data


def flood(net: SimNetwork, leaf: SimHost, packets: Iterable[tuple[tuple[str, int], bytes]], rate: int) -> dict:
    node = leaf.node
    per_ms = max(1, rate // 1000)
    whois0 = node.switch.stats["whois_sent"]
    checked0 = node.drops.get("hello_invalid_identity", 0)
    sim0 = net.now
    gc.collect()
    rss0 = rss_mib()
    # Only the node's own work is timed (delivery and timers), not making the packets.
    clock = time.perf_counter
    wall = 0.0
    cpu0 = time.process_time()
    n = 0
    for src, data in packets:
        t = clock()
        node.process_wire_packet(net.now, 0, src, data)
        n += 1
        if n % per_ms == 0:
            net.run_for(1)
        wall += clock() - t
    cpu_all = time.process_time() - cpu0
    gc.collect()
    rss1 = rss_mib()
    sim_s = max(1e-3, (net.now - sim0) / 1000)
    whois = node.switch.stats["whois_sent"] - whois0
    fullest = max(node.switch.table_sizes().items(), key=lambda kv: kv[1][0] / kv[1][1])
    return {
        "packets": n,
        "pps": n / wall,
        "node_us": wall / n * 1e6,
        "cpu_us": cpu_all / n * 1e6,
        "rss": rss1 - rss0,
        "whois": whois,
        "whois_per_s": whois / sim_s,
        "checked": node.drops.get("hello_invalid_identity", 0) - checked0,
        "sim_s": sim_s,
        "fullest": f"{fullest[0]} {fullest[1][0]}/{fullest[1][1]}",
        "internal_errors": node.drops.get("internal_error", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--kinds", default="junk,forged-source,forged-hello")
    ap.add_argument("--rate", type=int, default=100_000, help="packets per simulated second")
    ap.add_argument("--hello-pool", type=int, default=2000)
    args = ap.parse_args()
    machine.header()
    print(f"{args.packets} packets per flood, "
          f"{args.rate} packets per simulated second; WHOIS budget {WHOIS_GLOBAL_RATE}/s")
    root_id, leaf_id = Identity.generate(), Identity.generate()
    rows = []
    for kind in args.kinds.split(","):
        net, leaf = world(root_id, leaf_id)
        rng = random.Random(kind)
        if kind == "junk":
            packets: Iterable[tuple[tuple[str, int], bytes]] = junk(args.packets, rng)
        elif kind == "forged-source":
            packets = forged_source(args.packets, int(leaf.node.address), rng)
        elif kind == "forged-hello":
            pool = [d for _, d in forged_hellos(args.hello_pool, leaf.node.identity, rng)]
            packets = replay_hellos(args.packets, pool)
        else:
            raise SystemExit(f"unknown kind {kind!r}")
        r = flood(net, leaf, packets, args.rate)
        rows.append((kind, r))
        del net, leaf, packets
    head = f"{'flood':<14}{'packets/s':>11}{'node µs':>9}{'CPU µs':>8}{'RSS +MiB':>10}{'WHOIS':>8}{'WHOIS/s':>9}" \
           f"{'id checks':>10}{'sim s':>7}  fullest table          internal errors"
    print(head)
    for kind, r in rows:
        print(f"{kind:<14}{r['pps']:>11,.0f}{r['node_us']:>9.1f}{r['cpu_us']:>8.1f}{r['rss']:>10.1f}{r['whois']:>8}"
              f"{r['whois_per_s']:>9.1f}{r['checked']:>10}{r['sim_s']:>7.1f}  {r['fullest']:<22} {r['internal_errors']}")
    machine.footer()


if __name__ == "__main__":
    main()
