"""`ztnode world`: key files, planets, moons (including zerotier-idtool moon JSON) and `show`."""

from __future__ import annotations

import json
import os
import stat
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ztcore.cli.main import main
from ztcore.crypto import c25519_generate, c25519_public_from_private
from ztcore.identity import Identity
from ztcore.vl1.inetaddress import InetAddress
from ztcore.vl1.world import Root, World, WorldType, genmoon_order, load_world_file

PLANET_PATH = str(resources.files("ztcore").joinpath("data", "planet.zerotier"))


@pytest.fixture(scope="module")
def ids() -> list[Identity]:
    return [Identity.generate() for _ in range(2)]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["world", *args])


def ok(*args: str) -> Result:
    r = run(*args)
    assert r.exit_code == 0, (r.output, r.exception)
    return r


def fails(*args: str, message: str) -> Result:
    r = run(*args)
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit)  # a clean exit, never a traceback
    assert message in r.output
    return r


def read_key(path: Path) -> tuple[bytes, bytes]:
    doc = json.loads(path.read_text())
    return bytes.fromhex(doc["signingKey"]), bytes.fromhex(doc["signingKey_SECRET"])


def test_genkey(tmp_path: Path) -> None:
    key = tmp_path / "world.key"
    ok("genkey", str(key))
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    doc = json.loads(key.read_text())
    assert doc["objtype"] == "worldSigningKey"
    public, secret = read_key(key)
    assert c25519_public_from_private(secret) == public
    before = key.read_bytes()
    fails("genkey", str(key), message="exists")
    assert key.read_bytes() == before
    ok("genkey", "--force", str(key))
    assert key.read_bytes() != before
    raw = tmp_path / "current.c25519"
    ok("genkey", "--format", "c25519", str(raw))
    data = raw.read_bytes()
    assert len(data) == 128 and c25519_public_from_private(data[64:]) == data[:64]


def test_mkplanet_matches_library_and_show(tmp_path: Path, ids: list[Identity]) -> None:
    key = tmp_path / "k.json"
    ok("genkey", str(key))
    (tmp_path / "a.public").write_text(ids[0].to_string())
    out = tmp_path / "planet"
    ok(
        "mkplanet",
        "--key",
        str(key),
        "--id",
        "149604618",
        "--timestamp",
        "1700000000000",
        "--root",
        f"{tmp_path / 'a.public'}@198.51.100.1/9993,[2001:db8::1]:443",
        "--root",
        ids[1].to_string(include_private=True) + "@203.0.113.5/9993",
        "-o",
        str(out),
    )
    public, secret = read_key(key)
    expected = World.make(
        type=WorldType.PLANET,
        id=149604618,
        timestamp=1700000000000,
        update_signing_public=public,
        update_signing_private=secret,
        roots=[
            Root(
                ids[0].public(),
                (InetAddress.parse("198.51.100.1/9993"), InetAddress.parse("2001:db8::1/443")),
            ),
            Root(ids[1].public(), (InetAddress.parse("203.0.113.5/9993"),)),
        ],
    )
    # C25519 signatures are deterministic, so the file is fully predictable
    assert out.read_bytes() == expected.to_bytes()
    assert ids[1].private_key.hex() not in out.read_bytes().hex()

    table = ok("show", str(out)).output
    for text in ("planet", "149604618", "1700000000000", str(ids[0].address), "198.51.100.1/9993", "valid"):
        assert text in table
    assert "NOT valid" not in table

    doc = json.loads(ok("show", "--json", str(out)).output)
    assert doc["type"] == "planet"
    assert doc["idDecimal"] == 149604618 and doc["id"] == f"{149604618:016x}"
    assert doc["timestamp"] == 1700000000000
    assert doc["updatesMustBeSignedBy"] == public.hex()
    assert doc["selfSigned"] is True
    assert [r["address"] for r in doc["roots"]] == [str(ids[0].address), str(ids[1].address)]
    assert doc["roots"][0]["stableEndpoints"] == ["198.51.100.1/9993", "2001:db8::1/443"]
    assert doc["roots"][1]["identity"] == ids[1].to_string()
    assert all(r["identityValid"] for r in doc["roots"])


def test_planet_update_with_next_key(tmp_path: Path, ids: list[Identity]) -> None:
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    ok("genkey", str(old))
    ok("genkey", str(new))
    root = ids[0].to_string() + "@192.0.2.1/9993"
    common = ["--id", "0x1234", "--root", root]
    ok("mkplanet", "--key", str(old), "--timestamp", "100", *common, "-o", str(tmp_path / "v1"))
    ok(
        "mkplanet",
        "--key",
        str(old),
        "--next-key",
        str(new),
        "--timestamp",
        "200",
        *common,
        "-o",
        str(tmp_path / "v2"),
    )
    v1, v2 = load_world_file(tmp_path / "v1"), load_world_file(tmp_path / "v2")
    assert v2.id == 0x1234 and v2.update_signing_key == read_key(new)[0]
    assert v1.should_be_replaced_by(v2)
    assert not v2.verify_signature() and v2.verify_signature(read_key(old)[0])
    doc = json.loads(ok("show", "-j", str(tmp_path / "v2"), "--previous", str(tmp_path / "v1")).output)
    assert doc["selfSigned"] is False
    assert doc["signedByPrevious"] is True and doc["replacesPrevious"] is True
    assert "NOT valid" in ok("show", str(tmp_path / "v2")).output


