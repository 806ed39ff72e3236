"""Embedded controller throughput and scale: config replies per second, and a 10,000-member network.

Drives `EmbeddedController.request` directly (no sockets) with a sender that
does what a node does with each reply: chunk the config, sign every chunk
with the controller identity (`NetworkConfigChunker`), wrap it in OK(NETWORK_CONFIG_REQUEST),
armor it (Salsa20/12 + Poly1305, LZ4 when it helps) and cut it into wire
fragments. The controller store is a real SQLite file in a temporary directory
(WAL, synchronous=FULL, as `ztnode run` uses it).

Part 1, config replies/s: private networks of --sizes authorized members, with
IPv4 auto-assignment from a pool, a managed route and RFC4193 addresses; up to
--active of their members ask round robin. The first round is every asking
member's first request (learns its identity, assigns its IPv4 address); later
rounds are the periodic re-requests members make every 60 s. The controller's clock is simulated (each request is
1.001 s after the previous one) so the per-member rate limit never drops one.
Target: >= 1,000 config replies/s.

Part 2, a 10,000-member network: time to create and authorize the members in
the store (one transaction), the cost of authorizing one more member through
the API path (`StoreControllerBackend.post_member`: own transaction, pool
auto-assignment), the process RSS before and after, and config-reply latency
(median/p99) for requests from random members (first requests, then repeats).

Member identities are random key pairs without the proof-of-work hash: the
controller never validates that (the node does, in HELLO), so making 10,000 of
them stays cheap.

Run: python bench/bench_controller.py [--sizes 10,100,1000] [--active 200] [--seconds 2] [--big 10000] [--samples 60]
     [--profile N]  (cProfile the repeat requests, print the N costliest functions)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import resource
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import machine  # bench/machine.py: command, interpreter and load average around the figures
from ztcore.controller.live import EmbeddedController
from ztcore.controller.model import update_member
from ztcore.controller.store import ControllerStore
from ztcore.crypto import c25519_generate
from ztcore.identity import Address, Identity
from ztcore.runtime.http_api import StoreControllerBackend
from ztcore.vl1.fragment import make_fragments
from ztcore.vl1.packet import Verb, armor
from ztcore.vl2.controller_api import ControllerError
from ztcore.vl2.credentials import Revocation
from ztcore.vl2.netconf import NetworkConfig
from ztcore.vl2.netconf_chunks import NetworkConfigChunker
from ztcore.vl2.netconf_request import build_request_metadata

NETWORK_BODY: dict[str, Any] = {
    "private": True,
    "ipAssignmentPools": [{"ipRangeStart": "10.20.0.1", "ipRangeEnd": "10.20.255.254"}],
    "routes": [{"target": "10.20.0.0/16"}],
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"zt": False, "6plane": False, "rfc4193": True},
}


def rss_kib() -> int:
    """Current resident set size (VmRSS) in KiB; falls back to the peak from getrusage."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def fake_identity() -> Identity:
    """A member identity with a random address and keys (no proof of work; see the module doc).
    Addresses 0 and 0xff........ are reserved and never belong to an identity."""
    public, _private = c25519_generate()
    return Identity(random.randrange(1, 0xFF << 32), public)


class ChunkingSender:
    """A `ControllerSender` that does a node's work per reply: chunk, sign, armor, fragment."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.chunker = NetworkConfigChunker(identity)
        self.key = os.urandom(48)  # stands in for the key agreed with each member
        self.configs = 0
        self.errors: dict[ControllerError, int] = {}
        self.revocations = 0
        self.datagrams = 0
        self.bytes = 0
        self.last_config: NetworkConfig | None = None

    def _send(self, destination: int, verb: int, payload: bytes) -> None:
        wire = armor(
            destination=destination,
            source=int(self.identity.address),
            verb=verb,
            payload=payload,
            key=self.key,
            encrypt=True,
            compress=len(payload) > 256,
        )
        for datagram in make_fragments(wire):
            self.datagrams += 1
            self.bytes += len(datagram)

    def nc_send_config(
        self, network_id: int, request_packet_id: int, destination: Address, config: NetworkConfig
    ) -> None:
        for chunk in self.chunker.chunks(network_id, config):
            payload = struct.pack(">BQ", Verb.NETWORK_CONFIG_REQUEST, request_packet_id) + chunk
            self._send(int(destination), Verb.OK, payload)
        self.configs += 1
        self.last_config = config

    def nc_send_revocation(self, destination: Address, revocation: Revocation) -> None:
        self.revocations += 1

    def nc_send_error(
        self,
        network_id: int,
        request_packet_id: int,
        destination: Address,
        error: ControllerError,
        error_data: bytes = b"",
    ) -> None:
        self.errors[error] = self.errors.get(error, 0) + 1


class Clock:
    """The controller's simulated clock: every request comes 1.001 s after the previous one,
    so the per-member minimum request period (1 s) never drops a request."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def tick(self) -> int:
        self.now += 1001
        return self.now

    def __call__(self) -> int:
        return self.now


