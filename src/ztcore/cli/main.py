"""Entry point of the `ztnode` console script: assembles the sub-command groups."""

from __future__ import annotations

import importlib

import click

from ztcore import __version__
from ztcore.errors import MissingLibraryError

# command -> (module, attribute holding its click command, one-line help). Imported
# lazily so that a broken or slow sub-command never stops the others from working,
# and `ztnode --help` lists them from this table without importing any of them
# (tests/test_cli_main.py checks that each line matches the command's own help).
_SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "cli": ("ztcore.cli.client", "cli", "zerotier-cli for a running node: query it, join and leave networks."),
    "controller": ("ztcore.cli.controller", "controller", "Manage the networks and members of a running node's controller."),
    "demo": ("ztcore.cli.demo", "demo", "Run an offline ZeroTier world (own planet, root, N nodes) and show it working."),
    "idtool": ("ztcore.cli.idtool", "idtool", "Create and use ZeroTier identities (like zerotier-idtool)."),
    "run": ("ztcore.cli.run", "run", 'Run one node until interrupted; prints "<address> <port>" once it is up.'),
    "world": ("ztcore.cli.world", "world", "Make, sign and inspect planet and moon (world) files."),
    "shell": ("ztcore.cli.shell", "shell", "Scapy's shell with ZeroTier nodes n1..nN (offline network by default)."),
    "capture": (
        "ztcore.cli.capture",
        "capture",
        "Write a running node's wire traffic (--wire) or a network's frames (--network) to a pcap file.",
    ),
    "rules": ("ztcore.cli.rules", "rules", "Compile, show and test a network's flow rules, tags and capabilities."),
    "trace": ("ztcore.cli.trace", "trace", "Follow trace events: the node's own, or (-c NWID) its controller's collected ones."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        try:
            module = importlib.import_module(target[0])
        except MissingLibraryError as e:  # e.g. no libsodium: one sentence, not a traceback
            raise click.ClickException(str(e)) from None
        return getattr(module, target[1])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="ztnode")
def main() -> None:
    """ztcore: ZeroTier nodes embedded in Python."""


if __name__ == "__main__":
    main()
