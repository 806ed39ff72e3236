"""`ztnode rules compile|show` and `ztnode controller network set --rules-file`.

The commands are click objects invoked with CliRunner; `show` and `network set`
talk to a real local API (a controller store behind `HttpApiServer` on
127.0.0.1, run in a thread here).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from ztcore.cli.controller import controller
from ztcore.cli.rules_lang import compile_command, show_command
from ztcore.controller.store import ControllerStore
from ztcore.runtime.http_api import HttpApiServer, StoreControllerBackend
from ztcore.vl2.rules.compiler import compile_rules

GOLDEN = Path(__file__).parent / "data" / "rules_golden"
TOKEN = "rules-lang-test-token"
CTL = "abcdef0123"
SCRIPT = """\
tag role id 10 enum 1 server enum 2 client;
drop not ethertype ipv4 and not ethertype arp;
accept teq role server;
accept ipprotocol tcp and dport 22;
drop;
"""


class _Status:
    """The one node route `network create` needs (/status for the controller's address)."""

    def status(self) -> dict[str, object]:
        return {"address": CTL, "online": True, "version": "1.14.1"}

    def __getattr__(self, name: str) -> object:
        raise AttributeError(name)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    store = ControllerStore(tmp_path_factory.mktemp("ctl"))
    backend = StoreControllerBackend(store, CTL)
    loop = asyncio.new_event_loop()
    server = HttpApiServer(_Status(), backend, TOKEN, 0, hosts=("127.0.0.1",))  # type: ignore[arg-type]
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(port=server.port, backend=backend)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        store.close()


def _conn(api: SimpleNamespace) -> list[str]:
    return ["-p", str(api.port), "-T", TOKEN]


# ------------------------------------------------------------------------------ compile


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("ok-*.ztrules")), ids=lambda p: p.stem)
def test_compile_json_is_byte_for_byte_the_js_clis(path: Path) -> None:
    """`-j` prints what `node cli.js FILE` prints (the goldens were written the same way)."""
    args = [str(path), "-j"] + (["--js-int32"] if path.stem == "ok-bit31" else [])
    r = CliRunner().invoke(compile_command, args)
    assert r.exit_code == 0, r.output
    assert r.stdout == path.with_suffix(".json").read_text(encoding="utf-8")


def test_compile_table_numbers_and_renders_rules() -> None:
    r = CliRunner().invoke(compile_command, [str(GOLDEN / "ok-cap-ssh-department.ztrules")])
    assert r.exit_code == 0, r.output
    assert "rules (7)" in r.stdout and "capability ssh (id 1000)" in r.stdout
    assert "tdiff team 0" in r.stdout and "not ethertype ipv4" in r.stdout
    assert "tag team: id 1000" in r.stdout and "engineering=40" in r.stdout


def test_compile_error_names_file_line_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ztrules"
    bad.write_text("accept ipprotocol tcp;\n\n  drop dport 99999;\n")
    r = CliRunner().invoke(compile_command, [str(bad)])
    assert r.exit_code == 1
    assert f"{bad}:3:14:" in r.output
    r = CliRunner().invoke(compile_command, [str(tmp_path / "missing.ztrules")])
    assert r.exit_code == 1 and "cannot read" in r.output


def test_compile_includes_files_beside_the_script(tmp_path: Path) -> None:
    (tmp_path / "web.ztrules").write_text("accept ipprotocol tcp and dport 80;\n")
    (tmp_path / "broken.ztrules").write_text("accept dport x;\n")
    main = tmp_path / "main.ztrules"
    main.write_text("include web\ndrop;\n")
    r = CliRunner().invoke(compile_command, [str(main), "-j"])
    assert r.exit_code == 0, r.output
    rules = json.loads(r.stdout)["config"]["rules"]
    assert [x["type"] for x in rules] == [
        "MATCH_IP_PROTOCOL",
        "MATCH_IP_DEST_PORT_RANGE",
        "ACTION_ACCEPT",
        "ACTION_DROP",
    ]
    main.write_text("include broken\n")
    r = CliRunner().invoke(compile_command, [str(main)])
    assert r.exit_code == 1 and "broken.ztrules:1:14:" in r.output
    main.write_text("include ../web\n")  # never a path
    r = CliRunner().invoke(compile_command, [str(main)])
    assert r.exit_code == 1 and "no macro named '../web'" in r.output


def test_compile_stdin_and_js_int32() -> None:
    r = CliRunner().invoke(compile_command, ["-", "-j"], input="drop chr inbound,ipauth;\n")
    assert json.loads(r.stdout)["config"]["rules"][0]["mask"] == "9000000000000000"
    r = CliRunner().invoke(compile_command, ["-", "-j", "--js-int32"], input="drop chr inbound,ipauth;\n")
    assert json.loads(r.stdout)["config"]["rules"][0]["mask"] == "7000000000000000"


