"""`ztnode idtool`: create and use ZeroTier identities, like `zerotier-idtool`.

Commands, outputs and exit codes follow the real tool:
  generate [SECRET] [PUBLIC] [VANITY]  identity to stdout, or "<file> written" per file
                                       (refuses an existing SECRET unless --force)
  validate IDENTITY                    "<arg> is a valid identity" (0) / "<arg> FAILED validation." (1)
  getpublic IDENTITY                   public identity string
  sign IDENTITY FILE                   hex signature of FILE's bytes
  verify IDENTITY FILE SIGNATURE       "<file> signature valid" (0) / "... signature check FAILED" (1)

An IDENTITY argument is either the identity text itself (recognised, as the
real tool does, by a ':' after the 10-digit address) or a path to a file
holding it. Like the real tool, identity strings and signatures are printed
without a trailing newline. Every failure prints a message and exits with 1.

Files are written atomically (a crash leaves the old file or the new one). Unlike
zerotier-idtool 1.14, which overwrites, `generate` refuses to replace an existing
secret without --force: replacing it loses the identity and its address for good.
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

import click

from ztcore.atomicfile import write_atomic
from ztcore.errors import InvalidFormatError
from ztcore.identity import Identity

__all__ = ["idtool"]

_MAX_IDENTITY_FILE = 65536  # identity files are ~270 bytes; refuse to slurp anything huge
_HEX = frozenset("0123456789abcdefABCDEF")


class _Command(click.Command):
    """A click command whose usage errors exit with 1, as zerotier-idtool does."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = 1
            raise


class _Group(click.Group):
    command_class = _Command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = 1
            raise

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = 1
            raise


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    raise click.exceptions.Exit(1)


def _identity_from_arg(arg: str) -> Identity:
    """Identity given literally or as a file path; exits with a message if neither works."""
    try:
        if len(arg) > 32 and arg[10] == ":":
            return Identity.from_string(arg)
        with open(arg, "rb") as f:
            data = f.read(_MAX_IDENTITY_FILE + 1)
        if len(data) > _MAX_IDENTITY_FILE:
            raise InvalidFormatError("file too large to be an identity")
        return Identity.from_string(data)
    except (OSError, InvalidFormatError):
        _fail(f"Identity argument invalid or file unreadable: {arg}")


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        _fail(f"{path} is not readable")


def _refuse_existing(path: str) -> NoReturn:
    _fail(f"{path} exists: refusing to overwrite an identity (use --force to replace it)")


def _write_file(path: str, text: str, secret: bool, overwrite: bool = True) -> None:
    """Write `text` to `path` atomically; secrets get mode 0600 even when the file existed."""
    try:
        write_atomic(path, text.encode("ascii"), mode=0o600 if secret else 0o644, overwrite=overwrite)
    except FileExistsError:
        _refuse_existing(path)
    except OSError:
        _fail(f"Error writing to {path}")
    click.echo(f"{path} written")


@click.group(cls=_Group, no_args_is_help=True)
def idtool() -> None:
    """Create and use ZeroTier identities (like zerotier-idtool)."""


@idtool.command()
@click.argument("secret_path", metavar="[IDENTITY.SECRET]", required=False)
@click.argument("public_path", metavar="[IDENTITY.PUBLIC]", required=False)
@click.argument("vanity", metavar="[VANITY]", required=False)
@click.option("--force", is_flag=True, help="Replace an existing IDENTITY.SECRET (its identity is lost).")
def generate(secret_path: str | None, public_path: str | None, vanity: str | None, force: bool) -> None:
    """Generate a new identity (optionally one whose address starts with hex VANITY)."""
    if secret_path is not None and not force and os.path.lexists(secret_path):
        _refuse_existing(secret_path)  # before a possibly long vanity search
    want = 0
    bits = 0
    if vanity is not None:
        if not vanity or len(vanity) > 10 or not _HEX.issuperset(vanity):
            _fail(f"vanity prefix must be 1 to 10 hex digits: {vanity}")
        bits = 4 * len(vanity)
        want = int(vanity, 16)
    while True:
        ident = Identity.generate()
        if (int(ident.address) >> (40 - bits)) == want:
            if bits:
                click.echo(f"vanity address: found {ident.address} !", err=True)
            break
        click.echo(
            f"vanity address: tried {ident.address} looking for first {bits} bits of {want << (40 - bits):010x}",
            err=True,
        )
    if secret_path is None:
        click.echo(ident.to_string(include_private=True), nl=False)
        return
    _write_file(secret_path, ident.to_string(include_private=True), secret=True, overwrite=force)
    if public_path is not None:
        _write_file(public_path, ident.to_string(), secret=False)


@idtool.command()
@click.argument("identity", metavar="IDENTITY.SECRET/PUBLIC")
def validate(identity: str) -> None:
    """Check that an identity's address really derives from its public key."""
    ident = _identity_from_arg(identity)
    if not ident.validate():
        _fail(f"{identity} FAILED validation.")
    click.echo(f"{identity} is a valid identity")


@idtool.command()
@click.argument("identity", metavar="IDENTITY.SECRET")
def getpublic(identity: str) -> None:
    """Print the public part of an identity."""
    click.echo(_identity_from_arg(identity).to_string(), nl=False)


@idtool.command()
@click.argument("identity", metavar="IDENTITY.SECRET")
@click.argument("file", metavar="FILE")
def sign(identity: str, file: str) -> None:
    """Sign FILE's contents; prints the 96-byte signature in hex."""
    ident = _identity_from_arg(identity)
    if not ident.has_private:
        _fail(f"{identity} does not contain a private key (must use private to sign)")
    click.echo(ident.sign(_read_file(file)).hex(), nl=False)


@idtool.command()
@click.argument("identity", metavar="IDENTITY.SECRET/PUBLIC")
@click.argument("file", metavar="FILE")
@click.argument("signature", metavar="SIGNATURE")
def verify(identity: str, file: str, signature: str) -> None:
    """Check a hex SIGNATURE of FILE's contents against IDENTITY."""
    ident = _identity_from_arg(identity)
    data = _read_file(file)
    sig = signature.strip()
    ok = len(sig) % 2 == 0 and _HEX.issuperset(sig) and ident.verify(data, bytes.fromhex(sig))
    if not ok:
        _fail(f"{file} signature check FAILED")
    click.echo(f"{file} signature valid")


def main(argv: list[str] | None = None) -> Any:
    """Run idtool on its own (e.g. `python -m ztcore.cli.idtool`)."""
    return idtool.main(args=argv, prog_name="idtool")


if __name__ == "__main__":
    main()
