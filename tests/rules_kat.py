"""Known-answer table for the rules engine.

Every expectation below was worked out by hand from the real core's code
(ZeroTierOne 1.14.1 node/Network.cpp: _doZtFilter, filterOutgoingPacket,
filterIncomingPacket), not by running ztcore; each case says which code path
makes it so. Directions: "out" = this node (ME) sends to PEER, "in" = PEER sends
to ME. Verdicts are the final outcome (NO_MATCH means nothing accepted: dropped).
``deciding`` is the index of the deciding action, or (capability id, index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ztcore.vl2.rules import Rule, RuleType

R = Rule
ME = 0x1111111111
PEER = 0x2222222222
OTHER = 0x3333333333
ME_MAC = 0x021111111101
PEER_MAC = 0x022222222201
A = R.action_accept()
D = R.action_drop()
BRK = R.action_break()

# Scapy-style frames (parsed with ztcore.vl2.rules.frametext.parse_frame_text).
FRAMES: dict[str, str] = {
    "arp": "Ether(dst='ff:ff:ff:ff:ff:ff')/ARP(op=1, hwsrc='02:22:22:22:22:01', psrc='10.1.0.1', pdst='10.1.0.2')",
    "icmp4": "IP(src='10.1.0.1', dst='10.1.0.2', tos=0x10, ttl=64)/ICMP(type=8, code=0)",
    "icmp4_unreach": "IP(src='10.1.0.1', dst='10.1.0.2')/ICMP(type=3, code=1)",
    "tcp22": "IP(src='10.1.0.1', dst='10.1.0.2', ttl=64)/TCP(sport=40000, dport=22, flags='S')",
    "tcp80": "IP(src='10.1.0.1', dst='10.1.0.2')/TCP(sport=40001, dport=80, flags='PA')",
    "udp53": "IP(src='10.1.0.1', dst='10.1.0.2')/UDP(sport=5353, dport=53)",
    "udp0": "IP(src='10.1.0.1', dst='10.1.0.2')/UDP(sport=0, dport=0)",
    "tcp_short": "IP(src='10.1.0.1', dst='10.1.0.2', proto=6)/Raw(b'\\x00\\x16\\x00\\x16')",
    "proto58_v4": "IP(src='10.1.0.1', dst='10.1.0.2', proto=58)/Raw(b'\\x80\\x00\\x00\\x00')",
    "icmp6": "IPv6(src='fd00::1', dst='fd00::2')/ICMPv6EchoRequest()",
    "tcp6_22": "IPv6(src='fd00::1', dst='fd00::2', tc=0x20)/TCP(sport=40000, dport=22, flags='SA')",
    "udp6_0": "IPv6(src='fd00::1', dst='fd00::2')/UDP(sport=0, dport=0)",
    "udp6_hbh": "IPv6(src='fd00::1', dst='fd00::2')/IPv6ExtHdrHopByHop()/UDP(sport=1000, dport=2000)",
    "udp6_frag": "IPv6(src='fd00::1', dst='fd00::2')/IPv6ExtHdrFragment()/UDP(sport=1000, dport=2000)",
    "ns6": "Ether(dst='33:33:ff:00:00:02')/IPv6(src='fe80::1', dst='ff02::1:ff00:2')/ICMPv6ND_NS(tgt='fd00::2')",
    "na6": "IPv6(src='fe80::2', dst='fe80::1')/ICMPv6ND_NA(tgt='fd00::2')",
    "ipx": "Ether(type=0x8137)/Raw(b'x' * 30)",
    "bcast_udp": "Ether(dst='ff:ff:ff:ff:ff:ff')/IP(src='10.1.0.1', dst='10.1.255.255')/UDP(sport=68, dport=67)",
    "mcast_udp": "Ether(dst='01:00:5e:00:00:fb')/IP(src='10.1.0.1', dst='224.0.0.251')/UDP(sport=5353, dport=5353)",
    "short_ip": "Ether(type=0x0800)/Raw(b'\\x45' * 10)",
    "vlan5": "Ether()/Dot1Q(vlan=5)/IP(src='10.1.0.1', dst='10.1.0.2')/UDP(sport=1, dport=2)",
}


@dataclass
class Case:
    name: str
    rules: list[Rule]
    frame: str
    direction: str  # "in" or "out"
    verdict: str
    deciding: Any = None  # int, (cap id, int) or None
    why: str = ""
    local_tags: dict[int, int] = field(default_factory=dict)
    remote_tags: dict[int, int] | None = field(default_factory=dict)
    caps: list[tuple[int, list[Rule]]] = field(default_factory=list)
    owned_ips: list[str] = field(default_factory=list)
    owned_macs: list[int] = field(default_factory=list)
    ndp_prefixes: list[tuple[str, int]] = field(default_factory=list)
    unsupported: bool = False
    rng: int = 0
    source: int | None = None  # ZeroTier source override
    dest: int | None = None  # ZeroTier destination override
    no_tee: bool = False
    copies: list[tuple[str, int, int, int]] | None = (
        None  # (action, address, flags, length); None: not checked
    )
    qos: int | None | str = "unchecked"


CASES: list[Case] = []


def K(*args: Any, **kw: Any) -> None:
    CASES.append(Case(*args, **kw))


# ------------------------------------------------------------------ actions
K("empty table", [], "tcp22", "out", "NO_MATCH", None, "loop never runs: DOZTFILTER_NO_MATCH, no caps")
K("accept all", [A], "tcp22", "out", "ACCEPT", 0, "set starts true; ACTION_ACCEPT returns ACCEPT")
K("accept all inbound", [A], "arp", "in", "ACCEPT", 0, "same path inbound")
K("drop all", [D], "tcp22", "out", "DROP", 0, "ACTION_DROP with skipDrop 0 returns DROP")
K("drop then accept", [D, A], "udp53", "in", "DROP", 0, "first action taken")
K("break", [BRK, A], "tcp22", "out", "NO_MATCH", None, "ACTION_BREAK returns NO_MATCH; no capabilities")
K("priority", [R.action_priority(2), D], "tcp22", "out", "ACCEPT", 0, "PRIORITY: qosBucket=2, ACCEPT", qos=2)
K("priority clamp", [R.action_priority(9)], "tcp22", "out", "ACCEPT", 0, "qosBucket>8 -> 4", qos=4)
K("priority 8 kept", [R.action_priority(8)], "udp53", "in", "ACCEPT", 0, "qosBucket<=8 kept", qos=8)
K(
    "priority behind false set",
    [R.match_ethertype(0x0806), R.action_priority(7), A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "set false at PRIORITY: reset, ACCEPT at 2; bucket untouched",
    qos=None,
)
K("unknown action no-op", [R(7), A], "tcp22", "out", "ACCEPT", 1, "unrecognized ACTION: continue")
K(
    "unknown action no-op then drop",
    [R(15), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "type 15 <= ACTION__MAX_ID: no-op",
)

# ------------------------------------------------------ ZeroTier addresses
K(
    "zt src match out",
    [R.match_source_zerotier_address(ME), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "v.zt == ztSource",
)
K(
    "zt src no match out",
    [R.match_source_zerotier_address(PEER), D, A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "ztSource is ME",
)
K(
    "zt src match in",
    [R.match_source_zerotier_address(PEER), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "inbound ztSource = sender",
)
K(
    "zt dst match out",
    [R.match_dest_zerotier_address(PEER), D, A],
    "udp53",
    "out",
    "DROP",
    1,
    "ztDest = recipient",
)
K(
    "zt dst match in",
    [R.match_dest_zerotier_address(ME), D, A],
    "udp53",
    "in",
    "DROP",
    1,
    "inbound ztDest = ME",
)
K(
    "zt dst not",
    [R.match_dest_zerotier_address(ME, not_=True), D, A],
    "udp53",
    "in",
    "ACCEPT",
    2,
    "1 XOR NOT = 0",
)
K(
    "zt dst multicast out",
    [R.match_dest_zerotier_address(PEER), D, A],
    "mcast_udp",
    "out",
    "ACCEPT",
    2,
    "multicast first pass: ztDest = 0",
    dest=0,
)
K(
    "zt src not other",
    [R.match_source_zerotier_address(OTHER, not_=True), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "0 XOR NOT = 1",
)

# -------------------------------------------------------- MAC, ethertype, VLAN
K("mac src", [R.match_mac_source(PEER_MAC), D, A], "tcp22", "in", "DROP", 1, "MAC(v.mac) == macSource")
K(
    "mac src out",
    [R.match_mac_source(PEER_MAC), D, A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "outbound macSource = ME_MAC",
)
K(
    "mac dst broadcast",
    [R.match_mac_dest(0xFFFFFFFFFFFF), D, A],
    "arp",
    "out",
    "DROP",
    1,
    "macDest is broadcast",
)
K("mac dst not", [R.match_mac_dest(ME_MAC, not_=True), D, A], "tcp22", "in", "ACCEPT", 2, "macDest == ME_MAC")
K("ethertype ipv4", [R.match_ethertype(0x0800), D, A], "tcp22", "out", "DROP", 1, "etherType == 0x0800")
K("ethertype arp on ipv4", [R.match_ethertype(0x0806), D, A], "tcp22", "out", "ACCEPT", 2, "no match")
K(
    "ethertype not ipv4 on arp",
    [R.match_ethertype(0x0800, not_=True), D, A],
    "arp",
    "in",
    "DROP",
    1,
    "0 XOR 1",
)
K("ethertype ipx", [R.match_ethertype(0x8137), A, D], "ipx", "out", "ACCEPT", 1, "any ethertype compares")
K(
    "vlan id on vlan frame",
    [R.match_vlan_id(5), D, A],
    "vlan5",
    "out",
    "DROP",
    1,
    "outbound vlanId as the host passed it to onLocalEthernet",
)
K(
    "vlan id 0",
    [R.match_vlan_id(0), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "vlanId passed as 0 by filterIncomingPacket callers",
)
K(
    "vlan pcp 0",
    [R.match_vlan_pcp(0), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "PCP not supported: matches iff v.vlanPcp == 0",
)
K("vlan pcp 3", [R.match_vlan_pcp(3), D, A], "tcp22", "out", "ACCEPT", 2, "v.vlanPcp != 0: no match")
K("vlan dei 0", [R.match_vlan_dei(0), D, A], "udp53", "in", "DROP", 1, "DEI: matches iff value 0")
K("vlan dei 1 not", [R.match_vlan_dei(1, not_=True), D, A], "udp53", "in", "DROP", 1, "0 XOR NOT")

# ---------------------------------------------------------------- IPv4 addresses
K("ipsrc /8", [R.match_ipv4_source("10.0.0.0/8"), D, A], "tcp22", "out", "DROP", 1, "containsAddress, bits 8")
K(
    "ipsrc /32 miss",
    [R.match_ipv4_source("10.1.0.2/32"), D, A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "src is 10.1.0.1",
)
K("ipdst /32", [R.match_ipv4_dest("10.1.0.2/32"), D, A], "tcp22", "in", "DROP", 1, "frameData+16")
K(
    "ipdst /0",
    [R.match_ipv4_dest("0.0.0.0/0"), D, A],
    "udp53",
    "out",
    "DROP",
    1,
    "bits 0: containsAddress true",
)
K(
    "ipsrc /16 host bits",
    [R.match_ipv4_source("10.1.99.99/16"), D, A],
    "udp53",
    "out",
    "DROP",
    1,
    "IPv4 compares both shifted: host bits of the rule ignored",
)
K(
    "ipsrc on arp",
    [R.match_ipv4_source("10.0.0.0/8"), D, A],
    "arp",
    "out",
    "ACCEPT",
    2,
    "not IPv4: hardNo = 0",
)
K(
    "not ipsrc on arp (issue)",
    [R.match_ipv4_source("10.0.0.0/8", not_=True), D, A],
    "arp",
    "out",
    "ACCEPT",
    2,
    "hardNo = NOT bit = 1; 1 XOR 1 = 0: the NOT does not flip it",
)
K(
    "not ipsrc on ipv4 outside",
    [R.match_ipv4_source("192.168.0.0/16", not_=True), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "IPv4 frame: 0 XOR 1",
)
K(
    "not ipdst on ipv6",
    [R.match_ipv4_dest("10.0.0.0/8", not_=True), D, A],
    "icmp6",
    "out",
    "ACCEPT",
    2,
    "hard no",
)
K(
    "ipsrc on short ipv4",
    [R.match_ipv4_source("0.0.0.0/0", not_=True), D, A],
    "short_ip",
    "out",
    "ACCEPT",
    2,
    "frameLen < 20: hard no",
)

# ---------------------------------------------------------------- IPv6 addresses
K(
    "ip6src /64",
    [R.match_ipv6_source("fd00::/64"), D, A],
    "icmp6",
    "out",
    "DROP",
    1,
    "frameData+8 masked == rule ip",
)
K("ip6dst /128", [R.match_ipv6_dest("fd00::2/128"), D, A], "icmp6", "in", "DROP", 1, "frameData+24")
K(
    "ip6src host bits never match",
    [R.match_ipv6_source("fd00::1/64"), D, A],
    "icmp6",
    "out",
    "ACCEPT",
    2,
    "IPv6 containsAddress masks only the frame side: (a & m) != b",
)
K("ip6src on ipv4", [R.match_ipv6_source("fd00::/8"), D, A], "tcp22", "out", "ACCEPT", 2, "hard no")
K(
    "not ip6src on ipv4",
    [R.match_ipv6_source("fd00::/8", not_=True), D, A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "hard no survives NOT",
)
K("not ip6dst miss", [R.match_ipv6_dest("fd99::/16", not_=True), D, A], "tcp6_22", "in", "DROP", 1, "0 XOR 1")

# -------------------------------------------------------------------- TOS
K(
    "tos v4",
    [R.match_ip_tos(0xFC, 0x10, 0x10), D, A],
    "icmp4",
    "out",
    "DROP",
    1,
    "frameData[1] & mask in range",
)
K("tos v4 miss", [R.match_ip_tos(0xFF, 0x20, 0x30), D, A], "icmp4", "out", "ACCEPT", 2, "0x10 not in range")
K(
    "tos v6",
    [R.match_ip_tos(0xFF, 0x20, 0x20), D, A],
    "tcp6_22",
    "in",
    "DROP",
    1,
    "traffic class from bytes 0-1",
)
K("not tos on arp", [R.match_ip_tos(0xFF, 0, 255, not_=True), D, A], "arp", "in", "ACCEPT", 2, "hard no")
K("tos on arp", [R.match_ip_tos(0, 0, 0), D, A], "arp", "in", "ACCEPT", 2, "hard no (0)")

# --------------------------------------------------------------- protocol
K("proto tcp", [R.match_ip_protocol(6), D, A], "tcp22", "out", "DROP", 1, "frameData[9]")
K("proto udp miss", [R.match_ip_protocol(17), D, A], "tcp22", "out", "ACCEPT", 2, "6 != 17")
K(
    "proto 58 on v4",
    [R.match_ip_protocol(58), D, A],
    "proto58_v4",
    "in",
    "DROP",
    1,
    "IPv4 protocol 58 is just 58",
)
K("proto 1 on v4 proto 58", [R.match_ip_protocol(1), D, A], "proto58_v4", "in", "ACCEPT", 2, "58 is not ICMP")
K(
    "proto v6 through hop-by-hop",
    [R.match_ip_protocol(17), D, A],
    "udp6_hbh",
    "out",
    "DROP",
    1,
    "_ipv6GetPayload skips header 0",
)
K(
    "proto v6 fragment header",
    [R.match_ip_protocol(44), D, A],
    "udp6_frag",
    "out",
    "DROP",
    1,
    "44 is not skipped: the protocol is 44",
)
K("proto icmpv6", [R.match_ip_protocol(58), D, A], "icmp6", "in", "DROP", 1, "IPv6 next header 58")
K("not proto on arp", [R.match_ip_protocol(6, not_=True), D, A], "arp", "out", "ACCEPT", 2, "hard no")
K("not proto udp on tcp", [R.match_ip_protocol(17, not_=True), D, A], "tcp22", "out", "DROP", 1, "0 XOR 1")
K(
    "proto on short v4",
    [R.match_ip_protocol(69, not_=True), D, A],
    "short_ip",
    "in",
    "ACCEPT",
    2,
    "IPv4 < 20 bytes: hard no",
)

# -------------------------------------------------------------------- ICMP
K("icmp type", [R.match_icmp(8), D, A], "icmp4", "out", "DROP", 1, "type matches, no code flag: hardYes")
K("icmp type code", [R.match_icmp(8, 0), D, A], "icmp4", "out", "DROP", 1, "code compared")
K("icmp code miss", [R.match_icmp(8, 1), D, A], "icmp4", "out", "ACCEPT", 2, "code 0 != 1")
K("icmp type miss", [R.match_icmp(0), D, A], "icmp4", "out", "ACCEPT", 2, "type mismatch: hardNo")
K(
    "not icmp type matches same type",
    [R.match_icmp(8, not_=True), D, A],
    "icmp4",
    "out",
    "DROP",
    1,
    "no code flag: hardYes = NOT^1 = 0; 0 XOR 1 = 1: `not icmp 8` matches type 8",
)
K(
    "not icmp other type is hard no",
    [R.match_icmp(0, not_=True), D, A],
    "icmp4",
    "out",
    "ACCEPT",
    2,
    "type mismatch: hardNo = 1; 1 XOR 1 = 0",
)
K("not icmp type code same", [R.match_icmp(8, 0, not_=True), D, A], "icmp4", "in", "ACCEPT", 2, "1 XOR 1")
K(
    "not icmp type code other code",
    [R.match_icmp(8, 5, not_=True), D, A],
    "icmp4",
    "in",
    "DROP",
    1,
    "code compare 0 XOR 1",
)
K("icmp unreach code", [R.match_icmp(3, 1), D, A], "icmp4_unreach", "in", "DROP", 1, "type 3 code 1")
K("icmp on tcp", [R.match_icmp(8), D, A], "tcp22", "out", "ACCEPT", 2, "protocol not 1: hardNo")
K("icmp on v4 proto 58", [R.match_icmp(128), D, A], "proto58_v4", "out", "ACCEPT", 2, "v4 needs protocol 1")
K("icmpv6 echo", [R.match_icmp(128), D, A], "icmp6", "out", "DROP", 1, "IPv6 payload proto 0x3a, type 128")
K("icmpv6 NS", [R.match_icmp(135), D, A], "ns6", "out", "DROP", 1, "neighbour solicitation type 135")
K("not icmp on arp", [R.match_icmp(8, not_=True), D, A], "arp", "out", "ACCEPT", 2, "not IP: hardNo")

# ------------------------------------------------------------------- ports
K("dport 22", [R.match_ip_dest_port_range(22), D, A], "tcp22", "out", "DROP", 1, "TCP dport at hl+2")
K("dport range", [R.match_ip_dest_port_range(20, 23), D, A], "tcp22", "in", "DROP", 1, "inclusive range")
K("sport range", [R.match_ip_source_port_range(40000, 40010), D, A], "tcp22", "out", "DROP", 1, "sport at hl")
K("dport miss", [R.match_ip_dest_port_range(80), D, A], "tcp22", "out", "ACCEPT", 2, "22 != 80")
K("udp dport", [R.match_ip_dest_port_range(53), D, A], "udp53", "in", "DROP", 1, "UDP 0x11 has ports")
K("v4 port 0 matches", [R.match_ip_dest_port_range(0, 0), D, A], "udp0", "out", "DROP", 1, "IPv4: p >= 0")
K(
    "v6 port 0 never",
    [R.match_ip_dest_port_range(0, 0), D, A],
    "udp6_0",
    "out",
    "ACCEPT",
    2,
    "IPv6: needs p > 0",
)
K(
    "not v6 port 0",
    [R.match_ip_dest_port_range(0, 0, not_=True), D, A],
    "udp6_0",
    "out",
    "DROP",
    1,
    "p > 0 false gives 0 (not hardNo): NOT flips it",
)
K("icmp has no ports", [R.match_ip_dest_port_range(0, 65535), D, A], "icmp4", "out", "ACCEPT", 2, "p = -1: 0")
K(
    "not dport on icmp",
    [R.match_ip_dest_port_range(22, not_=True), D, A],
    "icmp4",
    "out",
    "DROP",
    1,
    "IPv4 without ports gives 0, not hardNo: NOT matches",
)
K("not dport on arp", [R.match_ip_dest_port_range(22, not_=True), D, A], "arp", "in", "ACCEPT", 2, "hardNo")
K(
    "v6 dport past hop-by-hop",
    [R.match_ip_dest_port_range(2000), D, A],
    "udp6_hbh",
    "in",
    "DROP",
    1,
    "pos after extension header",
)
K(
    "v6 fragment hides ports",
    [R.match_ip_dest_port_range(2000), D, A],
    "udp6_frag",
    "in",
    "ACCEPT",
    2,
    "proto 44 has no ports",
)
K(
    "tcp exactly hl+4 bytes",
    [R.match_ip_dest_port_range(22), D, A],
    "tcp_short",
    "out",
    "ACCEPT",
    2,
    "needs frameLen > headerLen + 4",
)
K("v6 tcp dport", [R.match_ip_dest_port_range(22), D, A], "tcp6_22", "out", "DROP", 1, "IPv6 TCP")

# --------------------------------------------------------- characteristics
CH = RuleType
INB, MC, BC = 0x8000000000000000, 0x4000000000000000, 0x2000000000000000
IPAUTH, MACAUTH = 0x1000000000000000, 0x0800000000000000
K("chr inbound in", [R.match_characteristics(INB), D, A], "tcp22", "in", "DROP", 1, "cf has INBOUND")
K("chr inbound out", [R.match_characteristics(INB), D, A], "tcp22", "out", "ACCEPT", 2, "cf lacks INBOUND")
K(
    "chr multicast",
    [R.match_characteristics(MC), D, A],
    "mcast_udp",
    "out",
    "DROP",
    1,
    "macDest multicast bit",
    dest=0,
)
K(
    "chr broadcast",
    [R.match_characteristics(BC), D, A],
    "bcast_udp",
    "out",
    "DROP",
    1,
    "macDest all ones",
    dest=0,
)
K(
    "chr broadcast is multicast",
    [R.match_characteristics(MC), D, A],
    "arp",
    "in",
    "DROP",
    1,
    "broadcast MAC has the multicast bit",
)
K("chr unicast", [R.match_characteristics(MC | BC), D, A], "tcp22", "in", "ACCEPT", 2, "neither bit")
K("chr tcp syn", [R.match_characteristics(0x02), D, A], "tcp22", "out", "DROP", 1, "TCP flags byte hl+13")
K("chr tcp ack on syn", [R.match_characteristics(0x10), D, A], "tcp22", "out", "ACCEPT", 2, "SYN only")
K("chr tcp psh", [R.match_characteristics(0x08), D, A], "tcp80", "in", "DROP", 1, "PA has PSH")
K(
    "chr not syn",
    [R.match_characteristics(0x02, not_=True), D, A],
    "tcp80",
    "in",
    "DROP",
    1,
    "no SYN: 0 XOR 1",
)
K(
    "chr tcp flags v6",
    [R.match_characteristics(0x10), D, A],
    "tcp6_22",
    "in",
    "DROP",
    1,
    "IPv6 TCP SA has ACK",
)
K("chr tcp flag on udp", [R.match_characteristics(0x02), D, A], "udp53", "in", "ACCEPT", 2, "UDP: no flags")
K(
    "chr ipauth inbound owned",
    [R.match_characteristics(IPAUTH), A, D],
    "tcp22",
    "in",
    "ACCEPT",
    1,
    "sender's COO owns 10.1.0.1",
    owned_ips=["10.1.0.1"],
)
K(
    "chr ipauth inbound not owned",
    [R.match_characteristics(IPAUTH), A, D],
    "tcp22",
    "in",
    "DROP",
    2,
    "COO owns another IP",
    owned_ips=["10.1.0.9"],
)
K(
    "chr ipauth outbound own coo",
    [R.match_characteristics(IPAUTH), A, D],
    "udp53",
    "out",
    "ACCEPT",
    1,
    "outbound: our own COOs",
    owned_ips=["10.1.0.1"],
)
K(
    "chr ipauth arp sender",
    [R.match_characteristics(IPAUTH), A, D],
    "arp",
    "in",
    "ACCEPT",
    1,
    "ARP: sender IP at frameData+14",
    owned_ips=["10.1.0.1"],
)
K(
    "chr ipauth NS always",
    [R.match_characteristics(IPAUTH), A, D],
    "ns6",
    "in",
    "ACCEPT",
    1,
    "neighbour solicitation counts as authenticated",
)
K(
    "chr ipauth NA target",
    [R.match_characteristics(IPAUTH), A, D],
    "na6",
    "in",
    "ACCEPT",
    1,
    "neighbour advertisement: target address is the IP",
    owned_ips=["fd00::2"],
)
K(
    "chr ipauth NA src not used",
    [R.match_characteristics(IPAUTH), A, D],
    "na6",
    "in",
    "DROP",
    2,
    "NA: the link-local source is not what is checked",
    owned_ips=["fe80::2"],
)
K(
    "chr ipauth v6 ndp emulated",
    [R.match_characteristics(IPAUTH), A, D],
    "icmp6",
    "in",
    "ACCEPT",
    1,
    "_isV6NDPEmulated: prefix of our RFC4193 /88",
    ndp_prefixes=[("fd00::", 11)],
)
K(
    "chr ipauth v6 ndp not outbound",
    [R.match_characteristics(IPAUTH), A, D],
    "icmp6",
    "out",
    "DROP",
    2,
    "outbound uses only nconf COOs, no NDP emulation",
    ndp_prefixes=[("fd00::", 11)],
)
K(
    "chr macauth",
    [R.match_characteristics(MACAUTH), A, D],
    "tcp22",
    "in",
    "ACCEPT",
    1,
    "COO owns macSource",
    owned_macs=[PEER_MAC],
)
K("chr macauth missing", [R.match_characteristics(MACAUTH), A, D], "tcp22", "in", "DROP", 2, "no MAC COO")
K(
    "chr ipauth not missing",
    [R.match_characteristics(IPAUTH, not_=True), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "0 XOR 1",
)

# ------------------------------------------------- frame size, random, integer
K("frame size", [R.match_frame_size_range(40, 40), D, A], "tcp22", "out", "DROP", 1, "IPv4+TCP = 40 bytes")
K("frame size miss", [R.match_frame_size_range(41, 1500), D, A], "tcp22", "out", "ACCEPT", 2, "40 < 41")
K(
    "frame size not",
    [R.match_frame_size_range(0, 30, not_=True), D, A],
    "arp",
    "in",
    "ACCEPT",
    2,
    "ARP payload 28 bytes in range: 1 XOR 1",
)
K(
    "random always",
    [R.match_random(0xFFFFFFFF), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "prng <= 2^32-1",
    rng=0xFFFFFFFF,
)
K("random never", [R.match_random(0), D, A], "tcp22", "out", "ACCEPT", 2, "prng 5 > 0", rng=5)
K("random zero draw", [R.match_random(0), D, A], "tcp22", "out", "DROP", 1, "prng 0 <= 0", rng=0)
K("random half", [R.match_random(0x7FFFFFFF), D, A], "udp53", "in", "ACCEPT", 2, "draw above", rng=0x80000000)
K(
    "intrange BE 8 bits reads idx+7",
    [R.match_integer_range(64, 64, 1, 8), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "big-endian starts at idx + (8 - bytes): data[8] = TTL 64",
)
K(
    "intrange LE 8 bits reads idx",
    [R.match_integer_range(64, 64, 8, 8, little_endian=True), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "little-endian reads data[8] = 64",
)
K(
    "intrange BE 16 bits",
    [R.match_integer_range(0x4006, 0x4006, 2, 16), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "data[8:10] = TTL 64, protocol 6",
)
K("intrange miss", [R.match_integer_range(0, 63, 1, 8), D, A], "tcp22", "out", "ACCEPT", 2, "64 > 63")
K(
    "intrange past end reads 0",
    [R.match_integer_range(0, 0, 2000, 8), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "eof > frameLen: integer stays 0",
)

# ------------------------------------------------------------------ tags
T = {1: 10}
K(
    "tdiff within",
    [R.match_tags_difference(1, 2), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "|10-12| <= 2",
    local_tags=T,
    remote_tags={1: 12},
)
K(
    "tdiff outside",
    [R.match_tags_difference(1, 1), D, A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "2 > 1",
    local_tags=T,
    remote_tags={1: 12},
)
K(
    "tdiff inbound",
    [R.match_tags_difference(1, 0), A, D],
    "tcp22",
    "in",
    "ACCEPT",
    1,
    "equal values",
    local_tags=T,
    remote_tags={1: 10},
)
K(
    "tand",
    [R.match_tags_bitwise_and(1, 8), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "10 & 12 = 8",
    local_tags=T,
    remote_tags={1: 12},
)
K(
    "tor",
    [R.match_tags_bitwise_or(1, 14), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "10 | 12 = 14",
    local_tags=T,
    remote_tags={1: 12},
)
K(
    "txor",
    [R.match_tags_bitwise_xor(1, 6), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "10 ^ 12 = 6",
    local_tags=T,
    remote_tags={1: 12},
)
K(
    "txor miss",
    [R.match_tags_bitwise_xor(1, 7), D, A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "6 != 7",
    local_tags=T,
    remote_tags={1: 12},
)
K(
    "teq both",
    [R.match_tags_equal(1, 10), D, A],
    "udp53",
    "in",
    "DROP",
    1,
    "both 10",
    local_tags=T,
    remote_tags={1: 10},
)
K(
    "teq one",
    [R.match_tags_equal(1, 10), D, A],
    "udp53",
    "in",
    "ACCEPT",
    2,
    "remote 12",
    local_tags=T,
    remote_tags={1: 12},
)
K(
    "teq local missing",
    [R.match_tags_equal(1, 10), D, A],
    "udp53",
    "out",
    "ACCEPT",
    2,
    "no local tag: hardNo",
    local_tags={},
    remote_tags={1: 10},
)
K(
    "not teq local missing",
    [R.match_tags_equal(1, 10, not_=True), D, A],
    "udp53",
    "out",
    "ACCEPT",
    2,
    "no local tag: hardNo survives NOT",
    local_tags={},
    remote_tags={1: 10},
)
K(
    "teq remote missing inbound strict",
    [R.match_tags_equal(1, 10), A, D],
    "udp53",
    "in",
    "DROP",
    2,
    "inbound without remote tag: hardNo",
    local_tags=T,
    remote_tags={},
)
K(
    "not teq remote missing inbound",
    [R.match_tags_equal(1, 10, not_=True), A, D],
    "udp53",
    "in",
    "DROP",
    2,
    "hardNo = 1, XOR NOT = 0",
    local_tags=T,
    remote_tags={},
)
K(
    "teq remote missing outbound lenient",
    [R.match_tags_equal(1, 10), A, D],
    "udp53",
    "out",
    "ACCEPT",
    1,
    "outbound: hardYes",
    local_tags=T,
    remote_tags={},
)
K(
    "not teq remote missing outbound",
    [R.match_tags_equal(1, 10, not_=True), A, D],
    "udp53",
    "out",
    "ACCEPT",
    1,
    "hardYes = 0, XOR NOT = 1",
    local_tags=T,
    remote_tags={},
)
K(
    "tdiff multicast no membership",
    [R.match_tags_difference(1, 0), A, D],
    "mcast_udp",
    "out",
    "ACCEPT",
    1,
    "ztDest 0: membership NULL: lenient",
    local_tags=T,
    remote_tags=None,
    dest=0,
)
K(
    "skipDrop skips next drop",
    [R.match_tags_equal(1, 10), D, A],
    "udp53",
    "out",
    "ACCEPT",
    2,
    "lenient match sets skipDrop; the DROP is skipped",
    local_tags=T,
    remote_tags={},
)
K(
    "skipDrop only once",
    [R.match_tags_equal(1, 10), D, D, A],
    "udp53",
    "out",
    "DROP",
    2,
    "skipDrop cleared by the first DROP",
    local_tags=T,
    remote_tags={},
)
K(
    "skipDrop survives a failed set",
    [R.match_tags_equal(1, 10), R.match_ethertype(0x0806), D, D, A],
    "udp53",
    "out",
    "ACCEPT",
    4,
    "set false at 2 (no skip used); unconditional DROP at 3 is skipped",
    local_tags=T,
    remote_tags={},
)
K(
    "skipDrop inbound not set",
    [R.match_tags_equal(1, 10, not_=True), D, A],
    "udp53",
    "in",
    "ACCEPT",
    2,
    "inbound strict: hardNo, no skipDrop; set false",
    local_tags=T,
    remote_tags={},
)
K(
    "tsender outbound local",
    [R.match_tag_sender(1, 10), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "sender outbound: our tag",
    local_tags=T,
    remote_tags={1: 3},
)
K(
    "tsender inbound remote",
    [R.match_tag_sender(1, 3), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "sender inbound: their tag",
    local_tags=T,
    remote_tags={1: 3},
)
K(
    "tsender inbound remote missing",
    [R.match_tag_sender(1, 3, not_=True), D, A],
    "tcp22",
    "in",
    "ACCEPT",
    2,
    "no remote tag: hardNo",
    local_tags=T,
    remote_tags={},
)
K(
    "treceiver outbound remote",
    [R.match_tag_receiver(1, 3), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "receiver outbound: their tag",
    local_tags=T,
    remote_tags={1: 3},
)
K(
    "treceiver outbound missing lenient",
    [R.match_tag_receiver(1, 3), D, A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "missing receiver tag outbound: hardYes + skipDrop",
    local_tags=T,
    remote_tags={},
)
K(
    "treceiver inbound local",
    [R.match_tag_receiver(1, 10), D, A],
    "tcp22",
    "in",
    "DROP",
    1,
    "receiver inbound: our tag",
    local_tags=T,
    remote_tags={1: 3},
)
K(
    "treceiver inbound local missing",
    [R.match_tag_receiver(2, 10), D, A],
    "tcp22",
    "in",
    "ACCEPT",
    2,
    "no local tag 2: hardNo",
    local_tags=T,
    remote_tags={1: 3},
)
K(
    "tsender outbound local missing",
    [R.match_tag_sender(2, 0, not_=True), D, A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "hardNo survives NOT",
    local_tags=T,
    remote_tags={},
)
K(
    "tag value mismatch not",
    [R.match_tag_sender(1, 99, not_=True), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "10 != 99: 0 XOR 1",
    local_tags=T,
)
K(
    "super-accept makes tags lenient",
    [R.match_ethertype(0x0806), R.action_tee(ME), R.match_tags_equal(1, 10), A],
    "udp53",
    "in",
    "SUPER_ACCEPT",
    3,
    "TEE to us behind a false set marks superAccept; tag rule lenient",
    local_tags=T,
    remote_tags={},
)
K(
    "super-accept tag sender",
    [R.match_ethertype(0x0806), R.action_watch(ME), R.match_tag_sender(1, 77), A],
    "udp53",
    "in",
    "SUPER_ACCEPT",
    3,
    "TAG_SENDER under superAccept: hardYes",
    local_tags=T,
    remote_tags={1: 3},
)

# ------------------------------------------------------- NOT / OR / sets
K(
    "or second true",
    [R.match_ethertype(0x0806), R.match_ethertype(0x0800, or_=True), D, A],
    "tcp22",
    "out",
    "DROP",
    2,
    "OR: set |= result",
)
K(
    "or both false",
    [R.match_ethertype(0x0806), R.match_ethertype(0x86DD, or_=True), D, A],
    "tcp22",
    "out",
    "ACCEPT",
    3,
    "false | false",
)
K(
    "and short circuit",
    [R.match_ethertype(0x0806), R.match_ip_protocol(6), D, A],
    "tcp22",
    "in",
    "ACCEPT",
    3,
    "AND after false set is skipped",
)
K(
    "and both true",
    [R.match_ethertype(0x0800), R.match_ip_protocol(6), D, A],
    "tcp22",
    "in",
    "DROP",
    2,
    "1 & 1",
)
K(
    "not or",
    [R.match_ethertype(0x0800), R.match_ip_protocol(6, not_=True, or_=True), D, A],
    "tcp22",
    "in",
    "DROP",
    2,
    "1 | (1 XOR 1)",
)
K(
    "hard no then or",
    [R.match_ipv4_source("10.0.0.0/8", not_=True), R.match_ethertype(0x0806, or_=True), D, A],
    "arp",
    "out",
    "DROP",
    2,
    "hard no gives false; OR ethertype ARP true",
)
K(
    "or rescues and",
    [R.match_ip_protocol(17), R.match_ip_dest_port_range(22), R.match_ip_protocol(6, or_=True), D, A],
    "tcp22",
    "out",
    "DROP",
    3,
    "false, skip, OR true",
)
K(
    "set resets after action",
    [R.match_ethertype(0x0806), D, R.match_ethertype(0x0800), D, A],
    "tcp22",
    "out",
    "DROP",
    3,
    "second set starts true again",
)
K(
    "set resets after taken no-op",
    [R.action_tee(PEER), D],
    "tcp22",
    "out",
    "DROP",
    1,
    "TEE to destination is a no-op; set stays true",
)
K(
    "typical ruleset ssh",
    [
        R.match_ethertype(0x0800, not_=True),
        R.match_ethertype(0x0806, not_=True),
        R.match_ethertype(0x86DD, not_=True),
        D,
        R.match_ip_protocol(6),
        R.match_ip_dest_port_range(22),
        A,
        R.match_characteristics(0x02),
        R.match_characteristics(0x10, not_=True),
        D,
        A,
    ],
    "tcp22",
    "out",
    "ACCEPT",
    6,
    "IPv4 passes the ethertype whitelist; TCP/22 accepted",
)
K(
    "typical ruleset syn drop",
    [
        R.match_ethertype(0x0800, not_=True),
        R.match_ethertype(0x0806, not_=True),
        R.match_ethertype(0x86DD, not_=True),
        D,
        R.match_ip_protocol(6),
        R.match_ip_dest_port_range(22),
        A,
        R.match_characteristics(0x02),
        R.match_characteristics(0x10, not_=True),
        D,
        A,
    ],
    "tcp80",
    "in",
    "ACCEPT",
    10,
    "PA: not SYN -> falls to ACCEPT",
)
K(
    "typical ruleset new conn drop",
    [
        R.match_ip_protocol(6),
        R.match_ip_dest_port_range(22),
        A,
        R.match_characteristics(0x02),
        R.match_characteristics(0x10, not_=True),
        D,
        A,
    ],
    "IP(src='10.1.0.1', dst='10.1.0.2')/TCP(sport=1, dport=8080, flags='S')",
    "in",
    "DROP",
    5,
    "SYN without ACK to another port: drop",
)
K(
    "typical ruleset ipx blocked",
    [
        R.match_ethertype(0x0800, not_=True),
        R.match_ethertype(0x0806, not_=True),
        R.match_ethertype(0x86DD, not_=True),
        D,
        A,
    ],
    "ipx",
    "out",
    "DROP",
    3,
    "all three NOT matches true",
)
K("unsupported match false", [R(60), D, A], "tcp22", "out", "ACCEPT", 2, "unknown match: network flag off")
K(
    "unsupported match true",
    [R(60), D, A],
    "tcp22",
    "out",
    "DROP",
    1,
    "flag RULES_RESULT_OF_UNSUPPORTED_MATCH",
    unsupported=True,
)
K(
    "unsupported match not",
    [R(60, not_=True), D, A],
    "tcp22",
    "in",
    "ACCEPT",
    2,
    "flag on: 1 XOR 1",
    unsupported=True,
)

# ------------------------------------------------ TEE / WATCH / REDIRECT
L = 40  # tcp22 payload length
K(
    "tee out",
    [R.action_tee(OTHER), A],
    "tcp22",
    "out",
    "ACCEPT",
    1,
    "cc set; sent with 0x02 after accept",
    copies=[("ACTION_TEE", OTHER, 0x02, L)],
)
K(
    "tee out length",
    [R.action_tee(OTHER, length=14), A],
    "tcp22",
    "out",
    "ACCEPT",
    1,
    "ccLength = min(len, 14)",
    copies=[("ACTION_TEE", OTHER, 0x02, 14)],
)
K(
    "tee length longer than frame",
    [R.action_tee(OTHER, length=1000), A],
    "tcp22",
    "out",
    "ACCEPT",
    1,
    "frameLen < length: frameLen",
    copies=[("ACTION_TEE", OTHER, 0x02, L)],
)
K(
    "watch out",
    [R.action_watch(OTHER), A],
    "tcp22",
    "out",
    "ACCEPT",
    1,
    "ccWatch: flags 0x16",
    copies=[("ACTION_WATCH", OTHER, 0x16, L)],
)
K(
    "tee in",
    [R.action_tee(OTHER), A],
    "tcp22",
    "in",
    "ACCEPT",
    1,
    "inbound TEE flags 0x08",
    copies=[("ACTION_TEE", OTHER, 0x08, L)],
)
K(
    "watch in",
    [R.action_watch(OTHER), A],
    "tcp22",
    "in",
    "ACCEPT",
    1,
    "inbound WATCH flags 0x1c",
    copies=[("ACTION_WATCH", OTHER, 0x1C, L)],
)
K("tee then drop", [R.action_tee(OTHER), D], "tcp22", "out", "DROP", 1, "dropped: cc never sent", copies=[])
K(
    "tee to source skipped",
    [R.action_tee(PEER), A],
    "tcp22",
    "in",
    "ACCEPT",
    1,
    "fwdAddr == ztSource",
    copies=[],
)
K("tee to dest skipped", [R.action_tee(PEER), A], "tcp22", "out", "ACCEPT", 1, "fwdAddr == ztDest", copies=[])
K(
    "tee to me outbound",
    [R.action_tee(ME), A],
    "tcp22",
    "out",
    "ACCEPT",
    1,
    "outbound: fwdAddr == ztSource (us) first",
    copies=[],
)
K(
    "tee to me inbound super",
    [R.action_tee(ME), D],
    "tcp22",
    "in",
    "SUPER_ACCEPT",
    0,
    "inbound, target is us: SUPER_ACCEPT at once",
    copies=[],
)
K(
    "watch to me inbound super",
    [R.match_ip_protocol(6), R.action_watch(ME), D],
    "tcp22",
    "in",
    "SUPER_ACCEPT",
    1,
    "matches hold: SUPER_ACCEPT",
    copies=[],
)
K(
    "redirect to me inbound super",
    [R.action_redirect(ME), D],
    "udp53",
    "in",
    "SUPER_ACCEPT",
    0,
    "same for REDIRECT",
)
K(
    "tee me behind false set then accept",
    [R.match_ethertype(0x0806), R.action_tee(ME), A],
    "tcp22",
    "in",
    "SUPER_ACCEPT",
    2,
    "false set marks superAccept; ACCEPT returns SUPER_ACCEPT",
)
K(
    "tee me behind false set outbound",
    [R.match_ethertype(0x0806), R.action_tee(ME), A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "superAccept marking is inbound only",
)
K(
    "tee me behind false set then drop",
    [R.match_ethertype(0x0806), R.action_tee(ME), D],
    "tcp22",
    "in",
    "DROP",
    2,
    "superAccept does not stop a DROP",
)
K(
    "redirect out",
    [R.action_redirect(OTHER), A],
    "tcp22",
    "out",
    "REDIRECT",
    0,
    "REDIRECT: ztFinalDest changed; EXT_FRAME 0x04, dropped locally",
    copies=[("ACTION_REDIRECT", OTHER, 0x04, L)],
)
K(
    "redirect in",
    [R.action_redirect(OTHER), A],
    "tcp22",
    "in",
    "REDIRECT",
    0,
    "inbound redirect flags 0x0a",
    copies=[("ACTION_REDIRECT", OTHER, 0x0A, L)],
)
K(
    "redirect to dest no-op",
    [R.action_redirect(PEER), D],
    "tcp22",
    "out",
    "DROP",
    1,
    "fwdAddr == ztDest: continue",
)
K(
    "redirect behind false set",
    [R.match_ethertype(0x0806), R.action_redirect(OTHER), A],
    "tcp22",
    "out",
    "ACCEPT",
    2,
    "not taken",
    copies=[],
)
K(
    "tee and redirect",
    [R.action_tee(OTHER), R.action_redirect(0x4444444444), A],
    "tcp22",
    "out",
    "REDIRECT",
    1,
    "cc from TEE and the redirect both sent",
    copies=[("ACTION_TEE", OTHER, 0x02, L), ("ACTION_REDIRECT", 0x4444444444, 0x04, L)],
)
K(
    "second tee wins",
    [R.action_tee(OTHER), R.action_watch(0x4444444444), A],
    "tcp22",
    "in",
    "ACCEPT",
    2,
    "cc overwritten by the later WATCH",
    copies=[("ACTION_WATCH", 0x4444444444, 0x1C, L)],
)
K(
    "no_tee outbound replication",
    [R.action_tee(OTHER), A],
    "tcp22",
    "out",
    "ACCEPT",
    1,
    "noTee: copy not sent",
    no_tee=True,
    copies=[],
)
K(
    "no_tee keeps redirect",
    [R.action_redirect(OTHER), A],
    "tcp22",
    "out",
    "REDIRECT",
    0,
    "redirect is sent even with noTee",
    no_tee=True,
    copies=[("ACTION_REDIRECT", OTHER, 0x04, L)],
)
K(
    "tee multicast out",
    [R.action_tee(OTHER), A],
    "mcast_udp",
    "out",
    "ACCEPT",
    1,
    "ztDest 0 differs",
    dest=0,
    copies=[("ACTION_TEE", OTHER, 0x02, 28)],
)

# --------------------------------------------------------------- capabilities
CAP_SSH = [R.match_ip_protocol(6), R.match_ip_dest_port_range(22), A]
CAP_DROP = [R.match_ip_protocol(6), D]
K(
    "cap accepts on no match out",
    [R.match_ethertype(0x0806), A],
    "tcp22",
    "out",
    "ACCEPT",
    (7, 2),
    "base NO_MATCH; own capability 7 accepts at its rule 2",
    caps=[(7, CAP_SSH)],
)
K(
    "cap miss",
    [R.match_ethertype(0x0806), A],
    "tcp80",
    "out",
    "NO_MATCH",
    None,
    "no capability accepts",
    caps=[(7, CAP_SSH)],
)
K(
    "cap after base drop not tried",
    [D],
    "tcp22",
    "out",
    "DROP",
    0,
    "base DROP returns before capabilities",
    caps=[(7, CAP_SSH)],
)
K("cap after base accept", [A], "tcp22", "out", "ACCEPT", 0, "base accepts", caps=[(7, CAP_SSH)])
K(
    "cap after break",
    [R.match_ip_protocol(6), BRK, A],
    "tcp22",
    "out",
    "ACCEPT",
    (7, 2),
    "BREAK: NO_MATCH, capabilities tried",
    caps=[(7, CAP_SSH)],
)
K(
    "cap drop ends only that cap",
    [R.match_ethertype(0x0806), A],
    "tcp22",
    "in",
    "ACCEPT",
    (8, 2),
    "capability DROP: next capability",
    caps=[(5, CAP_DROP), (8, CAP_SSH)],
)
K(
    "cap inbound sender caps",
    [],
    "tcp22",
    "in",
    "ACCEPT",
    (7, 2),
    "inbound: sender's valid capabilities",
    caps=[(7, CAP_SSH)],
)
K(
    "cap inbound super",
    [],
    "tcp22",
    "in",
    "SUPER_ACCEPT",
    (3, 0),
    "inbound cap SUPER_ACCEPT -> accept 2",
    caps=[(3, [R.action_tee(ME), A])],
)
K(
    "cap outbound super is accept",
    [],
    "tcp22",
    "out",
    "ACCEPT",
    (3, 1),
    "outbound: TEE to us is a no-op (== source); ACCEPT",
    caps=[(3, [R.action_tee(ME), A])],
)
K(
    "cap tee copies",
    [R.action_tee(OTHER), BRK],
    "tcp22",
    "out",
    "ACCEPT",
    (4, 1),
    "cap's cc2 sent in the loop, then base cc",
    caps=[(4, [R.action_watch(0x4444444444), A])],
    copies=[("ACTION_WATCH", 0x4444444444, 0x16, L), ("ACTION_TEE", OTHER, 0x02, L)],
)
K(
    "cap tee inbound flags",
    [],
    "tcp22",
    "in",
    "ACCEPT",
    (4, 1),
    "inbound cap cc2 0x08",
    caps=[(4, [R.action_tee(OTHER), A])],
    copies=[("ACTION_TEE", OTHER, 0x08, L)],
)
K(
    "cap redirect",
    [],
    "tcp22",
    "out",
    "REDIRECT",
    (4, 0),
    "REDIRECT in a capability: accept + ztFinalDest",
    caps=[(4, [R.action_redirect(OTHER)])],
    copies=[("ACTION_REDIRECT", OTHER, 0x04, L)],
)
K(
    "cap priority",
    [],
    "tcp22",
    "out",
    "ACCEPT",
    (2, 0),
    "PRIORITY in a capability sets the bucket",
    caps=[(2, [R.action_priority(6)])],
    qos=6,
)
K(
    "cap with tags",
    [],
    "tcp22",
    "in",
    "ACCEPT",
    (9, 1),
    "capability rules see tags too",
    caps=[(9, [R.match_tags_equal(1, 10), A])],
    local_tags=T,
    remote_tags={1: 10},
)
K(
    "cap with tags strict",
    [],
    "tcp22",
    "in",
    "NO_MATCH",
    None,
    "inbound missing tag: hardNo in the capability",
    caps=[(9, [R.match_tags_equal(1, 10), A])],
    local_tags=T,
    remote_tags={},
)
K(
    "cap break",
    [],
    "tcp22",
    "out",
    "ACCEPT",
    (2, 1),
    "BREAK ends a capability: next one",
    caps=[(1, [BRK, A]), (2, [R.match_ip_protocol(6), A])],
)
K(
    "cap tee then drop no copy",
    [R.action_tee(OTHER), BRK],
    "tcp22",
    "out",
    "NO_MATCH",
    None,
    "nothing accepted: no copies",
    caps=[(1, CAP_DROP)],
    copies=[],
)