def test_show_builtin_planet() -> None:
    doc = json.loads(ok("show", "--json", PLANET_PATH).output)
    assert doc["type"] == "planet" and doc["idDecimal"] == 149604618
    assert doc["selfSigned"] is True and len(doc["roots"]) == 4
    assert doc["length"] == 570 and doc["trailingBytes"] == 0
    assert "104.194.8.134/9993" in ok("show", PLANET_PATH).output


def test_show_errors(tmp_path: Path) -> None:
    data = Path(PLANET_PATH).read_bytes()
    (tmp_path / "short").write_bytes(data[:300])
    fails("show", str(tmp_path / "short"), message="not a valid world file")
    (tmp_path / "type").write_bytes(b"\x05" + data[1:])
    fails("show", "-j", str(tmp_path / "type"), message="not a valid world file")
    (tmp_path / "empty").write_bytes(b"")
    fails("show", str(tmp_path / "empty"), message="not a valid world file")
    fails("show", str(tmp_path / "missing"), message="cannot read")
    # trailing bytes are ignored (as the core does) but reported
    (tmp_path / "extra").write_bytes(data + b"xx")
    assert json.loads(ok("show", "-j", str(tmp_path / "extra")).output)["trailingBytes"] == 2


def test_mkplanet_errors(tmp_path: Path, ids: list[Identity]) -> None:
    key = tmp_path / "k.json"
    ok("genkey", str(key))
    root = ids[0].to_string() + "@192.0.2.1/9993"
    out = str(tmp_path / "p")
    fails("mkplanet", "--key", str(key), "--id", "1", *["--root", root] * 5, "-o", out, message="at most 4")
    fails("mkplanet", "--key", str(key), "--id", "zz", "--root", root, "-o", out, message="world id")
    fails("mkplanet", "--key", str(key), "--id", "0", "--root", root, "-o", out, message="world id")
    fails(
        "mkplanet",
        "--key",
        str(tmp_path / "nokey"),
        "--id",
        "1",
        "--root",
        root,
        "-o",
        out,
        message="key file",
    )
    bad_ep = ids[0].to_string() + "@192.0.2.1/70000"
    fails("mkplanet", "--key", str(key), "--id", "1", "--root", bad_ep, "-o", out, message="stable endpoint")
    # an identity whose address does not derive from its key fails validation
    forged = "0123456789" + ids[0].to_string()[10:]
    fails(
        "mkplanet", "--key", str(key), "--id", "1", "--root", forged, "-o", out, message="failed validation"
    )
    fails(
        "mkplanet",
        "--key",
        str(key),
        "--id",
        "1",
        "--root",
        "nope@1.2.3.4/1",
        "-o",
        out,
        message="cannot read",
    )
    # a key file whose halves disagree
    pub_a, _ = c25519_generate()
    _, sec_b = c25519_generate()
    (tmp_path / "mixed.c25519").write_bytes(pub_a + sec_b)
    fails(
        "mkplanet",
        "--key",
        str(tmp_path / "mixed.c25519"),
        "--id",
        "1",
        "--root",
        root,
        "-o",
        out,
        message="match",
    )
    assert not Path(out).exists()
    # A raw key whose first byte is "{" is still a raw key (it was misread as JSON).
    pub, sec = c25519_generate()
    while pub[0] == ord("{"):  # 1 in 256: the changed byte must differ, or the halves agree
        pub, sec = c25519_generate()
    brace = bytearray(pub + sec)
    brace[0] = ord("{")  # the public half's first byte; the halves then disagree, as a raw key
    (tmp_path / "brace.c25519").write_bytes(bytes(brace))
    fails(
        "mkplanet",
        "--key",
        str(tmp_path / "brace.c25519"),
        "--id",
        "1",
        "--root",
        root,
        "-o",
        out,
        message="match",
    )


