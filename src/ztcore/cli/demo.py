"""`ztnode demo`: a complete, offline ZeroTier world in one process.

Creates a throw-away planet whose only root is an in-process ztcore node on
loopback, starts N leaf nodes beside it, waits for them to come online, has
every pair exchange USER_MESSAGE ping/pong (first relayed by the root, which
introduces them with RENDEZVOUS; then directly), and prints each node's peers.
Then a controller node creates a private network; the leaves join, are
authorized, get IPv4 and IPv6 addresses, and ping every pair with ICMP and
ICMPv6 through their userspace responders.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.console import Console

from ztcore.api import Event, EventType, UserMessage
from ztcore.cli.tables import Col, print_table
from ztcore.identity import Identity
from ztcore.runtime import NodeService, Runtime
from ztcore.runtime.offline import identity_state, start_controller, start_offline_root, wait_until
from ztcore.vl1.world import World

PING = 0x5A7C0DE000000001  # user message type ids used by the demo
PONG = 0x5A7C0DE000000002


@dataclass
class _Pinger:
    """Answers PINGs with PONGs and records round trips for PINGs it sent."""

    service: NodeService
    sent: dict[int, float] = field(default_factory=dict)
    rtts: dict[tuple[int, int], float] = field(default_factory=dict)  # (peer, round) -> ms

    def on_event(self, event: Event) -> None:
        if event.type != EventType.USER_MESSAGE:
            return
        msg: UserMessage = event.data
        source, data = int(msg.source), msg.data
        if msg.type_id == PING:
            self.service.send_user_message(source, PONG, data)
        elif msg.type_id == PONG and len(data) >= 8:
            (token,) = struct.unpack_from(">Q", data)
            started = self.sent.pop(token, None)
            if started is not None:
                self.rtts[(source, data[8])] = (time.monotonic() - started) * 1000

    def ping(self, dest: int, round_no: int) -> None:
        token = secrets.randbits(64)
        self.sent[token] = time.monotonic()
        self.service.send_user_message(dest, PING, struct.pack(">QB", token, round_no))


async def run_demo(n: int, console: Console, timeout: float = 20.0) -> int:
    t0 = time.monotonic()
    console.print(f"[bold]ztcore demo[/]: an offline planet with one root and {n} nodes on 127.0.0.1")
    # Identities first, timed on their own: generating one is deliberately costly
    # (the memory-hard hashcash), and it is not time spent coming online.
    identities = [Identity.generate() for _ in range(n)]
    console.print(f"  {n} node identities generated in {time.monotonic() - t0:.2f} s")
    async with Runtime() as runtime:
        planet, root = await start_offline_root(runtime)
        console.print(f"  planet {planet.id:016x}: root {root.address_hex} at 127.0.0.1/{root.primary_port}")
        leaves: list[NodeService] = []
        pingers: list[_Pinger] = []
        t_start = time.monotonic()
        for identity in identities:
            svc = NodeService(
                identity_state(identity), port=0, bind=["127.0.0.1"], planet=planet, allow_loopback=True
            )
            pinger = _Pinger(svc)
            svc.add_event_listener(pinger.on_event)
            await svc.start()
            runtime.services.append(svc)
            leaves.append(svc)
            pingers.append(pinger)
            console.print(f"  node {svc.address_hex} listening on 127.0.0.1/{svc.primary_port}")

        with console.status("waiting for nodes to come online through the root..."):
            online = await wait_until(lambda: all(s.node.online for s in leaves), timeout)
        if not online:
            console.print("[red]not every node came online[/]")
            return 1
        console.print(f"  all {n} nodes online {time.monotonic() - t_start:.2f} s after starting")

        pairs = list(itertools.permutations(range(n), 2))
        relayed_before = root.node.switch.stats["relayed"]
        for round_no in (1, 2):
            with console.status(f"round {round_no}: ping/pong between every pair..."):
                for i, j in pairs:
                    pingers[i].ping(int(leaves[j].address), round_no)
                done = await wait_until(
                    lambda r=round_no: all((int(leaves[j].address), r) in pingers[i].rtts for i, j in pairs),
                    timeout,
                )
            if not done:
                console.print(f"[red]round {round_no}: some pings got no pong[/]")
                return 1
            relayed = root.node.switch.stats["relayed"] - relayed_before
            relayed_before = root.node.switch.stats["relayed"]
            note = "relayed by the root, which sent RENDEZVOUS" if round_no == 1 else "direct"
            console.print(
                f"  round {round_no}: {len(pairs)} ping/pongs answered ({note}; root relayed {relayed} packets)"
            )
            if round_no == 1:
                await wait_until(
                    lambda: all(
                        (p := s.node.peer(int(o.address))) is not None and p.direct
                        for s in leaves
                        for o in leaves
                        if o is not s
                    ),
                    timeout,
                )
        if relayed != 0:
            console.print("[red]second round still went through the root[/]")
            return 1

        peer_cols = [Col("peer"), Col("role"), Col("version", 2), Col("latency", 3), Col("path"), Col("link")]
        peer_cols.append(Col("rtt", 1))
        for svc, pinger in zip(leaves, pingers, strict=True):
            rows = []
            for p in svc.node.peers():
                best = next((x for x in p.paths if x.preferred), None)
                rtt = pinger.rtts.get((int(p.address), 2))
                rows.append(
                    [
                        str(p.address),
                        p.role,
                        p.version,
                        f"{p.latency} ms" if p.latency >= 0 else "-",
                        best.address if best else "-",
                        "direct" if p.direct else "relayed",
                        f"{rtt:.1f} ms" if rtt is not None else "-",
                    ]
                )
            print_table(console, f"peers of {svc.address_hex}", peer_cols, rows)
        all_direct = all(p.direct for s in leaves for p in s.node.peers() if p.role == "LEAF")
        console.print(
            f"  VL1: {len(pairs) * 2} ping/pongs, all leaf pairs {'direct' if all_direct else 'NOT all direct'}"
        )
        if not all_direct:
            return 1
        with tempfile.TemporaryDirectory(prefix="ztcore-demo-") as tmp:
            code = await _virtual_network(runtime, planet, leaves, Path(tmp), console, timeout)
        console.print(
            f"[bold green]done[/] in {time.monotonic() - t0:.2f} s" if code == 0 else "[red]failed[/]"
        )
        return code


async def _virtual_network(
    runtime: Runtime, planet: World, leaves: list[NodeService], tmp: Path, console: Console, timeout: float
) -> int:
    """A controller with a private network; the leaves join, get authorized, and ping each other (ICMP)."""
    ctl, backend = await start_controller(runtime, planet, tmp)
    network = backend.create_network(
        {
            "name": "ztcore-demo",
            "private": True,
            "ipAssignmentPools": [{"ipRangeStart": "10.147.17.1", "ipRangeEnd": "10.147.17.254"}],
            "routes": [{"target": "10.147.17.0/24"}],
            "v4AssignMode": {"zt": True},
            "v6AssignMode": {"zt": False, "6plane": False, "rfc4193": True},
        }
    )
    nwid = int(network["id"], 16)
    console.print(
        f"  controller {ctl.address_hex} created private network {network['id']} ({network['name']})"
    )
    for svc in leaves:
        svc.join(nwid)

    def status(svc: NodeService) -> str:
        info = svc.node.network(nwid)
        return str(info["status"]) if info else "-"

    with console.status("members asking the controller for a config..."):
        ok = await wait_until(lambda: all(status(s) == "ACCESS_DENIED" for s in leaves), timeout)
    if not ok:
        console.print(f"[red]members did not reach the controller: {[status(s) for s in leaves]}[/]")
        return 1
    console.print(f"  {len(leaves)} members denied until authorized; authorizing them")
    for svc in leaves:
        backend.post_member(network["id"], svc.address_hex, {"authorized": True})

    def addresses(svc: NodeService) -> tuple[str, str]:
        info = svc.node.network(nwid) or {}
        v4 = [a for a in info.get("assignedAddresses", []) if ":" not in a]
        v6 = [a for a in info.get("assignedAddresses", []) if ":" in a]
        return (v4[0] if v4 else "", v6[0] if v6 else "")

    with console.status("waiting for configs..."):
        ok = await wait_until(lambda: all(status(s) == "OK" and all(addresses(s)) for s in leaves), timeout)
    if not ok:
        console.print(f"[red]not every member got its config: {[status(s) for s in leaves]}[/]")
        return 1
    rows = [[svc.address_hex, status(svc), *addresses(svc)] for svc in leaves]
    cols = [Col("node"), Col("status", 1), Col("IPv4"), Col("IPv6 (RFC4193)")]
    print_table(console, f"members of {network['id']}", cols, rows)

    results: dict[tuple[str, str], object] = {}
    loop_now = leaves[0].clock
    for i, j in itertools.permutations(range(len(leaves)), 2):
        src, dst = leaves[i], leaves[j]
        responder = src.responder(nwid)
        for col, addr in enumerate(addresses(dst)):
            ip = addr.split("/")[0]
            handle = responder.ping(ip, loop_now(), timeout=int(timeout * 1000))
            results[(src.address_hex, dst.address_hex, col)] = handle  # type: ignore[index]
    with console.status("ICMP echo between every pair over the virtual network..."):
        await wait_until(lambda: all(h.done for h in results.values()), timeout)  # type: ignore[attr-defined]
    rows = []
    failures = 0
    for i, j in itertools.permutations(range(len(leaves)), 2):
        a, b = leaves[i].address_hex, leaves[j].address_hex
        cells = []
        for col in (0, 1):
            h = results[(a, b, col)]  # type: ignore[index]
            if h.reply_time is not None:  # type: ignore[attr-defined]
                cells.append(f"{h.reply_time} ms")  # type: ignore[attr-defined]
            else:
                failures += 1
                cells.append(f"[red]{h.error or 'no reply'}[/]")  # type: ignore[attr-defined]
        rows.append([a, b, *cells])
    cols = [Col("from"), Col("to"), Col("IPv4 rtt"), Col("IPv6 rtt")]
    print_table(console, "ping over the virtual network (ICMP / ICMPv6)", cols, rows)
    total = len(results)
    console.print(f"  VL2: {total - failures}/{total} pings answered over network {network['id']}")
    return 0 if failures == 0 else 1


@click.command("demo")
@click.option(
    "-n", "--nodes", "n", default=3, show_default=True, type=click.IntRange(2, 50), help="leaf nodes"
)
@click.option("--timeout", default=20.0, show_default=True, type=float, help="seconds to wait for each step")
def demo(n: int, timeout: float) -> None:
    """Run an offline ZeroTier world (own planet, root, N nodes) and show it working."""
    console = Console()
    sys.exit(asyncio.run(run_demo(n, console, timeout)))
