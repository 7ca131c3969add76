"""range_offset_limit end to end: curl -r through the real proxy to tests/origin.py,
checking what the origin received (with or without Range) and what a second request
gets (a hit served as 206 from the stored whole)."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.conftest import LOCAL_POLICY, assert_no_tracebacks


def curl_range(proxy, url: str, byte_range: str) -> tuple[int, bytes]:
    run = subprocess.run(["curl", "-s", "--max-time", "20", "-x", proxy.url, "-r", byte_range,
                          "-o", "-", "-w", "\n%{http_code}", url], capture_output=True, timeout=30)
    body, _, code = run.stdout.rpartition(b"\n")
    return int(code), body


def origin_ranges(origin, url: str) -> list[str | None]:
    path = url.split("127.0.0.1", 1)[1].split("/", 1)[1]
    return [dict(r[2]).get("Range") for r in origin.requests if r[1] == "/" + path]


@pytest.mark.parametrize("limit, whole", [("", False), ("range_offset_limit none\n", True),
                                          ("range_offset_limit 100 bytes\n", True),
                                          ("range_offset_limit 5 bytes\n", False)])
def test_range_request_and_the_next_one(make_proxy, origin, limit, whole):
    proxy = make_proxy(LOCAL_POLICY + limit)
    url = origin.url(f"/obj/{uuid.uuid4().hex[:10]}?cc=max-age%3D600&size=1000")
    code, part = curl_range(proxy, url, "10-19")
    assert origin_ranges(origin, url) == [None if whole else "bytes=10-19"]
    # the origin here ignores Range and sends the whole 200: as Squid, without a whole fetch
    # of our own the client gets what the origin sent; with it, its range
    assert (code, len(part)) == ((206, 10) if whole else (200, 1000))
    first = proxy.log_line(url)
    assert first is not None and ("TCP_MISS/206" if whole else "TCP_MISS/200") in first
    code, again = curl_range(proxy, url, "10-19")
    assert (code, again) == (206, part if whole else part[10:20])
    assert len(origin_ranges(origin, url)) == 1            # the second is a hit on the stored whole
    second = proxy.log_line(url, count=2)
    assert second is not None and "_HIT/206" in second
    assert_no_tracebacks(proxy)
