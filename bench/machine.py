"""What every bench prints around its figures: the interpreter, the machine, the
load it ran under and the command that reproduces it (bench/README.md quotes these
lines next to each figure). Not a bench itself."""

from __future__ import annotations

import os
import platform
import sys


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def command() -> str:
    script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0] else "?"
    return " ".join(["python", script, *sys.argv[1:]])


def header() -> None:
    """Print the command, interpreter, CPUs and load average before a run."""
    print(f"$ {command()}")
    print(
        f"Python {platform.python_version()} ({sys.implementation.name}) on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {_load()} at start"
    )


def footer() -> None:
    """Print the load average after a run (figures taken under heavier load are noisier)."""
    print(f"load average {_load()} at end")
