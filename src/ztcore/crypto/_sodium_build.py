"""Build step (setup.py ``cffi_modules``): cffi's out-of-line ABI mode writes
``ztcore.crypto._sodium_ffi``, the libsodium declarations already parsed, so that
importing the binding does not load pycparser. Nothing is compiled: the library
is still opened with dlopen at run time (see `ztcore.crypto._sodium`)."""

import os

from cffi import FFI

_here = os.path.dirname(os.path.abspath(__file__))
_ns: dict = {}
with open(os.path.join(_here, "_sodium_cdef.py"), encoding="utf-8") as f:
    exec(compile(f.read(), f.name, "exec"), _ns)

ffibuilder = FFI()
ffibuilder.cdef(_ns["CDEF"])
ffibuilder.set_source("ztcore.crypto._sodium_ffi", None)
