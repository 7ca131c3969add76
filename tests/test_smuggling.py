"""End to end: message framing and transaction boundaries (issue 10).

Raw bytes from raw sockets, through the real proxy, to a :class:`RecordingOrigin`
that keeps every byte it received and reads them as a strict origin would.  Each
test asserts what the origin received and what the clients (the one that sent the
bytes, and a later one) got back.
"""

from __future__ import annotations

import socket

import pytest

from tests.conftest import read_response
from tests.origin import RecordingOrigin, marker_reply

DENY_POLICY = """
acl local src 127.0.0.0/8
acl denied urlpath_regex ^/denied
http_access deny denied
http_access allow local
http_access deny all
"""

# a request hidden in a body: 47 bytes, to a URL the proxy denies
HIDDEN = b"GET /denied HTTP/1.1\r\nHost: 127.0.0.1\r\nX: 1\r\n\r\n"
assert len(HIDDEN) == 47


@pytest.fixture
def recording():
    started = []

    def make(answer=None) -> RecordingOrigin:
        origin = RecordingOrigin(answer)
        started.append(origin)
        return origin

    yield make
    for origin in started:
        origin.stop()


def exchange(port: int, data: bytes, replies: int = 1, method: str = "GET", timeout: float = 10):
    """Send ``data`` on a new connection; read ``replies`` replies, then whatever else
    comes until the proxy closes or goes quiet: ([(status, headers, body)], rest)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        f = s.makefile("rb")
        got = [read_response(f, method) for _ in range(replies)]
        s.settimeout(0.5)
        try:
            rest = f.read1(65536)
        except (socket.timeout, OSError):
            rest = None     # still open
        return got, rest


class LineRecorder:
    """A reply reader that keeps the lines read (the status line of each reply)."""

    def __init__(self, f):
        self.f = f
        self.lines: list[bytes] = []

    def readline(self) -> bytes:
        line = self.f.readline()
        self.lines.append(line)
        return line

    def read(self, n: int = -1) -> bytes:
        return self.f.read(n)


def get(port: int, url: str) -> tuple[int, dict, bytes]:
    return exchange(port, f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())[0][0]


# ------------------------------------------------------------ 1. Connection cannot unframe a message

def test_connection_naming_content_length_cannot_unframe_the_body(shared_proxy, recording):
    origin = recording()
    proxy = shared_proxy(DENY_POLICY)
    assert get(proxy.port, origin.url("/denied"))[0] == 403       # the hidden URL is denied
    attack = (f"POST {origin.url('/ok')} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Content-Length\r\n"
              f"Content-Length: {len(HIDDEN)}\r\n\r\n").encode() + HIDDEN
    [(status, _, body)], _ = exchange(proxy.port, attack)
    assert (status, body) == (200, b"reply to POST /ok\n")
    # a second client, on the pooled connection, gets its own reply
    status, _, body = get(proxy.port, origin.url("/second"))
    assert (status, body) == (200, b"reply to GET /second\n")
    seen = origin.wait_for(2)
    assert [(r.method, r.target, r.body) for r in seen] == [("POST", "/ok", HIDDEN), ("GET", "/second", b"")]
    assert origin.connections == 1
    assert bytes(origin.received[0]) == seen[0].raw + seen[1].raw      # nothing else reached it
    assert seen[0].header("Content-Length") == "47" and seen[0].header("Connection") is None


def test_connection_naming_transfer_encoding_cannot_unframe_the_body(shared_proxy, recording):
    origin = recording()
    proxy = shared_proxy(DENY_POLICY)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(HIDDEN), HIDDEN)
    attack = (f"POST {origin.url('/ok')} HTTP/1.1\r\nHost: x\r\nConnection: Transfer-Encoding\r\n"
              f"Transfer-Encoding: chunked\r\n\r\n").encode() + chunked
    [(status, _, body)], _ = exchange(proxy.port, attack)
    assert (status, body) == (200, b"reply to POST /ok\n")
    assert get(proxy.port, origin.url("/second"))[2] == b"reply to GET /second\n"
    seen = origin.wait_for(2)
    assert [(r.target, r.body) for r in seen] == [("/ok", HIDDEN), ("/second", b"")]
    assert seen[0].header("Transfer-Encoding") == "chunked"


@pytest.mark.parametrize("fields", [
    b"Connection: Content-Length\r\nContent-Length: 5\r\n",
    b"Connection: close, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n",
])
def test_reply_whose_connection_names_its_framing_is_502_and_the_connection_closed(proxy, recording, fields):
    def answer(req):
        if req.target == "/tampered":
            body = b"5\r\nhello\r\n0\r\n\r\n" if b"chunked" in fields else b"hello"
            return b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n" + body + marker_reply(req)
        return marker_reply(req)

    origin = recording(answer)
    status, headers, body = get(proxy.port, origin.url("/tampered"))
    assert status == 502 and b"ERR_INVALID_RESP" in body
    assert get(proxy.port, origin.url("/next"))[2] == b"reply to GET /next\n"
    assert origin.connections == 2          # the tampered connection was not reused


# ------------------------------------------------------------ 2. reply bytes stay in their transaction

INJECTED = (b"HTTP/1.1 200 InjectedOK\r\nSet-Cookie: session=attacker\r\nCache-Control: max-age=600\r\n"
            b"Content-Length: 9\r\n\r\ninjected!")


def cacheable_then_injected(req):
    """Each connection's first reply is followed, in the same write, by a reply nobody asked for."""
    body = f"reply to {req.method} {req.target}\n".encode()
    reply = (b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: %d\r\n\r\n%s"
             % (len(body), b"" if req.method == "HEAD" else body))
    return reply + INJECTED if req.number == 0 else reply


