"""`ztnode shell`: Scapy's interactive shell with ZeroTier nodes n1…nN in it.

By default fully offline (a throw-away planet and root, an embedded controller, a
private network the nodes join and are authorized on); with ``--nwid`` the nodes
join those networks on the given (or public) planet. The objects are those of
`ztcore.workbench`; Scapy (and IPython, when installed) is imported only here.
"""

from __future__ import annotations

import code
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import click


def _nwids(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if not value:
        return None
    out = []
    for part in value.split(","):
        part = part.strip()
        try:
            nwid = int(part, 16)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a 16-hex-digit network id") from None
        if len(part) != 16 or nwid == 0:
            raise click.BadParameter(f"{part!r} is not a 16-hex-digit network id")
        out.append(nwid)
    return out


@click.command("shell")
@click.option(
    "-n", "--nodes", "n", default=3, show_default=True, type=click.IntRange(1, 64), help="nodes n1..nN"
)
@click.option(
    "--nwid", callback=_nwids, help="join these networks (comma-separated) instead of an offline one"
)
@click.option(
    "--planet",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="planet file for --nwid (default: the public planet)",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="keep the nodes' identities and state in DIR/n1, DIR/n2, ... (default: in memory)",
)
@click.option("--buffer", "buffer_size", default=1000, show_default=True, type=click.IntRange(1, 10**7),
              help="length of each node's ring buffers")  # fmt: skip
@click.option("--timeout", default=30.0, show_default=True, type=float, help="seconds to wait for the nodes")
@click.option("--shell", "kind", type=click.Choice(["auto", "ipython", "python"]), default="auto", show_default=True,
              help="IPython (auto: when installed) or the plain Python shell")  # fmt: skip
def shell(
    n: int,
    nwid: list[int] | None,
    planet: Path | None,
    home: Path | None,
    buffer_size: int,
    timeout: float,
    kind: str,
) -> None:
    """Scapy's shell with ZeroTier nodes n1..nN (offline network by default)."""
    if planet is not None and not nwid:
        raise click.UsageError("--planet goes with --nwid (the offline network brings its own planet)")
    have_ipython = importlib.util.find_spec("IPython") is not None
    if kind == "ipython" and not have_ipython:
        raise click.UsageError("--shell ipython: IPython is not installed (pip install ipython)")
    # Scapy is an integration: imported here, never by `ztnode --help` or `import ztcore`.
    from ztcore.workbench import Workbench

    click.echo(f"starting {n} node{'s' if n > 1 else ''}...", err=True)
    try:
        bench = Workbench(n, nwids=nwid, planet=planet, home=home, buffer_size=buffer_size, timeout=timeout)
    except (TimeoutError, OSError) as e:
        raise click.ClickException(f"the workbench did not start: {e}") from e
    try:
        _interact(bench.namespace(), bench.banner(), ipython=have_ipython and kind != "python")
    finally:
        bench.close()
    sys.exit(0)


def _namespace(extra: dict[str, Any]) -> dict[str, Any]:
    """``from scapy.all import *`` and ``from ztcore.scapy import *``, then the workbench."""
    import scapy.all

    import ztcore.scapy

    ns: dict[str, Any] = {k: getattr(scapy.all, k) for k in dir(scapy.all) if not k.startswith("_")}
    ns.update({k: getattr(ztcore.scapy, k) for k in ztcore.scapy.__all__})
    ns.update(extra)
    return ns


def _interact(extra: dict[str, Any], banner: str, ipython: bool) -> None:
    if ipython:
        # Scapy's own shell start-up (IPython with Scapy's prompt and completion).
        from scapy.main import interact

        interact(
            mydict=_namespace(extra), argv=[], mybanner=banner, mybanneronly=True, loglevel=logging.WARNING
        )
        return
    # Plain Python: Scapy's interact() would print its own banner instead of ours here.
    ns = _namespace(extra)
    try:
        import readline
        import rlcompleter

        readline.set_completer(rlcompleter.Completer(ns).complete)
        readline.parse_and_bind("tab: complete")
    except ImportError:
        pass  # no line editing on this platform: the shell still works
    code.interact(banner=banner, local=ns, exitmsg="")
