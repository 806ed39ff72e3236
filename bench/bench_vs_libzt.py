"""ztcore side by side with the real ZeroTier core (libzt 1.8.4), in one run, no hand-built binary.

Six network namespaces on one private bridge (the interop harness's 10.77.X.0/24 LAN, see
tests/interop/harness/netns.py): a ztcore root (the only root of a throw-away planet), a
ztcore node hosting the controller and its JSON API, two libzt 1.8.4 nodes (the real core
with lwIP, one per process, Python 3.9 venv built and cached by the harness) and two ztcore
nodes (one per process, userspace network stack). The controller makes a private network
whose IPv4 pool (10.77.0.0/24) exists only inside the nodes' own stacks; the four members
are authorized through the API, as a user would.

For each pair, A -> B (libzt A -> libzt B, then ztcore A -> ztcore B, same minutes), it prints:

* RTT: ICMP echo over the virtual network, one at a time (libzt: an echo request sent by
  lwIP, answered by the other lwIP in the same process as its core; ztcore: the userspace
  responder's ping, answered by B's node in its fast lane's ICMP echo offload, as its
  responder would -- the row says how many -- once the first packet set up the session,
  see ztcore.lane; the ztcore nodes run without the harness's frame recorder, which
  would keep the offload off), ``--pings``
  per pair in each of ``--runs`` rounds that alternate the pairs (one pair's slow minute
  is not the other's). Median and min over all rounds, and each round's median.
* UDP: ``--size`` (1,400) byte datagrams of random bytes for ``--seconds``, open loop (or
  paced with ``--udp-rate``); the receiver counts them. Mbit/s of UDP payload delivered
  (first to last arrival) and loss.
* TCP: one connection writing random bytes for ``--seconds`` (libzt: its lwIP TCP;
  ztcore: only when this tree has TCP, i.e. NodeService or ``ztcore.runtime`` has
  ``open_connection``; otherwise the row says n/a).
* Receiver CPU per Mbit: utime + stime of the receiving process (/proc/PID/stat, all its
  threads) from just before the sender starts to the receiver's last count, divided by the
  Mbit delivered (the detail adds its idle share of a core, read over 1 s before the runs).

and the ratios ztcore / real core against the targets of issue 13: UDP throughput >= 0.5,
RTT <= 2x, receiver CPU per Mbit <= 3x. Each row carries the 1-minute load average when it
was measured; the header and footer give the full load and the command that reproduces it.

The data never crosses the harness's JSON line protocol: each driver runs the transfer
itself (``bench_*`` commands in driver_libzt.py / driver_ztcore.py). Needs root (network
namespaces) and CPython 3.9 (libzt wheels); says so loudly and exits 2 otherwise. Stops by
itself (``--max-seconds``) and removes its namespaces and processes on any exit.

Run (root, from the repository root):
    python bench/bench_vs_libzt.py [--seconds 5] [--size 1400] [--pings 20] [--udp-rate 0]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO / "src", REPO):  # ztcore, and tests.interop.harness
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from tests.interop.harness import (  # noqa: E402
    HarnessBuildError,
    HarnessPaths,
    Lan,
    LibztError,
    LibztNode,
    Python39Missing,
    build_harness,
    cleanup_stale,
    make_planet,
    python_env,
)
from tests.interop.harness.build import LIBZT_NODE_VERSION  # noqa: E402
from tests.interop.harness.ztcore_node import ZtcoreNode  # noqa: E402

POOL_START, POOL_END, POOL_NET = "10.77.0.10", "10.77.0.200", "10.77.0.0/24"
UDP_PORT, TCP_PORT = 7400, 7401  # run i uses PORT + 2i
PAIRS = ("libzt", "ztcore")
TARGETS = {  # issue 13: ztcore / real core
    "udp": (">=", 0.5),
    "rtt": ("<=", 2.0),
    "udp_cpu": ("<=", 3.0),
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """Setting up the network or a measurement failed (the message says which)."""


class Deadline(BaseException):
    """--max-seconds ran out (a BaseException so no measurement swallows it)."""


def ztcore_has_tcp() -> bool:
    """True when this tree's ztcore can open TCP connections on a virtual network."""
    import ztcore.runtime
    from ztcore.runtime.service import NodeService

    return hasattr(ztcore.runtime, "open_connection") or hasattr(NodeService, "open_connection")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (every thread) from /proc/PID/stat."""
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def load1() -> float:
    return os.getloadavg()[0]


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def ipv4_of(addrs: list[str]) -> str | None:
    for a in addrs:
        ip = ipaddress.ip_address(a.split("/")[0])
        if ip.version == 4:
            return str(ip)
    return None


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------- the network


@dataclass
class Member:
    """One node of a measured pair, with what the bench needs to drive it."""

    kind: str  # "libzt" or "ztcore"
    node: LibztNode  # ZtcoreNode is one too
    ip: str = ""

    @property
    def pid(self) -> int:
        for ev in list(self.node.events):
            if ev.get("type") == "ready" and isinstance(ev.get("pid"), int):
                return int(ev["pid"])
        raise BenchError(f"{self.node.name}: its driver never said ready with a pid")

    def request(self, cmd: str, timeout: float, **args: Any) -> dict[str, Any]:
        return self.node.request(cmd, timeout=timeout, **args)


@dataclass
class World:
    root: ZtcoreNode
    ctl: ZtcoreNode
    nwid: int
    pairs: dict[str, tuple[Member, Member]] = field(default_factory=dict)

    @property
    def nwid_hex(self) -> str:
        return f"{self.nwid:016x}"

    def relayed(self) -> int:
        """Packets the root relayed so far (a measurement should add none: direct paths)."""
        return int(self.root.stats()["stats"].get("relayed", 0))


def ztnode(*args: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ztcore.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=python_env(),
    )
    if r.returncode != 0:
        raise BenchError(f"ztnode {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")


@contextmanager
def network(tmp: Path, paths: HarnessPaths, max_seconds: float) -> Iterator[World]:
    """The LAN, the six nodes and the network; everything torn down on exit."""
    with Lan(n_hosts=6) as lan:
        root_h, ctl_h, la_h, lb_h, za_h, zb_h = lan.hosts
        home = tmp / "ztcore-root"  # the root's identity, made first: the planet names it
        home.mkdir()
        ztnode("idtool", "generate", str(home / "identity.secret"), str(home / "identity.public"))
        public = (home / "identity.public").read_text().strip()
        planet = make_planet([(public, [(root_h.ip, 9993)])])
        life = max_seconds + 60  # each driver's own watchdog, a backstop for ours

        def zt(host: Any, name: str, **kw: Any) -> ZtcoreNode:
            return ZtcoreNode(
                host, tmp / name, 9993, planet=planet, bind=[host.ip], max_seconds=life, name=name, **kw
            )

        def lz(host: Any, name: str) -> LibztNode:
            return LibztNode(host, tmp / name, 9993, planet=planet, harness=paths, max_seconds=life, name=name)

        root = zt(root_h, "ztcore-root")
        ctl = zt(ctl_h, "ztcore-ctl", controller=True, api_port=9993)
        la, lb = lz(la_h, "libzt-a"), lz(lb_h, "libzt-b")
        # As an application embeds them: without the harness's frame recorder, which would
        # keep B's ICMP echo offload off (ztcore.lane).
        za, zb = zt(za_h, "ztcore-a", record_frames=False), zt(zb_h, "ztcore-b", record_frames=False)
        nodes: list[LibztNode] = [root, ctl, la, lb, za, zb]
        try:
            for n in nodes:
                n.start()
            status, net = ctl.api(
                "POST",
                f"/controller/network/{ctl.node_id}______",
                {
                    "name": "bench-vs-libzt",
                    "private": True,
                    "ipAssignmentPools": [{"ipRangeStart": POOL_START, "ipRangeEnd": POOL_END}],
                    "routes": [{"target": POOL_NET, "via": None}],
                    "v4AssignMode": {"zt": True},
                    "v6AssignMode": {"zt": False, "rfc4193": False, "6plane": False},
                },
            )
            if status != 200:
                raise BenchError(f"creating the network through the controller API: {status} {net}")
            world = World(root, ctl, int(net["id"], 16))
            members = [la, lb, za, zb]
            for n in members:  # authorized before they ask, then they join
                status, body = ctl.api(
                    "POST", f"/controller/network/{world.nwid_hex}/member/{n.node_id}", {"authorized": True}
                )
                if status != 200 or body.get("authorized") is not True:
                    raise BenchError(f"authorizing {n.name}: {status} {body}")
                n.join(world.nwid)
            ips = {}
            for n in members:
                n.wait_online(30)
                if isinstance(n, ZtcoreNode):
                    info = n.wait_network_ok(world.nwid, timeout=40)
                    ips[n.name] = ipv4_of(info["assignedAddresses"])
                else:
                    got = n.wait_for(
                        lambda n=n: (
                            (i := n.network(world.nwid))["status"] == "OK"
                            and i["transport_ready"]
                            and ipv4_of(i.get("addrs", []))
                        ),
                        40,
                        "network OK with an IPv4",
                    )
                    ips[n.name] = got
            world.pairs = {
                "libzt": (Member("libzt", la, ips[la.name]), Member("libzt", lb, ips[lb.name])),
                "ztcore": (Member("ztcore", za, ips[za.name]), Member("ztcore", zb, ips[zb.name])),
            }
            yield world
        finally:
            for n in reversed(nodes):
                try:
                    n.stop(timeout=5)
                except Exception as e:  # keep stopping the others; the namespaces go anyway
                    print(f"warning: stopping {n.name}: {type(e).__name__}: {e}", file=sys.stderr)


# ------------------------------------------------------------------------------- measurements


@dataclass
class Row:
    pair: str  # libzt / ztcore
    figure: str  # rtt, udp, udp_cpu, tcp, tcp_cpu
    value: float | None
    unit: str
    load: float
    detail: str


def ping_once(world: World, a: Member, b: Member, seq: int, timeout: float = 2.0) -> float | None:
    if a.kind == "libzt":
        r = a.node.icmp_echo(b.ip, seq=seq, payload=bytes(56), timeout=timeout)
        return float(r["rtt_ms"]) if r.get("replied") else None
    r = a.request(
        "bench_ping", timeout + 10, nwid=world.nwid_hex, ip=b.ip, count=1, timeout_s=timeout, interval_s=0
    )
    return r["rtt_ms"][0] if r["rtt_ms"] else None


def warm_up(world: World, pair: str) -> str:
    """ARP and peer paths settled: echoes answered, then echoes the root no longer relays.

    The root's relay counter is the test of a direct path for both kinds of node (libzt
    reports paths only through periodic events); every row shows it again for its run.
    """
    a, b = world.pairs[pair]
    wait_until(lambda: ping_once(world, a, b, 1) is not None, 40, f"{pair} A -> B: a first echo reply")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        before = world.relayed()
        replies = [ping_once(world, a, b, seq) for seq in range(2, 6)]
        if None not in replies and world.relayed() == before:
            return "direct"
        time.sleep(0.5)
    print(f"WARNING: {pair}: the root still relays between A and B after 20 s", file=sys.stderr)
    return "RELAYED"


def measure_rtt_rounds(world: World, count: int, gap_ms: float, runs: int) -> list[Row]:
    """`count` echoes per pair in each of `runs` rounds, the pairs taking turns."""
    rounds: dict[str, list[Row]] = {pair: [] for pair in PAIRS}
    samples: dict[str, list[float]] = {pair: [] for pair in PAIRS}
    for _ in range(runs):
        for pair in PAIRS:
            row, rtts = measure_rtt(world, pair, count, gap_ms)
            rounds[pair].append(row)
            samples[pair] += rtts
    out = []
    for pair in PAIRS:
        rows, rtts = rounds[pair], samples[pair]
        load = max(r.load for r in rows)
        if not rtts:
            out.append(Row(pair, "rtt", None, "ms", load, rows[-1].detail))
            continue
        medians = ", ".join(f"{r.value:.3f}" if r.value is not None else "-" for r in rows)
        detail = (
            f"{rows[-1].detail}; {len(rtts)} answered in {runs} round(s), min {min(rtts):.3f} ms; "
            f"round medians {medians} ms"
        )
        out.append(Row(pair, "rtt", statistics.median(rtts), "ms (median)", load, detail))
    return out


def measure_rtt(world: World, pair: str, count: int, gap_ms: float = 20.0) -> tuple[Row, list[float]]:
    a, b = world.pairs[pair]
    load = load1()
    relayed0 = world.relayed()
    rtts: list[float] = []
    lost = 0
    offloaded = ""
    if a.kind == "libzt":
        for seq in range(count):
            r = ping_once(world, a, b, 100 + seq)
            if r is None:
                lost += 1
            else:
                rtts.append(r)
            time.sleep(gap_ms / 1000)  # the same spacing as the ztcore side
    else:
        before = b.request("stats", 10)["vl2_stats"].get("echo_offloaded", 0)
        r = a.request(
            "bench_ping", count * 3 + 10, nwid=world.nwid_hex, ip=b.ip, count=count, timeout_s=2, interval_s=gap_ms / 1000
        )
        rtts, lost = list(r["rtt_ms"]), int(r["lost"])
        answered = b.request("stats", 10)["vl2_stats"].get("echo_offloaded", 0) - before
        offloaded = f", answered by B's ICMP echo offload (ztcore.lane) {answered} of {count}"
    relayed = world.relayed() - relayed0
    if not rtts:
        return Row(pair, "rtt", None, "ms", load, f"no echo answered of {count}"), []
    detail = (
        f"ICMP echo A -> B, {count} a round one at a time {gap_ms:g} ms apart, 56-byte payload: "
        f"last round max {max(rtts):.3f} ms, lost {lost}, relayed by root {relayed}{offloaded}"
    )
    return Row(pair, "rtt", statistics.median(rtts), "ms (median)", load, detail), rtts


def _in_thread(fn: Callable[[], dict[str, Any]]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["reply"] = fn()
        except BaseException as e:  # handed to the caller, which re-raises it
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _join(t: threading.Thread, out: dict[str, Any], timeout: float, what: str) -> dict[str, Any]:
    t.join(timeout)
    if "error" in out:
        raise out["error"]
    if "reply" not in out:
        raise BenchError(f"{what}: no result within {timeout:.0f}s")
    return out["reply"]


def _transfer(
    world: World, b: Member, seconds: float, sink: Callable[[], dict[str, Any]], blast: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any], float, float, int]:
    """Run ``sink`` on B and then ``blast`` on A; B's CPU seconds and wall time over the run."""
    t, out = _in_thread(sink)
    time.sleep(0.3)  # the sink is waiting before the first datagram leaves
    relayed0 = world.relayed()
    cpu0, wall0 = cpu_seconds(b.pid), time.monotonic()
    sent = blast()
    got = _join(t, out, seconds + 40, "receiver")
    cpu1, wall1 = cpu_seconds(b.pid), time.monotonic()
    return sent, got, cpu1 - cpu0, wall1 - wall0, world.relayed() - relayed0


