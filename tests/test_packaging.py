"""What a user meets installing and starting ztcore on a fresh machine: the version,
and one clear sentence when a compiler or libsodium is missing (issue: fresh machine).
The wheel/sdist contents and clean-venv installs on 3.10 and 3.13 are checked by .ci/run."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ztcore

REPO = Path(__file__).resolve().parents[1]
ZTNODE = Path(sys.executable).parent / "ztnode"


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


def test_version_from_the_console_script_and_python_m() -> None:
    for cmd in ([str(ZTNODE), "--version"], [sys.executable, "-m", "ztcore", "--version"]):
        out = _run(cmd)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"ztnode, version {ztcore.__version__}"


def _build_ext(tmp_path: Path, env: dict[str, str], prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "--build-temp", str(tmp_path / "t")]
    cmd += ["--build-lib", str(tmp_path / "l")]
    return _run([*(prefix or []), *cmd], cwd=REPO, env=env)


def test_a_missing_compiler_is_one_sentence(tmp_path: Path) -> None:
    out = _build_ext(tmp_path, {**os.environ, "CC": "/nonexistent/cc"})
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "install a C compiler and the Python headers (Debian/Ubuntu: apt-get install gcc python3-dev" in text
    assert "Traceback" not in text


def test_the_extension_builds_with_a_compiler_alone(tmp_path: Path) -> None:
    out = _build_ext(tmp_path, dict(os.environ))
    assert out.returncode == 0, out.stdout + out.stderr
    built = glob.glob(str(tmp_path / "l" / "ztcore" / "identity" / "_mhh*.so"))
    assert built
    # Links against nothing but libc: libsodium is bound at import, whatever its soname.
    ldd = _run(["ldd", built[0]]) if shutil.which("ldd") else None
    if ldd is not None:
        assert "sodium" not in ldd.stdout


def _hide_libsodium_prefix() -> list[str]:
    """`unshare -m` + bind mounts of /dev/null over every libsodium file: a machine without it."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("LOUD SKIP: hiding libsodium needs root and unshare(1) (a private mount namespace)")
    cache = _run(["ldconfig", "-p"]).stdout if shutil.which("ldconfig") else ""
    dirs = {os.path.dirname(line.split("=>")[-1].strip()) for line in cache.splitlines() if "libsodium" in line}
    libs = sorted({os.path.realpath(p) for d in dirs for p in glob.glob(f"{d}/libsodium.so*")})
    libs += sorted({p for d in dirs for p in glob.glob(f"{d}/libsodium.so*")} - set(libs))
    if not libs:
        pytest.skip("LOUD SKIP: libsodium is not installed here, nothing to hide")
    mounts = "; ".join(f"mount --bind /dev/null {p}" for p in libs)
    return ["unshare", "-m", "sh", "-c", f'{mounts}; exec "$@"', "sh"]


def test_a_missing_libsodium_is_one_sentence_at_install(tmp_path: Path) -> None:
    out = _build_ext(tmp_path, dict(os.environ), prefix=_hide_libsodium_prefix())
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "ztcore needs the libsodium shared library and it was not found" in text
    assert "apt-get install libsodium23" in text and "Traceback" not in text


def test_a_missing_libsodium_is_one_sentence_at_run_time() -> None:
    out = _run([*_hide_libsodium_prefix(), str(ZTNODE), "demo", "-n", "2"])
    assert out.returncode == 1
    assert out.stderr.strip().startswith("Error: ztcore needs the libsodium shared library")
    assert "apt-get install libsodium23" in out.stderr and "Traceback" not in out.stderr
