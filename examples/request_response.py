"""A request/response service over TCP on a ZeroTier network: a small key-value
store speaking newline-delimited JSON, served by one member and used by others.

The server is ``start_server`` on the node and the client ``open_connection``:
asyncio's own StreamReader / StreamWriter, over ztcore's userspace TCP.

Run: python examples/request_response.py   (an offline network on this machine)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ztcore.offline import offline_world
from ztcore.runtime import NodeService

KV_PORT = 9000


class KeyValueServer:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "set":
            self.data[str(request["key"])] = request.get("value")
            return {"ok": True}
        if op == "get":
            key = str(request["key"])
            return {"ok": key in self.data, "value": self.data.get(key)}
        if op == "keys":
            return {"ok": True, "value": sorted(self.data)}
        return {"ok": False, "error": f"unknown op {op!r}"}

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = self.handle(json.loads(line))
                except (ValueError, KeyError, TypeError) as e:
                    reply = {"ok": False, "error": f"bad request: {e}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass  # the client went away
        finally:
            writer.close()


class KeyValueClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, node: NodeService, host: str, network_id: int) -> KeyValueClient:
        return cls(*await node.open_connection(host, KV_PORT, network=network_id, timeout=10))

    async def request(self, **req: Any) -> dict[str, Any]:
        self.writer.write(json.dumps(req).encode() + b"\n")
        await self.writer.drain()
        line = await asyncio.wait_for(self.reader.readline(), 10)
        if not line:
            raise ConnectionError("server closed the connection")
        return json.loads(line)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def demo() -> list[dict[str, Any]]:
    """Member 0 serves; members 1 and 2 write and read each other's keys."""
    async with offline_world(3) as world:
        server_node, alice_node, bob_node = world.members
        store = KeyValueServer()
        server = await server_node.start_server(store.serve_client, KV_PORT, network=world.network_id)
        host = world.ipv4(server_node)
        alice = await KeyValueClient.connect(alice_node, host, world.network_id)
        bob = await KeyValueClient.connect(bob_node, host, world.network_id)
        replies = [
            await alice.request(op="set", key="greeting", value="hello from alice"),
            await bob.request(op="set", key="answer", value=42),
            await bob.request(op="get", key="greeting"),
            await alice.request(op="get", key="answer"),
            await alice.request(op="keys"),
            await bob.request(op="frobnicate"),
        ]
        for r in replies:
            print(r)
        await alice.close()
        await bob.close()
        server.close()
        return replies


if __name__ == "__main__":
    asyncio.run(demo())
