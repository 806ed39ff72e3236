"""Identity oracle: the real core (libzt 1.4.2) generates and validates ZeroTier identities.

Run by Python 3.9 from the libzt 1.4.2 venv (no network, no namespace needed):

* ``driver_idtool.py generate N``  -> stdout: JSON list of N secret identity strings
  (``address:0:public:private``) made by ``zts_id_new``
* ``driver_idtool.py validate``    -> stdin: JSON list of identity strings; stdout: JSON list
  of booleans from ``zts_id_pair_is_valid``

The SWIG wrapper cannot pass the C out-parameters (``char *``, ``unsigned int *``), so the C
functions are called through ctypes on the same shared object. ``zts_id_pair_is_valid``
refuses a length below ``ZTS_ID_STR_BUF_LEN`` (384), so strings go in a 384-byte buffer.
Must stay Python 3.9 compatible and import nothing from ztcore.
"""

import ctypes
import json
import sys

import libzt

_lib = ctypes.CDLL(libzt._libzt.__file__)
_lib.zts_id_new.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint)]
_lib.zts_id_pair_is_valid.argtypes = [ctypes.c_char_p, ctypes.c_uint]
_BUF = int(libzt.ZTS_ID_STR_BUF_LEN)


def generate() -> str:
    buf = ctypes.create_string_buffer(_BUF)
    n = ctypes.c_uint(_BUF)
    rc = _lib.zts_id_new(buf, ctypes.byref(n))
    if rc != libzt.ZTS_ERR_OK:
        raise RuntimeError(f"zts_id_new failed: {rc}")
    return buf.value.decode()


def validate(identity: str) -> bool:
    raw = identity.encode()
    if len(raw) >= _BUF or b"\x00" in raw:
        return False
    buf = ctypes.create_string_buffer(raw, _BUF)
    return _lib.zts_id_pair_is_valid(buf, _BUF) == 1


def main(argv: list) -> int:
    if len(argv) >= 1 and argv[0] == "generate":
        count = int(argv[1]) if len(argv) > 1 else 1
        json.dump([generate() for _ in range(count)], sys.stdout)
    elif argv == ["validate"]:
        items = json.load(sys.stdin)
        json.dump([validate(str(s)) for s in items], sys.stdout)
    else:
        sys.stderr.write("usage: driver_idtool.py generate [N] | validate < json-list\n")
        return 2
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
