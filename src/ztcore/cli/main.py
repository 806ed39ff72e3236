"""Entry point of the `ztnode` console script: assembles the sub-command groups."""

from __future__ import annotations

import importlib

import click

from ztcore import __version__
from ztcore.errors import MissingLibraryError

# module name -> attribute holding a click command; imported lazily so that a
# broken or slow sub-command never stops the others from working.
_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "idtool": ("ztcore.cli.idtool", "idtool"),
    "world": ("ztcore.cli.world", "world"),
    "run": ("ztcore.cli.run", "run"),
    "demo": ("ztcore.cli.demo", "demo"),
    "cli": ("ztcore.cli.client", "cli"),
    "controller": ("ztcore.cli.controller", "controller"),
    "trace": ("ztcore.cli.trace", "trace"),
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


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="ztnode")
def main() -> None:
    """ztcore: ZeroTier nodes embedded in Python."""


if __name__ == "__main__":
    main()
