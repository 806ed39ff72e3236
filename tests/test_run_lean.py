"""Issue 13, a lean `ztnode run`: the idle daemon does not load what it does not use
(TLS, the controller and SQLite, the userspace IP stack, aiohttp, scapy, rich, the
rules compiler), and what is loaded on demand answers as if it had always been
there: the hosted controller on a member's first config request or the first
``/controller`` API call."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon import daemon_env, idle_root_planet
from ztcore.cli.run import import_asyncio_without_tls, release_startup_memory
from ztcore.identity import Identity
from ztcore.runtime.controller_host import DB_FILENAME, ControllerHost
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl2.controller_api import ControllerError
from ztcore.vl2.netconf_request import build_request_metadata

# Loaded by an idle daemon only if something is wrong with the lazy imports.
NOT_AT_IDLE = (
    # crypto: libsodium does X25519/Ed25519, the armor kernel AES; the libsodium
    # declarations come pre-parsed from the build step (cffi out-of-line mode).
    "cryptography",
    "pycparser",
    "cffi",
    "ssl",
    "_ssl",
    "sqlite3",
    "aiohttp",
    "scapy",
    "rich",
    "ztcore.vl2.rules.compiler",
    "ztcore.controller.store",
    "ztcore.controller.live",
    "ztcore.controller.ipam",
    "ztcore.runtime.controller_backend",
    "ztcore.netstack.responder",
    "ztcore.netstack.udp",
    "ztcore.runtime.blocking",
    "ztcore.runtime.facade",
    "ztcore.cli.rules",
    "ztcore.cli.client",
    # only to read the built-in planet, which a node given its own planet file never needs
    "importlib.resources",
)


class _Sender:
    def __init__(self) -> None:
        self.configs: list[tuple[Any, ...]] = []
        self.errors: list[tuple[Any, ...]] = []

    def nc_send_config(self, *args: Any) -> None:
        self.configs.append(args)

    def nc_send_revocation(self, *args: Any) -> None:
        pass

    def nc_send_error(self, *args: Any) -> None:
        self.errors.append(args)


def _request(host: ControllerHost, nwid: int, member: Identity, packet_id: int) -> None:
    host.node_controller.request(
        int(time.time() * 1000), nwid, InetAddress.parse("192.0.2.1/9993"), packet_id,
        member.public(), build_request_metadata(),
    )  # fmt: skip


def test_controller_loads_on_a_members_first_request(tmp_path: Path) -> None:
    me, member = Identity.generate(), Identity.generate()
    host = ControllerHost(tmp_path, int(me.address))
    sender = _Sender()
    host.node_controller.init(me, sender)  # what Node.set_controller does
    assert not host.loaded and not ControllerHost.has_store(tmp_path)
    nwid = (int(me.address) << 24) | 0x42
    _request(host, nwid, member, 7)
    # Answered as zerotier-one's controller answers an unknown network of its own.
    assert host.loaded and (tmp_path / DB_FILENAME).exists()
    assert [(e[0], e[1], e[3]) for e in sender.errors] == [(nwid, 7, ControllerError.OBJECT_NOT_FOUND)]
    host.close()


def test_controller_loads_on_first_api_use_and_serves_members(tmp_path: Path) -> None:
    me, member = Identity.generate(), Identity.generate()
    host = ControllerHost(tmp_path, int(me.address))
    sender = _Sender()
    host.node_controller.init(me, sender)
    assert host.backend.list_networks() == [] and host.loaded
    nwid = f"{int(me.address):010x}000099"
    host.backend.post_network(nwid, {"name": "pub", "private": False})
    _request(host, int(nwid, 16), member, 9)
    assert not sender.errors and len(sender.configs) == 1
    assert sender.configs[0][:2] == (int(nwid, 16), 9)
    # The API's member record shows the (auto-authorized) member.
    assert host.backend.get_member(nwid, f"{int(member.address):010x}")["authorized"] is True
    host.close()


def test_an_existing_store_is_adopted(tmp_path: Path) -> None:
    from ztcore.controller.store import DB_FILENAME as STORE_DB_FILENAME
    from ztcore.controller.store import ControllerStore

    assert DB_FILENAME == STORE_DB_FILENAME
    me = Identity.generate()
    store = ControllerStore(tmp_path)
    assert ControllerHost.has_store(tmp_path)
    host = ControllerHost(tmp_path, int(me.address))
    host.load(store)
    assert host.store is store and host.backend.store is store
    host.node_controller.init(me, _Sender())
    assert host.controller is not None and host.node_controller.address == me.address
    host.close()


def test_asyncio_without_tls_in_a_fresh_process() -> None:
    code = (
        "import sys\n"
        "from ztcore.cli.run import import_asyncio_without_tls\n"
        "assert import_asyncio_without_tls() is True\n"
        "assert 'ssl' not in sys.modules and '_ssl' not in sys.modules\n"
        "import asyncio\n"
        "async def main():\n"
        "    r, w = await asyncio.open_connection(*srv.sockets[0].getsockname()[:2])\n"
        "    w.write(b'ping'); await w.drain(); w.close()\n"
        "async def serve():\n"
        "    global srv\n"
        "    got = asyncio.get_running_loop().create_future()\n"
        "    async def on(r, w):\n"
        "        got.set_result(await r.read(4)); w.close()\n"
        "    srv = await asyncio.start_server(on, '127.0.0.1', 0)\n"
        "    await main(); assert await got == b'ping'\n"
        "    try:\n"
        "        await asyncio.open_connection(*srv.sockets[0].getsockname()[:2], ssl=True)\n"
        "    except RuntimeError as e:\n"
        "        assert 'ssl' in str(e)\n"
        "    else:\n"
        "        raise AssertionError('asyncio offered TLS without ssl')\n"
        "    srv.close()\n"
        "asyncio.run(serve())\n"
        "import ssl\n"  # the rest of the process can still use ssl
        "assert ssl.OPENSSL_VERSION\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=daemon_env())
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_asyncio_without_tls_does_nothing_when_loaded() -> None:
    import asyncio  # noqa: F401 (loaded in this process, as in any test run)

    assert import_asyncio_without_tls() is False
    assert release_startup_memory() in (True, False)  # never raises


def _until(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_idle_daemon_loads_only_what_it_uses(tmp_path: Path) -> None:
    home, dump = tmp_path / "home", tmp_path / "modules.json"
    # The daemon as `ztnode run` starts it, plus a SIGUSR1 handler that writes sys.modules.
    code = (
        "import signal, sys\n"
        "def dump(*_):\n"
        "    with open(sys.argv[1] + '.tmp', 'w') as f:\n"
        "        f.write('\\n'.join(sorted(sys.modules)))\n"
        "    import os; os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
        "signal.signal(signal.SIGUSR1, dump)\n"
        "from ztcore.cli.main import main\n"
        "main(sys.argv[2:])\n"
    )
    args = [sys.executable, "-c", code, str(dump), "run", "--home", str(home), "--port", "0"]
    args += ["--bind", "127.0.0.1", "--allow-loopback", "--planet", str(idle_root_planet(tmp_path))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=daemon_env())
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and len(proc.stdout.readline().split()) == 2, "ztnode run did not start"
        port = int((home / "zerotier-one.port").read_text())
        token = (home / "authtoken.secret").read_text().strip()

        def get(path: str) -> tuple[int, Any]:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"X-ZT1-Auth": token})
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())

        def modules() -> set[str]:
            dump.unlink(missing_ok=True)
            proc.send_signal(signal.SIGUSR1)
            return set(_until(lambda: dump.exists() and dump.read_text().split(), "module dump"))

        status, body = get("/status")
        assert status == 200 and len(body["address"]) == 10
        loaded = modules()
        assert "ztcore.node" in loaded and "h11" in loaded  # (the dump works)
        assert sorted(loaded.intersection(NOT_AT_IDLE)) == []
        assert not (home / DB_FILENAME).exists()
        # The first /controller request loads the controller; it answers as always.
        status, body = get("/controller")
        assert status == 200 and body["controller"] is True
        status, body = get("/controller/network")
        assert (status, body) == (200, [])
        assert (home / DB_FILENAME).exists()
        loaded = modules()
        assert {"ztcore.controller.live", "ztcore.controller.store", "sqlite3"} <= loaded
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        err = proc.stderr.read() if proc.stderr is not None else ""
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == 0, err