@pytest.mark.parametrize("first", ["GET", "HEAD"])
def test_bytes_after_a_reply_never_reach_the_next_transaction(proxy, recording, first):
    origin = recording(cacheable_then_injected)
    pipelined = (f"{first} {origin.url('/a')} HTTP/1.1\r\nHost: x\r\n\r\n"
                 f"GET {origin.url('/b')} HTTP/1.1\r\nHost: x\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(pipelined)
        f = s.makefile("rb")
        a, b = LineRecorder(f), LineRecorder(f)
        _, headers_a, body_a = read_response(a, first)
        _, headers_b, body_b = read_response(b)
    assert a.lines[0] == b.lines[0] == b"HTTP/1.1 200 OK\r\n"
    assert body_a == (b"" if first == "HEAD" else b"reply to GET /a\n")
    assert body_b == b"reply to GET /b\n"
    assert "set-cookie" not in headers_a and "set-cookie" not in headers_b
    # the connection that carried extra bytes was never reused
    assert origin.connections == 2
    assert [(r.connection, r.target) for r in origin.seen()] == [(0, "/a"), (1, "/b")]
    # and nothing of it was cached for later clients
    status, headers, body = get(proxy.port, origin.url("/b"))
    assert (status, body) == (200, b"reply to GET /b\n") and "set-cookie" not in headers


def test_a_reply_split_by_the_origin_still_reuses_its_connection(proxy, recording):
    """The reverse check: a clean keep-alive reply leaves its connection in the pool."""
    origin = recording()
    for name in ("/x", "/y", "/z"):
        assert get(proxy.port, origin.url(name))[2] == f"reply to GET {name}\n".encode()
    assert origin.connections == 1


# ------------------------------------------------------------ 4. non-persistent uploads

@pytest.mark.parametrize("version,connection", [("1.0", ""), ("1.1", "Connection: close\r\n")])
def test_upload_on_a_connection_that_closes_is_forwarded_whole(proxy, recording, version, connection):
    origin = recording()
    body = bytes(range(256)) * 1172         # 300032 bytes
    request = (f"POST {origin.url('/up')} HTTP/{version}\r\nHost: x\r\n{connection}"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    [(status, headers, reply)], rest = exchange(proxy.port, request, timeout=20)
    assert (status, reply) == (200, b"reply to POST /up\n")
    assert headers.get("connection") == "close" and rest == b""
    seen = origin.wait_for(1)
    assert len(seen) == 1 and seen[0].body == body


# ------------------------------------------------------------ 5. pipelined requests before a close

def test_every_pipelined_request_before_a_close_is_answered_in_order(proxy, recording):
    origin = recording()
    u = origin.url
    data = (f"GET {u('/1')} HTTP/1.1\r\nHost: x\r\n\r\n"
            f"GET {u('/2')} HTTP/1.1\r\nHost: x\r\n\r\n"
            f"GET {u('/3')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            f"GET {u('/4')} HTTP/1.1\r\nHost: x\r\n\r\n").encode()
    got, rest = exchange(proxy.port, data, replies=3)
    assert [body for _, _, body in got] == [b"reply to GET /1\n", b"reply to GET /2\n", b"reply to GET /3\n"]
    assert [h.get("connection") for _, h, _ in got] == [None, None, "close"]
    assert rest == b""          # closed after the third: the fourth is never read
    assert [r.target for r in origin.seen()] == ["/1", "/2", "/3"]


def test_post_then_gets_before_a_close_are_all_answered(proxy, recording):
    origin = recording()
    u = origin.url
    data = (f"POST {u('/p')} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            f"GET {u('/g1')} HTTP/1.1\r\nHost: x\r\n\r\n"
            f"GET {u('/g2')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode()
    got, rest = exchange(proxy.port, data, replies=3)
    assert [body for _, _, body in got] == [b"reply to POST /p\n", b"reply to GET /g1\n", b"reply to GET /g2\n"]
    assert rest == b""
    assert [(r.target, r.body) for r in origin.seen()] == [("/p", b"hello"), ("/g1", b""), ("/g2", b"")]


# ------------------------------------------------------------ 6. replies with too many fields

def test_reply_with_more_than_256_fields_is_refused_and_its_connection_closed(proxy, recording):
    def answer(req):
        if req.target == "/many":
            fields = b"".join(b"X-%d: a\r\n" % i for i in range(300))
            return b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 2\r\n\r\nok"
        return marker_reply(req)

    origin = recording(answer)
    status, _, body = get(proxy.port, origin.url("/many"))
    assert status == 502 and b"ERR_TOO_BIG" in body
    assert get(proxy.port, origin.url("/next"))[2] == b"reply to GET /next\n"
    assert origin.connections == 2
