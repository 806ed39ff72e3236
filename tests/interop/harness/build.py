"""Builds and caches the real-ZeroTier-core harness: Python 3.9 venvs with libzt and the shim.

Owns the interop cache directory (``$ZTCORE_INTEROP_CACHE`` or ``~/.cache/ztcore-interop``):

* ``venv-libzt-1.8.4``  Python 3.9 venv with PyPI ``libzt==1.8.4`` (ZeroTier One 1.8 core): nodes
* ``venv-libzt-1.4.2``  Python 3.9 venv with PyPI ``libzt==1.4.2``: the identity oracle
* ``shim-<hash>.so``    our LinuxNetLink shim (``shim.cpp``), needed in ``LD_PRELOAD`` by 1.8.4

Every artefact carries a stamp file written last, so an interrupted build is redone and a
finished one is reused. A file lock serialises parallel builders. libzt wheels exist only for
CPython 3.8/3.9, hence :class:`Python39Missing` (the one condition that makes interop tests skip).
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LIBZT_NODE_VERSION = "1.8.4"
LIBZT_IDTOOL_VERSION = "1.4.2"
HARNESS_DIR = Path(__file__).resolve().parent
SHIM_SOURCE = HARNESS_DIR / "shim.cpp"
DRIVER_LIBZT = HARNESS_DIR / "driver_libzt.py"
DRIVER_IDTOOL = HARNESS_DIR / "driver_idtool.py"
_BUILD_TIMEOUT = 600.0  # seconds for one pip install / compile
_LOCK_TIMEOUT = 900.0


class Python39Missing(RuntimeError):
    """No CPython 3.9 interpreter was found (libzt only ships cp38/cp39 wheels)."""


class HarnessBuildError(RuntimeError):
    """Building the harness failed for a reason other than a missing Python 3.9."""


@dataclass(frozen=True)
class HarnessPaths:
    """Where the built harness lives; all paths are absolute."""

    cache: Path
    python39: Path
    node_python: Path  # venv python with libzt 1.8.4
    idtool_python: Path  # venv python with libzt 1.4.2
    shim: Path
    driver_libzt: Path = DRIVER_LIBZT
    driver_idtool: Path = DRIVER_IDTOOL

    def node_env(self) -> dict[str, str]:
        """Environment for a libzt 1.8.4 process (the shim preloaded, no user site, no .pyc)."""
        env = _clean_env()
        env["LD_PRELOAD"] = str(self.shim)
        return env

    def idtool_env(self) -> dict[str, str]:
        return _clean_env()


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "LD_PRELOAD"))}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cache_dir() -> Path:
    env = os.environ.get("ZTCORE_INTEROP_CACHE")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "ztcore-interop"


def _python_version(exe: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            env=_clean_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, _, minor = out.stdout.strip().partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        return None


def _pyenv_roots() -> list[str]:
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and out.stdout.strip():
                roots.append(out.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    roots.append(str(Path.home() / ".pyenv"))
    return roots


def find_python39() -> Path:
    """Locate a working CPython 3.9; raise :class:`Python39Missing` saying where we looked."""
    candidates: list[str] = []
    if os.environ.get("ZTCORE_INTEROP_PYTHON39"):
        candidates.append(os.environ["ZTCORE_INTEROP_PYTHON39"])
    for root in _pyenv_roots():
        candidates += sorted(
            glob.glob(os.path.join(root, "versions", "3.9*", "bin", "python3.9")), reverse=True
        )
    for name in ("python3.9",):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    candidates += ["/usr/bin/python3.9", "/usr/local/bin/python3.9"]
    seen = set()
    for c in candidates:
        if c in seen or not os.path.exists(c):
            continue
        seen.add(c)
        if _python_version(c) == (3, 9):
            return Path(c)
    raise Python39Missing(
        "CPython 3.9 not found (libzt only has cp38/cp39 wheels). Looked at $ZTCORE_INTEROP_PYTHON39, "
        "<pyenv root>/versions/3.9*/bin/python3.9, python3.9 on PATH, /usr/bin and /usr/local/bin. "
        "Install it (e.g. `pyenv install 3.9`) or point ZTCORE_INTEROP_PYTHON39 at one."
    )


@contextmanager
def _locked(path: Path, timeout: float = _LOCK_TIMEOUT) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HarnessBuildError(f"timed out waiting for the harness build lock {path}") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=_BUILD_TIMEOUT, env=env)
    except subprocess.TimeoutExpired as e:
        raise HarnessBuildError(f"{what}: timed out after {_BUILD_TIMEOUT:.0f}s: {cmd}") from e
    except OSError as e:
        raise HarnessBuildError(f"{what}: cannot run {cmd[0]}: {e}") from e
    if out.returncode != 0:
        raise HarnessBuildError(
            f"{what} failed (exit {out.returncode}): {' '.join(cmd)}\n--- stdout\n{out.stdout[-4000:]}"
            f"\n--- stderr\n{out.stderr[-4000:]}"
        )
    return out.stdout


def _stamp_ok(stamp: Path, recipe: dict) -> bool:
    try:
        return json.loads(stamp.read_text()) == recipe
    except (OSError, ValueError):
        return False


def _build_shim(cache: Path) -> Path:
    source = SHIM_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = cache / f"shim-{digest}.so"
    if target.exists():
        return target
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise HarnessBuildError("no C++ compiler (g++/c++) to build the LinuxNetLink shim")
    tmp = cache / f".shim-{digest}.{os.getpid()}.so"
    _run([cxx, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(SHIM_SOURCE)], "compiling shim.cpp")
    os.replace(tmp, target)
    return target


def _check_import(python: Path, version: str, env: dict[str, str]) -> None:
    got = _run(
        [str(python), "-c", "import libzt, sys; sys.stdout.write(libzt.__version__)"],
        f"importing libzt {version}",
        env=env,
    ).strip()
    if got != version:
        raise HarnessBuildError(f"{python}: expected libzt {version}, imported {got!r}")


def _build_venv(cache: Path, python39: Path, version: str, env: dict[str, str]) -> Path:
    venv = cache / f"venv-libzt-{version}"
    python = venv / "bin" / "python"
    stamp = venv / ".ztcore-interop-stamp"
    recipe = {"python39": str(python39), "libzt": version}
    if python.exists() and _stamp_ok(stamp, recipe):
        return python
    shutil.rmtree(venv, ignore_errors=True)
    _run([str(python39), "-m", "venv", str(venv)], f"creating venv for libzt {version}", env=_clean_env())
    pip = [
        str(python),
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--only-binary=:all:",
    ]
    wheelhouse = os.environ.get("ZTCORE_INTEROP_WHEELHOUSE")
    if wheelhouse:
        pip += ["--find-links", wheelhouse]
    _run([*pip, f"libzt=={version}"], f"pip install libzt=={version}", env=_clean_env())
    _check_import(python, version, env)
    stamp.write_text(json.dumps(recipe))
    return python


_built: HarnessPaths | None = None


def build_harness() -> HarnessPaths:
    """Build (or reuse) everything; raises Python39Missing or HarnessBuildError."""
    global _built
    if _built is not None:
        return _built
    python39 = find_python39()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".build.lock"):
        shim = _build_shim(cache)
        node_env = _clean_env()
        node_env["LD_PRELOAD"] = str(shim)
        node_python = _build_venv(cache, python39, LIBZT_NODE_VERSION, node_env)
        idtool_python = _build_venv(cache, python39, LIBZT_IDTOOL_VERSION, _clean_env())
    _built = HarnessPaths(
        cache=cache, python39=python39, node_python=node_python, idtool_python=idtool_python, shim=shim
    )
    return _built


def main() -> int:
    """``python -m tests.interop.harness.build``: build the cache and print where it is."""
    t = time.monotonic()
    paths = build_harness()
    print(json.dumps({k: str(v) for k, v in paths.__dict__.items()}, indent=2))
    print(f"built/reused in {time.monotonic() - t:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
