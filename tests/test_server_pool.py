"""End to end: origin connections are pooled, reused, retired, and retried once when stale."""

from __future__ import annotations

import socket
import time

from tests.conftest import LOCAL_POLICY, read_response
from tests.origin import RawOrigin


class CountingOrigin(RawOrigin):
    """A raw keep-alive origin that can drop a connection instead of answering its
    Nth request (a stale pooled connection, seen from the proxy)."""

    def __init__(self, drop_on_request: int | None = None):
        self.requests = 0
        self.drop_on_request = drop_on_request
        super().__init__()

    def serve(self, conn):
        f = conn.makefile("rb")
        while f.readline():
            while f.readline() not in (b"\r\n", b""):
                pass
            self.requests += 1
            if self.requests == self.drop_on_request:
                return          # close without answering
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

def get(port, url):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_response(s.makefile("rb"))


def test_origin_connection_is_reused(make_proxy):
    origin = CountingOrigin()
    proxy = make_proxy(LOCAL_POLICY)
    try:
        for _ in range(5):
            assert get(proxy.port, f"http://127.0.0.1:{origin.port}/")[2] == b"ok"
        assert origin.connections == 1
        assert origin.requests == 5
    finally:
        origin.stop()


def test_idle_origin_connection_is_retired(make_proxy):
    origin = CountingOrigin()
    proxy = make_proxy(LOCAL_POLICY + "server_idle_pconn_timeout 1 second\n")
    try:
        get(proxy.port, f"http://127.0.0.1:{origin.port}/")
        time.sleep(2.0)
        get(proxy.port, f"http://127.0.0.1:{origin.port}/")
        assert origin.connections == 2
    finally:
        origin.stop()


def test_stale_pooled_connection_is_retried_once_for_get(make_proxy):
    origin = CountingOrigin(drop_on_request=2)
    proxy = make_proxy(LOCAL_POLICY)
    try:
        assert get(proxy.port, f"http://127.0.0.1:{origin.port}/a")[2] == b"ok"
        status, _, body = get(proxy.port, f"http://127.0.0.1:{origin.port}/b")
        assert (status, body) == (200, b"ok")
        assert origin.connections == 2 and origin.requests == 3
    finally:
        origin.stop()
