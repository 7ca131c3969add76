"""End to end: plain HTTP forwarding through the real proxy to a real origin."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import urllib.request

import pytest

from tests.conftest import raw_request, read_response


def via_proxy(proxy, method, url, body=None, headers=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    c.request(method, url, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    return r, data, c


def test_get_with_urllib(proxy, origin):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
    with opener.open(origin.url("/size/1234"), timeout=10) as r:
        assert r.status == 200
        assert r.read() == b"x" * 1234
        assert "squidpy" in r.headers["Via"]


def test_get_with_curl(proxy, origin):
    out = subprocess.run(
        ["curl", "-s", "-x", proxy.url, "-D", "-", "-o", "/dev/null", origin.url("/size/10")],
        capture_output=True, text=True, timeout=20)
    assert out.returncode == 0
    assert out.stdout.startswith("HTTP/1.1 200")
    assert "X-Cache: MISS from" in out.stdout


def test_request_reaches_origin_in_origin_form_with_host(proxy, origin):
    r, data, _ = via_proxy(proxy, "GET", origin.url("/echo?a=1"), headers={"X-Test": "yes"})
    doc = json.loads(data)
    assert doc["path"] == "/echo?a=1"
    headers = dict(doc["headers"])
    assert headers["Host"] == f"127.0.0.1:{origin.port}"
    assert headers["X-Test"] == "yes"
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["Via"].startswith("1.1 ") and "squidpy/" in headers["Via"]


def test_hop_by_hop_headers_are_removed(proxy, origin):
    r, data, _ = via_proxy(proxy, "GET", origin.url("/echo"), headers={
        "Connection": "keep-alive, X-Private", "X-Private": "secret", "Keep-Alive": "300",
        "Proxy-Connection": "keep-alive", "Proxy-Authorization": "Basic dXNlcjpwYXNz", "TE": "trailers",
        "X-Kept": "1",
    })
    names = {k.lower() for k, _ in json.loads(data)["headers"]}
    for gone in ("x-private", "keep-alive", "proxy-connection", "proxy-authorization", "te"):
        assert gone not in names
    assert "x-kept" in names


def test_head_has_no_body_and_connection_is_reused(proxy, origin):
    r, data, conn = via_proxy(proxy, "HEAD", origin.url("/size/500"))
    assert r.status == 200 and data == b""
    assert r.getheader("Content-Length") == "500"
    r, data, _ = via_proxy(proxy, "GET", origin.url("/size/7"), conn=conn)
    assert data == b"xxxxxxx"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_methods_with_bodies(proxy, origin, method):
    r, data, _ = via_proxy(proxy, method, origin.url("/echo"), body=b"hello=world")
    doc = json.loads(data)
    assert doc["method"] == method and doc["body"] == "hello=world"


def test_chunked_request_body_is_forwarded(proxy, origin):
    c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    c.request("POST", origin.url("/echo"), body=iter([b"abc", b"defg", b"h" * 5000]),
              encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    doc = json.loads(c.getresponse().read())
    assert doc["body"] == "abcdefg" + "h" * 5000


def test_chunked_response_is_passed_chunked(proxy, origin):
    r, data, _ = via_proxy(proxy, "GET", origin.url("/chunked/4500"))
    assert r.getheader("Transfer-Encoding") == "chunked"
    assert data == b"c" * 4500


def test_close_delimited_response_is_chunked_for_http11(proxy, origin):
    r, data, conn = via_proxy(proxy, "GET", origin.url("/close/3000"))
    assert data == b"z" * 3000
    assert r.getheader("Transfer-Encoding") == "chunked"
    # the client connection survived the origin's close
    r, data, _ = via_proxy(proxy, "GET", origin.url("/size/3"), conn=conn)
    assert data == b"xxx"


def test_http10_client_gets_close_delimited_body(proxy, origin):
    raw = raw_request(proxy.port, f"GET {origin.url('/close/100')} HTTP/1.0\r\n\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"chunked" not in head.lower()
    assert body == b"z" * 100


def test_keep_alive_and_pipelining_answer_in_order(proxy, origin):
    paths = ["/size/5", "/chunked/20", "/size/9", "/echo"]
    data = b"".join(
        f"GET {origin.url(p)} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n\r\n".encode() for p in paths)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(data)
        f = s.makefile("rb")
        bodies = [read_response(f)[2] for _ in paths]
    assert bodies[0] == b"x" * 5
    assert bodies[1] == b"c" * 20
    assert bodies[2] == b"x" * 9
    assert json.loads(bodies[3])["path"] == "/echo"


def test_large_download_streams(proxy, origin):
    n = 20 * 1024 * 1024
    out = subprocess.run(
        ["curl", "-s", "-x", proxy.url, "-o", "/dev/null", "-w", "%{size_download}", origin.url(f"/big/{n}")],
        capture_output=True, text=True, timeout=60)
    assert out.stdout == str(n)


def test_large_upload_streams(proxy, origin, tmp_path):
    n = 8 * 1024 * 1024
    f = tmp_path / "up.bin"
    f.write_bytes(b"u" * n)
    out = subprocess.run(
        ["curl", "-s", "-x", proxy.url, "--data-binary", f"@{f}", origin.url("/echo")],
        capture_output=True, timeout=60)
    doc = json.loads(out.stdout)
    assert len(doc["body"]) == n


def test_origin_form_request_gets_the_proxy_page(proxy):
    raw = raw_request(proxy.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    assert b"squidpy" in raw


def test_pac_file(proxy):
    raw = raw_request(proxy.port, f"GET /proxy.pac HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\nConnection: close\r\n\r\n".encode())
    assert b"application/x-ns-proxy-autoconfig" in raw
    assert f"PROXY 127.0.0.1:{proxy.port}".encode() in raw


def test_access_log_line_is_squid_native(proxy, origin):
    before = len(proxy.log_lines(0))
    via_proxy(proxy, "GET", origin.url("/size/100"))
    lines = proxy.log_lines(before + 1)
    line = lines[-1]
    fields = line.split()
    assert len(fields) == 10, line
    ts, elapsed, client, code, size, method, url, user, hier, mime = fields
    assert float(ts) > 1e9 and "." in ts and len(ts.split(".")[1]) == 3
    assert int(elapsed) >= 0
    assert client == "127.0.0.1"
    assert code == "TCP_MISS/200"
    assert int(size) > 100
    assert (method, url, user) == ("GET", origin.url("/size/100"), "-")
    assert hier == "HIER_DIRECT/127.0.0.1"
    assert mime == "application/octet-stream"