@dataclass
class Run:
    """One timed transfer A -> B, as the receiver counted it."""

    mbit: float  # delivered
    span: float  # first to last arrival, s
    cpu: float  # receiver CPU seconds over the run
    wall: float  # wall seconds the CPU was read over
    relayed: int
    sent: int = 0  # UDP datagrams sent / received
    received: int = 0
    send_mbit: float = 0.0  # what the sender offered, Mbit/s
    errors: int = 0

    @property
    def rate(self) -> float | None:
        return self.mbit / self.span if self.span > 0 else None


def udp_run(world: World, pair: str, seconds: float, size: int, rate_mbit: float, port: int) -> Run:
    a, b = world.pairs[pair]
    if a.kind == "libzt":
        rfd, sfd = b.node.udp_bind(port), a.node.udp_bind(0)
    else:
        rfd = b.node.udp_bind(port, nwid=world.nwid)
        sfd = a.node.udp_bind(0, nwid=world.nwid)
    rate_pps = rate_mbit * 1e6 / 8 / size if rate_mbit > 0 else 0
    sent, got, cpu, wall, relayed = _transfer(
        world,
        b,
        seconds,
        lambda: b.request("bench_udp_sink", seconds + 40, fd=rfd, seconds=seconds + 30, idle_s=0.3),
        lambda: a.request(
            "bench_udp_blast", seconds + 30, fd=sfd, ip=b.ip, port=port, size=size, seconds=seconds, rate_pps=rate_pps
        ),
    )
    if a.kind == "libzt":  # ztcore's driver has no close on main yet: each run has its own port
        for node, fd in ((a.node, sfd), (b.node, rfd)):
            node.close_socket(fd)
    n_sent, n_got = int(sent["sent"]), int(got["received"])
    return Run(
        mbit=got["bytes"] * 8 / 1e6,
        span=float(got["span_s"]) if n_got > 1 else 0.0,
        cpu=cpu,
        wall=wall,
        relayed=relayed,
        sent=n_sent,
        received=n_got,
        send_mbit=n_sent * size * 8 / 1e6 / float(sent["seconds"]),
        errors=int(sent["errors"]),
    )


