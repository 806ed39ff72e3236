"""HTTP/1.1 over a ZeroTier network with h11 (a sans-I/O HTTP library) on
ztcore's asyncio transports.

The server is an ``asyncio.Protocol`` given to the node's ``create_server``;
the client one given to ``create_connection``. h11 only sees bytes in and
bytes out, so the same protocol classes would run over a kernel socket.
Requires ``pip install h11``.

Run: python examples/http_h11.py   (an offline network on this machine)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import h11

from ztcore.offline import offline_world
from ztcore.runtime import NodeService

HTTP_PORT = 8080

Handler = Callable[[str, str, bytes], tuple[int, bytes]]  # (method, target, body) -> (status, body)


class HttpServerProtocol(asyncio.Protocol):
    """One connection of a tiny HTTP/1.1 server (keep-alive included)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.conn = h11.Connection(h11.SERVER)
        self.transport: Any = None
        self.request: h11.Request | None = None
        self.body = bytearray()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._process()
        return False

    def _process(self) -> None:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                self._send(
                    h11.Response(status_code=400, headers=[("content-length", "0")]), h11.EndOfMessage()
                )
                self.transport.close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.request, self.body = event, bytearray()
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage) and self.request is not None:
                status, body = self.handler(
                    self.request.method.decode(), self.request.target.decode(), bytes(self.body)
                )
                headers = [("content-type", "text/plain"), ("content-length", str(len(body)))]
                self._send(
                    h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage()
                )
                if self.conn.our_state is h11.MUST_CLOSE:
                    self.transport.close()
                    return
                self.conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    def _send(self, *events: Any) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                self.transport.write(data)


class HttpClientProtocol(asyncio.Protocol):
    """Sends one request at a time on a kept-alive connection."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.conn = h11.Connection(h11.CLIENT)
        self.transport: Any = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.status = 0
        self.body = bytearray()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    async def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        self.waiter = asyncio.get_running_loop().create_future()
        headers = [("host", self.host), ("content-length", str(len(body)))]
        for event in (
            h11.Request(method=method, target=target, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            data = self.conn.send(event)
            if data:
                self.transport.write(data)
        return await asyncio.wait_for(self.waiter, 10)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self.status, self.body = event.status_code, bytearray()
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage) and self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((self.status, bytes(self.body)))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed"))


def app(method: str, target: str, body: bytes) -> tuple[int, bytes]:
    if method == "GET" and target == "/hello":
        return 200, b"hello over ZeroTier\n"
    if method == "POST" and target == "/upper":
        return 200, body.upper()
    return 404, b"not found\n"


async def serve(node: NodeService, network_id: int, handler: Handler = app) -> Any:
    return await node.create_server(lambda: HttpServerProtocol(handler), HTTP_PORT, network=network_id)


async def demo() -> list[tuple[int, bytes]]:
    async with offline_world(2) as world:
        server_node, client_node = world.members
        server = await serve(server_node, world.network_id)
        host = world.ipv4(server_node)
        transport, client = await client_node.create_connection(
            lambda: HttpClientProtocol(host), host, HTTP_PORT, network=world.network_id
        )
        assert isinstance(client, HttpClientProtocol)
        results = [
            await client.request("GET", "/hello"),
            await client.request("POST", "/upper", b"shout this"),  # same connection (keep-alive)
            await client.request("GET", "/nowhere"),
        ]
        for status, body in results:
            print(status, body)
        transport.close()
        server.close()
        return results


if __name__ == "__main__":
    asyncio.run(demo())
