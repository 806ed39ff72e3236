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
        self.stopping = asyncio.Event()

    # ---------------------------------------------------------------- commands
    async def cmd_start(self, a: dict[str, Any]) -> dict[str, Any]:
        home = HomeDirectory(a["home"])
        self.home = home
        planet = World.from_bytes(bytes.fromhex(a["planet_hex"]))[0] if a.get("planet_hex") else None
        svc = NodeService(home, port=int(a.get("port", 9993)), bind=a.get("bind") or None, planet=planet)

        def on_event(ev: Event) -> None:
            if ev.type not in (EventType.TRACE, EventType.REMOTE_TRACE):
                emit({"type": "event", "name": ev.type.name, "data": {k: str(v) for k, v in ev.data.items()}})

        svc.add_event_listener(on_event)
        svc.add_frame_listener(self._on_frame)
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

    async def cmd_frames(self, a: dict[str, Any]) -> dict[str, Any]:
        """IPv4 frames delivered since the last call (and forget them)."""
        out, self.frames = self.frames, []
        return {"frames": out}

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
