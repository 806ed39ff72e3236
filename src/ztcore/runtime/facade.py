"""Synchronous front for scripts and the REPL: an asyncio `Runtime` in a daemon thread.

`ThreadedRuntime` owns the thread and its event loop; `NodeHandle` forwards each
call into that loop and waits for the answer. Every wait is bounded by a
timeout, so a stuck loop shows up as `TimeoutError`, never as a hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ztcore.api import Event, EventType
from ztcore.errors import ZTError, report_unexpected
from ztcore.runtime.home import StateStore
from ztcore.runtime.service import NodeFactory, NodeService, Runtime, now_ms

__all__ = ["EventWatcher", "NodeHandle", "ThreadedRuntime"]

log = logging.getLogger("ztcore.runtime")

T = TypeVar("T")

DEFAULT_CALL_TIMEOUT = 10.0


class EventWatcher:
    """Events of one node collected from the moment of creation, to be taken in order.

    Use it to act first and wait afterwards without missing a quick answer::

        with handle.watch_events() as w:
            handle.send_user_message(dest, 7, b"hi")
            reply = w.next(lambda e: e.type == EventType.USER_MESSAGE, timeout=5)
    """

    def __init__(self, handle: NodeHandle) -> None:
        self._queue: queue.Queue[Event] = queue.Queue()
        self._remove = handle.add_event_listener(self._queue.put)

    def next(
        self, predicate: Callable[[Event], bool] | None = None, timeout: float = DEFAULT_CALL_TIMEOUT
    ) -> Event:
        """The next collected event matching `predicate` (others are dropped); TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise TimeoutError(f"no matching event within {timeout:g} s") from None
            if predicate is None or predicate(event):
                return event

    def close(self) -> None:
        try:
            self._remove()
        except (RuntimeError, TimeoutError):
            pass  # runtime already closed

    def __enter__(self) -> EventWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NodeHandle:
    """A node running in a `ThreadedRuntime`; methods are safe to call from any thread."""

    def __init__(self, runtime: ThreadedRuntime, service: NodeService) -> None:
        self._rt = runtime
        self.service = service  # for use inside the loop thread only
        self.address: int = runtime.call(lambda: service.address)
        self.ports: list[int] = runtime.call(lambda: service.ports)

    @property
    def address_hex(self) -> str:
        return f"{int(self.address):010x}"

    @property
    def online(self) -> bool:
        return bool(self.service.online)

    def status(self) -> dict[str, Any]:
        return self._rt.call(self.service.status)

    def peers(self) -> list[Any]:
        return self._rt.call(self.service.peers)

    def networks(self) -> list[Any]:
        return self._rt.call(self.service.networks)

    def join(self, network_id: int) -> Any:
        return self._rt.call(self.service.join, network_id)

    def leave(self, network_id: int) -> Any:
        return self._rt.call(self.service.leave, network_id)

    def send_user_message(self, destination: int, type_id: int, data: bytes) -> bool:
        return self._rt.call(self.service.send_user_message, destination, type_id, bytes(data))

    def counters(self) -> dict[str, int]:
        return self._rt.call(self.service.counters.as_dict)

    def add_event_listener(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """`listener(event)` runs in the loop thread; the returned remover may be called from anywhere."""
        remove = self._rt.call(self.service.add_event_listener, listener)
        return lambda: self._rt.call(remove)

    def watch_events(self) -> EventWatcher:
        """Start collecting this node's events now (see `EventWatcher`)."""
        return EventWatcher(self)

    def wait_event(
        self, predicate: Callable[[Event], bool] | None = None, timeout: float = DEFAULT_CALL_TIMEOUT
    ) -> Event:
        """The next event for which `predicate(event)` is true; TimeoutError after `timeout` seconds.

        Only events emitted after this call are seen. `predicate` runs in the loop thread.
        """
        self._rt._forbid_loop_thread("wait_event")
        fut: concurrent.futures.Future[Event] = concurrent.futures.Future()

        def listener(event: Event) -> None:
            if fut.done():
                return
            try:
                if predicate is None or predicate(event):
                    fut.set_result(event)
            except Exception as e:  # surface a broken predicate to the waiting caller
                fut.set_exception(e)

        remove = self._rt.call(self.service.add_event_listener, listener)
        try:
            return fut.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no matching event within {timeout:g} s") from None
        finally:
            try:
                self._rt.call(remove)
            except (RuntimeError, TimeoutError):
                pass  # runtime closed meanwhile: the listener went with it

    def wait_online(self, timeout: float = 30.0) -> bool:
        """Wait until the node reports ONLINE (returns True); TimeoutError after `timeout` seconds."""
        self._rt._forbid_loop_thread("wait_online")
        fut: concurrent.futures.Future[bool] = concurrent.futures.Future()

        def listener(event: Event) -> None:
            if event.type == EventType.ONLINE and not fut.done():
                fut.set_result(True)

        def register() -> Callable[[], None]:
            # Check and subscribe in the loop thread, so an ONLINE in between is not lost.
            if self.service.online:
                fut.set_result(True)
            return self.service.add_event_listener(listener)

        remove = self._rt.call(register)
        try:
            return fut.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"node {self.address_hex} not online after {timeout:g} s") from None
        finally:
            try:
                self._rt.call(remove)
            except (RuntimeError, TimeoutError):
                pass

    def wait_network(self, network_id: int | str, timeout: float = 30.0, *, addresses: bool = True) -> dict[str, Any]:
        """`NodeService.wait_network` from a thread: the network's JSON once it is usable;
        TimeoutError naming the last status seen, LookupError if it is not joined."""
        self._rt._forbid_loop_thread("wait_network")
        return self._rt.run(self.service.wait_network(network_id, timeout, addresses=addresses), timeout=timeout + 5)

    # -- sockets on virtual networks (see ztcore.runtime.blocking) --------------------------

    def connect(
        self, host: str, port: int, *, network: int | str | None = None, timeout: float | None = 30.0
    ) -> Any:
        """A TCP connection to ``host`` (an IP on a joined network) as a blocking ``ZtSocket``.
        Raises ConnectionRefusedError, TimeoutError or OSError."""
        from ztcore.runtime.blocking import connect

        return connect(self._rt, self.service, host, port, network, timeout)

    def listen(self, port: int, *, network: int | str | None = None, backlog: int = 128) -> Any:
        """A listening TCP port (``ZtListener``: ``accept(timeout)`` -> (ZtSocket, peer address))."""
        from ztcore.runtime.blocking import ZtListener

        return ZtListener(self._rt, self.service, port, network, backlog)

    def udp_socket(self, port: int = 0, *, network: int | str | None = None, v6: bool = False) -> Any:
        """A UDP port (``ZtDatagramSocket``: ``sendto``, ``recvfrom(timeout)``, ``close``)."""
        from ztcore.runtime.blocking import ZtDatagramSocket

        return ZtDatagramSocket(self._rt, self.service, port, network, v6)

    def stop(self, timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        """Shut this node down (the runtime keeps running)."""
        self._rt.run(self._rt.runtime.remove_node(self.service), timeout=timeout)

    def __repr__(self) -> str:
        return f"<NodeHandle {self.address_hex} ports={self.ports}>"


class ThreadedRuntime:
    """An asyncio event loop in a daemon thread running a `Runtime`; usable as a context manager."""

    def __init__(
        self,
        *,
        node_factory: NodeFactory | None = None,
        clock: Callable[[], int] = now_ms,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        name: str = "ztcore-runtime",
    ) -> None:
        self.call_timeout = call_timeout
        self.runtime = Runtime(node_factory=node_factory, clock=clock)
        self.handles: list[NodeHandle] = []
        self._loop = asyncio.new_event_loop()
        self._closed = False
        ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name=name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout=call_timeout):
            raise TimeoutError("event loop thread did not start")

    def _thread_main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        try:
            self._loop.run_forever()
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            except Exception as e:
                report_unexpected(log, "facade: event loop cleanup", e)
            self._loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def _check_open(self) -> None:
        if self._closed or not self._thread.is_alive():
            raise RuntimeError("ThreadedRuntime is closed")

    def _in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _forbid_loop_thread(self, what: str) -> None:
        if self._in_loop_thread():
            raise RuntimeError(f"{what}() would block the event loop it waits for")

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run `fn(*args)` in the loop thread and return its result (or raise its exception)."""
        if self._in_loop_thread():
            return fn(*args)  # already there: waiting on ourselves would deadlock
        self._check_open()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def invoke() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args))
            except BaseException as e:
                fut.set_exception(e)

        self._loop.call_soon_threadsafe(invoke)
        try:
            return fut.result(timeout=self.call_timeout if timeout is None else timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"{getattr(fn, '__name__', fn)!s} did not complete in time") from None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine in the loop thread and wait for its result."""
        if self._in_loop_thread():
            coro.close()
            raise RuntimeError("ThreadedRuntime.run() called from inside its own event loop")
        try:
            self._check_open()
        except RuntimeError:
            coro.close()
            raise
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout=self.call_timeout if timeout is None else timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError("operation did not complete in time") from None

    def add_node(
        self,
        state: StateStore,
        *,
        port: int = 0,
        bind: Sequence[str] | None = None,
        secondary_port: int | None = None,
        planet: object | None = None,
        allow_loopback: bool = False,
        on_event: Callable[[Event], None] | None = None,
        timeout: float | None = None,
    ) -> NodeHandle:
        """Start a node; `on_event` runs in the loop thread and sees even the node's first events."""
        service = self.run(
            self.runtime.add_node(
                state,
                port=port,
                bind=bind,
                secondary_port=secondary_port,
                planet=planet,
                allow_loopback=allow_loopback,
                on_event=on_event,
            ),
            timeout=timeout,
        )
        handle = NodeHandle(self, service)
        self.handles.append(handle)
        return handle

    def close(self, timeout: float | None = None) -> None:
        """Stop every node, stop the loop and join its thread (each step bounded by `timeout`)."""
        if self._closed:
            return
        if self._in_loop_thread():
            raise RuntimeError("ThreadedRuntime.close() called from inside its own event loop")
        limit = self.call_timeout if timeout is None else timeout
        try:
            if self._thread.is_alive():
                self.run(self.runtime.stop_all(), timeout=limit)
        except (TimeoutError, ZTError, OSError):
            log.exception("stopping nodes failed; closing the loop anyway")
        finally:
            self._closed = True
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=limit)
            if self._thread.is_alive():
                log.error("event loop thread did not stop within %.1f s", limit)

    def __enter__(self) -> ThreadedRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"<ThreadedRuntime {state} nodes={len(self.handles)}>"
