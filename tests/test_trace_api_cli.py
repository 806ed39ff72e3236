"""The trace routes of the local API and `ztnode trace`, against a live API server
(on 127.0.0.1, in a thread) over simulated nodes: a member whose drops and
rules traces go to the controller, the controller's collected traces, filters,
JSON lines, and bad requests."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_trace_sim import World  # noqa: E402
from ztcore.cli.main import main  # noqa: E402
from ztcore.cli.trace import deciding_rule_index, render_rule  # noqa: E402
from ztcore.identity import Identity  # noqa: E402
from ztcore.runtime.api_glue import NodeServiceApi  # noqa: E402
from ztcore.runtime.http_api import HttpApiServer  # noqa: E402
from ztcore.tracing import OutgoingNetworkFrameDropped, TraceLevel  # noqa: E402
from ztcore.vl2.rules import rules_from_json  # noqa: E402

TOKEN = "trace-test-token"


class ApiThread:
    """An HttpApiServer on 127.0.0.1 (free port) in its own event loop thread."""

    def __init__(self, node: Any, backend: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = HttpApiServer(node, backend, TOKEN, 0, hosts=("127.0.0.1",))
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        assert self.server.port
        self.port = self.server.port

    def call_soon(self, delay: float, fn: Any) -> None:
        self.loop.call_soon_threadsafe(lambda: self.loop.call_later(delay, fn))

    def get(self, path: str) -> tuple[int, Any, dict[str, str]]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers={"X-ZT1-Auth": TOKEN})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read()), dict(resp.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), dict(e.headers)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return [Identity.generate() for _ in range(5)]


@pytest.fixture
def traced(identities: list[Identity], tmp_path: Path) -> Iterator[SimpleNamespace]:
    w = World(identities, tmp_path, remoteTraceLevel=int(TraceLevel.RULES))
    ctl_addr = f"{int(w.ctl.node.address):010x}"
    w.backend.post_network(w.nw["id"], {"remoteTraceTarget": ctl_addr})
    w.join(w.a, w.b)
    w.backend.post_member(w.nw["id"], str(w.a.node.address), {"name": "alice"})
    # The rules engine traces the drop (2006, with its rule log) and the node reports the
    # dropped frame (2000), both sent to the controller as the network asks.
    assert not w.send(w.a, w.b, 6000)
    assert w.net.run_until(lambda: len(w.stored()) == 2, 5_000)
    member_api = ApiThread(NodeServiceApi(SimpleNamespace(node=w.a.node)), None)  # type: ignore[arg-type]
    ctl_api = ApiThread(NodeServiceApi(SimpleNamespace(node=w.ctl.node)), w.backend)  # type: ignore[arg-type]
    try:
        yield SimpleNamespace(w=w, member=member_api, ctl=ctl_api)
    finally:
        member_api.close()
        ctl_api.close()


def _run(port: int, *args: str) -> Any:
    result = CliRunner().invoke(main, ["trace", "-p", str(port), "-T", TOKEN, *args])
    return result


def test_node_route_serves_the_ring_buffer(traced: SimpleNamespace) -> None:
    status, events, _ = traced.member.get("/trace")
    assert status == 200 and isinstance(events, list) and events
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    drops = [e for e in events if e["event"] == "2000"]
    assert drops and drops[0]["reason"] == "filter blocked" and drops[0]["network"] == f"{traced.w.nwid:016x}"
    assert any(e["event"] == "2006" for e in events)
    status, later, _ = traced.member.get(f"/trace?after={seqs[-2]}")
    assert [e["seq"] for e in later] == [seqs[-1]]
    assert traced.member.get("/trace?limit=1")[1][0]["seq"] == seqs[0]


def test_controller_route_serves_collected_traces(traced: SimpleNamespace) -> None:
    w = traced.w
    a = str(w.a.node.address)
    status, recs, headers = traced.ctl.get(f"/controller/network/{w.nwid:016x}/trace")
    assert status == 200 and [r["event"] for r in recs] == ["2006", "2000"]
    assert all(r["objtype"] == "trace" and r["nodeId"] == a for r in recs)
    assert int(headers["X-ZT-Trace-Seq"]) >= 2
    assert traced.ctl.get(f"/controller/network/{w.nwid:016x}/trace?node={w.b.node.address}")[1] == []
    assert len(traced.ctl.get(f"/controller/network/{w.nwid:016x}/trace?since={recs[1]['ts']}")[1]) >= 1
    after = traced.ctl.get(f"/controller/network/{w.nwid:016x}/trace?after={headers['X-ZT-Trace-Seq']}")[1]
    assert after == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/controller/network/{nwid}/trace?after=x", 400),
        ("/controller/network/{nwid}/trace?limit=-1", 400),
        ("/controller/network/{nwid}/trace?node=nothex", 400),
        ("/controller/network/{other}/trace", 404),
        ("/controller/network/zz/trace", 400),
    ],
)
def test_bad_trace_requests_get_clear_errors(traced: SimpleNamespace, path: str, status: int) -> None:
    nwid = f"{traced.w.nwid:016x}"
    other = f"{traced.w.nwid + 1:016x}"
    got, body, _ = traced.ctl.get(path.format(nwid=nwid, other=other))
    assert got == status and isinstance(body.get("error"), str)


def test_controller_route_needs_a_controller(traced: SimpleNamespace) -> None:
    got, body, _ = traced.member.get(f"/controller/network/{traced.w.nwid:016x}/trace")
    assert got == 404 and "controller" in body["error"]


def test_cli_prints_one_line_per_controller_trace(traced: SimpleNamespace) -> None:
    w = traced.w
    r = _run(traced.ctl.port, "-c", f"{w.nwid:016x}")
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 2
    rules, drop = lines
    a = str(w.a.node.address)
    assert f"{w.nwid:016x}" in drop and f"by {a}(alice)" in drop and "DROP" in drop and "(filter blocked)" in drop
    # The rules trace: addresses, Scapy's one-line summary, verdict and the deciding rule.
    assert f"{a}(alice) -> {w.b.node.address}" in rules
    assert "Ether / IP / UDP" in rules and ":6000" in rules
    assert "DROP" in rules and "by rule 2 of base rules: `drop ipprotocol udp and dport 6000`" in rules


def test_cli_json_lines_and_filters(traced: SimpleNamespace) -> None:
    w = traced.w
    r = _run(traced.ctl.port, "-c", f"{w.nwid:016x}", "-j")
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.output.splitlines()]
    assert [x["event"] for x in recs] == ["2006", "2000"] and all(x["objtype"] == "trace" for x in recs)
    r = _run(traced.ctl.port, "-c", f"{w.nwid:016x}", "-j", "--member", str(w.b.node.address))
    assert r.exit_code == 0 and r.output.strip().splitlines() != [] and all(
        json.loads(x).get("destZtAddr", "").endswith(str(w.b.node.address)) for x in r.output.splitlines()
    )
    r = _run(traced.member.port, "-j", "--verdict", "drop")
    assert r.exit_code == 0, r.output
    evs = [json.loads(line) for line in r.output.splitlines()]
    assert evs and {e["event"] for e in evs} <= {"2000", "2001", "2002", "2006"}
    r = _run(traced.member.port, "--verdict", "accept")
    assert r.exit_code == 0 and r.output == ""
    r = _run(traced.member.port, "--network", f"{w.nwid + 1:016x}")
    assert r.exit_code == 0 and r.output == ""


def test_cli_follows_until_count(traced: SimpleNamespace) -> None:
    w = traced.w

    def late_drop() -> None:
        w.a.node.tracer.record(w.net.now, OutgoingNetworkFrameDropped(w.net.now, network=w.nwid, reason="late one"))

    status, events, _ = traced.member.get("/trace")
    before = len(events)
    traced.member.call_soon(0.5, late_drop)
    r = _run(traced.member.port, "-f", "--count", str(before + 1), "--interval", "0.1", "--seconds", "20", "-j")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert len(lines) == before + 1
    assert json.loads(lines[-1])["reason"] == "late one"


def test_cli_stops_after_seconds(traced: SimpleNamespace) -> None:
    r = _run(traced.member.port, "-f", "--seconds", "0.3", "--interval", "0.1", "--verdict", "accept")
    assert r.exit_code == 0 and r.output == ""


def test_cli_bad_arguments_are_usage_errors(traced: SimpleNamespace) -> None:
    assert _run(traced.member.port, "-c", "xyz").exit_code == 2
    assert _run(traced.member.port, "--member", "123").exit_code == 2
    assert _run(traced.member.port, "--verdict", "maybe").exit_code == 2
    r = _run(traced.member.port, "-c", f"{traced.w.nwid:016x}")
    assert r.exit_code == 1 and "controller" in r.output


def test_deciding_rule_from_the_log() -> None:
    rules = rules_from_json(
        [
            {"type": "MATCH_ETHERTYPE", "not": True, "or": False, "etherType": 2048},
            {"type": "ACTION_DROP"},
            {"type": "MATCH_IP_PROTOCOL", "not": False, "or": False, "ipProtocol": 17},
            {"type": "ACTION_DROP"},
            {"type": "ACTION_ACCEPT"},
        ]
    )
    # rule 0 matched (its set too): the drop at 1 decided.
    assert deciding_rule_index(rules, bytes([0x0A])) == 1
    # rule 0 did not match, rule 2 did: the drop at 3 decided.
    assert deciding_rule_index(rules, bytes([0x05, 0x0A])) == 3
    # neither matched: the accept at 4 (no matches before it) decided.
    assert deciding_rule_index(rules, bytes([0x05, 0x05])) == 4
    # the table runs out, or the log does not fit the rules.
    assert deciding_rule_index(rules[:3], bytes([0x05, 0x05])) is None
    assert deciding_rule_index(rules, bytes(512)) is None
    tee_first = rules_from_json([{"type": "ACTION_TEE", "address": "aaaaaaaaaa", "flags": 0, "length": 0}, {"type": "ACTION_ACCEPT"}])
    assert deciding_rule_index(tee_first, b"") == 1
    assert render_rule(rules, 3) == "`drop ipprotocol udp`"  # the statement, in the rules language
    assert render_rule(rules, 1) == "`drop not ethertype ipv4`"
