"""`ztnode capture`: record a running node's traffic to a pcap file.

Reads the local API's ``/unstable/capture`` stream (the node found through its home
directory, as ``ztnode cli`` does): ``--wire`` records the node's UDP datagrams as
IP packets, ``--network NWID`` a joined network's Ethernet frames (both directions).
Stops after ``--count`` packets, ``--seconds``, or Ctrl-C; the file is always left
with whole records, readable by tcpdump, tshark and Scapy (``rdpcap``; then
``ztcore.scapy.Keyring(identity.secret).decrypt_all(...)`` for wire captures).
"""

from __future__ import annotations

import http.client
import struct
import sys
import urllib.parse
from pathlib import Path

import click

from ztcore.cli.client import DEFAULT_TIMEOUT, ConnectError, make_settings, nwid_arg

PCAP_HEADER_LENGTH = 24
RECORD_HEADER_LENGTH = 16


@click.command("capture")
@click.option("--home", "-D", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The node's home directory (API port and token are read from it).")  # fmt: skip
@click.option(
    "-p", "--port", type=click.IntRange(1, 65535), default=None, help="API port (default: from HOME)."
)
@click.option("-T", "--token", default=None, help="API auth token (default: from HOME).")
@click.option("--wire", is_flag=True, help="Capture the node's UDP datagrams (IP packets).")
@click.option("--network", "nwid", default=None, callback=lambda c, p, v: v and nwid_arg(c, p, v),
              help="Capture the Ethernet frames of this joined network (16 hex digits).")  # fmt: skip
@click.option("-w", "--write", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="pcap file to write ('-' for standard output).")  # fmt: skip
@click.option("-c", "--count", type=click.IntRange(1), default=None, help="Stop after this many packets.")
@click.option("--seconds", type=click.FloatRange(0.001, 86400), default=None, help="Stop after this long.")
def capture(
    home: Path | None,
    port: int | None,
    token: str | None,
    wire: bool,
    nwid: str | None,
    out: Path,
    count: int | None,
    seconds: float | None,
) -> None:
    """Write a running node's wire traffic (--wire) or a network's frames (--network) to a pcap file."""
    if wire == (nwid is not None):
        raise click.UsageError("give exactly one of --wire and --network NWID")
    settings = make_settings(home, port, token, "127.0.0.1", False, DEFAULT_TIMEOUT)
    query = {
        k: str(v) for k, v in (("network", nwid), ("count", count), ("seconds", seconds)) if v is not None
    }
    path = "/unstable/capture" + ("?" + urllib.parse.urlencode(query) if query else "")
    api_port, api_token = settings.resolve_port(), settings.resolve_token()
    # No read timeout while capturing: a quiet network is not an error (seconds= bounds it).
    conn = http.client.HTTPConnection(settings.host, api_port, timeout=DEFAULT_TIMEOUT)
    try:
        conn.request("GET", path, headers={"X-ZT1-Auth": api_token})
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read().decode("utf-8", "replace").strip()
            raise click.ClickException(f"{resp.status} capture {body}")
        if conn.sock is not None:
            conn.sock.settimeout(None)
        written = _copy_records(resp, out)
    except (OSError, http.client.HTTPException) as e:
        raise ConnectError(
            f"cannot capture from the node's API at {settings.host} port {api_port}: {e}"
        ) from None
    finally:
        conn.close()
    click.echo(f"{written} packets written to {out}", err=True)


def _copy_records(resp: http.client.HTTPResponse, out: Path) -> int:
    """Copy the stream record by record, so an interrupted capture still leaves a valid file."""
    header = resp.read(PCAP_HEADER_LENGTH)
    if len(header) != PCAP_HEADER_LENGTH or struct.unpack_from("<I", header)[0] != 0xA1B2C3D4:
        raise click.ClickException("the node did not answer with a pcap stream")
    stream = sys.stdout.buffer if str(out) == "-" else open(out, "wb")  # noqa: SIM115 - closed below
    written = 0
    try:
        stream.write(header)
        stream.flush()
        while True:
            head = resp.read(RECORD_HEADER_LENGTH)
            if len(head) < RECORD_HEADER_LENGTH:
                break
            caplen = struct.unpack_from("<I", head, 8)[0]
            body = resp.read(caplen)
            if len(body) < caplen:
                break
            stream.write(head + body)
            stream.flush()
            written += 1
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a capture; what was written is whole
    finally:
        if stream is not sys.stdout.buffer:
            stream.close()
    return written
