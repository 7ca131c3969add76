"""HAProxy's PROXY protocol headers, as squidpy's parser reads them (real HAProxy on loopback).

A small loopback server reads each connection's first bytes with
:func:`squidpy.proxyp.parse` and answers with the client address it found; the
client's own address (as the kernel gave it) must come back, through HAProxy's
``send-proxy`` (version 1) and ``send-proxy-v2``, and HAProxy's health checks
(``check-send-proxy``) must be readable too, since a require-proxy-header port
receives them.
"""

from __future__ import annotations

import socket
import threading

import pytest

from squidpy.proxyp import ProxyHeaderError, parse
from tests.haproxyproc import HAProxyProcess
from tests.proxyproc import wait_for


class HeaderServer:
    """Reads a PROXY header, answers ``SOURCE-IP SOURCE-PORT|rest`` (or ``refused``)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.headers = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(5)
        data = b""
        with conn:
            try:
                while True:
                    try:
                        header = parse(data)
                    except ProxyHeaderError:
                        conn.sendall(b"refused")
                        return
                    if header is not None:
                        break
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                with self._lock:
                    self.headers.append(header)
                rest = data[header.size:]
                while not rest.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    rest += chunk
                source = header.source or ("-", 0)
                conn.sendall(f"{source[0]} {source[1]}|".encode() + rest)
            except OSError:
                return

    def stop(self):
        self._stop.set()
        self.sock.close()


@pytest.fixture
def server():
    s = HeaderServer()
    yield s
    s.stop()


def ask(port: int, text: bytes = b"hello\n") -> tuple[bytes, tuple[str, int]]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        mine = c.getsockname()
        c.sendall(text)
        answer = b""
        while chunk := c.recv(4096):
            answer += chunk
    return answer, mine


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_client_address_arrives(tmp_path, server, version):
    haproxy = HAProxyProcess(tmp_path, [("127.0.0.1", server.port)], proxy=version)
    try:
        for _ in range(5):
            answer, (ip, port) = ask(haproxy.port)
            assert answer == f"{ip} {port}|hello\n".encode()
        assert {h.version for h in server.headers} == {"1.0" if version == "v1" else "2.0"}
        assert {h.destination for h in server.headers} == {("127.0.0.1", haproxy.port)}
    finally:
        haproxy.stop()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_health_checks_carry_a_header_squidpy_reads(tmp_path, server, version):
    haproxy = HAProxyProcess(tmp_path, [("127.0.0.1", server.port)], proxy=version, check=True)
    try:
        def checks():
            # v2 checks say LOCAL (no client: the connection's own addresses stay); v1 checks
            # give HAProxy's own connection (to the server's port) as the client
            return [h for h in server.headers
                    if h.command == "LOCAL" or (h.destination and h.destination[1] == server.port)]

        assert wait_for(lambda: len(checks()) >= 2, timeout=5), haproxy.read_stderr()
        if version == "v2":
            assert {h.source for h in checks()} == {None}
        else:
            assert {h.source[0] for h in checks()} == {"127.0.0.1"}
        answer, (ip, port) = ask(haproxy.port)
        assert answer == f"{ip} {port}|hello\n".encode()
    finally:
        haproxy.stop()
