"""`ztnode` itself: the command list comes from a static table, so `--help` imports
no sub-command (fast start, and a broken sub-command cannot break the others)."""

from __future__ import annotations

import importlib
import subprocess
import sys

from click.testing import CliRunner

from ztcore.cli.main import _SUBCOMMANDS, main


def test_each_listed_help_line_is_the_commands_own() -> None:
    for name, (module, attr, line) in _SUBCOMMANDS.items():
        cmd = getattr(importlib.import_module(module), attr)
        assert cmd.name == name
        assert line == cmd.get_short_help_str(limit=200), name


def test_help_lists_every_command() -> None:
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0
    for name in _SUBCOMMANDS:
        assert f"  {name} " in out.output


def test_help_imports_no_sub_command_and_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from ztcore.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('rich', 'aiohttp', 'scapy', 'cryptography', 'asyncio', 'ztcore.cli.', 'ztcore.runtime')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy) and m != 'ztcore.cli.main'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_an_unknown_command_is_a_usage_error() -> None:
    out = CliRunner().invoke(main, ["frobnicate"])
    assert out.exit_code == 2 and "No such command 'frobnicate'" in out.output
