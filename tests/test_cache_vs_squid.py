"""Differential: the same cache exchanges through Squid 5.7 and squidpy log the same result
and hierarchy codes (tests/squidproc.py runs the real Squid on loopback)."""

from __future__ import annotations

import socket
import uuid

import pytest

from tests.conftest import read_response
from tests.proxyproc import ProxyProcess, wait_for
from tests.squidproc import SquidProcess

POLICY = "acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
DIRECT = "HIER_DIRECT/127.0.0.1"

# one object each: its query, then the requests for it (their extra headers), and what both
# proxies log for them.  aged=100 with max-age=60: the object is stored stale (dated 100 s
# ago), so the next request revalidates it without anyone waiting for it to expire.
CASES = [
    ("revalidated-304", "cc=max-age%3D60&etag=%22v1%22&aged=100", ["", ""],
     [("TCP_MISS/200", DIRECT), ("TCP_REFRESH_UNMODIFIED/200", DIRECT)]),
    ("revalidated-200", "cc=max-age%3D60&etag=%22v1%22&cond=200&aged=100", ["", ""],
     [("TCP_MISS/200", DIRECT), ("TCP_REFRESH_MODIFIED/200", DIRECT)]),
    ("revalidated-500", "cc=max-age%3D60&etag=%22v1%22&cond=500&aged=100", ["", ""],
     [("TCP_MISS/200", DIRECT), ("TCP_REFRESH_FAIL_ERR/500", DIRECT)]),
    ("reloaded", "cc=max-age%3D60&etag=%22v1%22", ["", "Cache-Control: no-cache\r\n", ""],
     [("TCP_MISS/200", DIRECT), ("TCP_MISS/200", DIRECT), ("TCP_MEM_HIT/200", "HIER_NONE/-")]),
    ("pragma", "cc=max-age%3D60", ["", "Pragma: no-cache\r\n"],
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
def both(tmp_path, squid_stops):
    squid = SquidProcess(tmp_path / "squid", POLICY + "cache_mem 8 MB\n")
    squidpy = ProxyProcess(tmp_path / "squidpy", POLICY)
    yield {"squid": squid, "squidpy": squidpy}
    squid_stops(squid)          # Squid finishes stopping in the background
    squidpy.stop()


def test_revalidation_and_reload_codes_match_squid(both, origin):
    seen = {name: {} for name in both}
    for name, proxy in both.items():
        tag = uuid.uuid4().hex[:8]
        for case, query, steps, _ in CASES:
            target = origin.url(f"/obj/{case}-{tag}?{query}")
            for headers in steps:
                get(proxy.port, target, headers)
            seen[name][case] = logged(proxy, f"/obj/{case}-{tag}", len(steps))
    assert seen["squidpy"] == seen["squid"]
    assert seen["squidpy"] == {case: expected for case, _, _, expected in CASES}