def tcp_run(world: World, pair: str, seconds: float, port: int) -> Run:
    a, b = world.pairs[pair]
    if a.kind == "libzt":
        lfd = b.node.tcp_listen(port)
        extra: dict[str, Any] = {}
    else:
        lfd = b.request("bench_tcp_listen", 15, port=port, nwid=world.nwid_hex)["fd"]
        extra = {"nwid": world.nwid_hex}
    _sent, got, cpu, wall, relayed = _transfer(
        world,
        b,
        seconds,
        lambda: b.request("bench_tcp_sink", seconds + 60, fd=lfd, seconds=seconds + 30),
        lambda: a.request("bench_tcp_blast", seconds + 60, ip=b.ip, port=port, seconds=seconds, timeout_s=15, **extra),
    )
    if a.kind == "libzt":
        b.node.close_socket(lfd)
    return Run(mbit=int(got["bytes"]) * 8 / 1e6, span=float(got["span_s"]), cpu=cpu, wall=wall, relayed=relayed)


def idle_cpu(member: Member, seconds: float = 1.0) -> float:
    """Share of a core the process uses with no traffic (timers, polling threads)."""
    c0, t0 = cpu_seconds(member.pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(member.pid) - c0) / (time.monotonic() - t0)


def throughput_rows(pair: str, kind: str, runs: list[Run], load: float, what: str, idle: float) -> list[Row]:
    """The median run's Mbit/s, and receiver CPU per Mbit over all runs together."""
    rates = [r.rate for r in runs if r.rate]
    relayed = sum(r.relayed for r in runs)
    listed = ", ".join(fmt(r.rate) for r in runs)
    detail = f"{what}; {len(runs)} run(s): {listed} Mbit/s; relayed by root {relayed}"
    if kind == "udp":
        sent, got = sum(r.sent for r in runs), sum(r.received for r in runs)
        offered = statistics.median(r.send_mbit for r in runs)
        loss = 100 * (1 - got / sent) if sent else 100.0
        errors = sum(r.errors for r in runs)
        detail += f"; sent {sent:,} (offered {offered:.1f} Mbit/s), received {got:,}, loss {loss:.1f} %, send errors {errors}"
    mbit, cpu, wall = sum(r.mbit for r in runs), sum(r.cpu for r in runs), sum(r.wall for r in runs)
    rows = [Row(pair, kind, statistics.median(rates) if len(rates) == len(runs) else None, "Mbit/s", load, detail)]
    if mbit <= 0:
        rows.append(Row(pair, f"{kind}_cpu", None, "CPU ms/Mbit", load, "nothing delivered"))
    else:
        cpu_detail = (
            f"receiver process {cpu:.2f} CPU s over {wall:.2f} s ({100 * cpu / wall:.0f} % of a core) for "
            f"{mbit:,.0f} Mbit, /proc/PID/stat; idle {100 * idle:.1f} % of a core"
        )
        rows.append(Row(pair, f"{kind}_cpu", 1000 * cpu / mbit, "CPU ms/Mbit", load, cpu_detail))
    return rows


