"""`ztnode run`: one node on a zerotier-one style home directory, until SIGINT/SIGTERM.

The daemon imports what an idle node uses and little else (see
bench/bench_rss_breakdown.py): the controller loads on first use
(`ztcore.runtime.controller_host`), and asyncio is imported without its TLS
support (`import_asyncio_without_tls`), which a node never uses.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from ztcore.api import Event, EventType
from ztcore.errors import ZTError

log = logging.getLogger("ztcore.run")


def import_asyncio_without_tls() -> bool:
    """Import asyncio without the ``ssl`` module, if neither is loaded yet; True if so.

    asyncio imports ``ssl`` (OpenSSL's libssl, ~4 MiB resident) only to offer TLS
    transports, and treats a missing ``ssl`` as a Python built without it (TLS
    calls then raise "Python ssl module is not available"). The daemon's transports
    are UDP and the plain-HTTP local API on loopback, so ``ssl`` is hidden while
    asyncio loads (a None entry in ``sys.modules`` makes ``import ssl`` fail, as the
    import system documents) and the entry is removed right after: a later
    ``import ssl`` elsewhere in the process still works; only asyncio's own TLS is
    off. In a process that already has either module this does nothing.
    """
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return False
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        importlib.import_module("asyncio")
    finally:
        if sys.modules.get("ssl", ...) is None:
            del sys.modules["ssl"]
    return True


def _load_planet(path: Path) -> Any:
    from ztcore.vl1.world import WorldType, load_world_file

    try:
        world = load_world_file(path)
    except OSError as e:
        raise click.ClickException(f"{path}: cannot read planet ({e.strerror})") from e
    except ZTError as e:
        raise click.ClickException(f"{path}: not a planet file ({e})") from e
    if world.type != WorldType.PLANET:
        raise click.ClickException(f"{path}: is a moon, not a planet")
    return world


def _log_event(event: Event) -> None:
    if event.type == EventType.TRACE:
        log.debug("trace: %s", event.data)
    elif event.type == EventType.USER_MESSAGE:
        msg = event.data
        log.info("user message from %010x type %#x (%d bytes)", int(msg.source), msg.type_id, len(msg.data))
    elif event.type == EventType.REMOTE_TRACE:
        log.debug("remote trace: %s", event.data)
    else:
        log.info("event %s%s", event.type.name, f" {event.data}" if event.data else "")


def release_startup_memory() -> bool:
    """Give the heap that start-up used and freed back to the system; True if done.

    Imports and start-up leave freed blocks at the top of the C heap, which glibc
    keeps (~2 MiB of an idle daemon's RSS); ``malloc_trim(0)`` (glibc, see
    malloc_trim(3)) returns them. Skipped where the C library has no such call
    (musl, macOS) or ctypes is not available.
    """
    import gc

    gc.collect()
    try:
        import ctypes

        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (ImportError, OSError):
        return False
    if trim is None:
        return False
    trim(0)
    return True


async def _serve(
    home: Any,
    port: int | None,
    api_port: int | None,
    bind: tuple[str, ...],
    planet: Any,
    allow_loopback: bool,
    with_controller: bool,
) -> None:
    from ztcore.runtime.api_glue import start_local_api
    from ztcore.runtime.controller_host import ControllerHost
    from ztcore.runtime.service import DEFAULT_PORT, NodeService, PortInUseError, ServiceError

    def make(p: int) -> NodeService:
        svc = NodeService(home, port=p, bind=bind or None, planet=planet, allow_loopback=allow_loopback)
        svc.add_event_listener(_log_event)
        return svc

    store: Any = None
    if with_controller and ControllerHost.has_store(home.path):
        from ztcore.controller.store import ControllerStore

        # Opened (and checked) before anything starts: a corrupt controller.db stops the
        # daemon with one sentence naming the file, not after the UDP service is up.
        # Without one, the controller is loaded on first use (see ControllerHost).
        store = ControllerStore(home.path)
    try:
        service = make(DEFAULT_PORT if port is None else port)
        try:
            await service.start()
        except PortInUseError:
            if port is not None:
                raise
            # Port not chosen by the user: behave like zerotier-one with port 0 rather than fail.
            log.warning("UDP port %d is busy, using a random port", DEFAULT_PORT)
            service = make(0)
            await service.start()
    except BaseException:
        if store is not None:
            store.close()
        raise

    api: Any = None
    host: ControllerHost | None = None
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        backend = None
        if with_controller:
            # Like zerotier-one, every node is the controller for networks under its own address.
            host = ControllerHost(home.path, int(service.address))
            if store is not None:
                host.load(store)  # the host owns (and closes) it from now on
                store = None
            setter = getattr(service.node, "set_controller", None)
            if setter is None:
                log.warning("this node cannot host a controller: config requests will go unanswered")
            else:
                setter(host.node_controller)
            backend = host.backend
        # zerotier-one serves its API on TCP at the UDP port's number; so do we unless told.
        wanted = service.primary_port if api_port is None else api_port
        try:
            api = await start_local_api(service, home, wanted, backend, fallback=api_port is None)
        except OSError as e:
            raise ServiceError(
                f"cannot serve the local API on 127.0.0.1 TCP port {wanted}: {e.strerror or e}"
            ) from e
        log.info("local API on 127.0.0.1 port %s", api.port)
        click.echo(f"{service.address_hex} {service.primary_port}")
        sys.stdout.flush()
        release_startup_memory()
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if api is not None:
            await api.stop()
        await service.stop()
        if host is not None:
            host.close()
        if store is not None:
            store.close()


@click.command("run")
@click.option(
    "--home",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Home directory (zerotier-one layout); created if missing.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Primary UDP port. Default 9993, or a random port if 9993 is busy; 0 = random.",
)
@click.option(
    "--bind", multiple=True, metavar="ADDR", help="Local IP address to bind (repeatable; default all)."
)
@click.option(
    "--planet",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Planet file to use instead of the built-in one (a newer planet in the home wins).",
)
@click.option(
    "--api-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="TCP port of the local JSON API on 127.0.0.1. Default: the UDP port's number, "
    "or a free port if that is busy; 0 = a free port. Recorded in zerotier-one.port.",
)
@click.option(
    "--controller/--no-controller",
    default=True,
    show_default=True,
    help="Act as the network controller for networks under this node's address.",
)
@click.option(
    "--allow-loopback", is_flag=True, help="Accept 127.0.0.0/8 and ::1 as peer paths (for local tests)."
)
@click.option("-v", "--verbose", count=True, help="More logging (-vv for traces).")
def run(
    home: Path,
    port: int | None,
    bind: tuple[str, ...],
    planet: Path | None,
    api_port: int | None,
    controller: bool,
    allow_loopback: bool,
    verbose: int,
) -> None:
    """Run one node until interrupted; prints "<address> <port>" once it is up.

    Also serves zerotier-one's local JSON API (see `ztnode cli`, `ztnode controller`)
    with the token in HOME/authtoken.secret, and, unless --no-controller, acts as the
    network controller for networks whose ids start with the node's address.
    """
    import_asyncio_without_tls()
    import asyncio

    from ztcore.runtime.home import HomeDirectory

    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Node events are few and worth seeing even without -v.
    logging.getLogger("ztcore.run").setLevel(min(level, logging.INFO))
    world = _load_planet(planet) if planet is not None else None
    home_dir = None
    try:
        home_dir = HomeDirectory(home)
        # A home belongs to one daemon: a second one would overwrite zerotier-one.port and
        # share identity and controller.db with the first.
        home_dir.lock()
        home_dir.authtoken()  # zerotier-one creates it at startup; local tools expect it
        asyncio.run(_serve(home_dir, port, api_port, bind, world, allow_loopback, controller))
    except ZTError as e:
        click.echo(f"ztnode run: error: {e}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"ztnode run: error: {e}", err=True)
        sys.exit(1)
    finally:
        if home_dir is not None:
            home_dir.unlock()
