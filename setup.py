"""Build hook for ztcore's C extensions and its libsodium binding (everything else
is in pyproject.toml).

It turns the two ways a build fails on a fresh machine into one sentence naming
what to install: no libsodium (needed at run time; checked here so that the
install fails, not the first import) and no C compiler or Python headers.
It also has cffi write ``ztcore.crypto._sodium_ffi``, the libsodium declarations
pre-parsed (out-of-line ABI mode: nothing compiled, no pycparser at run time).
"""

import ctypes
import ctypes.util

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

# Same candidates as ztcore.crypto._sodium, which loads it at run time.
SODIUM_NAMES = ("libsodium.so.23", "libsodium.so.26", "libsodium.so")

NO_SODIUM = (
    "ztcore needs the libsodium shared library and it was not found: install it "
    "(Debian/Ubuntu: apt-get install libsodium23; Fedora: dnf install libsodium; "
    "Alpine: apk add libsodium) and run the install again."
)
NO_COMPILER = (
    "ztcore's C extension could not be built ({error}): install a C compiler and the "
    "Python headers (Debian/Ubuntu: apt-get install gcc python3-dev; Fedora: dnf install "
    "gcc python3-devel) and run the install again."
)


def have_libsodium() -> bool:
    names = list(SODIUM_NAMES)
    found = ctypes.util.find_library("sodium")
    if found:
        names.append(found)
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


class BuildExt(build_ext):
    def run(self) -> None:
        if not have_libsodium():
            raise SystemExit(f"error: {NO_SODIUM}")
        try:
            super().run()
        except (CCompilerError, ExecError, PlatformError) as e:
            raise SystemExit("error: " + NO_COMPILER.format(error=str(e).strip())) from None


setup(
    cmdclass={"build_ext": BuildExt},
    # cffi wraps build_py / build_ext to generate the module (into the package
    # directory for an editable install); BuildExt stays its base class.
    cffi_modules=["src/ztcore/crypto/_sodium_build.py:ffibuilder"],
)
