"""Differential: the same cache exchanges through Squid 5.7 and squidpy log the same result
and hierarchy codes (tests/squidproc.py runs the real Squid on loopback)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import read_response
from tests.proxyproc import ProxyProcess, wait_for
from tests.squidproc import SquidProcess

POLICY = "acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
DIRECT = "HIER_DIRECT/127.0.0.1"

# one object each: its query, then the requests for it (extra headers, seconds to wait before),
# and what both proxies log for them
CASES = [
    ("revalidated-304", "cc=max-age%3D1&etag=%22v1%22", [("", 0), ("", 2.2)],
     [("TCP_MISS/200", DIRECT), ("TCP_REFRESH_UNMODIFIED/200", DIRECT)]),
    ("revalidated-200", "cc=max-age%3D1&etag=%22v1%22&cond=200", [("", 0), ("", 2.2)],
     [("TCP_MISS/200", DIRECT), ("TCP_REFRESH_MODIFIED/200", DIRECT)]),
    ("revalidated-500", "cc=max-age%3D1&etag=%22v1%22&cond=500", [("", 0), ("", 2.2)],
     [("TCP_MISS/200", DIRECT), ("TCP_REFRESH_FAIL_ERR/500", DIRECT)]),
    ("reloaded", "cc=max-age%3D60&etag=%22v1%22", [("", 0), ("Cache-Control: no-cache\r\n", 0), ("", 0)],
     [("TCP_MISS/200", DIRECT), ("TCP_MISS/200", DIRECT), ("TCP_MEM_HIT/200", "HIER_NONE/-")]),
    ("pragma", "cc=max-age%3D60", [("", 0), ("Pragma: no-cache\r\n", 0)],
     [("TCP_MISS/200", DIRECT), ("TCP_MISS/200", DIRECT)]),
]


def get(port: int, url: str, headers: str = "") -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        return read_response(s.makefile("rb"))[0]


def logged(proxy, needle: str, count: int) -> list[tuple[str, str]]:
    def lines():
        try:
            found = [line.split() for line in proxy.access_log.read_text().splitlines() if needle in line]
        except FileNotFoundError:
            return None
        return found if len(found) >= count else None
    return [(f[3], f[8]) for f in wait_for(lines, 10) or []]


@pytest.fixture
def both(tmp_path):
    # Squid drops to the 'proxy' user when started as root: its directory must be reachable
    # by that user, which pytest's private tmp_path is not
    squid_dir = tempfile.mkdtemp(prefix="squid-", dir="/tmp")
    os.chmod(squid_dir, 0o755)
    squid = SquidProcess(Path(squid_dir), POLICY + "cache_mem 8 MB\n")
    squidpy = ProxyProcess(tmp_path / "squidpy", POLICY)
    yield {"squid": squid, "squidpy": squidpy}
    squid.stop()
    squidpy.stop()
    shutil.rmtree(squid_dir, ignore_errors=True)


def test_revalidation_and_reload_codes_match_squid(both, origin):
    seen = {name: {} for name in both}
    for name, proxy in both.items():
        tag = uuid.uuid4().hex[:8]
        for case, query, steps, _ in CASES:
            target = origin.url(f"/obj/{case}-{tag}?{query}")
            for headers, wait in steps:
                time.sleep(wait)
                get(proxy.port, target, headers)
            seen[name][case] = logged(proxy, f"/obj/{case}-{tag}", len(steps))
    assert seen["squidpy"] == seen["squid"]
    assert seen["squidpy"] == {case: expected for case, _, _, expected in CASES}
