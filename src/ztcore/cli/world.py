"""`ztnode world`: make, sign and inspect planet and moon files.

Commands:
  genkey KEYFILE                 a world signing key pair (JSON, or mkworld's raw 128-byte form)
  mkplanet --key K --id N --root ID@IP/PORT[,...] -o OUT
                                 a planet in the core's binary format (like attic/world/mkworld)
  initmoon IDENTITY              moon JSON as `zerotier-idtool initmoon` prints it
  mkmoon [MOON_JSON | --key K --root ...]
                                 a signed moon file named 000000<id>.moon (like `zerotier-idtool genmoon`)
  show FILE [--json]             decode a planet/moon file and check its signature

Key files: genkey writes JSON {"objtype": "worldSigningKey", "signingKey": <128 hex>,
"signingKey_SECRET": <128 hex>} (mode 0600). Wherever a key file is read, that JSON,
zerotier-idtool's moon JSON (same field names) and mkworld's raw 128-byte
public+private `.c25519` files are all accepted.

Every failure prints a one-line error and exits with status 1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ztcore.atomicfile import write_atomic
from ztcore.crypto import (
    C25519_PRIVATE_KEY_LEN,
    C25519_PUBLIC_KEY_LEN,
    c25519_generate,
    c25519_public_from_private,
)
from ztcore.errors import InvalidFormatError
from ztcore.identity import Identity
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.world import (
    WORLD_MAX_ROOTS,
    WORLD_MAX_SERIALIZED_LENGTH,
    Root,
    World,
    WorldType,
    genmoon_order,
    moon_file_name,
)

__all__ = ["world"]

_MAX_SMALL_FILE = 1 << 20  # key, identity and JSON files are tiny; refuse to slurp anything huge


class _Fail(click.ClickException):
    """A user-facing error: printed as one line, exit status 1."""


def _read_small(path: str | Path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_SMALL_FILE + 1)
    except OSError as e:
        raise _Fail(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > _MAX_SMALL_FILE:
        raise _Fail(f"{what} {path} is too large")
    return data


def _write(path: str | Path, data: bytes, *, secret: bool = False, force: bool = True) -> None:
    """Write atomically (a crash leaves the old file or the new one, never a torn one)."""
    try:
        write_atomic(path, data, mode=0o600 if secret else 0o644, overwrite=force)
    except FileExistsError:
        raise _Fail(f"{path} exists (use --force to overwrite)") from None
    except OSError as e:
        raise _Fail(f"cannot write {path}: {e.strerror}") from None


def _unhex(value: Any, length: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise _Fail(f"{what} missing or not a string")
    try:
        raw = bytes.fromhex(value.strip())
    except ValueError:
        raise _Fail(f"{what} is not hex") from None
    if len(raw) != length:
        raise _Fail(f"{what} must be {length} bytes ({2 * length} hex digits)")
    return raw


def _key_pair_from_fields(obj: dict, where: str) -> tuple[bytes, bytes]:
    secret = _unhex(obj.get("signingKey_SECRET"), C25519_PRIVATE_KEY_LEN, f"signingKey_SECRET in {where}")
    public = c25519_public_from_private(secret)
    if (
        "signingKey" in obj
        and _unhex(obj["signingKey"], C25519_PUBLIC_KEY_LEN, f"signingKey in {where}") != public
    ):
        raise _Fail(f"signingKey in {where} does not match signingKey_SECRET")
    return public, secret


def _load_key(path: str) -> tuple[bytes, bytes]:
    """(public, private) from a genkey JSON, moon JSON or raw mkworld .c25519 file."""
    data = _read_small(path, "key file")
    # 128 bytes that are not a JSON object are a raw key, even one whose random first
    # byte happens to be "{" (1 key in 256 was misread as broken JSON).
    if len(data) == C25519_PUBLIC_KEY_LEN + C25519_PRIVATE_KEY_LEN and not _is_json_object(data):
        public, secret = data[:C25519_PUBLIC_KEY_LEN], data[C25519_PUBLIC_KEY_LEN:]
        if c25519_public_from_private(secret) != public:
            raise _Fail(f"{path}: public and private halves of the key do not match")
        return public, secret
    obj = _parse_json(data, path)
    return _key_pair_from_fields(obj, path)


def _load_public_key(path: str) -> bytes:
    """Only the public key: a full key file, or JSON holding just "signingKey"."""
    data = _read_small(path, "key file")
    if data.lstrip().startswith(b"{"):
        obj = _parse_json(data, path)
        if "signingKey_SECRET" not in obj:
            return _unhex(obj.get("signingKey"), C25519_PUBLIC_KEY_LEN, f"signingKey in {path}")
    return _load_key(path)[0]


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _parse_json(data: bytes, path: str) -> dict:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _Fail(f"{path} is neither JSON nor a raw 128-byte .c25519 key") from None
    if not isinstance(obj, dict):
        raise _Fail(f"{path}: expected a JSON object")
    return obj


def _identity_from_arg(arg: str, allow_file: bool = True) -> Identity:
    """An identity given as text, or a path to a file holding one (identity.public/secret)."""
    text: str | bytes = arg
    if allow_file and not (len(arg) > 32 and arg[10:11] == ":"):
        text = _read_small(arg, "identity file")
    try:
        identity = Identity.from_string(text)
    except InvalidFormatError as e:
        raise _Fail(f"invalid identity {arg[:60]}: {e}") from None
    if not identity.validate():
        raise _Fail(f"identity {identity.address} failed validation")
    return identity.public()


def _parse_endpoints(items: Sequence[str], where: str) -> tuple[InetAddress, ...]:
    out = []
    for item in items:
        try:
            out.append(InetAddress.parse(item))
        except InvalidFormatError as e:
            raise _Fail(f"bad stable endpoint {item!r} for {where}: {e}") from None
    return tuple(out)


def _parse_root(spec: str) -> Root:
    """IDENTITY_OR_FILE[@IP/PORT[,IP/PORT...]]"""
    ident_part, at, eps_part = spec.rpartition("@")
    if not at:
        ident_part, eps_part = spec, ""
    identity = _identity_from_arg(ident_part)
    endpoints = [e for e in eps_part.split(",") if e.strip()]
    try:
        return Root(identity, _parse_endpoints(endpoints, str(identity.address)))
    except InvalidFormatError as e:
        raise _Fail(str(e)) from None


def _parse_uint64(text: str, base: int, what: str) -> int:
    t = text.strip().lower()
    if t.startswith("0x"):
        t, base = t[2:], 16
    try:
        value = int(t, base)
    except ValueError:
        raise _Fail(f"{what} {text!r} is not a {'hex' if base == 16 else 'decimal'} number") from None
    if not 0 < value < 1 << 64:
        raise _Fail(f"{what} must be between 1 and 2^64-1")
    return value


def _now_ms() -> int:
    return int(time.time() * 1000)


def _make(
    wtype: WorldType,
    wid: int,
    timestamp: int | None,
    signer: tuple[bytes, bytes],
    embedded_public: bytes,
    roots: Sequence[Root],
) -> World:
    if not roots:
        raise _Fail("a world needs at least one root")
    if len(roots) > WORLD_MAX_ROOTS:
        raise _Fail(f"a world holds at most {WORLD_MAX_ROOTS} roots (the core rejects more)")
    try:
        w = World.make(
            type=wtype,
            id=wid,
            timestamp=_now_ms() if timestamp is None else timestamp,
            update_signing_public=embedded_public,
            roots=roots,
            sign_with=signer[1],
        )
    except (InvalidFormatError, ValueError) as e:
        raise _Fail(str(e)) from None
    if len(w.to_bytes()) > WORLD_MAX_SERIALIZED_LENGTH:
        raise _Fail("world is too large for the core's buffers")
    return w


@click.group()
def world() -> None:
    """Make, sign and inspect planet and moon (world) files."""


@world.command()
@click.argument("keyfile", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "c25519"]),
    default="json",
    show_default=True,
    help="json, or mkworld's raw 128-byte public+private form",
)
@click.option("--force", is_flag=True, help="overwrite an existing KEYFILE")
def genkey(keyfile: str, fmt: str, force: bool) -> None:
    """Create a world signing key pair in KEYFILE (mode 0600)."""
    public, secret = c25519_generate()
    if fmt == "json":
        doc = {"objtype": "worldSigningKey", "signingKey": public.hex(), "signingKey_SECRET": secret.hex()}
        data = (json.dumps(doc, indent=2) + "\n").encode()
    else:
        data = public + secret
    _write(keyfile, data, secret=True, force=force)
    click.echo(f"wrote {keyfile} (public key {public.hex()})")


_ROOT_HELP = "IDENTITY_OR_FILE@IP/PORT[,IP/PORT...]; repeat for each root (at most 4)"


@world.command()
@click.option("--key", "key_path", required=True, help="key file that signs this world")
@click.option(
    "--next-key",
    "next_key_path",
    help="key file whose public key must sign the next update (default: --key); "
    "to publish an update, sign with the previous key (--key) and embed a new one here",
)
@click.option("--id", "wid", required=True, help="world id (decimal, or 0x-prefixed hex)")
@click.option("--root", "roots", multiple=True, required=True, help=_ROOT_HELP)
@click.option(
    "--timestamp", type=click.IntRange(1, (1 << 64) - 1), help="revision timestamp in ms (default: now)"
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="planet file to write")
def mkplanet(
    key_path: str,
    next_key_path: str | None,
    wid: str,
    roots: tuple[str, ...],
    timestamp: int | None,
    output: str,
) -> None:
    """Make a signed planet file."""
    signer = _load_key(key_path)
    embedded = _load_public_key(next_key_path) if next_key_path else signer[0]
    w = _make(
        WorldType.PLANET,
        _parse_uint64(wid, 10, "world id"),
        timestamp,
        signer,
        embedded,
        [_parse_root(r) for r in roots],
    )
    data = w.to_bytes()
    _write(output, data)
    click.echo(
        f"wrote {output} (planet {w.id}, timestamp {w.timestamp}, {len(w.roots)} roots, {len(data)} bytes)"
    )


@world.command()
@click.argument("identity")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="write the JSON here (mode 0600) instead of stdout",
)
def initmoon(identity: str, output: str | None) -> None:
    """Start a moon definition (JSON, as `zerotier-idtool initmoon`) seeded by IDENTITY."""
    seed = _identity_from_arg(identity)
    public, secret = c25519_generate()
    doc = {
        "objtype": "world",
        "worldType": "moon",
        "updatesMustBeSignedBy": public.hex(),
        "signingKey": public.hex(),
        "signingKey_SECRET": secret.hex(),
        "id": str(seed.address),
        "roots": [{"identity": seed.to_string(), "stableEndpoints": []}],
    }
    text = json.dumps(doc, indent=2) + "\n"
    if output:
        _write(output, text.encode(), secret=True)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


def _world_from_moon_json(path: str, timestamp: int | None) -> World:
    """Follow `zerotier-idtool genmoon`: read the JSON, sort roots and endpoints, sign."""
    mj = _parse_json(_read_small(path, "moon JSON"), path)
    wid_text = mj.get("id")
    if not isinstance(wid_text, str):
        raise _Fail(f"ID in {path} is invalid")
    wid = _parse_uint64(wid_text, 16, f"ID in {path}")
    kind = mj.get("worldType")
    if kind not in ("moon", "planet"):
        raise _Fail('invalid worldType (expected "moon" or "planet")')
    signer = _key_pair_from_fields(mj, path)
    embedded = _unhex(
        mj.get("updatesMustBeSignedBy"), C25519_PUBLIC_KEY_LEN, f"updatesMustBeSignedBy in {path}"
    )
    roots_j = mj.get("roots")
    if not isinstance(roots_j, list):
        raise _Fail(f"roots in {path} must be a list")
    roots = []
    for i, rj in enumerate(roots_j):
        if not isinstance(rj, dict) or not isinstance(rj.get("identity"), str):
            raise _Fail(f'root {i} in {path} needs an "identity" string')
        identity = _identity_from_arg(rj["identity"], allow_file=False)
        eps_j = rj.get("stableEndpoints", [])
        if not isinstance(eps_j, list) or not all(isinstance(e, str) for e in eps_j):
            raise _Fail(f"stableEndpoints of root {identity.address} must be a list of strings")
        try:
            roots.append(Root(identity, _parse_endpoints(eps_j, str(identity.address))))
        except InvalidFormatError as e:
            raise _Fail(str(e)) from None
    wtype = WorldType.MOON if kind == "moon" else WorldType.PLANET
    return _make(wtype, wid, timestamp, signer, embedded, genmoon_order(roots))


@world.command()
@click.argument("moon_json", required=False)
@click.option("--key", "key_path", help="key file that signs this moon (instead of MOON_JSON)")
@click.option("--next-key", "next_key_path", help="key file that must sign the next update (default: --key)")
@click.option("--root", "roots", multiple=True, help=_ROOT_HELP + "; the first is the seed")
@click.option("--id", "wid", help="moon id in hex (default: the first root's address)")
@click.option(
    "--timestamp", type=click.IntRange(1, (1 << 64) - 1), help="revision timestamp in ms (default: now)"
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="file to write (default: 000000<id>.moon)"
)
@click.option(
    "--out-dir", type=click.Path(file_okay=False), default=".", help="directory for the default file name"
)
def mkmoon(
    moon_json: str | None,
    key_path: str | None,
    next_key_path: str | None,
    roots: tuple[str, ...],
    wid: str | None,
    timestamp: int | None,
    output: str | None,
    out_dir: str,
) -> None:
    """Make a signed moon file, from zerotier-idtool moon JSON or from --key and --root options."""
    if moon_json:
        if key_path or next_key_path or roots or wid:
            raise _Fail("give either MOON_JSON or --key/--root/--id options, not both")
        w = _world_from_moon_json(moon_json, timestamp)
    else:
        if not key_path or not roots:
            raise _Fail("need MOON_JSON, or --key and at least one --root")
        signer = _load_key(key_path)
        embedded = _load_public_key(next_key_path) if next_key_path else signer[0]
        parsed = [_parse_root(r) for r in roots]
        moon_id = _parse_uint64(wid, 16, "moon id") if wid else int(parsed[0].identity.address)
        w = _make(WorldType.MOON, moon_id, timestamp, signer, embedded, genmoon_order(parsed))
    path = Path(output) if output else Path(out_dir) / moon_file_name(w.id)
    _write(path, w.to_bytes())
    kind = "moon" if w.type == WorldType.MOON else "planet"
    click.echo(f"wrote {path} (signed {kind} {w.id:016x} with timestamp {w.timestamp})")


def _describe(w: World, used: int, size: int, previous: World | None) -> dict:
    roots = []
    for r in w.roots:
        roots.append(
            {
                "address": str(r.identity.address),
                "identity": r.identity.to_string(),
                "identityValid": r.identity.validate(),
                "stableEndpoints": [str(e) for e in r.stable_endpoints],
            }
        )
    doc: dict[str, Any] = {
        "type": w.type.name.lower(),
        "id": f"{w.id:016x}",
        "idDecimal": w.id,
        "timestamp": w.timestamp,
        "updatesMustBeSignedBy": w.update_signing_key.hex(),
        "signature": w.signature.hex(),
        "selfSigned": w.verify_signature(),
        "roots": roots,
        "length": used,
        "trailingBytes": size - used,
    }
    if previous is not None:
        doc["signedByPrevious"] = w.verify_signature(previous.update_signing_key)
        doc["replacesPrevious"] = previous.should_be_replaced_by(w)
    return doc


def _show_table(doc: dict, path: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    head = Table(title=f"{doc['type']} {path}", show_header=False)
    head.add_column("field", style="bold")
    head.add_column("value", overflow="fold")
    head.add_row("type", doc["type"])
    head.add_row("id", f"{doc['id']} ({doc['idDecimal']})")
    head.add_row("timestamp", str(doc["timestamp"]))
    head.add_row("update key", doc["updatesMustBeSignedBy"])
    head.add_row(
        "signature", "valid (self-signed)" if doc["selfSigned"] else "NOT valid with its own update key"
    )
    if "signedByPrevious" in doc:
        head.add_row("signed by previous", "yes" if doc["signedByPrevious"] else "no")
        head.add_row("replaces previous", "yes" if doc["replacesPrevious"] else "no")
    if doc["trailingBytes"]:
        head.add_row("trailing bytes", f"{doc['trailingBytes']} (ignored)")
    console.print(head)
    roots = Table(title=f"{len(doc['roots'])} roots")
    roots.add_column("address", no_wrap=True)
    roots.add_column("stable endpoints", no_wrap=True)
    roots.add_column("identity", overflow="fold")
    for r in doc["roots"]:
        ident = r["identity"] + ("" if r["identityValid"] else "  [INVALID]")
        roots.add_row(r["address"], "\n".join(r["stableEndpoints"]) or "-", ident)
    console.print(roots)


@world.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-j", "--json", "as_json", is_flag=True, help="print JSON")
@click.option(
    "--previous", type=click.Path(dir_okay=False), help="a previous revision: check that FILE may replace it"
)
def show(file: str, as_json: bool, previous: str | None) -> None:
    """Decode a planet or moon FILE and check its signature."""

    def load(path: str) -> tuple[World, int, int]:
        data = _read_small(path, "world file")
        try:
            w, used = World.from_bytes(data)
        except InvalidFormatError as e:
            raise _Fail(f"{path} is not a valid world file: {e}") from None
        return w, used, len(data)

    w, used, size = load(file)
    prev = load(previous)[0] if previous else None
    doc = _describe(w, used, size, prev)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        _show_table(doc, file)
