"""http_port ... require-proxy-header: squidpy behind a load balancer (raw sockets send the
headers HAProxy would, and everything a broken or hostile sender might)."""

from __future__ import annotations

import socket

import pytest

from squidpy.proxyp import encode_v1, encode_v2
from tests.proxyproc import wait_for

POLICY = """
acl lb src 127.0.0.0/8
proxy_protocol_access allow lb
acl office src 192.0.2.0/24 2001:db8::/32
http_access allow office
http_access deny all
"""


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``, read until the proxy closes (b'' when it said nothing, even when it
    reset the connection before connect() returned)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionResetError:
        return b""
    with s:
        try:
            s.sendall(data)
        except OSError:
            return b""
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return out


def request(url: str) -> bytes:
    return f"GET {url} HTTP/1.1\r\nHost: {url.split('/')[2]}\r\nConnection: close\r\n\r\n".encode()


@pytest.fixture
def behind_lb(make_proxy):
    return make_proxy(POLICY, listen="127.0.0.1:0 require-proxy-header")


@pytest.mark.parametrize("header, client", [
    (encode_v1(("192.0.2.55", 40001), ("10.9.9.9", 3128)), "192.0.2.55"),
    (encode_v2(("192.0.2.56", 40002), ("10.9.9.9", 3128)), "192.0.2.56"),
    (encode_v2(("2001:db8::7", 40003), ("2001:db8::1", 3128)), "2001:db8::7"),
])
def test_the_clients_address_decides_and_is_logged(behind_lb, origin, header, client):
    url = origin.url(f"/size/3?from={client}")
    answer = exchange(behind_lb.port, header + request(url))
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"xxx")
    line = behind_lb.log_line(url)
    assert line.split()[2] == client and "TCP_MISS/200" in line


def test_src_acls_see_the_claimed_address_not_the_balancers(behind_lb, origin):
    url = origin.url("/size/3?outsider")
    answer = exchange(behind_lb.port, encode_v1(("198.51.100.1", 5), ("10.9.9.9", 3128)) + request(url))
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert behind_lb.log_line(url).split()[2] == "198.51.100.1"
    assert origin.count("/size/3?outsider") == 0


def test_unknown_and_local_keep_the_connections_own_address(make_proxy, origin):
    proxy = make_proxy(POLICY.replace("http_access allow office", "http_access allow lb"),
                       listen="127.0.0.1:0 require-proxy-header")
    for header in (b"PROXY UNKNOWN\r\n", encode_v2(None, None, command="LOCAL")):
        url = origin.url(f"/size/1?{len(header)}")
        assert exchange(proxy.port, header + request(url)).startswith(b"HTTP/1.1 200 ")
        assert proxy.log_line(url).split()[2] == "127.0.0.1"


@pytest.mark.parametrize("data", [
    b"GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n",          # no header at all
    b"PROXY TCP4 192.0.2.1 10.0.0.1 1 99999\r\nGET / HTTP/1.1\r\n\r\n",           # bad port
    b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n\r\n",
    b"PROXY TCP4 " + b"1" * 200 + b"\r\n",                                        # longer than 107 bytes
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x05abcde" + b"GET / HTTP/1.1\r\n\r\n",  # v2 block too short
    b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12),                      # version 3
])
def test_a_missing_or_malformed_header_closes_the_connection_without_a_word(behind_lb, data):
    assert exchange(behind_lb.port, data) == b""
    assert wait_for(lambda: "PROXY" in behind_lb.read_cache_log().split("Accepting HTTP")[-1])


def test_a_sender_proxy_protocol_access_does_not_allow_is_closed_at_once(make_proxy, origin):
    proxy = make_proxy(POLICY.replace("proxy_protocol_access allow lb", "proxy_protocol_access deny all"),
                       listen="127.0.0.1:0 require-proxy-header")
    header = encode_v1(("192.0.2.55", 40001), ("10.9.9.9", 3128))
    assert exchange(proxy.port, header + request(origin.url("/size/1?x"))) == b""
    assert wait_for(lambda: "PROXY client not permitted by ACLs from local=127.0.0.1:" in proxy.read_cache_log())
    without = make_proxy(POLICY.replace("proxy_protocol_access allow lb\n", ""), name="without",
                         listen="127.0.0.1:0 require-proxy-header")
    assert exchange(without.port, header + request(origin.url("/size/1?y"))) == b""
    assert origin.count("/size/1?x") == origin.count("/size/1?y") == 0


def test_a_header_is_read_in_pieces(behind_lb, origin):
    url = origin.url("/size/2?pieces")
    data = encode_v2(("192.0.2.77", 1), ("10.9.9.9", 3128)) + request(url)
    with socket.create_connection(("127.0.0.1", behind_lb.port), timeout=5) as s:
        for i in range(0, len(data), 5):
            s.sendall(data[i:i + 5])
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 200 ") and behind_lb.log_line(url).split()[2] == "192.0.2.77"


def test_a_proxy_header_on_an_ordinary_port_is_an_invalid_request(make_proxy, make_squid, origin):
    """As Squid 5.7 answers it."""
    data = encode_v1(("192.0.2.55", 1), ("10.9.9.9", 3128)) + request(origin.url("/size/1?plain"))
    ours = exchange(make_proxy(POLICY.replace("office", "lb")).port, data)
    squid = make_squid("acl lb src 127.0.0.0/8\nhttp_access allow lb\nhttp_access deny all\n")
    theirs = exchange(squid.port, data)
    assert ours.split(b"\r\n")[0] == theirs.split(b"\r\n")[0] == b"HTTP/1.1 400 Bad Request"
    assert origin.count("/size/1?plain") == 0
