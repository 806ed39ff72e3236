"""ThreadedRuntime / NodeHandle: synchronous calls into the loop thread, bounded waits, clean close.

FakeNode is a minimal stand-in for ztcore.node.Node that records calls; the
tests check the facade's threading and timeouts, not node behaviour.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pytest

from ztcore.api import Event, EventType, NodeCallbacks, StateObjectType, UserMessage
from ztcore.runtime import MemoryState, NodeHandle, ThreadedRuntime


class FakeNode:
    def __init__(
        self, callbacks: NodeCallbacks, now: int, *, planet: object = None, allow_loopback: bool = False
    ) -> None:
        self.cb = callbacks
        self.address = int.from_bytes(os.urandom(5), "big")
        self.calls: list[tuple[Any, ...]] = []
        self.threads: set[str] = set()
        callbacks.state_put(StateObjectType.IDENTITY_PUBLIC, (self.address,), f"{self.address:010x}".encode())
        callbacks.event(Event(EventType.UP))

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        self.threads.add(threading.current_thread().name)

    def process_wire_packet(self, now: int, local_socket: int, remote: tuple[str, int], data: bytes) -> None:
        self._record("wire", data)
        if data == b"go-online":
            self.cb.event(Event(EventType.ONLINE))
        elif data.startswith(b"msg:"):
            self.cb.event(Event(EventType.USER_MESSAGE, UserMessage(1, 7, data[4:])))

    def process_background_tasks(self, now: int) -> int:
        return now + 100

    def send_user_message(self, now: int, destination: int, type_id: int, data: bytes) -> bool:
        self._record("send_user_message", destination, type_id, data)
        # Deliver it as a datagram to ourselves so an event comes back through the sockets.
        port = int(destination)
        return self.cb.wire_packet_send(-1, ("127.0.0.1", port), b"msg:" + data)

    def status(self) -> dict[str, Any]:
        self._record("status")
        return {"address": f"{self.address:010x}"}

    def peers(self) -> list[Any]:
        self._record("peers")
        return ["peer-a"]

    def networks(self) -> list[Any]:
        return []

    def join(self, nwid: int) -> None:
        self._record("join", nwid)

    def leave(self, nwid: int) -> None:
        self._record("leave", nwid)

    def shutdown(self, now: int) -> None:
        self._record("shutdown")
        self.cb.event(Event(EventType.DOWN))


def our_threads(rt: ThreadedRuntime) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t is rt.thread]


def test_add_node_call_methods_close() -> None:
    before = set(threading.enumerate())
    state = MemoryState()
    first: list[Event] = []
    with ThreadedRuntime(node_factory=FakeNode) as rt:
        h = rt.add_node(state, bind=["127.0.0.1"], on_event=first.append)
        assert isinstance(h, NodeHandle)
        node = h.service.node
        assert h.address == node.address
        assert h.ports and h.ports[0] > 0
        assert first[0].type == EventType.UP  # on_event sees the node's very first event
        assert state.state_get(StateObjectType.IDENTITY_PUBLIC, ()) == f"{node.address:010x}".encode()

        st = h.status()
        assert st["address"] == f"{node.address:010x}"
        assert st["ports"] == h.ports  # added by the service
        assert h.peers() == ["peer-a"]
        h.join(0x8056C2E21C000001)
        h.leave(0x8056C2E21C000001)
        assert ("join", 0x8056C2E21C000001) in node.calls and ("leave", 0x8056C2E21C000001) in node.calls
        # Every node call ran in the loop thread, none in ours.
        assert node.threads == {rt.thread.name}
        assert rt.thread.daemon

        # A user message looped back through UDP produces an event we can wait for.
        listeners = rt.call(lambda: len(h.service._event_listeners))
        with h.watch_events() as w:
            assert h.send_user_message(h.ports[0], 7, b"hello") is True
            ev = w.next(lambda e: e.type == EventType.USER_MESSAGE, timeout=5)
        assert ev.data.data == b"hello" and ev.data.type_id == 7
        # The watcher stopped listening when closed.
        with pytest.raises(TimeoutError):
            w.next(timeout=0.05)
        assert rt.call(lambda: len(h.service._event_listeners)) == listeners
        assert h.counters()["packets_in"] >= 1
    assert len(node.calls) and node.calls[-1] == ("shutdown",)
    assert our_threads(rt) == []
    assert not rt.thread.is_alive()
    assert rt.loop.is_closed()
    assert set(threading.enumerate()) <= before
    with pytest.raises(RuntimeError):
        h.status()


def test_wait_online_and_timeouts() -> None:
    rt = ThreadedRuntime(node_factory=FakeNode)
    try:
        h = rt.add_node(MemoryState(), bind=["127.0.0.1"])
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="not online after 0.2 s"):
            h.wait_online(timeout=0.2)
        with pytest.raises(TimeoutError):
            h.wait_event(lambda e: e.type == EventType.ONLINE, timeout=0.2)
        assert 0.35 <= time.monotonic() - t0 < 3

        # Make the node go online from another socket; the wait returns as soon as it does.
        done = threading.Event()

        def keep_sending(data: bytes) -> None:
            # Repeat until the waiter is done: the wait may register after the first datagram.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                while not done.wait(0.05):
                    s.sendto(data, ("127.0.0.1", h.ports[0]))

        sender = threading.Thread(target=keep_sending, args=(b"go-online",))
        sender.start()
        try:
            assert h.wait_online(timeout=5) is True
        finally:
            done.set()
            sender.join(5)
        assert h.online
        assert h.wait_online(timeout=0.01) is True  # already online: no waiting for a new event

        # A call into a stuck loop times out instead of hanging.
        rt.call(lambda: None)
        blocker = threading.Event()
        rt.loop.call_soon_threadsafe(blocker.wait, 2)
        with pytest.raises(TimeoutError):
            rt.call(lambda: 1, timeout=0.2)
        blocker.set()
        assert rt.call(lambda: 2) == 2

        # A failing predicate surfaces in the caller.
        def bad(e: Event) -> bool:
            raise ValueError("bad predicate")

        done.clear()
        sender = threading.Thread(target=keep_sending, args=(b"msg:x",))
        sender.start()
        try:
            with pytest.raises(ValueError, match="bad predicate"):
                h.wait_event(bad, timeout=5)
        finally:
            done.set()
            sender.join(5)
    finally:
        rt.close(timeout=5)
    assert not rt.thread.is_alive()


def test_multiple_nodes_and_stop_one() -> None:
    with ThreadedRuntime(node_factory=FakeNode) as rt:
        a = rt.add_node(MemoryState(), bind=["127.0.0.1"])
        b = rt.add_node(MemoryState(), bind=["127.0.0.1"])
        assert a.address != b.address and a.ports != b.ports
        a.stop()
        assert a.service.node.calls[-1] == ("shutdown",)
        assert not a.service.running and b.service.running
        assert rt.call(lambda: len(rt.runtime.services)) == 1
        assert b.status()["ports"] == b.ports
    assert b.service.node.calls[-1] == ("shutdown",)
    assert not rt.thread.is_alive()
    rt.close()  # closing twice is harmless


def test_node_construction_error_propagates() -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("cannot build node")

    with ThreadedRuntime(node_factory=broken) as rt:
        with pytest.raises(ValueError, match="cannot build node"):
            rt.add_node(MemoryState(), bind=["127.0.0.1"])
        assert rt.handles == []
    assert not rt.thread.is_alive()


def test_real_nodes_through_the_thread_facade() -> None:
    """The synchronous facade (scripts, REPL) with the real Node: an offline root on
    127.0.0.1 and two leaves exchanging a user message, no asyncio in sight."""
    from ztcore.api import EventType, StateObjectType
    from ztcore.identity import Identity
    from ztcore.runtime.facade import ThreadedRuntime
    from ztcore.runtime.home import MemoryState
    from ztcore.runtime.offline import free_udp_port, make_loopback_planet

    root_id = Identity.generate()
    port = free_udp_port()
    planet = make_loopback_planet(root_id, "127.0.0.1", port)
    root_state = MemoryState()
    root_state.state_put(
        StateObjectType.IDENTITY_SECRET, (), root_id.to_string(include_private=True).encode()
    )
    opts = {"bind": ["127.0.0.1"], "planet": planet, "allow_loopback": True}
    with ThreadedRuntime() as rt:
        rt.add_node(root_state, port=port, **opts)
        a = rt.add_node(MemoryState(), **opts)
        b = rt.add_node(MemoryState(), **opts)
        assert a.wait_online(10) and b.wait_online(10)
        with b.watch_events() as w:
            assert a.send_user_message(b.address, 99, b"from a script")
            ev = w.next(lambda e: e.type == EventType.USER_MESSAGE, timeout=10)
        assert ev.data.data == b"from a script" and ev.data.source == a.address
        assert any(int(p.address) == int(b.address) for p in a.peers())
