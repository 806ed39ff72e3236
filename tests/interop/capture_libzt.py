"""Capture real ZeroTier traffic of a libzt 1.8.4 node, for ztcore.scapy's known-answer tests.

Three hosts on a private bridge: a ztcore root (the planet's only root), a ztcore node
hosting the network controller, and a libzt node. A sniffer on the libzt host's
interface (an AF_PACKET socket, so no tcpdump is needed) records every UDP datagram
of ZeroTier while the libzt node comes online (its HELLO to the root), joins the
private network, is authorized, and sends an ICMP echo request and a UDP datagram
to the ztcore member over the virtual network (FRAMEs from the real core).

Written to the output directory: ``libzt.pcap`` (Ethernet link type), the three
throw-away identities with their secrets, and ``capture.json`` (addresses, network
id, virtual IPs and what was sent), which is all a reader needs to decrypt it.

Regenerate the committed copy (root, network namespaces, CPython 3.9 for libzt)::

    sudo python -m tests.interop.capture_libzt tests/data/libzt-capture
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .harness import Lan, LibztNode
from .harness.ztcore_node import ZtcoreNode
from .test_vl1_interop import make_planet_with_ztnode

ICMP_IDENT, ICMP_SEQ = 0x5A7C, 1
ICMP_PAYLOAD = b"ztcore.scapy known answer: ICMP from libzt"
UDP_PORT = 7777
UDP_PAYLOAD = b"ztcore.scapy known answer: UDP from libzt"
NETWORK_CONFIG: dict[str, Any] = {
    "name": "scapy-kat",
    "private": True,
    "ipAssignmentPools": [{"ipRangeStart": "10.121.9.10", "ipRangeEnd": "10.121.9.200"}],
    "routes": [{"target": "10.121.9.0/24", "via": None}],
    "v4AssignMode": {"zt": True},
    "v6AssignMode": {"zt": False, "rfc4193": False, "6plane": False},
}

# The sniffer, run inside the libzt host's namespace: AF_PACKET on one interface,
# ZeroTier's UDP (port 9993 at either end, IPv4 or IPv6) written as a pcap file.
SNIFFER = r"""
import signal, socket, struct, sys, time
iface, out = sys.argv[1], sys.argv[2]
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((iface, 0))
s.settimeout(0.1)
f = open(out, "wb")
f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
print("ready", flush=True)
def udp_ports(frame):
    et = struct.unpack_from("!H", frame, 12)[0]
    if et == 0x0800 and len(frame) >= 34 and frame[23] == 17:
        off = 14 + (frame[14] & 15) * 4
    elif et == 0x86DD and len(frame) >= 62 and frame[20] == 17:
        off = 54
    else:
        return ()
    return struct.unpack_from("!HH", frame, off) if len(frame) >= off + 4 else ()
while not stop:
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    if 9993 in udp_ports(frame):
        t = time.time()
        f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame)
        f.flush()