def measure_throughput(world: World, kind: str, args: argparse.Namespace) -> list[Row]:
    """``args.runs`` transfers per pair, the pairs taking turns (same minutes for both)."""
    load = {pair: load1() for pair in PAIRS}
    idle = {pair: idle_cpu(world.pairs[pair][1]) for pair in PAIRS}
    runs: dict[str, list[Run]] = {pair: [] for pair in PAIRS}
    tcp_ok = kind != "tcp" or ztcore_has_tcp()
    for i in range(args.runs):
        for pair in PAIRS:
            if pair == "ztcore" and not tcp_ok:
                continue
            if i == 0:
                load[pair] = load1()
            if kind == "udp":
                runs[pair].append(udp_run(world, pair, args.seconds, args.size, args.udp_rate, UDP_PORT + 2 * i))
            else:
                runs[pair].append(tcp_run(world, pair, args.seconds, TCP_PORT + 2 * i))
    rows: list[Row] = []
    for pair in PAIRS:
        if not runs[pair]:
            na = "n/a (no TCP in this tree)"
            rows += [Row(pair, kind, None, na, load[pair], ""), Row(pair, f"{kind}_cpu", None, na, load[pair], "")]
        elif kind == "udp":
            mode = f"paced at {args.udp_rate:g} Mbit/s" if args.udp_rate > 0 else "open loop"
            what = f"{args.size:,}-byte datagrams of random bytes, {mode}, {args.seconds:g} s each"
            rows += throughput_rows(pair, kind, runs[pair], load[pair], what, idle[pair])
        else:
            what = f"one connection writing random bytes for {args.seconds:g} s each"
            rows += throughput_rows(pair, kind, runs[pair], load[pair], what, idle[pair])
    return rows


