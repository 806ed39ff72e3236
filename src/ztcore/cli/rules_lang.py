"""`ztnode rules compile FILE` and `ztnode rules show NWID`: the rules language on the command line.

Owns two standalone click commands (attached to the ``rules`` group elsewhere):
`compile_command` compiles a rule script locally, the way the controller will,
and prints the numbered rules as the rules engine sees them (``-j``: the JSON
that ZeroTier's rule-compiler.js prints); `show_command` fetches a network from
a running controller and shows its ``rulesSource`` beside the compiled form,
each rule rendered back into the language.

``include NAME`` in a script given to `compile_command` may also name a file
``NAME.ztrules`` next to the script (the controller itself never reads files,
so a network's ``rulesSource`` must define its macros inline).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ztcore.cli.client import api_options, dump_json, make_settings, nwid_arg
from ztcore.vl2.rules.compiler import RulesCompileError, compile_rules, is_valid_name
from ztcore.vl2.rules.render import RuleRenderError, render_rule, render_rules

__all__ = ["compile_command", "file_resolver", "read_rules_file", "show_command"]

_MAX_SCRIPT = 1 << 20  # the controller's limit for rulesSource


def file_resolver(directory: Path) -> Any:
    """A resolver for ``include NAME``: ``directory/NAME.ztrules``, or None if there is none."""

    def resolve(name: str) -> str | None:
        if not is_valid_name(name):  # never a path
            return None
        path = directory / f"{name}.ztrules"
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8")

    return resolve


def read_rules_file(path: str) -> str:
    """The text of a rule script (``-`` = standard input), as a click error if unreadable."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise click.ClickException(f"cannot read {path}: {e}") from None
    if len(text) > _MAX_SCRIPT:
        raise click.ClickException(f"{path}: longer than {_MAX_SCRIPT} characters")
    return text


def compile_error(path: str, e: RulesCompileError) -> click.ClickException:
    where = e.source + ".ztrules" if e.source else path
    return click.ClickException(f"{where}:{e.line}:{e.column}: {e.message}")


def _rule_text(rule: Any, tags: Any) -> str:
    try:
        return render_rule(rule, tags=tags)
    except RuleRenderError as e:
        return f"(not expressible: {e})"


def _rules_table(title: str, rules: list[Any], tags: Any) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("type", no_wrap=True)
    table.add_column("as source", overflow="fold")
    for i, r in enumerate(rules):
        kind = r.get("type") if isinstance(r, dict) else "?"
        table.add_row(str(i), str(kind), _rule_text(r, tags) if isinstance(r, dict) else repr(r))
    return table


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _print_compiled(rules: list[Any], caps: dict[str, Any], tags: Any) -> None:
    """Numbered rules (the numbers traces refer to), then each capability's, then the tags."""
    console = _console()
    console.print(_rules_table(f"rules ({len(rules)})", rules, tags))
    for name, cap in caps.items():
        cap_rules = cap.get("rules") if isinstance(cap, dict) else None
        title = f"capability {name} (id {cap.get('id')}{', default' if cap.get('default') else ''})"
        console.print(_rules_table(title, cap_rules if isinstance(cap_rules, list) else [], tags))
    if isinstance(tags, dict):
        for name, tag in tags.items():
            named = {**(tag.get("enums") or {}), **(tag.get("flags") or {})}
            values = ", ".join(f"{k}={v}" for k, v in named.items()) or "no names"
            console.print(f"tag {name}: id {tag.get('id')}, default {tag.get('default')}, {values}")
    elif isinstance(tags, list):
        for tag in tags:
            console.print(f"tag id {tag.get('id')}, default {tag.get('default')}")


@click.command("compile")
@click.argument("file", metavar="FILE")
@click.option("-j", "--json", "json_output", is_flag=True, help="Print rule-compiler.js's JSON shape.")
@click.option(
    "--js-int32", is_flag=True, help="Reproduce rule-compiler.js's signed 32-bit results (bit 31/63 values)."
)
def compile_command(file: str, json_output: bool, js_int32: bool) -> None:
    """Compile the rule script FILE (- for stdin) and show the rules it makes.

    Errors are reported as FILE:LINE:COLUMN: message (exit status 1). `include
    NAME` may name a macro of the script or a file NAME.ztrules beside it.

    \b
    Example:
      ztnode rules compile office.ztrules -j
    """
    text = read_rules_file(file)
    directory = Path.cwd() if file == "-" else Path(file).resolve().parent
    try:
        compiled = compile_rules(text, resolver=file_resolver(directory), js_int32_bugs=js_int32)
    except RulesCompileError as e:
        raise compile_error(file, e) from None
    for w in compiled.warnings:
        click.echo(f"{file}: warning: {w}", err=True)
    if json_output:
        click.echo(dump_json(compiled.to_json()))
        return
    _print_compiled(compiled.rules, compiled.capabilities, compiled.tags)


@click.command("show")
@click.argument("nwid", callback=nwid_arg)
@api_options
def show_command(
    nwid: str,
    home: Path | None,
    port: int | None,
    token: str | None,
    host: str,
    json_output: bool,
    timeout: float,
) -> None:
    """Show network NWID's rulesSource and its compiled rules, read from the controller.

    The rules are numbered as the rules engine (and its traces) count them, each
    rendered back into the rules language.
    """
    settings = make_settings(home, port, token, host, json_output, timeout)
    nw = settings.client().get(f"/controller/network/{nwid}")
    if not isinstance(nw, dict):
        raise click.ClickException(f"the controller answered no network object for {nwid}")
    keys = ("id", "rulesSource", "rules", "capabilities", "tags", "capabilitiesByName", "tagsByName")
    if settings.json:
        click.echo(dump_json({k: nw[k] for k in keys if k in nw}))
        return
    rules = nw.get("rules") if isinstance(nw.get("rules"), list) else []
    tags = nw.get("tagsByName") if isinstance(nw.get("tagsByName"), dict) else nw.get("tags")
    caps_list = nw.get("capabilities") if isinstance(nw.get("capabilities"), list) else []
    names = {v: k for k, v in (nw.get("capabilitiesByName") or {}).items()}
    caps = {names.get(c.get("id"), f"cap_{c.get('id')}"): c for c in caps_list if isinstance(c, dict)}
    source = nw.get("rulesSource")
    console = _console()
    if isinstance(source, str) and source.strip():
        console.print(f"[bold]rulesSource[/bold] of {nwid}:", markup=True)
        console.print(source.rstrip("\n"), markup=False)
    else:
        console.print(f"{nwid} has no rulesSource; its rules as source:", markup=False)
        console.print(render_rules(rules, capabilities=caps, tags=tags).rstrip("\n"), markup=False)
    console.print("")
    _print_compiled(rules, caps, tags)