f.close()
"""


def ipv4_of(addrs: list[str]) -> str:
    for a in addrs:
        ip = ipaddress.ip_address(a.split("/")[0])
        if ip.version == 4:
            return str(ip)
    raise AssertionError(f"no IPv4 among {addrs}")


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def capture(out: Path, work: Path) -> dict[str, Any]:
    """Run the scenario and write the capture into `out`; returns capture.json's content."""
    out.mkdir(parents=True, exist_ok=True)
    pcap = out / "libzt.pcap"
    with Lan(n_hosts=3) as lan:
        root_h, ctl_h, lz_h = lan.hosts
        planet = make_planet_with_ztnode(work, work / "root", root_h.ip)
        root = ZtcoreNode(root_h, work / "root", 9993, planet=planet, bind=[root_h.ip], name="ztcore-root")
        ctl = ZtcoreNode(
            ctl_h, work / "ctl", 9993, planet=planet, bind=[ctl_h.ip], controller=True, api_port=9993,
            name="ztcore-ctl",
        )  # fmt: skip
        lz = LibztNode(lz_h, work / "lz", 9993, planet=planet, name="libzt")
        sniffer = lz_h.popen(
            [sys.executable, "-c", SNIFFER, lz_h.ifname, str(pcap)], stdout=subprocess.PIPE, text=True
        )
        nodes: list[LibztNode] = []
        try:
            assert sniffer.stdout is not None and sniffer.stdout.readline().strip() == "ready"
            for n in (root, ctl, lz):
                n.start()
                nodes.append(n)
            assert ctl.node_id is not None and lz.node_id is not None and root.node_id is not None
            status, net = ctl.api("POST", f"/controller/network/{ctl.node_id}______", NETWORK_CONFIG)
            assert status == 200, net
            nwid = int(net["id"], 16)
            ctl.join(nwid)
            for member in (ctl.node_id, lz.node_id):
                status, body = ctl.api(
                    "POST", f"/controller/network/{net['id']}/member/{member}", {"authorized": True}
                )
                assert status == 200 and body["authorized"] is True, body
            lz.join(nwid)
            ip_ctl = ipv4_of(ctl.wait_network_ok(nwid, timeout=30)["assignedAddresses"])
            lz_net = lz.wait_for(
                lambda: (
                    (n := lz.network(nwid))["status"] == "OK"
                    and n["transport_ready"]
                    and n.get("addrs")
                    and n
                ),
                40,
                "libzt on the network",
            )
            ip_lz = ipv4_of(lz_net["addrs"])
            fd_ctl = ctl.udp_bind(UDP_PORT, nwid=nwid)
            reply = wait_until(
                lambda: (
                    (
                        r := lz.icmp_echo(
                            ip_ctl, ident=ICMP_IDENT, seq=ICMP_SEQ, payload=ICMP_PAYLOAD, timeout=3
                        )
                    )["replied"]
                    and r
                ),
                30,
                "an ICMP echo reply from the ztcore member",
            )
            fd_lz = lz.udp_bind(0)
            lz.udp_sendto(fd_lz, ip_ctl, UDP_PORT, UDP_PAYLOAD)
            got = ctl.request("udp_recvfrom", fd=fd_ctl, timeout_s=10, timeout=20)
            time.sleep(1.0)
            meta = {
                "libzt": {"address": lz.node_id, "identity_file": "libzt.secret", "ip": ip_lz, "version": "1.8.4"},
                "root": {"address": root.node_id, "identity_file": "ztcore-root.secret", "lan_ip": root_h.ip},
                "controller": {"address": ctl.node_id, "identity_file": "ztcore-ctl.secret", "ip": ip_ctl},
                "libzt_lan_ip": lz_h.ip,
                "nwid": net["id"],
                "icmp": {"ident": ICMP_IDENT, "seq": ICMP_SEQ, "payload_hex": ICMP_PAYLOAD.hex(),
                         "method": reply.get("method")},
                "udp": {"port": UDP_PORT, "payload_hex": UDP_PAYLOAD.hex(), "received": got.get("data_hex")},
            }  # fmt: skip
            (out / "libzt.secret").write_text(lz.identity().strip() + "\n")
            for name, home in (("ztcore-root.secret", work / "root"), ("ztcore-ctl.secret", work / "ctl")):
                (out / name).write_text((home / "identity.secret").read_text().strip() + "\n")
        finally:
            if sniffer.poll() is None:
                sniffer.send_signal(signal.SIGTERM)
                try:
                    sniffer.wait(5)
                except subprocess.TimeoutExpired:
                    sniffer.kill()
            for n in reversed(nodes):
                n.stop()
    (out / "capture.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _pcap_ok(path: Path) -> int:
    data = path.read_bytes()
    assert struct.unpack_from("<I", data, 0)[0] == 0xA1B2C3D4, "not a pcap file"
    return len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory for libzt.pcap, identities and capture.json")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ztcore-capture-") as tmp:
        meta = capture(args.out, Path(tmp))
    print(json.dumps(meta, indent=2))
    print(f"{args.out / 'libzt.pcap'}: {_pcap_ok(args.out / 'libzt.pcap')} bytes")


if __name__ == "__main__":
    main()
