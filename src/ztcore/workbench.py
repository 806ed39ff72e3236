"""The workbench: ZeroTier nodes n1…nN in one program, seen through Scapy.

``Workbench(n=3)`` starts, fully offline, a throw-away planet with its own root, an
embedded controller with a private network, and N nodes that join it and are
authorized. With ``nwids=`` the nodes join those networks on the given (or public)
planet instead. Each node (:class:`WorkbenchNode`) sends Ethernet frames (bytes or
any Scapy packet), user messages and pings, answers the classic ethertype-0
"ping from …" with "pong from …" when ``pingpong`` is on, and keeps bounded ring
buffers: ``vframes`` (virtual frames received, as Scapy ``Ether`` with the network
id in ``sniffed_on``), ``sent``/``received`` (wire datagrams as IP/UDP/ZeroTier,
decrypted with the node's keys), ``traced`` and ``messages``. ``ztnode shell`` is
this in Scapy's interactive shell; scripts use the same objects::

    from ztcore.workbench import Workbench
    with Workbench(n=3) as wb:
        n1, n2, n3 = wb.nodes
        n1.broadcast_eth(b"ping from n1")
        print(n1.wait(n1.vframes, count=2, lfilter=lambda p: bytes(p.payload).startswith(b"pong")))

Everything runs in a `ztcore.runtime.ThreadedRuntime` (one event loop thread); the
methods here are safe to call from the caller's thread.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from scapy.error import Scapy_Exception
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.plist import PacketList
from scapy.utils import PcapWriter

from ztcore.api import Event, EventType, VirtualFrame
from ztcore.identity import Address
from ztcore.runtime import HomeDirectory, MemoryState, NodeHandle, NodeService, ThreadedRuntime, pcap
from ztcore.runtime.api_glue import NodeServiceApi
from ztcore.runtime.offline import start_controller, start_offline_root
from ztcore.scapy import DecryptError, Keyring, ZeroTier
from ztcore.scapy.layers import ether_payload_class
from ztcore.vl1.world import World
from ztcore.vl2.mac import MAC

__all__ = ["Capture", "OfflineNetwork", "RingBuffer", "Workbench", "WorkbenchNode", "wait"]

log = logging.getLogger("ztcore.workbench")

PING_ETHERTYPE = 0  # the original workbench's ping/pong frames
DEFAULT_BUFFER = 1000
BROADCAST = "ff:ff:ff:ff:ff:ff"
USER_MESSAGE_TYPE = 0x5A7C0DE0000000FF


class RingBuffer:
    """A bounded, thread-safe buffer of packets (or events), newest last.

    Reads like a Scapy PacketList (``summary()``, ``nsummary()``, ``filter()``, slices,
    ``show()``); ``maxlen`` can be changed; :meth:`wait` blocks for new entries.
    """

    def __init__(self, name: str, maxlen: int = DEFAULT_BUFFER, packets: bool = True) -> None:
        self.name = name
        self.packets = packets  # else it holds event dicts, and lists are plain lists
        self._items: collections.deque[Any] = collections.deque(maxlen=maxlen)
        self._cond = threading.Condition()
        self._appended = 0  # total ever appended, so waits can count arrivals

    @property
    def maxlen(self) -> int:
        return self._items.maxlen or 0

    @maxlen.setter
    def maxlen(self, n: int) -> None:
        if n < 1:
            raise ValueError("maxlen must be at least 1")
        with self._cond:
            self._items = collections.deque(self._items, maxlen=n)

    def append(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._appended += 1
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def list(self) -> Any:
        with self._cond:
            items = list(self._items)
        return PacketList(items, name=self.name) if self.packets else items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.list())

    def __getitem__(self, i: Any) -> Any:
        return self.list()[i]

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.list(), attr)

    def __repr__(self) -> str:
        return f"<{self.name}: {len(self)} of max {self.maxlen}>"

    def wait(
        self,
        count: int = 1,
        timeout: float = 5.0,
        lfilter: Callable[[Any], bool] | None = None,
        new: bool = False,
    ) -> PacketList:
        """Wait until `count` entries matching `lfilter` are in the buffer (with ``new``:
        arrived after this call) and return them; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            start = self._appended

            def matching() -> list[Any]:
                items = list(self._items)
                if new:
                    fresh = self._appended - start
                    items = items[len(items) - min(fresh, len(items)) :]
                return [x for x in items if lfilter is None or _safe(lfilter, x)]

            while True:
                found = matching()
                if len(found) >= count:
                    found = found[:count] if new else found
                    return PacketList(found, name=self.name) if self.packets else found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.name}: {len(found)} of {count} matching entries after {timeout} s"
                    )
                self._cond.wait(left)


