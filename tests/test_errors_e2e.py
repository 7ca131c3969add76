"""End to end: failures get Squid-style error pages with the right status, never a crash."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import (
    LOCAL_POLICY,
    assert_no_tracebacks,
    raw_request,
    read_response,
)
from tests.dnsserver import DnsServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, url: str, extra: str = "", method: str = "GET") -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(f"{method} {url} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        return read_response(s.makefile("rb"), method)


@pytest.fixture(scope="module")
def dns():
    server = DnsServer({"www.test.example": ["127.0.0.1"], "v6only.test.example": ["::1"],
                        "twoaddr.test.example": ["127.0.0.2", "127.0.0.1"]}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dproxy(tmp_path_factory, dns):
    from tests.proxyproc import ProxyProcess
    p = ProxyProcess(tmp_path_factory.mktemp("dnsproxy"),
                     LOCAL_POLICY + f"dns_nameservers 127.0.0.1:{dns.port}\nconnect_timeout 3 seconds\n")
    yield p
    p.stop()
    assert_no_tracebacks(p)


def test_connect_refused_is_503_err_connect_fail(proxy):
    port = free_port()
    status, headers, body = get(proxy.port, f"http://127.0.0.1:{port}/")
    assert status == 503
    assert headers["x-squid-error"] == "ERR_CONNECT_FAIL 0"
    assert headers["content-type"].startswith("text/html")
    assert b"127.0.0.1" in body


def test_dns_failure_is_503_err_dns_fail(dproxy, dns):
    status, headers, body = get(dproxy.port, "http://nowhere.test.example/")
    assert status == 503
    assert headers["x-squid-error"] == "ERR_DNS_FAIL 0"
    assert b"nowhere.test.example" in body
    assert "nowhere.test.example" in dns.names()
    line = dproxy.log_line("http://nowhere.test.example/").split()
    assert line[3] == "TCP_MISS/503" and line[8] == "HIER_NONE/-"


def test_name_resolved_by_the_configured_dns_server(dproxy, dns, origin):
    status, _, body = get(dproxy.port, f"http://www.test.example:{origin.port}/size/12")
    assert (status, body) == (200, b"x" * 12)


def test_dns_answers_and_failures_are_cached(dproxy, dns, origin):
    for _ in range(3):
        assert get(dproxy.port, f"http://www.test.example:{origin.port}/size/1")[0] == 200
        assert get(dproxy.port, "http://cached-failure.test.example/")[0] == 503
    names = dns.names()
    assert names.count("cached-failure.test.example") <= 2     # one A and one AAAA query
    assert names.count("www.test.example") <= 2


def test_ipv6_origin_by_name(dproxy, dns):
    from tests.origin import Origin
    v6 = Origin("::1").start()
    try:
        status, _, body = get(dproxy.port, f"http://v6only.test.example:{v6.port}/size/3")
        assert (status, body) == (200, b"xxx")
    finally:
        v6.stop()


def test_every_resolved_address_is_tried(dproxy, dns, origin):
    # 127.0.0.2 refuses (nothing listens there on that port), 127.0.0.1 answers
    status, _, body = get(dproxy.port, f"http://twoaddr.test.example:{origin.port}/size/5")
    assert (status, body) == (200, b"xxxxx")


def test_ipv6_literal_origin(proxy):
    from tests.origin import Origin
    v6 = Origin("::1").start()
    try:
        status, _, body = get(proxy.port, f"http://[::1]:{v6.port}/size/4")
        assert (status, body) == (200, b"xxxx")
    finally:
        v6.stop()


@pytest.mark.parametrize("request_bytes,status,error", [
    (b"GARBAGE\r\n\r\n", 400, b"ERR_INVALID_REQ"),
    (b"GET http://exa mple.com/ HTTP/1.1\r\n\r\n", 400, b"ERR_INVALID_"),
    (b"GET http://user:pw@example.com/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"ERR_INVALID_URL"),
    (b"GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n", 501, b"ERR_UNSUP_REQ"),
    (b"GET http://example.com/ HTTP/2.0\r\nHost: x\r\n\r\n", 505, b"ERR_UNSUP_HTTPVERSION"),
    (b"GET http://example.com/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, b"ERR_INVALID_REQ"),
    (b"GET http://example.com/ HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, b"ERR_INVALID_REQ"),
])
def test_malformed_requests_get_an_error_and_a_close(proxy, origin, request_bytes, status, error):
    before = origin.count()
    raw = raw_request(proxy.port, request_bytes)
    assert raw.startswith(b"HTTP/1.1 %d" % status), raw[:200]
    assert error in raw
    assert origin.count() == before


def test_request_headers_too_large_is_431(proxy):
    huge = "X-Big: " + "a" * 70000 + "\r\n"
    raw = raw_request(proxy.port, f"GET http://example.com/ HTTP/1.1\r\nHost: x\r\n{huge}\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 431")
    assert b"ERR_TOO_BIG" in raw


def test_request_body_too_large_is_413(shared_proxy, origin):
    proxy = shared_proxy(LOCAL_POLICY + "request_body_max_size 1 KB\n")
    before = origin.count("/echo")
    raw = raw_request(proxy.port, f"POST {origin.url('/echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 413")
    assert origin.count("/echo") == before


def test_forwarding_loop_is_403(proxy, origin):
    hostname = socket.gethostname()
    status, headers, body = get(proxy.port, origin.url("/size/1"), extra=f"Via: 1.1 {hostname} (squidpy/0)\r\n")
    assert status == 403
    assert b"loop" in body


def test_read_timeout_is_504(make_proxy, origin):
    """The origin would answer after 10 seconds: a 504 means read_timeout ended it first."""
    proxy = make_proxy(LOCAL_POLICY + "read_timeout 1 second\n")
    status, headers, _ = get(proxy.port, origin.url("/slow/10"))
    assert status == 504
    assert headers["x-squid-error"] == "ERR_READ_TIMEOUT 0"


def test_origin_closing_without_reply_is_502(proxy, origin):
    status, headers, _ = get(proxy.port, origin.url("/reset"))
    assert status == 502
    assert headers["x-squid-error"] in ("ERR_ZERO_SIZE_OBJECT 0", "ERR_READ_ERROR 0")


def test_truncated_reply_is_cut_short_not_completed(proxy, origin):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"GET {origin.url('/truncate')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 1000" in head
    assert len(body) == 10     # the client sees a short body and a closed connection
    line = proxy.log_line(origin.url("/truncate"))
    assert "TCP_MISS_ABORTED/200" in line


def test_max_forwards_zero_is_answered_by_the_proxy(proxy, origin):
    before = origin.count()
    status, headers, body = get(proxy.port, origin.url("/echo"), extra="Max-Forwards: 0\r\n", method="TRACE")
    assert status == 200 and headers["content-type"] == "message/http"
    assert body.startswith(b"TRACE ")
    status, headers, _ = get(proxy.port, origin.url("/echo"), extra="Max-Forwards: 0\r\n", method="OPTIONS")
    assert status == 200 and "GET" in headers["allow"]
    assert origin.count() == before


def test_max_forwards_is_decremented(proxy, origin):
    status, _, body = get(proxy.port, origin.url("/echo"), extra="Max-Forwards: 5\r\n", method="OPTIONS")
    import json
    assert dict(json.loads(body)["headers"])["Max-Forwards"] == "4"


def test_proxy_survives_a_storm_of_garbage(proxy, origin):
    import random
    rng = random.Random(7)
    for _ in range(60):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        raw_request(proxy.port, junk, timeout=2)
    status, _, body = get(proxy.port, origin.url("/size/2"))
    assert (status, body) == (200, b"xx")


def test_url_too_long_is_414(proxy, origin):
    raw = raw_request(proxy.port, f"GET {origin.url('/' + 'a' * 9000)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 414")
    assert b"ERR_TOO_BIG" in raw


def test_slow_request_head_times_out_with_408(make_proxy):
    """Within the client's 10-second deadline: the default request_timeout (5 minutes) is not."""
    proxy = make_proxy(LOCAL_POLICY + "request_timeout 1 second\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 408")
        assert b"ERR_LIFETIME_EXP" in data


