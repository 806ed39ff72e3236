"""libsodium loaded through cffi's ABI mode (dlopen; no compiled binding).

The declarations (`_sodium_cdef.CDEF`) come pre-parsed from ``_sodium_ffi``, the
module the build step generates (out-of-line mode), so pycparser is not imported
at run time; in a source tree where the build has not run they are parsed here
instead (in-line mode, same result). The same soname candidates are checked at
build time by setup.py.
"""

from __future__ import annotations

import ctypes.util
import logging
from typing import Any

from ztcore.errors import MissingLibraryError

log = logging.getLogger(__name__)


def _make_ffi() -> tuple[Any, bool]:
    try:
        from ztcore.crypto._sodium_ffi import ffi as built  # type: ignore[import-not-found]
    except ImportError:
        from cffi import FFI

        from ztcore.crypto._sodium_cdef import CDEF

        log.debug("ztcore.crypto._sodium_ffi is not built; parsing the libsodium declarations at import")
        parsed = FFI()
        parsed.cdef(CDEF)
        return parsed, False
    return built, True


ffi, PREPARSED = _make_ffi()
"""`PREPARSED`: the declarations came from the build step (no pycparser at run time)."""


def _load():  # type: ignore[no-untyped-def]
    # find_library runs ldconfig/gcc, so it is asked only if the usual sonames fail.
    for name in ("libsodium.so.23", "libsodium.so.26", "libsodium.so", None):
        if name is None:
            name = ctypes.util.find_library("sodium")
            if not name:
                break
        try:
            lib = ffi.dlopen(name)
        except OSError:
            continue
        if lib.sodium_init() < 0:
            continue
        return lib
    raise MissingLibraryError(
        "ztcore needs the libsodium shared library (Salsa20) and it was not found: install it "
        "(Debian/Ubuntu: apt-get install libsodium23; Fedora: dnf install libsodium; Alpine: apk add libsodium)."
    )


lib = _load()


def has_symbols(*names: str) -> bool:
    """True if the loaded libsodium exports every one of `names` (an old or
    trimmed build may lack some; callers then use their reference path)."""
    for name in names:
        try:
            getattr(lib, name)
        except AttributeError:
            return False
    return True
