"""End to end: 2 GB through the proxy both ways with bounded memory (RSS under 100 MB)."""

from __future__ import annotations

import hashlib
import http.client
import json

from tests.conftest import LOCAL_POLICY

GB2 = 2 * 1024 ** 3
BLOCK = bytes(range(256)) * 4096       # 1 MB


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def test_two_gigabytes_down_and_up_with_bounded_memory(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY)
    # download: stream and hash on the client side, never holding the body
    c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
    c.request("GET", origin.url(f"/big/{GB2}"))
    r = c.getresponse()
    assert r.status == 200
    got, digest = 0, hashlib.sha256()
    while True:
        piece = r.read(1 << 20)
        if not piece:
            break
        got += len(piece)
        digest.update(piece)
    assert got == GB2
    block = bytes(range(256)) * 256
    expected = hashlib.sha256()
    for _ in range(GB2 // len(block)):
        expected.update(block)
    assert digest.hexdigest() == expected.hexdigest()

    # upload: a generator body, so the client never holds it either
    sent = hashlib.sha256()

    def body():
        for _ in range(GB2 // len(BLOCK)):
            sent.update(BLOCK)
            yield BLOCK

    c.request("POST", origin.url("/sink"), body=body(), headers={"Content-Length": str(GB2)})
    doc = json.loads(c.getresponse().read())
    assert doc == {"length": GB2, "sha256": sent.hexdigest()}
    assert peak_rss_mb(proxy.proc.pid) < 100
