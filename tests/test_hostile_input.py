"""End to end: request smuggling and malformed framing (RFC 9112 sections 6 and 11.2).

Raw bytes over real sockets, because a client library would refuse to send
them.  Each request must get the exact status, the connection must be
closed, and the origin must see nothing at all.
"""

from __future__ import annotations

import socket

import pytest

from tests.conftest import raw_request
from tests.origin import RawOrigin


def requests(origin_url: str):
    u = origin_url
    return [
        ("CL and TE", f"POST {u} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("TE and CL", f"POST {u} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
        ("two CL values", f"POST {u} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        ("same CL twice", f"POST {u} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
        ("CL list", f"POST {u} HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
        ("CL sign", f"POST {u} HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
        ("TE not chunked last", f"POST {u} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
        ("TE unknown coding", f"POST {u} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
        ("TE split over lines", f"POST {u} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("TE xchunked", f"POST {u} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
        ("space before colon", f"GET {u} HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        ("obs-fold", f"GET {u} HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
        ("bare CR in value", f"GET {u} HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
        ("bare LF line ending", f"GET {u} HTTP/1.1\nHost: x\n\n", 400),
        ("NUL in value", f"GET {u} HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
        ("control char in name", f"GET {u} HTTP/1.1\r\nHost: x\r\nX\x01A: a\r\n\r\n", 400),
        ("DEL in value", f"GET {u} HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400),
        ("chunk size overflow", f"POST {u} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n", 400),
        ("chunk size not hex", f"POST {u} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 400),
        ("chunk size with space", f"POST {u} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", 400),
        ("no CRLF after chunk", f"POST {u} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400),
        ("userinfo", "GET http://user:pw@127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("userinfo confusion", "GET http://127.0.0.1:80@evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("bad host", "GET http://exa_mple..com/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("empty host", "GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("HTTP/0.9", f"GET {u}\r\n\r\n", 400),
        ("HTTP/0.9 declared", f"GET {u} HTTP/0.9\r\n\r\n", 400),
        ("HTTP/1.2", f"GET {u} HTTP/1.2\r\nHost: x\r\n\r\n", 400),
        ("HTTP/9.9", f"GET {u} HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        ("control char in URL", "GET http://127.0.0.1/a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("too many fields", f"GET {u} HTTP/1.1\r\n" + "".join(f"X-{i}: a\r\n" for i in range(300)) + "\r\n", 431),
    ]


CASES = [c[0] for c in requests("http://o/")]


@pytest.mark.parametrize("name", CASES)
def test_malformed_request_is_refused_closed_and_not_forwarded(proxy, origin, name):
    label, data, status = next(c for c in requests(origin.url("/echo")) if c[0] == name)
    before = origin.count()
    raw = raw_request(proxy.port, data.encode("latin-1"), timeout=10)
    assert raw.startswith(b"HTTP/1.1 %d " % status), (label, raw[:120])
    assert b"Connection: close" in raw.split(b"\r\n\r\n")[0]
    assert origin.count() == before, f"{label}: the origin saw the request"


def test_endless_chunk_extension_is_refused(proxy, origin):
    """Extensions are skipped by the parser, so their size is bounded by counting."""
    import time
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"POST {origin.url('/echo')} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;".encode())
        time.sleep(0.2)
        try:
            for _ in range(20):
                s.sendall(b"e" * 4096)
                time.sleep(0.02)
        except OSError:
            pass
        raw = b""
        try:
            while chunk := s.recv(65536):
                raw += chunk
        except OSError:
            pass
    assert raw.startswith(b"HTTP/1.1 400"), raw[:100]
    assert b"ERR_INVALID_REQ" in raw


def test_smuggled_second_request_after_bad_framing_is_never_forwarded(proxy, origin):
    """A CL+TE request hiding a second request in its body: nothing reaches the origin."""
    before = origin.count()
    smuggle = (f"POST {origin.url('/echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\n"
               f"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET {origin.url('/size/1')} HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = raw_request(proxy.port, smuggle.encode())
    assert raw.startswith(b"HTTP/1.1 400") and raw.count(b"HTTP/1.1 ") == 1
    assert origin.count() == before


class EvilOrigin(RawOrigin):
    """Answers every request with the same malformed bytes."""

    def __init__(self, reply: bytes):
        self.reply = reply
        super().__init__()

    def serve(self, conn):
        while conn.recv(65536):
            conn.sendall(self.reply)


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;" + b"e" * 20000 + b"\r\nabc\r\n0\r\n\r\n",
    b"HTTP/9.9 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"garbage\r\n\r\n",
])
def test_malformed_reply_is_502_and_the_connection_is_not_reused(proxy, reply):
    evil = EvilOrigin(reply)
    try:
        for _ in range(2):
            raw = raw_request(proxy.port, f"GET http://127.0.0.1:{evil.port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert raw.startswith(b"HTTP/1.1 502"), raw[:100]
            assert b"ERR_INVALID_RESP" in raw
        assert evil.connections == 2
    finally:
        evil.stop()