def test_idle_client_connection_is_closed(make_proxy, origin):
    """Kept open between requests, closed once idle for client_idle_pconn_timeout (1 second;
    the default, 2 minutes, would outlast the client's 10-second deadline)."""
    proxy = make_proxy(LOCAL_POLICY + "client_idle_pconn_timeout 1 second\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        f = s.makefile("rb")
        for _ in range(2):              # not closed after a request: reused at once
            s.sendall(f"GET {origin.url('/size/1')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_response(f)[0] == 200
        assert f.read() == b""          # closed by the proxy


def test_refused_upload_is_answered_not_reset(shared_proxy, origin, tmp_path):
    """Lingering close: the client still sending a body we refused gets the 413 page."""
    proxy = shared_proxy(LOCAL_POLICY + "request_body_max_size 1 KB\n")
    f = tmp_path / "big.bin"
    f.write_bytes(b"b" * (3 * 1024 * 1024))
    before = origin.count("/echo")
    import subprocess
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:",
                          "-x", proxy.url, "--data-binary", f"@{f}", origin.url("/echo")],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout == "413"
    assert origin.count("/echo") == before


def test_reply_headers_too_large_is_502(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "reply_header_max_size 2 KB\n")
    status, headers, _ = get(proxy.port, origin.url("/headers?X-Big=" + "h" * 5000))
    assert status == 502
    assert headers["x-squid-error"] == "ERR_TOO_BIG 0"


def test_invalid_reply_is_502(make_proxy):
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def garbage():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello")
        conn.close()

    threading.Thread(target=garbage, daemon=True).start()
    proxy = make_proxy(LOCAL_POLICY)
    status, headers, _ = get(proxy.port, f"http://127.0.0.1:{srv.getsockname()[1]}/")
    srv.close()
    assert status == 502 and headers["x-squid-error"] == "ERR_INVALID_RESP 0"