def test_compile_warns_about_lost_blocks() -> None:
    r = CliRunner().invoke(compile_command, [str(GOLDEN / "ok-lost-block.ztrules"), "-j"])
    assert r.exit_code == 0 and "never closed" in r.stderr


# ------------------------------------------------------------------------------ controller + show


def test_network_set_rules_file_and_show(api: SimpleNamespace, tmp_path: Path) -> None:
    script = tmp_path / "office.ztrules"
    script.write_text(SCRIPT)
    r = CliRunner().invoke(controller, [*_conn(api), "-j", "network", "create", "--rules-file", str(script)])
    assert r.exit_code == 0, r.output
    nw = json.loads(r.stdout)
    nwid = nw["id"]
    assert nw["rulesSource"] == SCRIPT and nw["tagsByName"]["role"]["enums"] == {"server": 1, "client": 2}
    assert [x["type"] for x in nw["rules"]] == [x["type"] for x in compile_rules(SCRIPT).rules]

    script.write_text(SCRIPT.replace("dport 22", "dport 2222"))
    r = CliRunner().invoke(
        controller, [*_conn(api), "-j", "network", "set", nwid, "--rules-file", str(script)]
    )
    assert r.exit_code == 0, r.output
    assert {"type": "MATCH_IP_DEST_PORT_RANGE", "not": False, "or": False, "start": 2222, "end": 2222} in (
        json.loads(r.stdout)["rules"]
    )

    r = CliRunner().invoke(show_command, [nwid, *_conn(api)])
    assert r.exit_code == 0, r.output
    assert "rulesSource" in r.stdout and "accept teq role server;" in r.stdout  # the source
    assert "teq role server" in r.stdout and "dport 2222" in r.stdout  # the compiled, rendered rules
    r = CliRunner().invoke(show_command, [nwid, *_conn(api), "-j"])
    shown = json.loads(r.stdout)
    assert shown["rulesSource"].endswith("drop;\n") and shown["tagsByName"]["role"]["id"] == 10


def test_network_set_bad_rules_file_changes_nothing(api: SimpleNamespace, tmp_path: Path) -> None:
    good = tmp_path / "good.ztrules"
    good.write_text("accept;\n")
    r = CliRunner().invoke(controller, [*_conn(api), "-j", "network", "create", "--rules-file", str(good)])
    nwid = json.loads(r.stdout)["id"]
    bad = tmp_path / "bad.ztrules"
    bad.write_text("drop\n  ipsrc 10.0.0.1\n;\n")
    r = CliRunner().invoke(controller, [*_conn(api), "network", "set", nwid, "--rules-file", str(bad)])
    assert r.exit_code == 1 and f"{bad}:2:9:" in r.output
    assert api.backend.get_network(nwid)["rulesSource"] == "accept;\n"


def test_show_without_rules_source(api: SimpleNamespace) -> None:
    nw = api.backend.post_network(f"{CTL}000099", {"rules": [{"type": "ACTION_DROP"}]})
    r = CliRunner().invoke(show_command, [nw["id"], *_conn(api)])
    assert r.exit_code == 0, r.output
    assert "has no rulesSource" in r.stdout and "drop;" in r.stdout
    r = CliRunner().invoke(show_command, [f"{CTL}0000ff", *_conn(api)])
    assert r.exit_code != 0 and "not found" in r.output


def test_member_tags_by_name_from_the_cli(api: SimpleNamespace, tmp_path: Path) -> None:
    script = tmp_path / "tags.ztrules"
    script.write_text(
        "tag role id 10 enum 1 server enum 2 client;\ntag perm id 11 flag 0 r flag 1 w;\naccept;\n"
    )
    r = CliRunner().invoke(controller, [*_conn(api), "-j", "network", "create", "--rules-file", str(script)])
    nwid = json.loads(r.stdout)["id"]
    args = [*_conn(api), "-j", "member", "update", nwid, "1122334455"]
    r = CliRunner().invoke(controller, [*args, "--tag", "role=client", "--tag", "perm=r,w", "--tag", "99=7"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tags"] == [[10, 2], [11, 3], [99, 7]]
    r = CliRunner().invoke(controller, [*args, "--tag", "role=admin"])
    assert r.exit_code != 0 and "admin" in r.output
    r = CliRunner().invoke(controller, [*args, "--tag", "role"])
    assert r.exit_code == 2 and "TAG=VALUE" in r.output