# ------------------------------------------------------------------------------------ output


def fmt(v: float | None) -> str:
    if v is None:
        return "FAILED"
    return f"{v:,.3f}" if v < 10 else f"{v:,.1f}"


def print_row(r: Row) -> None:
    value = fmt(r.value) if not r.unit.startswith("n/a") else "n/a"
    unit = r.unit if not r.unit.startswith("n/a") else r.unit[4:]
    print(f"{r.pair:<7} {r.figure:<8} {value:>9} {unit:<25} load {r.load:5.2f}  {r.detail}", flush=True)


def ratio_rows(rows: list[Row]) -> list[str]:
    by = {(r.pair, r.figure): r for r in rows}
    out = []
    for figure in ("udp", "tcp", "rtt", "udp_cpu", "tcp_cpu"):
        real, ours = by.get(("libzt", figure)), by.get(("ztcore", figure))
        if real is None or ours is None:
            continue
        target = TARGETS.get(figure)
        goal = f"target {target[0]} {target[1]:g}" if target else "no target"
        if ours.unit.startswith("n/a"):
            out.append(f"ratio   {figure:<8} {'n/a':>9} {'ztcore / real core':<25} {goal:<15}  {ours.unit[4:]}")
            continue
        if not real.value or ours.value is None:
            out.append(f"ratio   {figure:<8} {'FAILED':>9} {'ztcore / real core':<25} {goal:<15}  a figure is missing")
            continue
        ratio = ours.value / real.value
        verdict = ""
        if target:
            ok = ratio >= target[1] if target[0] == ">=" else ratio <= target[1]
            verdict = "met" if ok else "MISSED"
        out.append(
            f"ratio   {figure:<8} {ratio:>9.2f} {'ztcore / real core':<25} {goal:<15}  {verdict} "
            f"({fmt(ours.value)} vs {fmt(real.value)} {real.unit.replace(' (median)', '')}; "
            f"load {ours.load:.2f} / {real.load:.2f})"
        )
    return out


