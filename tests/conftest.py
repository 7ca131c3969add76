"""Shared fixtures: a real origin on loopback and real squidpy processes."""

from __future__ import annotations

import socket

import pytest

from tests.origin import Origin
from tests.proxyproc import ProxyProcess

# The policy most end-to-end tests run under: loopback clients only.
LOCAL_POLICY = """
acl local src 127.0.0.0/8 ::1
http_access allow local
http_access deny all
"""


@pytest.fixture(scope="session")
def origin():
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture
def make_proxy(tmp_path):
    """``make_proxy(config_text, **kw)`` starts squidpy; all are stopped at teardown."""
    started = []

    def make(config: str = LOCAL_POLICY, name: str = "proxy", **kw) -> ProxyProcess:
        proxy = ProxyProcess(tmp_path / f"{name}{len(started)}", config, **kw)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
    for proxy in started:
        assert_no_tracebacks(proxy)


@pytest.fixture
def short_tmp():
    """A short directory for UNIX socket paths (108 bytes at most)."""
    import os
    import tempfile
    d = tempfile.mkdtemp(prefix="sq", dir="/tmp")
    yield d
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """One squidpy with LOCAL_POLICY, shared by a test module."""
    p = ProxyProcess(tmp_path_factory.mktemp("proxy"), LOCAL_POLICY)
    yield p
    p.stop()
    assert_no_tracebacks(p)


def assert_no_tracebacks(proxy) -> None:
    """A proxy must never hit an unexpected exception, whatever a test threw at it."""
    log = proxy.read_cache_log()
    assert "Traceback" not in log, f"unexpected error in {proxy.cache_log}:\n{log[-3000:]}"


def raw_request(port: int, data: bytes, timeout: float = 5.0, read_until_close: bool = True) -> bytes:
    """Send raw bytes to the proxy and return everything it answers (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not read_until_close:
                    break
        except socket.timeout:
            pass
        return b"".join(chunks)


def read_response(f, method: str = "GET") -> tuple[int, dict, bytes]:
    """Read one HTTP/1.1 response from a binary file object: (status, headers, body).

    Header names are lower-cased; repeated headers are joined with ', '.
    """
    status_line = f.readline()
    if not status_line:
        raise EOFError("connection closed before a response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if method == "HEAD" or status < 200 or status in (204, 304):
        return status, headers, b""
    if "chunked" in headers.get("transfer-encoding", ""):
        out = []
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b""):
                    pass
                return status, headers, b"".join(out)
            out.append(f.read(size))
            f.readline()
    if "content-length" in headers:
        return status, headers, f.read(int(headers["content-length"]))
    return status, headers, f.read()


@pytest.fixture(scope="session")
def tls_origin(tmp_path_factory):
    """An HTTPS origin on loopback with a fresh self-signed certificate for 'localhost'."""
    import ssl
    import threading

    from tests.origin import Origin
    from tests.tlscert import make_self_signed

    d = tmp_path_factory.mktemp("tls")
    cert, key = make_self_signed(d, "localhost")
    server = Origin()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.cafile = str(cert)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_origins(tmp_path_factory):
    """TLS origins on loopback with good, expired, not yet valid, wrong-name, self-signed and
    unknown-CA certificates (tests/tlsorigins.py), signed by a test root in ``.cafile``."""
    from tests.tlsorigins import OriginSet

    origins = OriginSet(tmp_path_factory.mktemp("tls-origins"))
    yield origins
    origins.stop()