def _safe(fn: Callable[[Any], bool], x: Any) -> bool:
    try:
        return bool(fn(x))
    except (AttributeError, IndexError, TypeError, KeyError):
        return False  # a filter that does not apply to this entry (e.g. no such layer)


def wait(
    buffer: RingBuffer,
    count: int = 1,
    timeout: float = 5.0,
    lfilter: Callable[[Any], bool] | None = None,
    new: bool = False,
) -> PacketList:
    """`buffer.wait(...)`: the shell's ``wait(n1.vframes, 2, lfilter=...)``."""
    return buffer.wait(count, timeout, lfilter, new)


def _mac_text(value: Any) -> str:
    if isinstance(value, WorkbenchNode):
        return value.mac()
    if isinstance(value, int):
        return str(MAC(value))
    return str(value).lower()


def _ethertype_of(pkt: Packet) -> int:
    for fields, cls in Ether.payload_guess:
        if isinstance(pkt, cls) and "type" in fields:
            return int(fields["type"])
    raise ValueError(f"cannot tell the ethertype of {pkt.__class__.__name__}; pass ethertype=")


class WorkbenchNode:
    """One node of the workbench (see the module docstring)."""

    def __init__(self, bench: Workbench, name: str, service: NodeService, buffer_size: int) -> None:
        """Attach to a service that is not started yet, so its first packets are seen too;
        `_started` finishes once it runs."""
        self.bench = bench
        self.name = name
        self.service = service
        self.vframes = RingBuffer(f"{name}.vframes", buffer_size)
        self.sent = RingBuffer(f"{name}.sent", buffer_size)
        self.received = RingBuffer(f"{name}.received", buffer_size)
        self.traced = RingBuffer(f"{name}.traced", buffer_size, packets=False)
        self.messages = RingBuffer(f"{name}.messages", buffer_size, packets=False)
        self.pingpong = True
        self.decrypt = True  # decrypt wire packets into sent/received (costs a dearmor each)
        self.keyring = Keyring()
        self.counters: collections.Counter[str] = collections.Counter()
        service.add_frame_listener(self._on_frame)
        service.add_event_listener(self._on_event)
        service.add_wire_listener(self._on_wire)

    def _started(self) -> None:
        # In the loop thread, right after start() and before the node's first timer run.
        self.service.node.trace_enabled = True
        self.keyring.add(self.service.node)
        self.handle = NodeHandle(self.bench.rt, self.service)
        self.address = Address(int(self.handle.address))

    def __repr__(self) -> str:
        return f"<{self.name} {self.address} {'online' if self.online else 'offline'}>"

    # -- what it is -----------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self.handle.online

    @property
    def identity(self) -> Any:
        return self.service.node.identity

    def _nwid(self, nwid: int | str | None) -> int:
        if nwid is None:
            if self.bench.default_nwid is not None:
                return self.bench.default_nwid
            nets = self.networks()
            if not nets:
                raise ValueError(f"{self.name} has joined no network")
            return int(str(nets[0]["id"]), 16)
        return int(nwid, 16) if isinstance(nwid, str) else int(nwid)

    def mac(self, nwid: int | str | None = None) -> str:
        """This node's MAC on a network (default: the workbench's network)."""
        return str(MAC.from_address(int(self.address), self._nwid(nwid)))

    def ips(self, nwid: int | str | None = None) -> list[str]:
        """Addresses the controller assigned on a network (without prefix lengths)."""
        info = self.bench.rt.call(self.service.node.network, self._nwid(nwid)) or {}
        ips = [a.split("/")[0] for a in info.get("assignedAddresses", [])]
        return sorted(ips, key=lambda a: ipaddress.ip_address(a).version)  # IPv4 first

    def networks(self) -> list[dict[str, Any]]:
        return self.handle.networks()

    def network(self, nwid: int | str | None = None) -> dict[str, Any] | None:
        return self.bench.rt.call(self.service.node.network, self._nwid(nwid))

    def peers(self) -> list[Any]:
        return self.handle.peers()

    def join(self, nwid: int | str) -> Any:
        return self.handle.join(self._nwid(nwid))

    def leave(self, nwid: int | str) -> Any:
        return self.handle.leave(self._nwid(nwid))

    # -- sending --------------------------------------------------------------------------

    def send_eth(
        self, dst: Any, payload: bytes | Packet, ethertype: int | None = None, nwid: int | str | None = None
    ) -> None:
        """Send an Ethernet frame from this node on a network. `payload` is bytes or a
        Scapy packet; an ``Ether()/…`` is sent as it is (its src defaults to our MAC)."""
        network = self._nwid(nwid)
        own = self.mac(network)
        if isinstance(payload, Ether):
            src = payload.src if payload.src not in (None, "00:00:00:00:00:00") else own
            dst_mac = payload.dst if dst is None else _mac_text(dst)
            etype = int(payload.type) if ethertype is None else ethertype
            data = bytes(payload.payload)
        else:
            src, dst_mac = own, _mac_text(dst)
            if isinstance(payload, Packet):
                etype = _ethertype_of(payload) if ethertype is None else ethertype
                data = bytes(payload)
            else:
                etype, data = (PING_ETHERTYPE if ethertype is None else ethertype), bytes(payload)
        src_i, dst_i = int(MAC.parse(src)), int(MAC.parse(dst_mac))
        svc = self.service

        def go() -> None:
            svc.process_virtual_network_frame(network, src_i, dst_i, etype, 0, data)
            svc.wake()

        self.bench.rt.call(go)

    def broadcast_eth(
        self, payload: bytes | Packet, ethertype: int | None = None, nwid: int | str | None = None
    ) -> None:
        self.send_eth(BROADCAST, payload, ethertype=ethertype, nwid=nwid)

    def send_message(self, dest: Any, data: bytes | str, type_id: int = USER_MESSAGE_TYPE) -> bool:
        """A VL1 USER_MESSAGE to a node (or address)."""
        address = (
            int(dest.address)
            if isinstance(dest, WorkbenchNode)
            else int(str(dest), 16)
            if isinstance(dest, str)
            else int(dest)
        )
        raw = data.encode() if isinstance(data, str) else bytes(data)
        return self.handle.send_user_message(address, type_id, raw)

    def ping(self, target: Any, nwid: int | str | None = None, timeout: float = 3.0) -> float:
        """ICMP (or ICMPv6) echo over the virtual network from this node's userspace stack;
        `target` is an IP or a node (its first address). The round trip in ms; raises
        TimeoutError when no reply came within `timeout` seconds."""
        network = self._nwid(nwid)
        ip = target.ips(network)[0] if isinstance(target, WorkbenchNode) else str(target)
        ipaddress.ip_address(ip)  # a clear error for a typo
        svc = self.service

        def start() -> Any:
            responder = svc.responder(network)
            if responder is None:
                raise RuntimeError(f"{self.name} has no address on {network:016x} yet")
            h = responder.ping(ip, svc.clock(), timeout=int(timeout * 1000))
            svc.wake()
            return h

        h = self.bench.rt.call(start)
        deadline = time.monotonic() + timeout + 1
        while not h.done and time.monotonic() < deadline:
            time.sleep(0.01)
        if h.reply_time is None:
            raise TimeoutError(f"{self.name}: no echo reply from {ip} within {timeout:g} s ({h.error or 'no reply'})")
        return h.reply_time

    def wait(
        self,
        buffer: RingBuffer | str,
        count: int = 1,
        timeout: float = 5.0,
        lfilter: Callable[[Any], bool] | None = None,
        new: bool = False,
    ) -> PacketList:
        """Wait for entries in one of this node's buffers (or its name, e.g. "vframes")."""
        buf = getattr(self, buffer) if isinstance(buffer, str) else buffer
        return buf.wait(count, timeout, lfilter, new)

    def capture(self, path: str | Path, nwid: int | str | None = None, network: bool = False) -> Capture:
        """Record this node's UDP datagrams (raw IP), or with ``network=True`` the frames
        of a network (Ethernet, both directions), to a pcap file until ``stop()`` (or the
        end of a ``with`` block)."""
        network_id = self._nwid(nwid) if network or nwid is not None else None
        return Capture(self.bench, NodeServiceApi(self.service), path, network_id)

    # -- observing (these run in the event loop thread) -----------------------------------

    def _on_frame(self, frame: VirtualFrame) -> None:
        payload_cls = ether_payload_class(frame.ethertype)
        try:
            inner = payload_cls(frame.data)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, struct.error, Scapy_Exception):
            # what Scapy's dissectors raise on odd input
            log.debug("could not dissect a frame as %s", payload_cls.__name__, exc_info=True)
            self.counters["undissectable_frames"] += 1
            inner = Raw(frame.data)
        pkt = (
            Ether(dst=str(MAC(frame.dest_mac)), src=str(MAC(frame.source_mac)), type=frame.ethertype) / inner
        )
        pkt.time = time.time()
        pkt.sniffed_on = f"{frame.network_id:016x}"
        self.vframes.append(pkt)
        if self.pingpong and frame.ethertype == PING_ETHERTYPE and frame.data.startswith(b"ping"):
            svc = self.service
            reply = b"pong from " + str(self.address).encode()
            own = int(MAC.from_address(int(self.address), frame.network_id))
            svc.process_virtual_network_frame(
                frame.network_id, own, frame.source_mac, PING_ETHERTYPE, 0, reply
            )
            self.counters["pongs_sent"] += 1

    def _on_event(self, event: Event) -> None:
        if event.type == EventType.TRACE:
            self.traced.append(event.data)  # a typed event (ztcore.tracing): repr and .to_json()
        elif event.type == EventType.USER_MESSAGE:
            self.messages.append(event.data)  # a ztcore.api.UserMessage (.source, .type_id, .data)

    def _on_wire(self, direction: str, local: tuple[str, int], remote: tuple[str, int], data: bytes) -> None:
        src, dst = (remote, local) if direction == "in" else (local, remote)
        pkt = wire_packet(src, dst, data)
        if self.decrypt and len(data) >= 28:
            try:
                pkt = self.keyring.decrypt(pkt)
            except DecryptError:
                self.counters["undecrypted_" + direction] += 1
        pkt.time = time.time()
        pkt.sniffed_on = self.name
        (self.received if direction == "in" else self.sent).append(pkt)
        self.bench._capture(direction, src, dst, data, pkt.time)


