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
        self.stopping = asyncio.Event()

    # ---------------------------------------------------------------- commands
    async def cmd_start(self, a: dict[str, Any]) -> dict[str, Any]:
        home = HomeDirectory(a["home"])
        self.home = home
        planet = World.from_bytes(bytes.fromhex(a["planet_hex"]))[0] if a.get("planet_hex") else None
        svc = NodeService(home, port=int(a.get("port", 9993)), bind=a.get("bind") or None, planet=planet)

        def on_event(ev: Event) -> None:
            if ev.type != EventType.TRACE:
                emit({"type": "event", "name": ev.type.name, "data": {k: str(v) for k, v in ev.data.items()}})

        svc.add_event_listener(on_event)
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
        }

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
