"""A test client for the local API: the app on a real 127.0.0.1 socket (free port),
requests through aiohttp's HTTP client (an independent HTTP implementation), paths
relative to the server. Stands in for aiohttp's TestClient/TestServer now that the
API is not an aiohttp application."""

from __future__ import annotations

from typing import Any

import aiohttp

from ztcore.runtime.http_api import ApiApp, HttpApiServer


class ApiTestClient:
    def __init__(self, app: ApiApp) -> None:
        self.server = HttpApiServer(None, None, "", 0, hosts=("127.0.0.1",), app=app)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiTestClient:
        await self.server.start()
        self.session = aiohttp.ClientSession(f"http://127.0.0.1:{self.server.port}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()
        await self.server.stop()

    async def request(self, method: str, path: str, **kw: Any) -> aiohttp.ClientResponse:
        assert self.session is not None
        r = await self.session.request(method, path, **kw)
        await r.read()  # like TestClient: the body is there when the call returns
        return r

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.request("GET", path, **kw)