class Capture:
    """A pcap file being written from a node's traffic (see `WorkbenchNode.capture`)."""

    def __init__(self, bench: Workbench, api: NodeServiceApi, path: str | Path, nwid: int | None) -> None:
        self.path = Path(path)
        self.count = 0
        self._rt = bench.rt
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by stop()
        self._file.write(pcap.file_header(pcap.LINKTYPE_RAW if nwid is None else pcap.LINKTYPE_ETHERNET))
        self._file.flush()
        try:
            self._stop: Callable[[], None] | None = self._rt.call(api.capture, nwid, self._write)
        except BaseException:
            self._file.close()
            raise

    def _write(self, packet: bytes, when: float) -> None:  # in the loop thread
        if not self._file.closed:
            self._file.write(pcap.record(packet, when))
            self._file.flush()
            self.count += 1

    def stop(self) -> Path:
        if self._stop is not None:
            stop, self._stop = self._stop, None
            self._rt.call(stop)
            self._rt.call(self._file.close)  # after the last write, in the same thread
        return self.path

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<capture {self.path}: {self.count} packets{'' if self._stop else ', stopped'}>"


def wire_packet(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> Packet:
    """A UDP datagram as the Scapy packet a sniffer would show (IP or IPv6 / UDP / ZeroTier)."""
    ip_cls = IPv6 if ":" in src[0] else IP
    udp = UDP(sport=src[1], dport=dst[1], len=8 + len(data))
    # ZeroTier whatever the ports (the workbench's are random), not only on 9993.
    return ip_cls(src=src[0].split("%")[0], dst=dst[0].split("%")[0]) / udp / ZeroTier(data)


class OfflineNetwork:
    """The workbench's private network and a handle on its controller (``net``)."""

    def __init__(self, bench: Workbench, backend: Any, nwid: int) -> None:
        self.bench = bench
        self.backend = backend  # the controller's store backend (what /controller routes use)
        self.id = nwid

    def __repr__(self) -> str:
        return f"<network {self.id:016x} '{self.config().get('name', '')}'>"

    @property
    def nwid(self) -> str:
        return f"{self.id:016x}"

    def _address(self, node: Any) -> str:
        return str(node.address) if isinstance(node, WorkbenchNode) else f"{int(str(node), 16):010x}"

    def config(self) -> dict[str, Any]:
        return self.bench.rt.call(self.backend.get_network, self.nwid) or {}

    def update(self, **config: Any) -> dict[str, Any]:
        """Change the network as the controller API does, e.g. ``net.update(private=False)``."""
        return self.bench.rt.call(self.backend.post_network, self.nwid, config)

    def set_rules(self, rules: list[dict[str, Any]]) -> dict[str, Any]:
        """Replace the flow rules (zerotier-one's JSON rule objects)."""
        return self.update(rules=rules)

    def members(self) -> list[dict[str, Any]]:
        return [
            m
            for m in (
                self.member(a) for a in (self.bench.rt.call(self.backend.list_members, self.nwid) or [])
            )
            if m
        ]

    def member(self, node: Any) -> dict[str, Any] | None:
        return self.bench.rt.call(self.backend.get_member, self.nwid, self._address(node))

    def update_member(self, node: Any, **body: Any) -> dict[str, Any]:
        return self.bench.rt.call(self.backend.post_member, self.nwid, self._address(node), body)

    def authorize(self, node: Any, authorized: bool = True) -> dict[str, Any]:
        return self.update_member(node, authorized=authorized)

    def deauthorize(self, node: Any) -> dict[str, Any]:
        return self.authorize(node, False)

    def set_tags(self, node: Any, tags: dict[int, int]) -> dict[str, Any]:
        return self.update_member(node, tags=[[int(k), int(v)] for k, v in tags.items()])

    def set_capabilities(self, node: Any, capability_ids: Sequence[int]) -> dict[str, Any]:
        return self.update_member(node, capabilities=[int(c) for c in capability_ids])


class Workbench:
    """Nodes n1…nN (see the module docstring); a context manager that stops them on exit."""

    def __init__(
        self,
        n: int = 3,
        *,
        nwids: Sequence[int | str] | None = None,
        planet: World | bytes | str | Path | None = None,
        home: str | Path | None = None,
        buffer_size: int = DEFAULT_BUFFER,
        capture: str | Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not 1 <= n <= 64:
            raise ValueError("n must be 1..64")
        self.rt = ThreadedRuntime(name="ztcore-workbench", call_timeout=timeout)
        self.nodes: list[WorkbenchNode] = []
        self.net: OfflineNetwork | None = None
        self.default_nwid: int | None = None
        self.nwids: list[int] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._pcap: PcapWriter | None = None
        self._pcap_lock = threading.Lock()
        self._local_addresses: set[tuple[str, int]] = set()
        try:
            if capture is not None:
                # Wire traffic of every node, as IP/UDP (link type "raw IP").
                self._pcap = PcapWriter(str(capture), linktype=101, sync=True)
            if nwids:
                self._start_online(
                    n,
                    [int(x, 16) if isinstance(x, str) else int(x) for x in nwids],
                    planet,
                    home,
                    buffer_size,
                    timeout,
                )
            else:
                self._start_offline(n, home, buffer_size, timeout)
        except BaseException:
            self.close()
            raise

    def _state(self, home: str | Path | None, name: str) -> Any:
        return HomeDirectory(Path(home) / name) if home is not None else MemoryState()

    def _start_offline(self, n: int, home: str | Path | None, buffer_size: int, timeout: float) -> None:
        planet, self.root = self.rt.run(start_offline_root(self.rt.runtime))
        self.planet = planet
        self._tmp = tempfile.TemporaryDirectory(prefix="ztcore-workbench-")
        ctl, backend = self.rt.run(start_controller(self.rt.runtime, planet, self._tmp.name))
        self.controller = ctl
        network = self.rt.call(
            backend.create_network,
            {
                "name": "workbench",
                "private": True,
                "enableBroadcast": True,
                "ipAssignmentPools": [{"ipRangeStart": "10.147.20.1", "ipRangeEnd": "10.147.20.254"}],
                "routes": [{"target": "10.147.20.0/24"}],
                "v4AssignMode": {"zt": True},
                "v6AssignMode": {"zt": False, "6plane": False, "rfc4193": True},
            },
        )
        nwid = int(network["id"], 16)
        self.nwids = [nwid]
        self.net = OfflineNetwork(self, backend, nwid)
        self.default_nwid = nwid
        self._add_nodes(n, home, buffer_size, planet=planet, bind=["127.0.0.1"], allow_loopback=True)
        for node in self.nodes:
            self.net.authorize(node)  # before joining: the first request already succeeds
            node.join(nwid)
        self._wait(lambda: all(x.online for x in self.nodes), timeout, "nodes online")
        self._wait(
            lambda: all((x.network() or {}).get("status") == "OK" and x.ips() for x in self.nodes),
            timeout,
            "every node on the network with addresses",
        )

    def _start_online(
        self,
        n: int,
        nwids: list[int],
        planet: World | bytes | str | Path | None,
        home: str | Path | None,
        buffer_size: int,
        timeout: float,
    ) -> None:
        world: World | None
        if planet is None or isinstance(planet, World):
            world = planet
        else:
            raw = planet if isinstance(planet, bytes) else Path(planet).read_bytes()
            world = World.from_bytes(raw)[0]
        self.planet = world
        self.nwids = nwids
        self.default_nwid = nwids[0]
        # A planet whose roots are on loopback (a local test world) needs loopback paths,
        # which nodes otherwise refuse as the real core does.
        loopback = world is not None and any(
            ep.ip.is_loopback for root in world.roots for ep in root.stable_endpoints
        )
        self._add_nodes(n, home, buffer_size, planet=world, bind=None, allow_loopback=loopback)
        for node in self.nodes:
            for nwid in nwids:
                node.join(nwid)

    def _add_nodes(
        self, n: int, home: str | Path | None, buffer_size: int, *, planet: Any, bind: list[str] | None,
        allow_loopback: bool,
    ) -> None:  # fmt: skip
        runtime = self.rt.runtime

        async def add(name: str) -> WorkbenchNode:
            svc = NodeService(
                self._state(home, name), port=0, bind=bind, planet=planet, allow_loopback=allow_loopback,
                node_factory=runtime.node_factory, clock=runtime.clock,
            )  # fmt: skip
            node = WorkbenchNode(self, name, svc, buffer_size)
            await svc.start()
            runtime.services.append(svc)
            node._started()
            return node

        for i in range(1, n + 1):
            node = self.rt.run(add(f"n{i}"))
            self.nodes.append(node)
            self._local_addresses.update(self.rt.call(lambda s=node.service: s.local_addresses))

    @staticmethod
    def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"workbench: timed out waiting for {what}")
            time.sleep(0.05)

    def _capture(
        self, direction: str, src: tuple[str, int], dst: tuple[str, int], data: bytes, when: float
    ) -> None:
        if self._pcap is None:
            return
        if direction == "in" and src in self._local_addresses:
            return  # between two of our nodes: already written when it was sent
        ip_cls = IPv6 if ":" in src[0] else IP
        pkt = (
            ip_cls(src=src[0].split("%")[0], dst=dst[0].split("%")[0])
            / UDP(sport=src[1], dport=dst[1])
            / Raw(data)
        )
        pkt.time = when
        with self._pcap_lock:
            if self._pcap is not None:
                self._pcap.write(pkt)

    def keyring(self) -> Keyring:
        """A keyring of every node here (and the root and controller): decrypts their traffic."""
        ring = Keyring(*self.nodes)
        for extra in ("root", "controller"):
            svc = getattr(self, extra, None)
            if svc is not None:
                ring.add(svc)
        return ring

    def namespace(self) -> dict[str, Any]:
        """What the shell binds: n1…nN, net, nodes, wb, wait."""
        ns: dict[str, Any] = {node.name: node for node in self.nodes}
        ns.update(nodes=self.nodes, net=self.net, wb=self, wait=wait)
        return ns

    def banner(self) -> str:
        names = ", ".join(x.name for x in self.nodes)
        where = (
            f"offline planet, private network {self.net.nwid} (net)"
            if self.net is not None
            else "network"
            + ("s " if len(self.nwids) > 1 else " ")
            + ", ".join(f"{x:016x}" for x in self.nwids)
        )
        return (
            f"ztcore workbench: {names} on {where}; Scapy's names are all here\n"
            "node: address mac() ips() peers() send_eth(dst, pkt) broadcast_eth(pkt) send_message(n, data) ping(n)\n"
            "buffers: vframes sent received traced messages; wait(n1.vframes, 2, lfilter=...); n1.pingpong = False"
        )

    def close(self) -> None:
        try:
            self.rt.close()
        finally:
            with self._pcap_lock:
                if self._pcap is not None:
                    self._pcap.close()
                    self._pcap = None
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workbench {len(self.nodes)} nodes{' offline' if self.net else ''}>"
