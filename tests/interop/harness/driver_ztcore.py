"""Run one ztcore node (optionally hosting a controller and the local JSON API) and
answer line-based JSON commands on stdin, the same protocol as ``driver_libzt.py``.

Started by :class:`ZtcoreNode` inside a test network namespace with the project's own
Python. Prints ``{"type": "ready"}`` first, then one ``{"type": "reply", "id": ..,
"ok": ..}`` per command and ``{"type": "event", ...}`` for node events. Exits on
``stop``, on stdin EOF, or when its watchdog (``--max-seconds``) fires.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from typing import Any

from ztcore.api import Event, EventType
from ztcore.controller.live import EmbeddedController
from ztcore.controller.store import ControllerStore
from ztcore.runtime.home import HomeDirectory
from ztcore.runtime.http_api import HttpApiServer, StoreControllerBackend
from ztcore.runtime.service import NodeService
from ztcore.vl1.world import World

_out_lock = threading.Lock()
_out = sys.stdout


def emit(obj: dict[str, Any]) -> None:
    with _out_lock:
        _out.write(json.dumps(obj, default=str) + "\n")
        _out.flush()


class Driver:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.service: NodeService | None = None
        self.home: HomeDirectory | None = None
        self.controller: EmbeddedController | None = None
        self.backend: StoreControllerBackend | None = None
        self.api: HttpApiServer | None = None
        self.api_port = 0
        self.token = ""
        self.sockets: dict[int, Any] = {}
        self.frames: list[dict[str, Any]] = []
        self.recording = False
        self._stop_recording: Any = None
        self.stopping = asyncio.Event()

    # ---------------------------------------------------------------- commands
    async def cmd_start(self, a: dict[str, Any]) -> dict[str, Any]:
        home = HomeDirectory(a["home"])
        self.home = home
        planet = World.from_bytes(bytes.fromhex(a["planet_hex"]))[0] if a.get("planet_hex") else None
        svc = NodeService(home, port=int(a.get("port", 9993)), bind=a.get("bind") or None, planet=planet)

        def on_event(ev: Event) -> None:
            if ev.type not in (EventType.TRACE, EventType.REMOTE_TRACE):
                fields = ev.data if isinstance(ev.data, dict) else dataclasses.asdict(ev.data)  # UserMessage
                emit({"type": "event", "name": ev.type.name, "data": {k: str(v) for k, v in fields.items()}})

        svc.add_event_listener(on_event)
        self.recording = bool(a.get("record_frames", True))
        if self.recording:
            self._stop_recording = svc.add_frame_listener(self._on_frame)
        await svc.start()
        self.service = svc
        if a.get("controller"):
            store = ControllerStore(home.path)
            self.controller = EmbeddedController(store)
            svc.node.set_controller(self.controller)
            self.backend = StoreControllerBackend(store, int(svc.address))
            self.backend.add_listener(self.controller)
        if a.get("api_port") is not None:
            from ztcore.runtime.api_glue import NodeServiceApi

            self.token = home.authtoken()
            self.api = HttpApiServer(NodeServiceApi(svc), self.backend, self.token, int(a["api_port"]))
            await self.api.start()
            self.api_port = int(a["api_port"])
        return {"node_id": svc.address_hex, "ports": svc.ports}

    async def cmd_status(self, a: dict[str, Any]) -> dict[str, Any]:
        svc = self._svc()
        return {"online": bool(svc.node.online), "status": svc.node.status()}

    async def cmd_peers(self, a: dict[str, Any]) -> dict[str, Any]:
        svc = self._svc()
        now = svc.clock()
        return {
            "peers": [
                {**p.to_json(), "direct": p.direct, "protoVersion": p.proto_version}
                for p in svc.node.peers(now)
            ]
        }

    async def cmd_stats(self, a: dict[str, Any]) -> dict[str, Any]:
        node = self._svc().node
        return {
            "stats": dict(node.switch.stats),
            "drops": dict(node.switch.drops),
            "vl2_stats": dict(node.vl2.stats),
            "vl2_drops": dict(node.vl2.drops),
            "lane_sessions": node.lane.sessions if node.lane is not None else None,
            "controller": dict(self.controller.stats) if self.controller is not None else {},
        }

    # ------------------------------------------------ timed runs for bench/bench_vs_libzt.py
    # The data stays in this process (the JSON protocol only starts a run and reports it), so
    # what the bench measures is the node, not the harness. Same commands in driver_libzt.py.

    def _bench_fd(self, obj: Any) -> int:
        fd = max(self.sockets, default=0) + 1
        self.sockets[fd] = obj
        return fd

    @staticmethod
    async def _bench_wait(got: list[Any], seconds: float, idle_s: float) -> None:
        """Until ``seconds`` pass, or ``idle_s`` after the last arrival once anything arrived."""
        deadline = time.perf_counter() + seconds
        while True:
            now = time.perf_counter()
            if now >= deadline or (got[0] and now - got[3] >= idle_s):
                return
            await asyncio.sleep(0.05)

    async def cmd_bench_udp_blast(self, a: dict[str, Any]) -> dict[str, Any]:
        """``size``-byte datagrams of random bytes from socket ``fd`` to (ip, port) for
        ``seconds``: open loop (``rate_pps`` 0, ``burst`` per loop iteration) or paced."""
        svc = self._svc()
        sock = self.sockets[int(a["fd"])]
        payload = os.urandom(int(a.get("size", 1400)))
        dest = (str(a["ip"]), int(a["port"]))
        rate, burst = float(a.get("rate_pps", 0)), int(a.get("burst", 16))
        sent = errors = 0
        t0 = time.perf_counter()
        end = t0 + float(a.get("seconds", 3))
        while (now := time.perf_counter()) < end:
            n = burst if rate <= 0 else min(burst, int((now - t0) * rate) - sent)
            clock = svc.clock()
            for _ in range(n):
                try:
                    sock.sendto(payload, dest, now=clock)
                    sent += 1
                except OSError:
                    errors += 1
            await asyncio.sleep(0 if n > 0 else 0.0005)
        return {"sent": sent, "errors": errors, "seconds": time.perf_counter() - t0}

    async def cmd_bench_udp_sink(self, a: dict[str, Any]) -> dict[str, Any]:
        """Count datagrams arriving on socket ``fd`` (see :meth:`_bench_wait` for the end)."""
        sock = self.sockets[int(a["fd"])]
        got: list[Any] = [0, 0, 0.0, 0.0]  # datagrams, bytes, first and last arrival

        def arrived(data: bytes, addr: tuple[str, int]) -> None:
            t = time.perf_counter()
            if not got[0]:
                got[2] = t
            got[0] += 1
            got[1] += len(data)
            got[3] = t

        sock.set_handler(arrived)
        try:
            await self._bench_wait(got, float(a.get("seconds", 10)), float(a.get("idle_s", 0.3)))
        finally:
            sock.set_handler(None)
        return {"received": got[0], "bytes": got[1], "span_s": got[3] - got[2]}

    async def cmd_bench_ping(self, a: dict[str, Any]) -> dict[str, Any]:
        """``count`` ICMP echoes to ``ip``, one at a time, each timed with perf_counter from the
        request to the reply reaching the userspace responder (the handle's own clock is in ms)."""
        svc = self._svc()
        responder = svc.responder(int(a["nwid"], 16))
        if responder is None:
            raise RuntimeError("no userspace responder for that network (not configured yet?)")
        timeout = float(a.get("timeout_s", 2))
        payload = bytes.fromhex(a.get("payload_hex", "")) or bytes(56)
        rtts: list[float] = []
        errors: list[str] = []
        for seq in range(int(a.get("count", 10))):
            replied: asyncio.Future[float] = self.loop.create_future()

            def done(handle: Any, fut: asyncio.Future[float] = replied) -> None:
                if not fut.done():
                    fut.set_result(time.perf_counter())

            t0 = time.perf_counter()
            handle = responder.ping(
                a["ip"], svc.clock(), seq=seq & 0xFFFF, payload=payload, timeout=int(timeout * 1000), on_reply=done
            )
            try:
                t1 = await asyncio.wait_for(replied, timeout + 1)
            except asyncio.TimeoutError:
                errors.append("no answer")
                continue
            if handle.error:
                errors.append(str(handle.error))
            else:
                rtts.append((t1 - t0) * 1000)
            await asyncio.sleep(float(a.get("interval_s", 0.02)))
        return {"rtt_ms": rtts, "lost": len(errors), "errors": errors}

    def _bench_tcp(self) -> NodeService:
        svc = self._svc()
        if not hasattr(svc, "open_connection"):
            raise RuntimeError("no TCP in this tree (NodeService has no open_connection)")
        return svc

    async def cmd_bench_tcp_listen(self, a: dict[str, Any]) -> dict[str, Any]:
        svc: Any = self._bench_tcp()
        accepted: asyncio.Queue[Any] = asyncio.Queue()
        server = await svc.start_server(
            lambda reader, writer: accepted.put_nowait((reader, writer)), int(a["port"]), network=int(a["nwid"], 16)
        )
        return {"fd": self._bench_fd((server, accepted))}

    async def cmd_bench_tcp_sink(self, a: dict[str, Any]) -> dict[str, Any]:
        """Accept one connection on listener ``fd`` and count its bytes until EOF or ``seconds``."""
        server, accepted = self.sockets.pop(int(a["fd"]))
        seconds = float(a.get("seconds", 10))
        deadline = time.perf_counter() + seconds
        got: list[Any] = [0, 0, 0.0, 0.0]  # reads, bytes, first and last arrival
        try:
            reader, writer = await asyncio.wait_for(accepted.get(), seconds)
            try:
                while (left := deadline - time.perf_counter()) > 0:
                    try:
                        data = await asyncio.wait_for(reader.read(1 << 18), left)
                    except asyncio.TimeoutError:
                        break
                    if not data:
                        break
                    t = time.perf_counter()
                    if not got[0]:
                        got[2] = t
                    got[0] += 1
                    got[1] += len(data)
                    got[3] = t
            finally:
                writer.close()
        finally:
            server.close()
        return {"bytes": got[1], "span_s": got[3] - got[2]}

    async def cmd_bench_tcp_blast(self, a: dict[str, Any]) -> dict[str, Any]:
        """Connect to (ip, port) and write random bytes for ``seconds``, then close."""
        svc: Any = self._bench_tcp()
        _reader, writer = await svc.open_connection(
            a["ip"], int(a["port"]), network=int(a["nwid"], 16), timeout=float(a.get("timeout_s", 10))
        )
        chunk = os.urandom(int(a.get("chunk", 65536)))
        sent = 0
        t0 = time.perf_counter()
        end = t0 + float(a.get("seconds", 3))
        try:
            while time.perf_counter() < end:
                writer.write(chunk)
                sent += len(chunk)
                await asyncio.wait_for(writer.drain(), 30)
        finally:
            writer.close()
        return {"sent": sent, "seconds": time.perf_counter() - t0}

    async def cmd_echo(self, a: dict[str, Any]) -> dict[str, Any]:
        svc = self._svc()
        fut: asyncio.Future[int] = self.loop.create_future()

        def done(rtt: int) -> None:
            if not fut.done():
                fut.set_result(rtt)

        svc.node.echo(svc.clock(), int(a["address"], 16), done)
        svc.wake()
        rtt = await asyncio.wait_for(fut, float(a.get("timeout_s", 10)))
        return {"rtt_ms": rtt}

    async def cmd_user_message(self, a: dict[str, Any]) -> dict[str, Any]:
        svc = self._svc()
        ok = svc.send_user_message(int(a["address"], 16), int(a["type_id"]), bytes.fromhex(a["data_hex"]))
        svc.wake()
        return {"sent": ok}

    async def cmd_join(self, a: dict[str, Any]) -> dict[str, Any]:
        return {"network": self._svc().join(int(a["nwid"], 16))}

    async def cmd_leave(self, a: dict[str, Any]) -> dict[str, Any]:
        return {"left": bool(self._svc().leave(int(a["nwid"], 16)))}

    async def cmd_net(self, a: dict[str, Any]) -> dict[str, Any]:
        info = self._svc().node.network(int(a["nwid"], 16))
        return {"network": info}

    async def cmd_api(self, a: dict[str, Any]) -> dict[str, Any]:
        """Call this node's own local JSON API over HTTP on 127.0.0.1 (as a client would)."""
        if not self.api_port:
            raise RuntimeError("the JSON API was not started")
        body = json.dumps(a["body"]).encode() if a.get("body") is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{a['path']}",
            data=body,
            method=a.get("method", "GET"),
            headers={"X-ZT1-Auth": self.token, "Content-Type": "application/json"},
        )

        def call() -> tuple[int, Any]:
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read() or b"null")

        status, data = await asyncio.to_thread(call)
        return {"status": status, "json": data}

    async def cmd_ping(self, a: dict[str, Any]) -> dict[str, Any]:
        svc = self._svc()
        responder = svc.responder(int(a["nwid"], 16))
        if responder is None:
            raise RuntimeError("no userspace responder for that network (not configured yet?)")
        timeout = float(a.get("timeout_s", 5))
        handle = responder.ping(a["ip"], svc.clock(), timeout=int(timeout * 1000))
        deadline = time.monotonic() + timeout + 1
        while not handle.done and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return {"rtt_ms": handle.reply_time, "error": handle.error}

    async def cmd_udp_bind(self, a: dict[str, Any]) -> dict[str, Any]:
        responder = self._svc().responder(int(a["nwid"], 16))
        if responder is None:
            raise RuntimeError("no userspace responder for that network")
        sock = responder.udp_socket(int(a.get("port", 0)), v6=bool(a.get("v6", False)))
        fd = len(self.sockets) + 1
        self.sockets[fd] = sock
        return {"fd": fd, "port": sock.port}

    async def cmd_udp_sendto(self, a: dict[str, Any]) -> dict[str, Any]:
        sock = self.sockets[int(a["fd"])]
        data = bytes.fromhex(a["data_hex"])
        sock.sendto(data, (a["ip"], int(a["port"])), now=self._svc().clock())
        self._svc().wake()
        return {"sent": len(data)}

    async def cmd_udp_recvfrom(self, a: dict[str, Any]) -> dict[str, Any]:
        sock = self.sockets[int(a["fd"])]
        data, (ip, port) = await sock.recvfrom(timeout=float(a.get("timeout_s", 5)))
        return {"data_hex": data.hex(), "ip": ip, "port": port}

    def _on_frame(self, frame: Any) -> None:
        """Remember IPv4 frames delivered to the host side (what got through the rules)."""
        d = frame.data
        if frame.ethertype != 0x0800 or len(d) < 20:
            return
        hl = 4 * (d[0] & 0x0F)
        proto = d[9]
        dport = int.from_bytes(d[hl + 2 : hl + 4], "big") if proto in (6, 17) and len(d) >= hl + 4 else -1
        flags = d[hl + 13] if proto == 6 and len(d) > hl + 13 else 0
        if len(self.frames) < 10_000:
            self.frames.append(
                {
                    "src": ".".join(str(b) for b in d[12:16]),
                    "dst": ".".join(str(b) for b in d[16:20]),
                    "proto": proto,
                    "dport": dport,
                    "tcp_flags": flags,
                    "icmp_type": d[hl] if proto == 1 and len(d) > hl else -1,
                    "dest_mac": f"{frame.dest_mac:012x}",
                }
            )

    async def cmd_record_frames(self, a: dict[str, Any]) -> dict[str, Any]:
        """Switch the frame recorder on or off (off, the node's ICMP echo offload may answer)."""
        svc = self._svc()
        on = bool(a["on"])
        if on and not self.recording:
            self._stop_recording = svc.add_frame_listener(self._on_frame)
        elif not on and self.recording:
            self._stop_recording()
        self.recording = on
        return {"recording": on}

    async def cmd_frames(self, a: dict[str, Any]) -> dict[str, Any]:
        """IPv4 frames delivered since the last call (and forget them)."""
        if not self.recording:
            raise RuntimeError("started with record_frames false: no frames are recorded")
        out, self.frames = self.frames, []
        return {"frames": out}

    # TCP through the node's asyncio API (ztcore.runtime.sockets); same commands as the libzt driver.
    def _new_fd(self, obj: Any) -> int:
        fd = max(self.sockets, default=0) + 1
        self.sockets[fd] = obj
        return fd

    def _network(self, a: dict[str, Any]) -> int | None:
        return int(a["nwid"], 16) if a.get("nwid") else None

    async def cmd_tcp_listen(self, a: dict[str, Any]) -> dict[str, Any]:
        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

        def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.put_nowait((reader, writer))

        server = await self._svc().start_server(on_client, int(a["port"]), network=self._network(a))
        return {"fd": self._new_fd((server, accepted))}

    async def cmd_tcp_accept(self, a: dict[str, Any]) -> dict[str, Any]:
        _server, accepted = self.sockets[int(a["fd"])]
        reader, writer = await asyncio.wait_for(accepted.get(), float(a.get("timeout_s", 10)))
        ip, port = writer.get_extra_info("peername")
        return {"fd": self._new_fd((reader, writer)), "ip": ip, "port": port}

    async def cmd_tcp_connect(self, a: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await self._svc().open_connection(
            a["ip"], int(a["port"]), network=self._network(a), timeout=float(a.get("timeout_s", 10))
        )
        return {"fd": self._new_fd((reader, writer))}

    async def cmd_send_random(self, a: dict[str, Any]) -> dict[str, Any]:
        _reader, writer = self.sockets[int(a["fd"])]
        nbytes, chunk = int(a["nbytes"]), int(a.get("chunk", 65536))
        digest = hashlib.sha256()
        t0 = time.monotonic()

        async def pump() -> None:
            left = nbytes
            while left > 0:
                data = os.urandom(min(chunk, left))
                digest.update(data)
                writer.write(data)
                await writer.drain()
                left -= len(data)

        await asyncio.wait_for(pump(), float(a.get("timeout_s", 60)))
        return {"sent": nbytes, "sha256": digest.hexdigest(), "seconds": time.monotonic() - t0}

    async def cmd_recv_hash(self, a: dict[str, Any]) -> dict[str, Any]:
        reader, _writer = self.sockets[int(a["fd"])]
        nbytes = int(a["nbytes"])
        digest = hashlib.sha256()
        got = 0
        t0 = time.monotonic()

        async def drain() -> None:
            nonlocal got
            while got < nbytes:
                data = await reader.read(min(1 << 20, nbytes - got))
                if not data:
                    return
                digest.update(data)
                got += len(data)

        await asyncio.wait_for(drain(), float(a.get("timeout_s", 60)))
        conn = _writer.get_extra_info("tcp_connection")
        tcp = {"mss": conn.send_mss, "rcv_wscale": conn.rcv_wscale, **conn.counters} if conn else {}
        return {"received": got, "sha256": digest.hexdigest(), "seconds": time.monotonic() - t0, "tcp": tcp}

    async def cmd_close(self, a: dict[str, Any]) -> dict[str, Any]:
        obj = self.sockets.pop(int(a["fd"]), None)
        if isinstance(obj, tuple) and isinstance(obj[1], asyncio.StreamWriter):
            obj[1].close()
        elif isinstance(obj, tuple):
            obj[0].close()  # a listening server
        elif obj is not None:
            obj.close()  # a UDP socket
        return {}

    async def cmd_stop(self, a: dict[str, Any]) -> dict[str, Any]:
        self.stopping.set()
        return {}

    def _svc(self) -> NodeService:
        if self.service is None:
            raise RuntimeError("node not started")
        return self.service

    async def shutdown(self) -> None:
        if self.api is not None:
            await self.api.stop()
        if self.service is not None:
            await self.service.stop()

    async def dispatch(self, line: str) -> None:
        try:
            msg = json.loads(line)
            rid = msg.get("id")
            handler = getattr(self, "cmd_" + str(msg.get("cmd")), None)
            if handler is None:
                raise RuntimeError(f"unknown command {msg.get('cmd')!r}")
            reply = await handler(msg)
            emit({"type": "reply", "id": rid, "ok": True, **reply})
        except Exception as e:  # noqa: BLE001 - every failure goes back to the test
            emit(
                {
                    "type": "reply",
                    "id": locals().get("rid"),
                    "ok": False,
                    "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(),
                }
            )


async def main_async(max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    driver = Driver(loop)
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=reader, daemon=True).start()
    emit({"type": "ready", "pid": os.getpid()})
    deadline = loop.time() + max_seconds
    try:
        while not driver.stopping.is_set():
            left = deadline - loop.time()
            if left <= 0:
                emit({"type": "log", "msg": "watchdog: max seconds reached"})
                break
            try:
                line = await asyncio.wait_for(lines.get(), timeout=min(left, 1.0))
            except TimeoutError:
                continue
            if line is None:
                break
            if line.strip():
                loop.create_task(driver.dispatch(line))
    finally:
        await driver.shutdown()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--max-seconds", type=float, default=300.0)
    args = p.parse_args()
    asyncio.run(main_async(args.max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
