"""The local API's HTTP/1.1 server (`ztcore.runtime.http_server`) on the wire: raw
bytes over a 127.0.0.1 socket, so framing, keep-alive, limits and timeouts are
checked as a client sees them, not through a client library."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ztcore.runtime import http_server
from ztcore.runtime.http_api import HttpApiServer, make_app

TOKEN = "0123456789abcdefghijklmn"


class _Node:
    def status(self) -> dict[str, Any]:
        return {"address": "abcdef0123", "online": True}

    def peers(self) -> list[dict[str, Any]]:
        return []

    def networks(self) -> list[dict[str, Any]]:
        return []

    def network(self, nwid: int) -> dict[str, Any] | None:
        return None

    def join(self, nwid: int) -> dict[str, Any]:
        return {"id": f"{nwid:016x}"}

    def leave(self, nwid: int) -> bool:
        return False

    def capture(self, nwid: int | None, sink: Callable[[bytes, float], None]) -> Callable[[], None]:
        for i in range(3):
            sink(bytes([0x45]) + bytes(19) + bytes([i]), 1.0 + i)
        return lambda: None


Test = Callable[[int], Awaitable[None]]


def _run(test: Test) -> None:
    async def main() -> None:
        server = HttpApiServer(_Node(), None, TOKEN, 0, hosts=("127.0.0.1",))
        await server.start()
        try:
            assert server.port is not None
            await asyncio.wait_for(test(server.port), 30)
        finally:
            await server.stop()

    asyncio.run(main())


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length (or chunked) body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.read()
    return status, headers, body


def _get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nX-ZT1-Auth: {TOKEN}\r\n{extra}\r\n".encode()


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def test(port: int) -> None:
        reader, writer = await _connect(port)
        # Two requests pipelined in one write, then a third after the answers.
        writer.write(_get("/status") + _get("/peer"))
        status, headers, body = await _response(reader)
        assert status == 200 and json.loads(body)["address"] == "abcdef0123"
        assert headers["content-type"].startswith("application/json") and "date" in headers
        status, _, body = await _response(reader)
        assert status == 200 and json.loads(body) == []
        writer.write(_get("/network"))
        assert (await _response(reader))[0] == 200
        # Clients send Content-Type: application/json and a body (even "{}") on GET and DELETE.
        json_body = "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        writer.write(_get("/peer", json_body)[:-2])
        assert (await _response(reader))[0] == 200
        writer.write(_get("/network/8056c2e21c000001", json_body)[:-2].replace(b"GET", b"DELETE", 1))
        status, _, body = await _response(reader)
        assert status == 404 and "not a member" in json.loads(body)["error"]
        writer.write(_get("/status", "Connection: close\r\n"))
        assert (await _response(reader))[0] == 200
        assert await reader.read() == b""  # the server hung up as asked
        writer.close()

    _run(test)


def test_head_405_404_and_auth_forms() -> None:
    async def test(port: int) -> None:
        reader, writer = await _connect(port)
        writer.write(_get("/status").replace(b"GET", b"HEAD", 1))
        status, headers, body = await _response_head_only(reader)
        assert status == 200 and int(headers["content-length"]) > 0 and body == b""
        writer.write(_get("/status").replace(b"GET", b"PATCH", 1))
        status, headers, body = await _response(reader)
        assert status == 405 and json.loads(body) == {"error": "Method Not Allowed", "status": 405}
        assert set(headers["allow"].split(",")) == {"GET", "HEAD"}
        writer.write(_get("/no/such/thing"))
        status, _, body = await _response(reader)
        assert (status, json.loads(body)) == (404, {"error": "Not Found", "status": 404})
        # No token: 401 whatever the path; ?auth= and a bearer token both work.
        writer.write(b"GET /no/such/thing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _response(reader))[0] == 401
        writer.write(f"GET /status?auth={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert (await _response(reader))[0] == 200
        writer.write(f"GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert (await _response(reader))[0] == 200
        # A percent-encoded path parameter is decoded before it is checked.
        writer.write(_get("/network/%38056c2e21c000001"))
        status, _, body = await _response(reader)
        assert status == 404 and "8056c2e21c000001" in json.loads(body)["error"]
        writer.close()

    _run(test)


async def _response_head_only(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    return int(lines[0].split()[1]), headers, b""


def test_bodies_chunked_expect_continue_and_the_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ztcore.runtime.http_api.MAX_BODY", 1000)

    async def test(port: int) -> None:
        reader, writer = await _connect(port)
        auth = f"X-ZT1-Auth: {TOKEN}\r\n"
        body = b'{"allowManaged": true}'
        writer.write(
            f"POST /network/8056c2e21c000001 HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n".encode()
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        )
        status, _, answer = await _response(reader)
        # (this node has no per-network settings: a 501 that says so, after reading the body)
        assert status == 501 and "settings" in json.loads(answer)["error"]
        writer.write(
            f"POST /network/8056c2e21c000001 HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 2\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 ")
        writer.write(b"{}")
        status, _, answer = await _response(reader)
        assert status == 200 and json.loads(answer) == {"id": "8056c2e21c000001"}
        # Too big: 413 in JSON, and the connection is closed (the rest is not read).
        writer.write(
            f"POST /network/8056c2e21c000001 HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5000\r\n\r\n".encode()
            + b"x" * 5000
        )
        status, headers, answer = await _response(reader)
        assert status == 413 and json.loads(answer)["status"] == 413
        assert headers.get("connection") == "close"
        assert await reader.read() == b""
        writer.close()

    _run(test)


def test_malformed_requests_get_a_json_4xx_and_a_closed_connection() -> None:
    async def test(port: int) -> None:
        for raw, want in [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /status HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
            (b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
            (b"POST /network/8056c2e21c000001 HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n", 400),
        ]:
            reader, writer = await _connect(port)
            writer.write(raw)
            status, _, body = await _response(reader)
            assert status == want, raw[:40]
            assert json.loads(body)["status"] == want
            assert await reader.read() == b""
            writer.close()

    _run(test)


def test_slow_and_idle_clients_are_disconnected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "REQUEST_TIMEOUT", 0.5)
    monkeypatch.setattr(http_server, "KEEPALIVE_TIMEOUT", 0.5)

    async def test(port: int) -> None:
        loop = asyncio.get_running_loop()
        # A request head that never ends, one byte at a time (slowloris).
        reader, writer = await _connect(port)
        t0 = loop.time()
        closed = False
        for _ in range(40):
            try:
                writer.write(b"G")
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            try:
                if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                    closed = True
                    break
            except asyncio.TimeoutError:
                pass
        assert closed and loop.time() - t0 < 1.8
        writer.close()
        # An idle keep-alive connection is closed after its timeout.
        reader, writer = await _connect(port)
        writer.write(_get("/status"))
        assert (await _response(reader))[0] == 200
        t0 = loop.time()
        assert await reader.read() == b""
        assert 0.3 < loop.time() - t0 < 3
        writer.close()

    _run(test)


def test_connections_beyond_the_cap_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "MAX_CONNECTIONS", 3)

    async def test(port: int) -> None:
        held = [await _connect(port) for _ in range(3)]
        for _, w in held:  # make sure all three are being served
            w.write(_get("/status"))
        for r, _ in held:
            assert (await _response(r))[0] == 200
        reader, writer = await _connect(port)
        assert await reader.read() == b""  # closed without an answer
        writer.close()
        held[0][1].close()
        await asyncio.sleep(0.2)
        reader, writer = await _connect(port)  # a slot is free again
        writer.write(_get("/status"))
        assert (await _response(reader))[0] == 200
        for _, w in [*held[1:], (reader, writer)]:
            w.close()

    _run(test)


def test_capture_streams_pcap_chunked() -> None:
    async def test(port: int) -> None:
        reader, writer = await _connect(port)
        writer.write(_get("/unstable/capture?count=3"))
        status, headers, body = await _response(reader)
        assert status == 200 and headers["content-type"] == "application/vnd.tcpdump.pcap"
        assert headers["transfer-encoding"] == "chunked"
        assert body[:4] == bytes.fromhex("d4c3b2a1") and len(body) == 24 + 3 * (16 + 21)
        # The connection stays usable after a finished stream.
        writer.write(_get("/status"))
        assert (await _response(reader))[0] == 200
        # HEAD of a stream: the head alone, and the connection goes on.
        writer.write(_get("/unstable/capture?count=1").replace(b"GET", b"HEAD", 1))
        status, headers, _ = await _response_head_only(reader)
        assert status == 200 and headers["content-type"] == "application/vnd.tcpdump.pcap"
        writer.write(_get("/status"))
        assert (await _response(reader))[0] == 200
        writer.close()

    _run(test)


def test_http_1_0_client_gets_a_closed_connection() -> None:
    async def test(port: int) -> None:
        reader, writer = await _connect(port)
        writer.write(f"GET /status HTTP/1.0\r\nX-ZT1-Auth: {TOKEN}\r\n\r\n".encode())
        status, _, body = await _response(reader)
        assert status == 200 and json.loads(body)["online"] is True
        assert await reader.read() == b""
        writer.close()

    _run(test)


def test_router_matches_whole_segments() -> None:
    app = make_app(_Node(), None, TOKEN)
    handler, params = app.router.resolve("GET", "/controller/network/abc/member/12")
    assert params == {"nwid": "abc", "address": "12"}
    for path in ("/controller/network//member", "/status/", "/statusx", "/"):
        with pytest.raises(http_server.HttpError) as e:
            app.router.resolve("GET", path)
        assert e.value.status == 404
    with pytest.raises(http_server.HttpError) as e:
        app.router.resolve("OPTIONS", "/status")
    assert e.value.status == 405


def test_server_binds_loopback_only() -> None:
    async def main() -> None:
        server = HttpApiServer(_Node(), None, TOKEN, 0)
        await server.start()
        try:
            assert server.bound[0] == "127.0.0.1"
            s = socket.create_connection(("127.0.0.1", server.port or 0), timeout=5)
            s.close()
        finally:
            await server.stop()

    asyncio.run(main())


def test_random_bytes_never_get_a_5xx_and_the_server_keeps_serving() -> None:
    import random

    rng = random.Random(13)
    valid = [
        _get("/status"),
        f"POST /controller/network HTTP/1.1\r\nHost: x\r\nX-ZT1-Auth: {TOKEN}\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
        f"DELETE /network/8056c2e21c000001 HTTP/1.1\r\nX-ZT1-Auth: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode(),
    ]

    def mutate(raw: bytes) -> bytes:
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 6)):
            op = rng.randrange(3)
            i = rng.randrange(len(b) + 1)
            if op == 0 and b:
                del b[min(i, len(b) - 1)]
            elif op == 1:
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
            elif b:
                b[min(i, len(b) - 1)] = rng.choice(b"\r\n:% /\x00\xff{}")
        return bytes(b)

    async def test(port: int) -> None:
        statuses: dict[int, int] = {}
        for _ in range(300):
            reader, writer = await _connect(port)
            writer.write(mutate(rng.choice(valid)))
            writer.write_eof()
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            for line in data.split(b"\r\n"):
                if line.startswith(b"HTTP/1.1 "):
                    status = int(line.split()[1])
                    statuses[status] = statuses.get(status, 0) + 1
                    assert status < 500, data[:200]
        assert sum(statuses.values()) > 100 and statuses.get(400, 0) > 50, statuses
        reader, writer = await _connect(port)
        writer.write(_get("/status"))
        assert (await _response(reader))[0] == 200
        writer.close()

    _run(test)