def test_initmoon_then_genmoon_json(tmp_path: Path, ids: list[Identity]) -> None:
    seed_file = tmp_path / "identity.public"
    seed_file.write_text(ids[0].to_string())
    mj_path = tmp_path / "moon.json"
    ok("initmoon", str(seed_file), "-o", str(mj_path))
    assert stat.S_IMODE(os.stat(mj_path).st_mode) == 0o600
    mj = json.loads(mj_path.read_text())
    # the fields zerotier-idtool initmoon writes
    assert mj["objtype"] == "world" and mj["worldType"] == "moon"
    assert mj["id"] == str(ids[0].address)
    assert mj["updatesMustBeSignedBy"] == mj["signingKey"]
    assert c25519_public_from_private(bytes.fromhex(mj["signingKey_SECRET"])).hex() == mj["signingKey"]
    assert mj["roots"] == [{"identity": ids[0].to_string(), "stableEndpoints": []}]
    printed = json.loads(ok("initmoon", ids[0].to_string()).output)
    assert printed["id"] == mj["id"] and printed["signingKey"] != mj["signingKey"]

    # edit it the way the ZeroTier docs describe, adding endpoints and a second root
    mj["roots"][0]["stableEndpoints"] = ["2001:db8::9/9993", "192.0.2.9/9993"]
    mj["roots"].append({"identity": ids[1].to_string(), "stableEndpoints": ["198.51.100.2/9993"]})
    mj_path.write_text(json.dumps(mj))
    ok("mkmoon", str(mj_path), "--timestamp", "1234567", "--out-dir", str(tmp_path))
    moon_file = tmp_path / f"000000{ids[0].address}.moon"
    moon = load_world_file(moon_file)
    assert moon.type is WorldType.MOON and moon.id == int(ids[0].address)
    assert moon.timestamp == 1234567 and moon.verify_signature()
    expected = World.make(
        type=WorldType.MOON,
        id=int(ids[0].address),
        timestamp=1234567,
        update_signing_public=bytes.fromhex(mj["updatesMustBeSignedBy"]),
        update_signing_private=bytes.fromhex(mj["signingKey_SECRET"]),
        roots=genmoon_order(
            [
                Root(ids[0].public(), tuple(InetAddress.parse(e) for e in mj["roots"][0]["stableEndpoints"])),
                Root(ids[1].public(), (InetAddress.parse("198.51.100.2/9993"),)),
            ]
        ),
    )
    assert moon_file.read_bytes() == expected.to_bytes()
    assert [str(e) for e in moon.root(ids[0].address).stable_endpoints] == [
        "192.0.2.9/9993",
        "2001:db8::9/9993",
    ]
    # the moon JSON also works as a key file
    ok("mkmoon", "--key", str(mj_path), "--root", str(seed_file), "-o", str(tmp_path / "m2.moon"))
    assert load_world_file(tmp_path / "m2.moon").update_signing_key.hex() == mj["signingKey"]


def test_mkmoon_from_options(tmp_path: Path, ids: list[Identity]) -> None:
    key = tmp_path / "k.json"
    ok("genkey", str(key))
    ok(
        "mkmoon",
        "--key",
        str(key),
        "--root",
        ids[1].to_string() + "@192.0.2.7/9993",
        "--root",
        ids[0].to_string(),
        "--timestamp",
        "99",
        "--out-dir",
        str(tmp_path),
    )
    # the id is the first (seed) root's address, as initmoon sets it
    moon = load_world_file(tmp_path / f"000000{ids[1].address}.moon")
    assert moon.type is WorldType.MOON and moon.id == int(ids[1].address) and moon.timestamp == 99
    assert moon.root_addresses() == {ids[0].address, ids[1].address}
    assert moon.verify_signature(read_key(key)[0])
    ok(
        "mkmoon",
        "--key",
        str(key),
        "--root",
        ids[0].to_string(),
        "--id",
        "deadbeef00",
        "-o",
        str(tmp_path / "x"),
    )
    assert load_world_file(tmp_path / "x").id == 0xDEADBEEF00


def test_mkmoon_errors(tmp_path: Path, ids: list[Identity]) -> None:
    key = tmp_path / "k.json"
    ok("genkey", str(key))
    fails("mkmoon", message="need MOON_JSON")
    fails("mkmoon", "--key", str(key), message="need MOON_JSON")
    public, secret = c25519_generate()
    good = {
        "objtype": "world",
        "worldType": "moon",
        "id": str(ids[0].address),
        "signingKey": public.hex(),
        "signingKey_SECRET": secret.hex(),
        "updatesMustBeSignedBy": public.hex(),
        "roots": [{"identity": ids[0].to_string(), "stableEndpoints": ["192.0.2.1/9993"]}],
    }
    cases = [
        ({"worldType": "asteroid"}, "worldType"),
        ({"id": "0"}, "ID in"),
        ({"id": "not-hex"}, "ID in"),
        ({"signingKey": c25519_generate()[0].hex()}, "does not match"),
        ({"signingKey_SECRET": "abcd"}, "signingKey_SECRET"),
        ({"roots": "nope"}, "roots"),
        ({"roots": []}, "at least one root"),
        ({"roots": [{"identity": "garbage"}]}, "invalid identity"),
        ({"roots": [{"identity": ids[0].to_string(), "stableEndpoints": ["bad"]}]}, "stable endpoint"),
    ]
    for change, message in cases:
        path = tmp_path / "m.json"
        path.write_text(json.dumps({**good, **change}))
        fails("mkmoon", str(path), "--out-dir", str(tmp_path), message=message)
    (tmp_path / "m.json").write_text("{not json")
    fails("mkmoon", str(tmp_path / "m.json"), message="JSON")
    (tmp_path / "m.json").write_text(json.dumps(good))
    fails("mkmoon", str(tmp_path / "m.json"), "--key", str(key), message="not both")
    fails("mkmoon", str(tmp_path / "m.json"), "--out-dir", str(tmp_path / "nodir"), message="cannot write")
    assert not list(tmp_path.glob("*.moon"))