def setup(
    path: Path,
) -> tuple[ControllerStore, EmbeddedController, StoreControllerBackend, ChunkingSender, Clock]:
    store = ControllerStore(path)
    clock = Clock()
    controller = EmbeddedController(store, clock=clock)
    signer = Identity.generate()
    sender = ChunkingSender(signer)
    controller.init(signer, sender)
    backend = StoreControllerBackend(store, int(signer.address), clock=clock)
    backend.add_listener(controller)
    return store, controller, backend, sender, clock


def add_authorized_members(
    store: ControllerStore, nwid: str, count: int, now: int
) -> tuple[list[Identity], float]:
    """`count` authorized members in one store transaction; returns their identities and the seconds taken."""
    idents: dict[int, Identity] = {}
    while len(idents) < count:
        ident = fake_identity()
        idents[int(ident.address)] = ident
    t0 = time.perf_counter()
    with store.transaction():
        for addr in idents:
            store.put_member(update_member(None, {"authorized": True}, int(nwid, 16), addr, now))
    return list(idents.values()), time.perf_counter() - t0


def timed_request(
    controller: EmbeddedController, clock: Clock, network_id: int, ident: Identity, metadata: Any
) -> float:
    t0 = time.perf_counter()
    controller.request(clock.tick(), network_id, None, random.getrandbits(63) | 1, ident, metadata)
    return time.perf_counter() - t0


