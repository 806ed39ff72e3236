"""Persistent node state: a zerotier-one compatible home directory, and an in-memory store.

This module owns the mapping from `StateObjectType` + object id to files, using
the same names as zerotier-one's service so a home directory can be shared with
(or copied from) a real ZeroTier node:

=========================  ==========================================  ======
state object               file                                        mode
=========================  ==========================================  ======
IDENTITY_SECRET            identity.secret                             0600
IDENTITY_PUBLIC            identity.public
PLANET                     planet
MOON (world id)            moons.d/<world id, 16 hex digits>.moon
PEER (address)             peers.d/<address, 10 hex digits>.peer
NETWORK_CONFIG (nwid)      networks.d/<network id, 16 hex digits>.conf
=========================  ==========================================  ======

plus ``authtoken.secret`` (0600) and ``zerotier-one.port`` written by the service,
and ``ztnode.lock``, held (flock) by the one daemon that runs on the home.

Unlike zerotier-one, writes are atomic (temporary file, fsync, rename), and a
corrupt identity.secret — empty or unreadable included — is reported as a
`HomeDirectoryError` instead of being replaced by a fresh identity: losing a node's
identity loses its address. Only an identity.secret that does not exist is generated.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import IO, Protocol

from ztcore.api import StateObjectType
from ztcore.atomicfile import write_atomic
from ztcore.crypto import c25519_public_from_private
from ztcore.errors import InvalidFormatError, ZTError
from ztcore.identity import Identity

__all__ = [
    "AUTHTOKEN_FILE",
    "PORT_FILE",
    "HomeDirectoryError",
    "HomeDirectory",
    "MemoryState",
    "StateStore",
]

AUTHTOKEN_FILE = "authtoken.secret"
PORT_FILE = "zerotier-one.port"
IDENTITY_SECRET_FILE = "identity.secret"
IDENTITY_PUBLIC_FILE = "identity.public"
PLANET_FILE = "planet"
LOCK_FILE = "ztnode.lock"

log = logging.getLogger(__name__)

# zerotier-one draws its API token from this alphabet, 24 characters long.
_AUTHTOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_AUTHTOKEN_LENGTH = 24

# State files are small; anything larger than this is not a state object we wrote.
_MAX_STATE_FILE = 1 << 20

_SECRET_MODE = 0o600
_PUBLIC_MODE = 0o644
_DIR_MODE = 0o700


class HomeDirectoryError(ZTError):
    """The home directory (or one file in it) is unusable; the message names the path and the problem."""


class StateStore(Protocol):
    """The persistence half of `NodeCallbacks`."""

    def state_put(self, kind: StateObjectType, object_id: tuple[int, ...], data: bytes | None) -> None: ...

    def state_get(self, kind: StateObjectType, object_id: tuple[int, ...]) -> bytes | None: ...


def _check_kind(kind: object, object_id: object) -> tuple[StateObjectType, int]:
    """Validate a (kind, id) pair; returns the kind and the numeric id (0 for singletons)."""
    try:
        k = StateObjectType(kind)  # type: ignore[call-arg]
    except (ValueError, TypeError):
        raise HomeDirectoryError(f"unknown state object kind {kind!r}") from None
    if k is StateObjectType.NULL:
        raise HomeDirectoryError("state object kind NULL cannot be stored")
    if not isinstance(object_id, tuple):
        raise HomeDirectoryError(f"state object id must be a tuple, not {type(object_id).__name__}")
    if k in (StateObjectType.IDENTITY_PUBLIC, StateObjectType.IDENTITY_SECRET, StateObjectType.PLANET):
        # The core passes its own address as id for identities; the file name does not use it.
        return k, 0
    if len(object_id) < 1 or not isinstance(object_id[0], int) or isinstance(object_id[0], bool):
        raise HomeDirectoryError(f"state object {k.name} needs an integer id, got {object_id!r}")
    limit = 1 << 40 if k is StateObjectType.PEER else 1 << 64
    if not 0 <= object_id[0] < limit:
        raise HomeDirectoryError(f"state object {k.name} id {object_id[0]:#x} out of range")
    return k, object_id[0]


def _check_data(data: object) -> bytes | None:
    if data is None:
        return None
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise HomeDirectoryError(f"state object data must be bytes or None, not {type(data).__name__}")
    return bytes(data)


class MemoryState:
    """State kept in a dict: for tests, demos and nodes that should leave no trace on disk."""

    def __init__(self) -> None:
        self.objects: dict[tuple[StateObjectType, int], bytes] = {}

    def state_put(self, kind: StateObjectType, object_id: tuple[int, ...], data: bytes | None) -> None:
        k, n = _check_kind(kind, object_id)
        payload = _check_data(data)
        if payload is None:
            self.objects.pop((k, n), None)
        else:
            self.objects[(k, n)] = payload

    def state_get(self, kind: StateObjectType, object_id: tuple[int, ...]) -> bytes | None:
        k, n = _check_kind(kind, object_id)
        return self.objects.get((k, n))


class HomeDirectory:
    """A zerotier-one style home directory used as a node's state store.

    Opening checks identity.secret (if present): it must parse, hold a private
    key matching its public key and pass the address/hashcash check; if it does
    not, `HomeDirectoryError` is raised and the file is left as it is.
    identity.public is rewritten from identity.secret when missing or different.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise HomeDirectoryError(f"{self.path}: home directory does not exist")
            try:
                self.path.mkdir(mode=_DIR_MODE, parents=True)
            except OSError as e:
                raise HomeDirectoryError(f"{self.path}: cannot create home directory ({e.strerror})") from e
        elif not self.path.is_dir():
            raise HomeDirectoryError(f"{self.path}: exists and is not a directory")
        self._lock_file: IO[str] | None = None
        self.identity: Identity | None = self._check_identity()

    # -- file names -----------------------------------------------------------------

    def path_for(self, kind: StateObjectType, object_id: tuple[int, ...] = ()) -> Path:
        """The file holding one state object (the same names zerotier-one uses)."""
        k, n = _check_kind(kind, object_id)
        if k is StateObjectType.IDENTITY_SECRET:
            return self.path / IDENTITY_SECRET_FILE
        if k is StateObjectType.IDENTITY_PUBLIC:
            return self.path / IDENTITY_PUBLIC_FILE
        if k is StateObjectType.PLANET:
            return self.path / PLANET_FILE
        if k is StateObjectType.MOON:
            return self.path / "moons.d" / f"{n:016x}.moon"
        if k is StateObjectType.PEER:
            return self.path / "peers.d" / f"{n:010x}.peer"
        if k is StateObjectType.NETWORK_CONFIG:
            return self.path / "networks.d" / f"{n:016x}.conf"
        raise HomeDirectoryError(f"unknown state object kind {k!r}")  # pragma: no cover - enum is closed

    def saved_moons(self) -> list[bytes]:
        """The serialized moons in moons.d (orbited again at start-up)."""
        directory = self.path / "moons.d"
        if not directory.is_dir():
            return []
        return [f.read_bytes() for f in sorted(directory.glob("*.moon")) if f.is_file()]

    def saved_networks(self) -> list[int]:
        """Network ids with a saved config in networks.d (joined at start-up)."""
        out: list[int] = []
        directory = self.path / "networks.d"
        if directory.is_dir():
            for f in sorted(directory.glob("*.conf")):
                try:
                    if len(f.stem) == 16:
                        out.append(int(f.stem, 16))
                except ValueError:
                    continue
        return out

    # -- NodeCallbacks persistence half -----------------------------------------------

    def state_put(self, kind: StateObjectType, object_id: tuple[int, ...], data: bytes | None) -> None:
        k, _ = _check_kind(kind, object_id)
        payload = _check_data(data)
        path = self.path_for(k, object_id)
        if payload is None:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise HomeDirectoryError(f"{path}: cannot delete ({e.strerror})") from e
            return
        if k is StateObjectType.IDENTITY_SECRET:
            self._guard_identity_secret(path, payload)
        secure = k is StateObjectType.IDENTITY_SECRET
        self._write(path, payload, secure=secure)
        if k is StateObjectType.IDENTITY_SECRET:
            self.identity = self._check_identity()

    def state_get(self, kind: StateObjectType, object_id: tuple[int, ...]) -> bytes | None:
        k, _ = _check_kind(kind, object_id)
        path = self.path_for(k, object_id)
        data = self._read(path)
        if data is None:
            return None
        if k is StateObjectType.IDENTITY_SECRET:
            # Never hand the node something it would discard and replace by a new identity:
            # an empty file is corruption, not absence.
            self._parse_identity_secret(path, data)
        if k in (StateObjectType.IDENTITY_SECRET, StateObjectType.IDENTITY_PUBLIC):
            return data.strip()  # tolerate a hand-added newline
        return data

    # -- service files ----------------------------------------------------------------

    def authtoken(self) -> str:
        """The local API token from authtoken.secret, creating it (0600) like zerotier-one if absent."""
        path = self.path / AUTHTOKEN_FILE
        data = self._read(path)
        if data is not None:
            token = data.decode("utf-8", "replace").strip()
            if token:
                self._tighten(path)
                return token
            raise HomeDirectoryError(f"{path}: file is empty")
        token = "".join(secrets.choice(_AUTHTOKEN_ALPHABET) for _ in range(_AUTHTOKEN_LENGTH))
        self._write(path, token.encode("ascii"), secure=True)
        return token

    def write_port(self, port: int) -> None:
        """Record the primary UDP port in zerotier-one.port (what CLIs read to find the node)."""
        if not 0 < port < 65536:
            raise HomeDirectoryError(f"port {port} out of range")
        self._write(self.path / PORT_FILE, str(port).encode("ascii"), secure=False)

    def read_port(self) -> int | None:
        """The port recorded in zerotier-one.port, or None if there is none."""
        path = self.path / PORT_FILE
        data = self._read(path)
        if data is None:
            return None
        try:
            port = int(data.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise HomeDirectoryError(f"{path}: not a port number") from None
        if not 0 < port < 65536:
            raise HomeDirectoryError(f"{path}: port {port} out of range")
        return port

    # -- identity checks --------------------------------------------------------------

    @staticmethod
    def _tighten(path: Path) -> None:
        """Make a secret readable by its owner only (as zerotier-one's files are), or warn."""
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                os.chmod(path, _SECRET_MODE)
                log.warning("%s was readable by others (mode %04o); set it to 0600", path, mode)
        except OSError as e:
            log.warning("%s is readable by others and its mode cannot be changed: %s", path, e.strerror)

    # -- the daemon's lock ------------------------------------------------------------

    def lock(self) -> None:
        """Take the home for this process (until `unlock` or exit), as a zerotier-one home
        belongs to one daemon. Raises `HomeDirectoryError` if another process holds it."""
        if self._lock_file is not None:
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no advisory locks to take
            log.warning("cannot lock %s on this platform", self.path)
            return
        path = self.path / LOCK_FILE
        try:
            f = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held for the daemon's lifetime
        except OSError as e:
            raise HomeDirectoryError(f"{path}: cannot open lock file ({e.strerror})") from e
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.seek(0)
            holder = f.read(32).strip()
            f.close()
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                who = f" (pid {holder})" if holder.isdigit() else ""
                raise HomeDirectoryError(
                    f"{self.path}: home directory is in use by another running node{who}; "
                    "a home belongs to one node at a time"
                ) from None
            raise HomeDirectoryError(f"{path}: cannot lock ({e.strerror})") from e
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None

    def _parse_identity_secret(self, path: Path, data: bytes) -> Identity:
        if not data.strip():
            raise HomeDirectoryError(
                f"{path}: file is empty; refusing to start with a new identity in its place "
                "(restore the file, or delete it to generate a new identity and address)"
            )
        try:
            ident = Identity.from_string(data.decode("ascii"))
        except UnicodeDecodeError:
            raise HomeDirectoryError(f"{path}: corrupt identity (not ASCII text)") from None
        except InvalidFormatError as e:
            raise HomeDirectoryError(f"{path}: corrupt identity ({e})") from None
        if ident.private_key is None:
            raise HomeDirectoryError(f"{path}: identity has no private key (is this identity.public?)")
        if c25519_public_from_private(ident.private_key) != ident.public_key:
            raise HomeDirectoryError(f"{path}: corrupt identity (private key does not match public key)")
        if not ident.validate():
            raise HomeDirectoryError(f"{path}: corrupt identity (address does not match public key)")
        return ident

    def _check_identity(self) -> Identity | None:
        path = self.path / IDENTITY_SECRET_FILE
        data = self._read(path)
        if data is None:
            return None
        ident = self._parse_identity_secret(path, data)
        with contextlib.suppress(OSError):
            # A world-readable secret is a problem the user should not have to notice.
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                os.chmod(path, _SECRET_MODE)
        public_text = ident.to_string(include_private=False).encode("ascii")
        public_path = self.path / IDENTITY_PUBLIC_FILE
        try:
            current = self._read(public_path)
        except HomeDirectoryError:
            current = None
        if current is None or current.strip() != public_text:
            self._write(public_path, public_text, secure=False)
        return ident

    def _guard_identity_secret(self, path: Path, payload: bytes) -> None:
        """Refuse to replace an existing identity by a different one (or to store garbage)."""
        try:
            self._parse_identity_secret(path, payload)
        except HomeDirectoryError as e:
            raise HomeDirectoryError(f"refusing to store an invalid identity: {e}") from None
        existing = self._read(path)
        if existing is not None and existing.strip() != payload.strip():
            raise HomeDirectoryError(f"{path}: refusing to replace the existing identity by another one")

    # -- low-level I/O ----------------------------------------------------------------

    def _read(self, path: Path) -> bytes | None:
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_STATE_FILE + 1)
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise HomeDirectoryError(f"{path}: is a directory, expected a file") from None
        except OSError as e:
            raise HomeDirectoryError(f"{path}: cannot read ({e.strerror})") from e
        if len(data) > _MAX_STATE_FILE:
            raise HomeDirectoryError(f"{path}: larger than {_MAX_STATE_FILE} bytes, not a state file")
        return data

    def _write(self, path: Path, data: bytes, *, secure: bool) -> None:
        """Atomically replace `path` by `data`: a crash leaves either the old or the new file."""
        mode = _SECRET_MODE if secure else _PUBLIC_MODE
        try:
            with open(path, "rb") as f:
                if f.read(len(data) + 1) == data:
                    # Same content: skip the write (as zerotier-one does) but still fix modes.
                    if secure and stat.S_IMODE(os.fstat(f.fileno()).st_mode) != mode:
                        os.chmod(path, mode)
                    return
        except OSError:
            pass
        directory = path.parent
        if directory != self.path and not directory.is_dir():
            try:
                directory.mkdir(mode=_DIR_MODE)
            except FileExistsError:
                pass
            except OSError as e:
                raise HomeDirectoryError(f"{directory}: cannot create directory ({e.strerror})") from e
        try:
            write_atomic(path, data, mode=mode)
        except OSError as e:
            raise HomeDirectoryError(f"{path}: cannot write ({e.strerror or e})") from e

    def __repr__(self) -> str:
        return f"HomeDirectory({str(self.path)!r})"
