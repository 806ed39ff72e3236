"""`ztnode rules test`: the rules emulator from the command line (JSON files, a
running node's controller, Scapy text, hex and pcap frames, safe parsing)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cli_client import make_root_home, start_node, stop_node, ztnode  # noqa: E402

A, B = "1111111111", "2222222222"
SSH = "IP(src='10.0.0.1', dst='10.0.0.2')/TCP(sport=40000, dport=22, flags='S')"
WEB = "IP(src='10.0.0.1', dst='10.0.0.2')/TCP(sport=40000, dport=80, flags='S')"

NETWORK = {
    "id": "8056c2e21c000001",
    "rules": [
        {"type": "MATCH_ETHERTYPE", "etherType": 2048, "not": True, "or": False},
        {"type": "ACTION_ACCEPT"},
        {"type": "MATCH_TAGS_DIFFERENCE", "id": 100, "value": 0, "not": False, "or": False},
        {"type": "ACTION_ACCEPT"},
    ],
    "capabilities": [
        {
            "id": 7,
            "rules": [
                {"type": "MATCH_IP_PROTOCOL", "ipProtocol": 6, "not": False, "or": False},
                {"type": "MATCH_IP_DEST_PORT_RANGE", "start": 22, "end": 22, "not": False, "or": False},
                {"type": "ACTION_ACCEPT"},
            ],
        }
    ],
    "tags": [{"id": 100, "default": 0}],
    "tagsByName": {"department": {"id": 100, "enums": {"eng": 1, "sales": 2}}},
    "capabilitiesByName": {"ssh": {"id": 7}},
}


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    out = {"net": tmp_path / "net.json", "a": tmp_path / "a.json", "b": tmp_path / "b.json"}
    out["net"].write_text(json.dumps(NETWORK))
    out["a"].write_text(json.dumps({"address": A, "tags": [[100, 1]], "capabilities": [7]}))
    out["b"].write_text(json.dumps({"address": B, "tags": [[100, 2]], "capabilities": []}))
    return out


def _run_json(*args: str) -> dict:
    r = ztnode("rules", "test", "-j", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_capability_lets_ssh_through_both_ways(files: dict[str, Path]) -> None:
    out = _run_json(
        "--network-json",
        str(files["net"]),
        "--from",
        A,
        "--to",
        B,
        "--from-json",
        str(files["a"]),
        "--to-json",
        str(files["b"]),
        SSH,
    )
    assert out["delivered"] is True
    outbound, inbound = out["evaluations"]
    assert (outbound["direction"], inbound["direction"]) == ("outbound", "inbound")
    assert outbound["deciding"] == {
        "capability": 7,
        "index": 2,
        "rule": {"type": "ACTION_ACCEPT"},
        "source": "accept ipprotocol tcp and dport 22",  # the whole statement, in the rules language
    }
    assert inbound["verdict"] == "ACCEPT" and inbound["deciding"]["capability"] == 7
    # Per-rule log: the tag rule was evaluated and did not match (departments 1 and 2).
    assert inbound["rules"][2] == {
        "index": 2,
        "rule": {"type": "MATCH_TAGS_DIFFERENCE", "id": 100, "value": 0, "not": False, "or": False},
        "setBefore": True,
        "matched": False,
    }
    assert [r["matched"] for r in inbound["capability"]["rules"]] == [True, True, None]


def test_other_port_is_dropped_and_same_department_passes(files: dict[str, Path]) -> None:
    out = _run_json(
        "--network-json",
        str(files["net"]),
        "--from",
        A,
        "--to",
        B,
        "--from-json",
        str(files["a"]),
        "--to-json",
        str(files["b"]),
        WEB,
    )
    assert out["delivered"] is False
    assert [e["verdict"] for e in out["evaluations"]] == ["NO_MATCH", "NO_MATCH"]
    out = _run_json(
        "--network-json",
        str(files["net"]),
        "--from",
        A,
        "--to",
        B,
        "--from-tag",
        "department=eng",
        "--to-tag",
        "department=eng",
        WEB,
    )
    assert out["delivered"] is True and out["evaluations"][1]["deciding"]["index"] == 3


def test_outbound_is_lenient_when_the_receivers_tags_are_unknown(files: dict[str, Path]) -> None:
    args = [
        "--network-json",
        str(files["net"]),
        "--from",
        A,
        "--to",
        B,
        "--from-tag",
        "100=1",
        "--to-tag",
        "100=2",
        "--direction",
        "out",
        WEB,
    ]
    assert _run_json(*args)["evaluations"][0]["verdict"] == "NO_MATCH"
    lenient = _run_json("--sender-lacks-receiver-tags", *args)
    assert lenient["evaluations"][0]["verdict"] == "ACCEPT" and lenient["delivered"] is True


def test_hex_and_pcap_frames(files: dict[str, Path], tmp_path: Path) -> None:
    from scapy.all import IP, TCP, Ether, wrpcap

    pkt = (
        Ether(src="02:11:11:11:11:11", dst="02:22:22:22:22:22")
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / TCP(dport=22)
    )
    common = ["--network-json", str(files["net"]), "--from", A, "--to", B, "--from-cap", "ssh"]
    out = _run_json(*common, "--hex", bytes(pkt).hex())
    assert out["delivered"] is True and out["frame"]["sourceMac"] == "02:11:11:11:11:11"
    pcap = tmp_path / "f.pcap"
    wrpcap(str(pcap), [Ether() / IP() / TCP(dport=80), pkt])
    assert _run_json(*common, "--pcap", str(pcap), "--record", "1")["delivered"] is True
    r = ztnode("rules", "test", *common, "--pcap", str(pcap), "--record", "5")
    assert r.exit_code == 2 and "no record 5" in r.output


def test_plain_output_names_the_deciding_rule(files: dict[str, Path]) -> None:
    r = ztnode(
        "rules",
        "test",
        "--network-json",
        str(files["net"]),
        "--from",
        A,
        "--to",
        B,
        "--from-json",
        str(files["a"]),
        "--to-json",
        str(files["b"]),
        SSH,
    )
    assert r.exit_code == 0, r.output
    flat = " ".join(r.output.split())  # the console wraps long lines
    assert "capability 7 rule 2: `accept ipprotocol tcp and dport 22`" in flat and "DELIVERED" in r.output
    assert "tdiff 100 0" in r.output  # the per-rule table, in the rules language too


@pytest.mark.parametrize(
    "args, message",
    [
        ([SSH, "--hex", "00"], "give the frame once"),
        (["__import__('os').system('true')"], "expected Layer"),
        (["eval('1')"], "unsupported layer"),
        (["IP(src=open('/etc/passwd').read())"], "only literal values"),
        (["IP(ttl=999)"], "cannot build the frame"),
        (["--hex", "zz"], "not hex"),
    ],
)
def test_bad_frames_are_usage_errors(files: dict[str, Path], args: list[str], message: str) -> None:
    r = ztnode("rules", "test", "--network-json", str(files["net"]), "--from", A, "--to", B, *args)
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_bad_addresses_and_sources(files: dict[str, Path], tmp_path: Path) -> None:
    r = ztnode("rules", "test", "--network-json", str(files["net"]), "--from", "xyz", "--to", B, SSH)
    assert r.exit_code == 2 and "10-hex-digit" in r.output
    r = ztnode("rules", "test", "--from", A, "--to", B, SSH)
    assert r.exit_code == 2 and "give the network once" in r.output
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    r = ztnode("rules", "test", "--network-json", str(broken), "--from", A, "--to", B, SSH)
    assert r.exit_code == 2 and "not JSON" in r.output
    r = ztnode(
        "rules",
        "test",
        "--network-json",
        str(files["net"]),
        "--from",
        A,
        "--to",
        B,
        "--from-tag",
        "nonsense",
        SSH,
    )
    assert r.exit_code == 2 and "ID=VALUE" in r.output


def test_network_from_a_running_controller(tmp_path: Path) -> None:
    home, planet, port = make_root_home(tmp_path)
    node = start_node(home, planet, port=port)
    try:
        body = {k: v for k, v in NETWORK.items() if k in ("rules", "capabilities", "tags")}
        status, nw = node.api("POST", f"/controller/network/{node.address}______", body)
        assert status == 200, nw
        status, _ = node.api(
            "POST", f"/controller/network/{nw['id']}/member/{A}", {"tags": [[100, 1]], "capabilities": [7]}
        )
        assert status == 200
        status, _ = node.api("POST", f"/controller/network/{nw['id']}/member/{B}", {"tags": [[100, 1]]})
        assert status == 200
        out = _run_json("--home", str(home), "--network", nw["id"], "--from", A, "--to", B, WEB)
        assert out["delivered"] is True  # same department from the member records
        assert out["evaluations"][0]["deciding"] == {
            "capability": None,
            "index": 3,
            "rule": {"type": "ACTION_ACCEPT"},
            "source": "accept tdiff 100 0",
        }
        # The MACs are the members' MACs on that network.
        from ztcore.vl2.mac import MAC

        assert out["frame"]["sourceMac"] == str(MAC.from_address(int(A, 16), int(nw["id"], 16)))
        r = ztnode(
            "rules", "test", "--home", str(home), "--network", "ffffffffffffffff", "--from", A, "--to", B, WEB
        )
        assert r.exit_code == 1 and "404" in r.output
    finally:
        stop_node(node)


def test_multicast_has_no_single_recipient_outbound(tmp_path: Path) -> None:
    net = {
        "rules": [
            {"type": "MATCH_DEST_ZEROTIER_ADDRESS", "zt": B, "not": False, "or": False},
            {"type": "ACTION_DROP"},
            {"type": "ACTION_ACCEPT"},
        ]
    }
    path = tmp_path / "n.json"
    path.write_text(json.dumps(net))
    out = _run_json(
        "--network-json",
        str(path),
        "--from",
        A,
        "--to",
        B,
        "Ether(dst='01:00:5e:00:00:fb')/IP(src='10.0.0.1', dst='224.0.0.251')/UDP(dport=5353)",
    )
    outbound, inbound = out["evaluations"]
    assert (
        outbound["verdict"] == "ACCEPT" and outbound["deciding"]["index"] == 2
    )  # ztDest 0 out of the sender
    assert inbound["verdict"] == "DROP" and inbound["deciding"]["index"] == 1  # the receiver is B
    assert out["delivered"] is False
