"""libsodium loaded through cffi's ABI mode (Debian's runtime package ships the
shared library without headers, so the few prototypes we need are declared
here). The same soname candidates are checked at build time by setup.py."""

from __future__ import annotations

import ctypes.util

from cffi import FFI

from ztcore.errors import MissingLibraryError

ffi = FFI()
ffi.cdef(
    """
    int sodium_init(void);
    int crypto_stream_salsa2012_xor(unsigned char *c, const unsigned char *m,
        unsigned long long mlen, const unsigned char *n, const unsigned char *k);
    int crypto_stream_salsa20_xor_ic(unsigned char *c, const unsigned char *m,
        unsigned long long mlen, const unsigned char *n, uint64_t ic, const unsigned char *k);
    int crypto_onetimeauth_poly1305(unsigned char *out, const unsigned char *in,
        unsigned long long inlen, const unsigned char *k);
    """
)


def _load():  # type: ignore[no-untyped-def]
    names = ["libsodium.so.23", "libsodium.so.26", "libsodium.so"]
    found = ctypes.util.find_library("sodium")
    if found:
        names.append(found)
    for name in names:
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