def part1(tmp: Path, size: int, active: int, seconds: float, profile: int = 0) -> list[tuple[str, str]]:
    """One network of `size` authorized members, of which `active` ask for configs."""
    store, controller, backend, sender, clock = setup(tmp / f"part1-{size}")
    network = backend.create_network({"name": "bench-small", **NETWORK_BODY})
    nwid, network_id = network["id"], int(network["id"], 16)
    idents, _ = add_authorized_members(store, nwid, size, clock())
    idents = idents[: max(1, min(active, size))]
    metadata = build_request_metadata()

    first: list[float] = [timed_request(controller, clock, network_id, i, metadata) for i in idents]
    assert sender.configs == len(idents), (
        f"expected {len(idents)} configs, got {sender.configs} ({sender.errors})"
    )
    assert sender.last_config is not None and sender.last_config.static_ips, "configs carry no addresses"

    repeat: list[float] = []
    configs_before, bytes_before, datagrams_before = sender.configs, sender.bytes, sender.datagrams
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        repeat.append(timed_request(controller, clock, network_id, idents[i % len(idents)], metadata))
        i += 1
    if profiler is not None:
        profiler.disable()
        print(f"\ncProfile of {i:,} repeat requests at {size:,} members (figures below are slowed by it):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(profile)
    replies = sender.configs - configs_before
    store.close()
    return [
        (
            f"{size:,} members",
            f"{len(first) / sum(first):9,.0f} {statistics.median(first) * 1e3:8.2f}"
            f" {replies / sum(repeat):9,.0f} {statistics.median(repeat) * 1e3:8.2f} {_p99(repeat) * 1e3:8.2f}"
            f" {(sender.bytes - bytes_before) / replies:7,.0f}B/{(sender.datagrams - datagrams_before) / replies:.1f}",
        )
    ]


def part2(tmp: Path, big: int, samples: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    rss0 = rss_kib()
    store, controller, backend, sender, clock = setup(tmp / "part2")
    network = backend.create_network({"name": "bench-big", **NETWORK_BODY})
    nwid, network_id = network["id"], int(network["id"], 16)
    rss1 = rss_kib()
    idents, took = add_authorized_members(store, nwid, big, clock())
    rows.append((f"create+authorize {big:,} members (store, 1 txn)", f"{took:.2f} s ({big / took:,.0f}/s)"))
    total, authorized = store.member_counts(nwid)
    assert (total, authorized) == (big, big), (total, authorized)

    # The API path: one member per call (its own transaction and commit, pool auto-assignment).
    api: list[float] = []
    for _ in range(20):
        addr = random.randrange(1, 0xFF << 32)
        t0 = time.perf_counter()
        backend.post_member(nwid, f"{addr:010x}", {"authorized": True})
        api.append(time.perf_counter() - t0)
    rows.append(
        (f"post_member authorize at {big:,} members", f"median {statistics.median(api) * 1e3:.1f} ms/call")
    )

    metadata = build_request_metadata()
    sample = random.sample(idents, min(samples, len(idents)))
    configs_before = sender.configs
    first = [timed_request(controller, clock, network_id, i, metadata) for i in sample]
    repeat = [timed_request(controller, clock, network_id, i, metadata) for i in sample]
    assert sender.configs - configs_before == 2 * len(sample), sender.errors
    rss2 = rss_kib()
    for name, lat in (("first", first), ("repeat", repeat)):
        rows.append(
            (
                f"{name} request latency ({len(sample)} random members)",
                f"median {statistics.median(lat) * 1e3:.1f} ms, p99 {_p99(lat) * 1e3:.1f} ms"
                f" ({len(lat) / sum(lat):,.0f} replies/s)",
            )
        )
    steady = big / 60  # every member re-requests its config every ZT_NETWORK_AUTOCONF_DELAY (60 s)
    rows.append((f"  needed for {big:,} members re-requesting every 60 s", f"{steady:,.0f} replies/s"))
    rows.append(
        (
            "RSS: start / controller up / after",
            f"{rss0 / 1024:.1f} / {rss1 / 1024:.1f} / {rss2 / 1024:.1f} MiB",
        )
    )
    db = store.path
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    rows.append(("controller.db (+WAL) size", f"{size / 1e6:.1f} MB"))
    store.close()
    return rows


def _p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98] if len(xs) >= 2 else xs[0]


def _section(title: str, fn: Callable[[], list[tuple[str, str]]]) -> None:
    t0 = time.perf_counter()
    _print_section(title, fn(), t0)


def _print_section(title: str, rows: list[tuple[str, str]], t0: float) -> None:
    print(f"\n{title}  ({time.perf_counter() - t0:.1f} s)")
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:{width}}  {v}")


def main() -> None:
    ap = argparse.ArgumentParser(description="Embedded controller config replies/s and a large network.")
    ap.add_argument("--sizes", default="10,100,1000", help="part 1 network sizes (authorized members)")
    ap.add_argument("--active", type=int, default=200, help="members asking per part 1 network")
    ap.add_argument("--seconds", type=float, default=2.0, help="time of each repeat-request run in part 1")
    ap.add_argument("--big", type=int, default=10_000, help="members of the part 2 network (0 skips part 2)")
    ap.add_argument("--samples", type=int, default=60, help="random members asking in part 2")
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="cProfile part 1's repeat requests and print the N costliest functions",
    )
    ap.add_argument("--dir", type=Path, default=None, help="where to put the stores (default: a temp dir)")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if not args.sizes or min(args.sizes) < 1 or args.active < 1:
        ap.error("--sizes and --active need positive integers")

    machine.header()
    with tempfile.TemporaryDirectory(prefix="ztcore-bench-ctl-", dir=args.dir) as d:
        tmp = Path(d)
        for size in args.sizes:
            (tmp / f"part1-{size}").mkdir()
        (tmp / "part2").mkdir()
        print(f"stores under {tmp}")
        rows = [
            ("network", f"{'first/s':>9} {'med ms':>8} {'repeat/s':>9} {'med ms':>8} {'p99 ms':>8} reply")
        ]
        t0 = time.perf_counter()
        for size in args.sizes:
            rows += part1(tmp, size, args.active, args.seconds, args.profile)
        rows.append(("target", ">= 1,000 replies/s"))
        _print_section(f"1. config replies per second (up to {args.active} members asking)", rows, t0)
        if args.big > 0:
            _section(f"2. a {args.big:,}-member network", lambda: part2(tmp, args.big, args.samples))
    machine.footer()


if __name__ == "__main__":
    main()