def command_line(args: argparse.Namespace) -> str:
    parts = ["python", "bench/bench_vs_libzt.py", "--seconds", f"{args.seconds:g}", "--runs", str(args.runs)]
    parts += ["--size", str(args.size)]
    parts += ["--pings", str(args.pings), "--ping-gap", f"{args.ping_gap:g}", "--udp-rate", f"{args.udp_rate:g}"]
    if args.only != "rtt,udp,tcp":
        parts += ["--only", args.only]
    return shlex.join(parts)


# -------------------------------------------------------------------------------------- main


def loud_exit(message: str, code: int = 2) -> int:
    bar = "!" * 78
    print(f"{bar}\nbench_vs_libzt: NOT RUN: {message}\n{bar}", file=sys.stderr, flush=True)
    return code


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=4.0, help="length of each UDP / TCP transfer (default 4)")
    p.add_argument(
        "--runs", type=int, default=3, help="rounds of echoes and transfers per pair, pairs taking turns (default 3)"
    )
    p.add_argument("--size", type=int, default=1400, help="UDP payload bytes per datagram (default 1400)")
    p.add_argument("--pings", type=int, default=20, help="ICMP echoes per pair and round (default 20)")
    p.add_argument(
        "--ping-gap", type=float, default=20.0, help="ms between echoes (default 20; 0: back to back, caches warm)"
    )
    p.add_argument("--udp-rate", type=float, default=0.0, help="pace UDP at this many Mbit/s (default 0: open loop)")
    p.add_argument("--only", default="rtt,udp,tcp", help="comma-separated subset of rtt,udp,tcp")
    p.add_argument("--max-seconds", type=float, default=240.0, help="give up (and clean up) after this long")
    args = p.parse_args(argv)
    kinds = set(args.only.split(","))
    if not kinds or kinds - {"rtt", "udp", "tcp"}:
        p.error("--only takes a comma-separated subset of rtt,udp,tcp")
    if (
        not 0 < args.seconds <= 60
        or not 16 <= args.size <= 2700
        or not 1 <= args.pings <= 1000
        or not 0 <= args.ping_gap <= 1000
        or not 1 <= args.runs <= 20
    ):
        p.error("--seconds 0..60, --size 16..2700, --pings 1..1000, --ping-gap 0..1000, --runs 1..20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        return loud_exit("network namespaces need root; run it as root")
    if shutil.which("ip") is None:
        return loud_exit("iproute2 `ip` command not found")
    t_start = time.monotonic()
    try:
        paths = build_harness()
    except Python39Missing as e:
        return loud_exit(f"CPython 3.9 (needed for the libzt wheels) is missing: {e}")
    except HarnessBuildError as e:
        return loud_exit(f"the libzt harness could not be built: {e}")
    cleanup_stale()

    def on_signal(signum: int, frame: object) -> None:
        raise Deadline(f"--max-seconds {args.max_seconds:g} reached" if signum == signal.SIGALRM else f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(max(1, int(args.max_seconds)))
    command = command_line(args)
    print(f"bench_vs_libzt: the real ZeroTier core (libzt {LIBZT_NODE_VERSION}, lwIP) vs ztcore (this tree)")
    print(f"command: {command}   (as root, from the repository root)")
    print(
        f"{platform.python_implementation()} {platform.python_version()} (ztcore nodes), libzt nodes on "
        f"{paths.python39.name}; {platform.machine()}, {os.cpu_count()} CPUs; {load_text()} at start"
    )
    kinds = args.only.split(",")
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="ztcore-bench-vs-libzt-") as tmp:
            with network(Path(tmp), paths, args.max_seconds) as world:
                paths_state = {pair: warm_up(world, pair) for pair in PAIRS}
                print(
                    f"network {world.nwid_hex} up after {time.monotonic() - t_start:.1f} s; paths A -> B: "
                    + ", ".join(f"{p} {s}" for p, s in paths_state.items())
                    + f"; ztcore TCP in this tree: {'yes' if ztcore_has_tcp() else 'no'}"
                )
                print(f"{'pair':<7} {'figure':<8} {'value':>9} {'unit':<25} {'load (1 min)':<12} detail")
                for kind in ("rtt", "udp", "tcp"):
                    if kind not in kinds:
                        continue
                    if kind == "rtt":
                        new = measure_rtt_rounds(world, args.pings, args.ping_gap, args.runs)
                    else:
                        new = measure_throughput(world, kind, args)
                    for r in new:
                        print_row(r)
                    rows += new
    except Deadline as e:
        return loud_exit(f"stopped: {e}; namespaces and processes removed", 3)
    except (BenchError, LibztError) as e:
        return loud_exit(f"a step failed: {e}", 1)
    finally:
        signal.alarm(0)
    for line in ratio_rows(rows):
        print(line)
    print(f"{load_text()} at end; {time.monotonic() - t_start:.0f} s in all; command: {command}")
    failed = [f"{r.pair} {r.figure}" for r in rows if r.value is None and not r.unit.startswith("n/a")]
    if failed:
        print(f"bench_vs_libzt: no figure for: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
