"""The libsodium binding's two modes: the build step's pre-parsed declarations
(cffi out-of-line ABI mode, no pycparser at run time) and parsing at import when
the generated module is absent or older than the declarations."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from ztcore.crypto import _sodium
from ztcore.crypto._sodium_cdef import CDEF

REPO = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def test_declared_names_are_the_prototypes() -> None:
    assert "crypto_sign_ed25519_verify_detached" in _sodium.DECLARED
    assert "sodium_init" in _sodium.DECLARED
    assert len(_sodium.DECLARED) == CDEF.count(";")


def test_every_declared_function_is_bound() -> None:
    assert _sodium.has_symbols(*_sodium.DECLARED)
    assert not _sodium.has_symbols("crypto_stream_salsa2012_xor", "no_such_function")


def test_the_build_step_writes_the_preparsed_module(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    generated = tmp_path / "ztcore" / "crypto" / "_sodium_ffi.py"
    spec = importlib.util.spec_from_file_location("_generated_sodium_ffi", generated)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lib = module.ffi.dlopen(_sodium.SONAME)
    assert set(dir(lib)) == set(_sodium.DECLARED)
    key, iv = bytes(range(32)), bytes(8)
    buf = module.ffi.new("unsigned char[16]")
    assert lib.crypto_stream_salsa2012_xor(buf, bytes(16), 16, iv, key) == 0


def test_installed_binding_needs_no_parser() -> None:
    # This test environment is an installed (editable) ztcore, so the build step ran.
    out = _run(
        "import sys; from ztcore.crypto import _sodium; "
        "print(_sodium.PREPARSED, 'pycparser' in sys.modules)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]


def test_an_out_of_date_generated_module_is_parsed_again() -> None:
    # A generated module lacking a declared function (CDEF grew, the editable
    # install was not redone): the binding parses CDEF itself and says so.
    code = """
import logging, sys, types
from cffi import FFI
logging.basicConfig(level=logging.WARNING)
old = FFI()
old.cdef("int sodium_init(void);")
sys.modules["ztcore.crypto._sodium_ffi"] = types.SimpleNamespace(ffi=old)
from ztcore.crypto import _sodium
from ztcore.crypto.c25519 import HAVE_SODIUM_C25519
print(_sodium.PREPARSED, HAVE_SODIUM_C25519)
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
    assert "older than its declarations" in out.stderr and "crypto_sign_ed25519_detached" in out.stderr
