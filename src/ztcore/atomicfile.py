"""Crash-safe file replacement shared by every layer that writes files (home directory,
world files, CLI tools): a reader sees either the old file or the complete new one,
never a truncated mix, even after kill -9 or power loss."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, overwrite: bool = True
) -> None:
    """Write `data` to `path` atomically: a temporary file beside it, fsync, then rename
    (and fsync of the directory, so the rename itself is durable).

    `mode` is applied exactly (umask does not loosen or tighten it). With
    ``overwrite=False`` an existing `path` is never replaced: FileExistsError is raised,
    also when the file appears between the check and the rename. Raises OSError.
    """
    target = Path(path)
    directory = target.parent
    tmp = directory / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            # link() fails if the target exists: no window in which another writer's file
            # could be replaced.
            os.link(tmp, target)
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    # Not every platform or filesystem lets a directory be opened or fsynced.
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)
