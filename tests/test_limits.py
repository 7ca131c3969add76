"""End to end: limits and slow or greedy clients (issue: reliability and security)."""

from __future__ import annotations

import os
import socket

from tests.conftest import LOCAL_POLICY, raw_request, read_response
from tests.proxyproc import wait_for


def get(port, url, extra=""):
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        return read_response(s.makefile("rb"))


def test_reply_body_max_size_by_declared_length(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "acl local2 src 127.0.0.0/8\nreply_body_max_size 10 KB local2\n")
    status, headers, _ = get(proxy.port, origin.url("/size/20000"))
    assert status == 403 and headers["x-squid-error"] == "ERR_TOO_BIG 0"
    assert get(proxy.port, origin.url("/size/5000"))[0] == 200


def test_reply_body_max_size_while_streaming(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "reply_body_max_size 100 KB\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
        s.sendall(f"GET {origin.url('/chunked/500000')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    # either refused before anything was sent, or cut short without the last chunk
    assert data.startswith(b"HTTP/1.1 403") or (data.startswith(b"HTTP/1.1 200") and not data.endswith(b"0\r\n\r\n"))
    assert len(data) < 200_000


def test_reply_body_max_size_only_for_matching_acls(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "acl nobody src 10.99.99.99\nreply_body_max_size 1 KB nobody\n")
    assert get(proxy.port, origin.url("/size/20000"))[0] == 200


def test_client_ip_max_connections(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "client_ip_max_connections 3\n")
    before = proxy.sockets()
    held = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(3)]
    try:
        assert wait_for(lambda: proxy.sockets() == before + 3, 10)      # all three accepted
        try:
            # closed without an answer, as Squid does; the reset may even come before
            # connect() returns (Python's connect with a timeout waits for the handshake
            # and then reads the socket's error)
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as extra:
                extra.sendall(f"GET {origin.url('/size/1')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert extra.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert "client_ip_max_connections" in proxy.read_cache_log()
    finally:
        for s in held:
            s.close()
    assert wait_for(lambda: _ok(proxy, origin), 5)


def test_max_client_connections_answers_503(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "max_client_connections 4\n")
    before = proxy.sockets()
    held = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(4)]
    try:
        assert wait_for(lambda: proxy.sockets() == before + 4, 10)      # all four accepted
        raw = raw_request(proxy.port, b"")
        assert raw.startswith(b"HTTP/1.1 503")
        assert b"as many connections" in raw
    finally:
        for s in held:
            s.close()
    assert wait_for(lambda: _ok(proxy, origin), 5)


def test_running_out_of_file_descriptors_does_not_kill_the_proxy(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "max_filedescriptors 64\nmax_client_connections 1000\n")
    held = []
    try:
        for _ in range(120):
            try:
                held.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=2))
            except OSError:
                break
        # it accepts until no descriptor is left (64: max_filedescriptors), and lives on
        assert wait_for(lambda: len(os.listdir(f"/proc/{proxy.proc.pid}/fd")) >= 60, 10)
        assert proxy.proc.poll() is None
    finally:
        for s in held:
            s.close()
    assert wait_for(lambda: _ok(proxy, origin), 10)


def _ok(proxy, origin):
    try:
        return get(proxy.port, origin.url("/size/3"))[0] == 200
    except OSError:
        return False


def test_stalled_request_body_times_out(make_proxy, origin):
    """read_timeout 1 second ends it: the default (15 minutes) would outlast the client's
    10-second deadline, which then fails the test."""
    proxy = make_proxy(LOCAL_POLICY + "read_timeout 1 second\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"POST {origin.url('/echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    # the origin was already sent the start of the request: the client gets an error or a close
    assert data == b"" or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 504")


def test_dns_timeout(make_proxy):
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blackhole.bind(("127.0.0.1", 0))        # receives queries, never answers
    try:
        proxy = make_proxy(LOCAL_POLICY + f"dns_nameservers 127.0.0.1:{blackhole.getsockname()[1]}\ndns_timeout 1 second\n")
        # within the client's 15-second deadline: the default dns_timeout (30 s) would not be
        status, headers, _ = get(proxy.port, "http://silent.test.example/")
        assert status == 503 and headers["x-squid-error"] == "ERR_DNS_FAIL 0"
    finally:
        blackhole.close()
