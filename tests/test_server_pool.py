"""End to end: origin connections are pooled, reused, retired, and retried once when stale."""

from __future__ import annotations

import socket
import threading
import time

from tests.conftest import LOCAL_POLICY, read_response


class CountingOrigin:
    """A raw keep-alive origin: counts connections; can drop a connection instead of
    answering its Nth request (a stale pooled connection, seen from the proxy)."""

    def __init__(self, drop_on_request: int | None = None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests = 0
        self.drop_on_request = drop_on_request
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        f = conn.makefile("rb")
        with conn:
            while True:
                try:
                    line = f.readline()
                except OSError:
                    return
                if not line:
                    return
                while f.readline() not in (b"\r\n", b""):
                    pass
                self.requests += 1
                if self.requests == self.drop_on_request:
                    return          # close without answering
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def stop(self):
        self._stop.set()
        self.sock.close()


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
