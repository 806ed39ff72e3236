"""libsodium loaded through cffi's ABI mode (dlopen; no compiled binding).

The declarations (`_sodium_cdef.CDEF`) come pre-parsed from ``_sodium_ffi``, the
module the build step generates (out-of-line mode), so pycparser is not imported
at run time; in a source tree where the build has not run, or whose generated
module is older than CDEF, they are parsed here instead (in-line mode, same
result). The same soname candidates are checked at build time by setup.py.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ztcore.crypto._sodium_cdef import CDEF
from ztcore.errors import MissingLibraryError

log = logging.getLogger(__name__)

SONAME = ""
"""The name libsodium was opened by."""

DECLARED = frozenset(re.findall(r"(\w+)\s*\(", CDEF))
"""The function names declared in CDEF."""


def _parse() -> Any:
    from cffi import FFI

    parsed = FFI()
    parsed.cdef(CDEF)
    return parsed


def _load(ffi: Any) -> Any:
    # find_library runs ldconfig/gcc (and ctypes.util imports shutil, tempfile, bz2,
    # lzma: 0.7 MiB), so it is asked only if the usual sonames fail.
    for name in ("libsodium.so.23", "libsodium.so.26", "libsodium.so", None):
        if name is None:
            import ctypes.util

            name = ctypes.util.find_library("sodium")
            if not name:
                break
        try:
            lib = ffi.dlopen(name)
        except OSError:
            continue
        if lib.sodium_init() < 0:
            continue
        global SONAME
        SONAME = name
        return lib
    raise MissingLibraryError(
        "ztcore needs the libsodium shared library (Salsa20) and it was not found: install it "
        "(Debian/Ubuntu: apt-get install libsodium23; Fedora: dnf install libsodium; Alpine: apk add libsodium)."
    )


def _bind() -> tuple[Any, Any, bool]:
    try:
        from ztcore.crypto._sodium_ffi import ffi  # type: ignore[import-not-found]
    except ImportError:
        log.debug("ztcore.crypto._sodium_ffi is not built; parsing the libsodium declarations at import")
    else:
        lib = _load(ffi)
        missing = DECLARED - set(dir(lib))
        if not missing:
            return ffi, lib, True
        log.warning(
            "ztcore.crypto._sodium_ffi is older than its declarations (lacks %s): parsing them at import; "
            "reinstall ztcore to regenerate it",
            ", ".join(sorted(missing)),
        )
    ffi = _parse()
    return ffi, _load(ffi), False


ffi, lib, PREPARSED = _bind()
"""`PREPARSED`: the declarations came from the build step (no pycparser at run time)."""


def has_symbols(*names: str) -> bool:
    """True if the loaded libsodium exports every one of `names` (an old or
    trimmed build may lack some; callers then use their reference path)."""
    for name in names:
        try:
            getattr(lib, name)
        except AttributeError:
            return False
    return True
