"""The asyncio runner: UDP sockets, timers and callbacks around one sans-I/O `Node` (or many).

`NodeService` plays the part of zerotier-one's OneService for one node: it binds
the node's UDP sockets (IPv4 and IPv6, one port on each bind address, optionally
a secondary port), feeds received datagrams to ``Node.process_wire_packet``,
sends what the node asks it to send, calls ``Node.process_background_tasks`` at
the deadline the node returns, persists state through a `StateStore` and hands
node events to listeners. `Runtime` runs any number of them in one event loop.

Sockets are served without asyncio's datagram transport, which reads one
datagram per loop iteration and wraps every send: each socket is registered with
``loop.add_reader`` and drained per wake-up (at most `RECV_BATCH` datagrams, so a
busy socket cannot starve the loop; recvmmsg through `ztcore.runtime.udpio`), the
node's fast lane (`ztcore.lane`) gets each datagram first, and datagrams go out
through `ztcore.runtime.udpout` (direct non-blocking sends, a bounded queue per socket
while its buffer is full).

Everything here runs in the event loop's thread; `ztcore.runtime.facade` is the
thread-safe front for synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ztcore.api import Event, EventType, NodeCallbacks, StateObjectType, VirtualFrame
from ztcore.errors import report_unexpected
from ztcore.runtime.app import AppWaits
from ztcore.runtime.home import HomeDirectoryError, StateStore
from ztcore.runtime.sockets import NetworkSockets
from ztcore.runtime.udpio import recv_batch
from ztcore.runtime.udpout import Binding as _Binding
from ztcore.runtime.udpout import DatagramOutput
from ztcore.runtime.udpsockets import (
    PortInUseError,
    ServiceError,
    bind_port,
    bind_random_port,
)

__all__ = [
    "DEFAULT_BIND",
    "DEFAULT_PORT",
    "NodeFactory",
    "NodeService",
    "PortInUseError",
    "Runtime",
    "ServiceCounters",
    "ServiceError",
    "now_ms",
]

log = logging.getLogger("ztcore.runtime")

DEFAULT_PORT = 9993  # ZT_DEFAULT_PORT
DEFAULT_BIND: tuple[str, ...] = ("0.0.0.0", "::")
# The node says when it next wants background processing; keep that within sane bounds.
MIN_BACKGROUND_DELAY_MS = 10
MAX_BACKGROUND_DELAY_MS = 1000
_EVENT_QUEUE_LIMIT = 4096
# Datagrams read from one socket per wake-up (then the loop serves everything else once).
RECV_BATCH = 64

NodeFactory = Callable[..., Any]
EventListener = Callable[[Event], None]
# wire_listener(direction "in" | "out", local (host, port), remote (host, port), datagram)
WireListener = Callable[[str, tuple[str, int], tuple[str, int], bytes], None]


def now_ms() -> int:
    """Wall-clock milliseconds, the time base zerotier-one gives its node."""
    return int(time.time() * 1000)


@dataclass
class ServiceCounters:
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    send_errors: int = 0  # datagrams that could not be handed to a socket, plus socket errors
    send_dropped: int = 0  # datagrams dropped because a socket's send queue was full (or closed)
    node_errors: int = 0  # exceptions raised by the node while processing input or timers
    background_runs: int = 0
    events: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _default_node_factory() -> NodeFactory:
    # Imported here so the runtime can be imported (and tested) without the core.
    from ztcore.node import Node

    return Node


class _Callbacks:
    """The NodeCallbacks a NodeService gives its node (kept apart from the service's public API)."""

    def __init__(self, service: NodeService) -> None:
        self._s = service
        # The two called for every packet go straight to the service (a call less each).
        # virtual_network_frame: delivered from the event loop, not from inside the node's
        # call: a frame the node makes up while a listener is sending (NDP emulation,
        # frames to self) would otherwise re-enter that listener mid-send (the real core
        # likewise hands such frames over from another thread). Frames are queued and
        # handed over together: at the end of the socket drain that produced them (the
        # node's calls have all returned by then), or else in one call_soon for all.
        self.wire_packet_send: Callable[[int, tuple[str, int], bytes, int], bool] = service._send
        # Optional in NodeCallbacks: the pieces of one packet to one address (Node.lane_send).
        self.wire_packets_send: Callable[[int, tuple[str, int], tuple[bytes, ...]], bool] = service._send_many
        self.virtual_network_frame: Callable[[VirtualFrame], None] = service._queue_frame

    def state_put(self, kind: StateObjectType, object_id: tuple[int, ...], data: bytes | None) -> None:
        try:
            self._s.state.state_put(kind, object_id, data)
        except (HomeDirectoryError, OSError) as e:
            if kind in (StateObjectType.IDENTITY_SECRET, StateObjectType.IDENTITY_PUBLIC):
                raise  # an identity that cannot be saved must stop the node from starting
            log.warning("cannot save state %s %s: %s", StateObjectType(kind).name, object_id, e)

    def state_get(self, kind: StateObjectType, object_id: tuple[int, ...]) -> bytes | None:
        try:
            return self._s.state.state_get(kind, object_id)
        except (HomeDirectoryError, OSError) as e:
            if kind in (StateObjectType.IDENTITY_SECRET, StateObjectType.IDENTITY_PUBLIC):
                raise  # never let the node replace an identity it could not read
            log.warning("cannot load state %s %s: %s", StateObjectType(kind).name, object_id, e)
            return None

    def event(self, event: Event) -> None:
        self._s._on_event(event)

    def virtual_network_config(self, network_id: int, operation: str, config: object | None) -> None:
        self._s._dispatch(self._s._config_listeners, network_id, operation, config)


class NodeService(DatagramOutput, NetworkSockets, AppWaits):
    """One node with its UDP sockets, its timer and its state store, in the running event loop.

    ``port=0`` picks a random free port (20000..65499, like zerotier-one);
    ``bind`` lists local addresses (default: all IPv4 and all IPv6). With the
    default bind list an address family the host lacks is skipped; with an
    explicit list every address must bind. ``secondary_port`` (0 = random)
    binds a second port on the same addresses, as zerotier-one does to dodge
    NATs that mishandle one port.
    """

    def __init__(
        self,
        state: StateStore,
        *,
        port: int = 0,
        bind: Sequence[str] | None = None,
        secondary_port: int | None = None,
        planet: object | None = None,
        allow_loopback: bool = False,
        node_factory: NodeFactory | None = None,
        clock: Callable[[], int] = now_ms,
        userspace_stack: bool = True,
    ) -> None:
        if not 0 <= port < 65536:
            raise ServiceError(f"port {port} out of range")
        if secondary_port is not None and not 0 <= secondary_port < 65536:
            raise ServiceError(f"secondary port {secondary_port} out of range")
        self.state = state
        self.requested_port = port
        self.bind_addresses: tuple[str, ...] = tuple(bind) if bind else DEFAULT_BIND
        self._bind_optional = not bind
        self.requested_secondary_port = secondary_port
        self.planet = planet
        self.allow_loopback = allow_loopback
        self._node_factory = node_factory
        self.clock = clock
        self.counters = ServiceCounters()
        self.node: Any = None
        self.online = False
        self.recent_events: deque[Event] = deque(maxlen=256)
        self._callbacks = _Callbacks(self)
        self._bindings: dict[int, _Binding] = {}
        # Sockets of each address family, for sends that name no usable socket.
        self._by_family: dict[int, tuple[_Binding, ...]] = {}
        self._next_local_socket = 1
        # Frames from the node waiting to be handed to the frame listeners (see
        # _Callbacks.virtual_network_frame); _draining is set while a socket drain runs.
        self._frames: list[VirtualFrame] = []
        self._frames_scheduled = False
        self._draining = False
        self._timer: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event_listeners: list[EventListener] = []
        self._frame_listeners: list[Callable[[VirtualFrame], None]] = []
        self._config_listeners: list[Callable[[int, str, object | None], None]] = []
        self._wire_listeners: list[WireListener] = []
        self._local_frame_listeners: list[Callable[[VirtualFrame], None]] = []
        self._queues: set[asyncio.Queue[Event | None]] = set()
        self._started = False
        self._stopped = False
        # Userspace ARP/ICMP/NDP/UDP per joined network (see ztcore.netstack.attach).
        self.netstack: Any = None
        if userspace_stack:
            from ztcore.netstack.attach import NetworkStacks

            self.netstack = NetworkStacks(self._send_stack_frame, self.clock)
            self.netstack.on_change = self._update_echo_offload
            self._config_listeners.append(self.netstack.on_network_config)
            self._frame_listeners.append(self.netstack.on_frame)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the sockets, create the node and start the background timer."""
        if self._started:
            raise ServiceError("service already started")
        self._started = True
        self._loop = asyncio.get_running_loop()
        factory = self._node_factory or _default_node_factory()
        callbacks: NodeCallbacks = self._callbacks
        # Sockets are bound (but not yet read) before the node exists, so a busy port
        # fails without creating a node; a node that fails (bad identity) closes them.
        primary: list[socket.socket] = []
        secondary: list[socket.socket] = []
        try:
            primary = self._bind_primary()
            if self.requested_secondary_port == 0:
                port = primary[0].getsockname()[1]
                secondary = bind_random_port(self.bind_addresses, True, exclude=(port,))
            elif self.requested_secondary_port is not None:
                secondary = bind_port(self.bind_addresses, self.requested_secondary_port, True)
            self.node = factory(
                callbacks, self.clock(), planet=self.planet, allow_loopback=self.allow_loopback
            )
            self._update_echo_offload()
            while primary:
                await self._add_socket(primary[0], secondary=False)
                primary.pop(0)  # now owned by its transport
            while secondary:
                await self._add_socket(secondary[0], secondary=True)
                secondary.pop(0)
        except BaseException:
            await self._close_sockets()
            for sock in primary + secondary:
                sock.close()
            self._stopped = True
            raise
        # Addresses the node can tell peers about (PUSH_DIRECT_PATHS): the specific
        # addresses it is bound to; wildcard binds name no address of their own.
        direct = []
        for host, port in self.local_addresses:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                continue
            if not ip.is_unspecified and not ip.is_loopback:
                direct.append((str(ip), port))
        setter = getattr(self.node, "set_direct_paths", None)
        if direct and callable(setter):
            from ztcore.vl1.inetaddress import InetAddress

            setter([InetAddress.from_tuple(d) for d in direct])
        # Orbit the moons this home keeps, as zerotier-one does at start.
        moons = getattr(self.state, "saved_moons", None)
        if callable(moons):
            from ztcore.errors import ZTError
            from ztcore.vl1.world import World

            for raw in moons():
                try:
                    self.node.orbit(World.from_bytes(raw)[0])
                except ZTError as e:
                    log.warning("ignoring an unreadable moon in the home directory: %s", e)
        # Rejoin the networks this home has configs for, as zerotier-one does at start.
        saved = getattr(self.state, "saved_networks", None)
        if callable(saved):
            for nwid in saved():
                try:
                    self.node.join(nwid)
                except Exception as e:
                    report_unexpected(log, f"service: rejoining network {nwid:016x}", e)
        self._timer = self._loop.call_soon(self._run_background)
        log.info(
            "node %s listening on %s",
            self.address_hex,
            ", ".join(f"{h}/{p}" for h, p in self.local_addresses),
        )

    def _bind_primary(self) -> list[socket.socket]:
        if self.requested_port == 0:
            socks = bind_random_port(self.bind_addresses, self._bind_optional)
        else:
            socks = bind_port(self.bind_addresses, self.requested_port, self._bind_optional)
        if not socks:
            raise ServiceError(f"no usable bind address among {', '.join(self.bind_addresses)}")
        return socks

    async def _add_socket(self, sock: socket.socket, *, secondary: bool) -> None:
        assert self._loop is not None
        ls = self._next_local_socket
        address = sock.getsockname()
        binding = _Binding(ls, sock.family, (address[0], address[1]), sock, secondary)
        try:
            self._loop.add_reader(sock.fileno(), self._on_readable, binding)
        except NotImplementedError as e:
            raise ServiceError("the runtime needs an event loop with add_reader (a selector loop)") from e
        self._next_local_socket += 1
        self._bindings[ls] = binding
        self._index_bindings()

    def _index_bindings(self) -> None:
        by_family: dict[int, list[_Binding]] = {}
        for b in self._bindings.values():
            by_family.setdefault(b.family, []).append(b)
        self._by_family = {family: tuple(bs) for family, bs in by_family.items()}

    async def stop(self) -> None:
        """Shut the node down (it emits DOWN and flushes state), then close the sockets."""
        if self._stopped:
            return
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.node is not None:
            try:
                self.node.shutdown(self.clock())
            except Exception as e:
                self.counters.node_errors += 1
                report_unexpected(log, "service: node shutdown", e)
        await self._close_sockets()
        for q in list(self._queues):
            self._queue_put(q, None)
        self.online = False

    async def _close_sockets(self) -> None:
        bindings = list(self._bindings.values())
        self._bindings.clear()
        self._by_family = {}
        for b in bindings:
            if b.pending:
                self._on_writable(b)  # a last try for what the node said on its way down
            if self._loop is not None:
                self._loop.remove_reader(b.sock.fileno())
                if b.pending:
                    self._loop.remove_writer(b.sock.fileno())
            if b.pending:
                self.counters.send_dropped += len(b.pending)
                b.pending.clear()
            b.sock.close()

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    # -- what the service is bound to ---------------------------------------------------

    @property
    def local_addresses(self) -> list[tuple[str, int]]:
        return [b.address for b in self._bindings.values()]

    @property
    def local_sockets(self) -> dict[int, tuple[str, int]]:
        """local_socket number -> bound (address, port)."""
        return {ls: b.address for ls, b in self._bindings.items()}

    @property
    def ports(self) -> list[int]:
        """Bound ports, primary first."""
        out: list[int] = []
        for b in sorted(self._bindings.values(), key=lambda b: b.secondary):
            if b.address[1] not in out:
                out.append(b.address[1])
        return out

    @property
    def primary_port(self) -> int:
        for b in self._bindings.values():
            if not b.secondary:
                return b.address[1]
        raise ServiceError("service has no bound socket")

    # -- node facade (call from the loop thread) ----------------------------------------

    @property
    def address(self) -> int:
        return self._require_node().address

    @property
    def address_hex(self) -> str:
        return f"{int(self.address):010x}" if self.node is not None else "(none)"

    @property
    def identity(self) -> Any:
        return self._require_node().identity

    def status(self) -> dict[str, Any]:
        st = dict(self._require_node().status())
        st.setdefault("ports", self.ports)
        st.setdefault("localAddresses", [f"{h}/{p}" for h, p in self.local_addresses])
        st.setdefault("counters", self.counters.as_dict())
        return st

    def peers(self) -> list[Any]:
        return list(self._require_node().peers())

    def networks(self) -> list[Any]:
        return list(self._require_node().networks())

    def join(self, network_id: int) -> Any:
        r = self._require_node().join(network_id)
        self.wake()
        return r

    def leave(self, network_id: int) -> Any:
        r = self._require_node().leave(network_id)
        self.wake()
        return r

    def send_user_message(self, destination: int, type_id: int, data: bytes) -> bool:
        return bool(self._require_node().send_user_message(self.clock(), destination, type_id, data))

    def process_virtual_network_frame(
        self, network_id: int, source_mac: int, dest_mac: int, ethertype: int, vlan_id: int, data: bytes
    ) -> None:
        if self._local_frame_listeners:
            frame = VirtualFrame(network_id, source_mac, dest_mac, ethertype, vlan_id, bytes(data))
            self._dispatch(self._local_frame_listeners, frame)
        self._require_node().process_virtual_network_frame(
            self.clock(), network_id, source_mac, dest_mac, ethertype, vlan_id, data
        )

    def _send_stack_frame(
        self, network_id: int, source_mac: int, dest_mac: int, ethertype: int, data: bytes
    ) -> None:
        if self.node is not None:
            if self._local_frame_listeners:
                frame = VirtualFrame(network_id, source_mac, dest_mac, ethertype, 0, bytes(data))
                self._dispatch(self._local_frame_listeners, frame)
            now = self.clock()
            lane = getattr(self.node, "lane", None)
            if lane is None:
                self.node.process_virtual_network_frame(now, network_id, source_mac, dest_mac, ethertype, 0, data)
                return
            # The node's fast lane first (ztcore.lane), without the call into the node.
            out = lane.send(now, network_id, source_mac, dest_mac, ethertype, data)
            if out is None:
                self.node.process_virtual_network_frame(
                    now, network_id, source_mac, dest_mac, ethertype, 0, data, lane_tried=True
                )
            elif type(out[2]) is bytes:  # through the node's send callbacks, like every datagram
                self._callbacks.wire_packet_send(out[0], out[1], out[2], 0)
            else:
                self._callbacks.wire_packets_send(out[0], out[1], out[2])

    def responder(self, network_id: int) -> Any:
        """The userspace responder of a joined network (None if off or not configured yet)."""
        return self.netstack.responder(network_id) if self.netstack is not None else None

    def wake(self) -> None:
        """Run background tasks soon (after something that may need prompt follow-up, like join)."""
        if self.running and self._loop is not None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_soon(self._run_background)

    def _require_node(self) -> Any:
        if self.node is None:
            raise ServiceError("service not started")
        return self.node

    # -- listeners ----------------------------------------------------------------------

    def add_event_listener(self, listener: EventListener) -> Callable[[], None]:
        """Call `listener(event)` for every node event; returns a function that removes it."""
        return self._add(self._event_listeners, listener)

    def add_frame_listener(self, listener: Callable[[VirtualFrame], None]) -> Callable[[], None]:
        return self._add_watched(self._frame_listeners, listener)

    def add_network_config_listener(
        self, listener: Callable[[int, str, object | None], None]
    ) -> Callable[[], None]:
        return self._add(self._config_listeners, listener)

    def add_wire_listener(self, listener: WireListener) -> Callable[[], None]:
        """Observe every UDP datagram received ("in", before the node sees it) or sent
        ("out", once handed to a socket); for capture and the workbench."""
        return self._add(self._wire_listeners, listener)

    def add_local_frame_listener(self, listener: Callable[[VirtualFrame], None]) -> Callable[[], None]:
        """Observe the frames the host side hands to the node (the other direction of
        `add_frame_listener`); for capture."""
        return self._add_watched(self._local_frame_listeners, listener)

    def _add_watched(self, listeners: list[Any], listener: Any) -> Callable[[], None]:
        """`_add` for the frame listeners, which decide whether the lane may answer pings."""
        remove = self._add(listeners, listener)
        self._update_echo_offload()

        def remove_and_update() -> None:
            remove()
            self._update_echo_offload()

        return remove_and_update

    def _update_echo_offload(self) -> None:
        """Let the node's lane answer ICMP echo requests for the userspace responders
        (ztcore.lane) only while they are the sole consumers of frames in and out: any
        other listener must see every request and every reply."""
        node = self.node
        lane = getattr(node, "lane", None)
        if lane is None:
            return
        stacks = self.netstack
        offloads: dict[int, tuple[tuple[bytes, ...], int]] = {}
        if (
            stacks is not None
            and stacks.enabled
            and self._frame_listeners == [stacks.on_frame]
            and not self._local_frame_listeners
        ):
            for nwid, responder in stacks.responders.items():
                v4 = tuple(a.ip.packed for a in responder.addresses if a.version == 4)
                if responder.enabled and v4:
                    offloads[nwid] = (v4[:16], responder.mtu)
        lane.set_echo_offloads(offloads)

    @staticmethod
    def _add(listeners: list[Any], listener: Any) -> Callable[[], None]:
        listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                listeners.remove(listener)

        return remove

    async def events(self) -> AsyncIterator[Event]:
        """Iterate over node events from now on; ends when the service stops."""
        q: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=_EVENT_QUEUE_LIMIT)
        if self._stopped:
            return
        self._queues.add(q)
        try:
            while True:
                item = await q.get()
                if item is None:
                    return
                yield item
        finally:
            self._queues.discard(q)

    # -- internals ------------------------------------------------------------------------

    def _on_readable(self, b: _Binding) -> None:
        """The socket has datagrams: read up to RECV_BATCH of them and feed the node."""
        try:
            batch = recv_batch(b.sock, RECV_BATCH)
        except OSError as e:
            # ICMP errors from earlier sends (port unreachable etc.): UDP is best effort.
            self.counters.send_errors += 1
            log.debug("socket %d error: %s", b.local_socket, e)
            return
        counters = self.counters
        node = self.node
        if node is None or self._stopped:
            counters.packets_in += len(batch)
            counters.bytes_in += sum(len(d) for d, _ in batch)
            return
        ls = b.local_socket
        now = self.clock()  # one reading per drain: the node's clock is in ms
        lane = node.lane.receive if getattr(node, "lane", None) is not None else None
        self._draining = True
        try:
            for data, remote in batch:
                counters.packets_in += 1
                counters.bytes_in += len(data)
                if self._wire_listeners:
                    self._dispatch(self._wire_listeners, "in", b.address, remote, data)
                try:
                    # The node's fast lane first (ztcore.lane), without the call into the node.
                    taken = lane(now, ls, remote, data) if lane is not None else None
                    if taken is None:
                        if lane is None:
                            node.process_wire_packet(now, ls, remote, data)
                        else:
                            node.process_wire_packet(now, ls, remote, data, lane_tried=True)
                    elif type(taken) is bytes:  # a reply: through the node's send callback
                        self._callbacks.wire_packet_send(ls, remote, taken, 0)
                    elif type(taken) is tuple and len(taken) == 5:  # a frame
                        frame = VirtualFrame(taken[0], taken[1], taken[2], taken[3], 0, taken[4])
                        self._callbacks.virtual_network_frame(frame)
                    elif taken is not True:  # (True: a piece kept)
                        node.lane_output(now, ls, remote, taken)
                except Exception as e:
                    # One bad datagram must not take the service down.
                    counters.node_errors += 1
                    report_unexpected(log, "service: node processing a packet", e)
                if self._stopped:  # a listener stopped the service
                    break
        finally:
            self._draining = False
        if self._frames and not self._frames_scheduled:
            self._deliver_frames()

    def _queue_frame(self, frame: VirtualFrame) -> None:
        self._frames.append(frame)
        if self._loop is None:
            self._deliver_frames()
        elif not self._draining and not self._frames_scheduled:
            self._frames_scheduled = True
            self._loop.call_soon(self._deliver_frames)

    def _deliver_frames(self) -> None:
        # Frames a listener causes while these are handed over go to a fresh list and
        # a later call, never into a listener that is still running.
        self._frames_scheduled = False
        frames, self._frames = self._frames, []
        for frame in frames:
            for listener in list(self._frame_listeners):  # as _dispatch, a call less per frame
                try:
                    listener(frame)
                except Exception as e:
                    report_unexpected(
                        log, f"service: listener {getattr(listener, '__qualname__', listener)}", e
                    )

    def _run_background(self) -> None:
        self._timer = None
        if not self.running or self.node is None or self._loop is None:
            return
        now = self.clock()
        self.counters.background_runs += 1
        try:
            deadline = int(self.node.process_background_tasks(now))
        except Exception as e:
            self.counters.node_errors += 1
            report_unexpected(log, "service: node background tasks", e)
            deadline = now + MAX_BACKGROUND_DELAY_MS
        if self._stopped:  # shutdown may have been requested from a callback
            return
        if self.netstack is not None:
            try:
                self.netstack.expire()
            except Exception as e:
                self.counters.node_errors += 1
                report_unexpected(log, "service: userspace stack housekeeping", e)
        delay = min(max(deadline - self.clock(), MIN_BACKGROUND_DELAY_MS), MAX_BACKGROUND_DELAY_MS)
        self._timer = self._loop.call_later(delay / 1000.0, self._run_background)

    def _on_event(self, event: Event) -> None:
        self.counters.events += 1
        self.recent_events.append(event)
        if event.type == EventType.ONLINE:
            self.online = True
        elif event.type in (EventType.OFFLINE, EventType.DOWN):
            self.online = False
        self._dispatch(self._event_listeners, event)
        for q in list(self._queues):
            self._queue_put(q, event)

    @staticmethod
    def _queue_put(q: asyncio.Queue[Event | None], item: Event | None) -> None:
        if q.full():
            # A consumer that stopped reading loses the oldest events, not the newest.
            with contextlib.suppress(asyncio.QueueEmpty):
                q.get_nowait()
        q.put_nowait(item)

    def _dispatch(self, listeners: list[Any], *args: Any) -> None:
        for listener in list(listeners):
            try:
                listener(*args)
            except Exception as e:
                report_unexpected(log, f"service: listener {getattr(listener, '__qualname__', listener)}", e)

    def __repr__(self) -> str:
        return f"<NodeService {self.address_hex} ports={self.ports} running={self.running}>"


class Runtime:
    """Many `NodeService`s in one event loop."""

    def __init__(self, *, node_factory: NodeFactory | None = None, clock: Callable[[], int] = now_ms) -> None:
        self.node_factory = node_factory
        self.clock = clock
        self.services: list[NodeService] = []

    async def add_node(
        self,
        state: StateStore,
        *,
        port: int = 0,
        bind: Sequence[str] | None = None,
        secondary_port: int | None = None,
        planet: object | None = None,
        allow_loopback: bool = False,
        on_event: EventListener | None = None,
    ) -> NodeService:
        """Start a node on `state` (a HomeDirectory or MemoryState); `on_event` sees even its first events."""
        service = NodeService(
            state,
            port=port,
            bind=bind,
            secondary_port=secondary_port,
            planet=planet,
            allow_loopback=allow_loopback,
            node_factory=self.node_factory,
            clock=self.clock,
        )
        if on_event is not None:
            service.add_event_listener(on_event)
        await service.start()
        self.services.append(service)
        return service

    async def remove_node(self, service: NodeService) -> None:
        with contextlib.suppress(ValueError):
            self.services.remove(service)
        await service.stop()

    async def stop_all(self) -> None:
        services, self.services = self.services, []
        for s in services:
            try:
                await s.stop()
            except Exception as e:
                report_unexpected(log, "runtime: stopping a service", e)

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_all()
