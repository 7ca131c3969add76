"""End to end: 2 GB through the proxy both ways with bounded memory (RSS under 100 MB).

2 GiB is 2**31 bytes: past what a signed 32-bit length or counter holds.  Both bodies are
bytes(range(256)) over and over: the download is checked byte for byte against that
pattern as it comes (a comparison, not a hash), the upload by the SHA-256 the origin
computes of what it received, against the known digest of 2 GiB of the pattern."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.conftest import LOCAL_POLICY

GB2 = 2 * 1024 ** 3
BLOCK = bytes(range(256)) * 4096       # 1 MB
# hashlib.sha256(bytes(range(256)) * (GB2 // 256)).hexdigest()
SHA256_GB2 = "382045c648d7c2a42a01bb3132186a0397d40e2e4e85a99377dbc79c20e6671e"


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@pytest.mark.slow
def test_two_gigabytes_down_and_up_with_bounded_memory(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY)
    # download: stream and check on the client side, never holding the body
    c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
    c.request("GET", origin.url(f"/big/{GB2}"))
    r = c.getresponse()
    assert r.status == 200
    pattern = BLOCK + BLOCK[:256]
    got = 0
    while True:
        piece = r.read(1 << 20)
        if not piece:
            break
        start = got % 256
        assert piece == pattern[start:start + len(piece)], f"wrong bytes after {got}"
        got += len(piece)
    assert got == GB2

    # upload: a generator body, so the client never holds it either
    def body():
        for _ in range(GB2 // len(BLOCK)):
            yield BLOCK

    c.request("POST", origin.url("/sink"), body=body(), headers={"Content-Length": str(GB2)})
    doc = json.loads(c.getresponse().read())
    assert doc == {"length": GB2, "sha256": SHA256_GB2}
    assert peak_rss_mb(proxy.proc.pid) < 100
