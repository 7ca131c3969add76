"""Differential fuzzing of framing through a live squidpy (hypothesis, bounded).

Requests: random and mutated request streams (odd Connection tokens, duplicated
and conflicting framing fields, bodies hiding requests to a denied URL, byte
mutations) go through the proxy to a :class:`RecordingOrigin`.  The reference is
what a strict origin makes of the client's own bytes: every request the origin
receives through the proxy must be one the client framed (same method, target
and body, each at most once, in order), never the hidden one, and never bytes
the origin cannot read as a request.

Replies: an origin answers with mutated replies (bytes appended after a complete
reply, a foreign reply, conflicting or tampered framing, too many fields,
interim replies, unasked 101s, truncation), whole or in two writes, to pipelined
and later clients, with the cache on.  No client may ever receive a byte of a reply that was not
its own: every complete 200 carries exactly its own request's marker, and the
foreign marker never appears.
"""

from __future__ import annotations

import itertools
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import assert_no_tracebacks
from tests.origin import BadRequestBytes, RecordingOrigin, marker_reply, read_request
from tests.proxyproc import ProxyProcess

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

POLICY = """
acl local src 127.0.0.0/8
acl hidden urlpath_regex /hidden
http_access deny hidden
http_access allow local
http_access deny all
read_timeout 3 seconds
request_timeout 3 seconds
"""

_ids = itertools.count()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """One proxy and one recording origin for the whole module (each example uses fresh URLs)."""
    origin = RecordingOrigin()
    proxy = ProxyProcess(tmp_path_factory.mktemp("framing-fuzz"), POLICY)
    yield proxy, origin
    proxy.stop()
    origin.stop()
    assert_no_tracebacks(proxy)


def converse(port: int, data: bytes, pieces: int = 1, timeout: float = 6.0) -> bytes:
    """Send ``data`` (in ``pieces`` writes), half-close, and read all until the proxy closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        step = max(1, len(data) // pieces)
        try:
            for i in range(0, len(data), step):
                s.sendall(data[i:i + step])
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass                    # the proxy refused and closed early
        out = []
        try:
            while chunk := s.recv(65536):
                out.append(chunk)
        except ConnectionResetError:
            pass
        except socket.timeout:
            pytest.fail(f"the proxy neither answered nor closed: {data[:200]!r}")
        return b"".join(out)


# ------------------------------------------------------------ requests

FIELD_NAMES = ["Content-Length", "Transfer-Encoding", "Connection", "Proxy-Connection", "Keep-Alive",
               "TE", "Trailer", "Host", "Via", "X-Forwarded-For", "Upgrade", "X-Any"]
connection_tokens = st.lists(st.sampled_from(FIELD_NAMES + ["close", "keep-alive", "upgrade"]),
                             min_size=1, max_size=4).map(", ".join)
odd_fields = st.lists(st.one_of(
    st.tuples(st.sampled_from(["Connection", "Proxy-Connection"]), connection_tokens),
    st.tuples(st.sampled_from(["Content-Length", "Transfer-Encoding", "Upgrade", "TE", "Keep-Alive"]),
              st.sampled_from(["0", "3", "47", "5, 5", "chunked", "gzip, chunked", "chunked, gzip", "identity",
                               "websocket", "h2c", "trailers"])),
), max_size=3)

a_request = st.fixed_dictionaries({
    "method": st.sampled_from(["GET", "POST", "PUT"]),
    "version": st.sampled_from(["1.1", "1.1", "1.0"]),
    "framing": st.sampled_from(["length", "chunked", "none"]),
    "hide": st.booleans(),          # the body is a request to the denied URL
    "fields": odd_fields,
    "sizes": st.lists(st.integers(1, 40), min_size=1, max_size=3),
})

MUTATIONS = ["duplicate-line", "drop-line", "bump-digit", "space-before-colon", "bare-lf", "truncate",
             "double-crlf"]
mutations = st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 1 << 30)), max_size=2)


def build(example: int, number: int, r: dict, origin: RecordingOrigin) -> bytes:
    target = origin.url(f"/fz/{example}/{number}")
    body = (f"GET {origin.url(f'/hidden/{example}')} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            if r["hide"] else b"payload-%d-%d" % (example, number))
    fields = [("Host", "127.0.0.1")] + list(r["fields"])
    if r["framing"] == "length":
        fields.append(("Content-Length", str(len(body))))
        wire = body
    elif r["framing"] == "chunked":
        fields.append(("Transfer-Encoding", "chunked"))
        pieces, pos = [], 0
        for size in itertools.cycle(r["sizes"]):
            if pos >= len(body):
                break
            piece = body[pos:pos + size]
            pieces.append(b"%x\r\n%s\r\n" % (len(piece), piece))
            pos += size
        wire = b"".join(pieces) + b"0\r\n\r\n"
    else:
        wire = body                 # unframed: the bytes that follow are the next request, for the origin too
    head = f"{r['method']} {target} HTTP/{r['version']}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    return head.encode() + b"\r\n" + wire


def mutate(data: bytes, kind: str, n: int) -> bytes:
    lines = data.split(b"\r\n")
    i = n % len(lines)
    if kind == "duplicate-line":
        lines.insert(i, lines[i])
    elif kind == "drop-line" and len(lines) > 1:
        del lines[i]
    elif kind == "bump-digit":
        digits = [j for j, c in enumerate(data) if 48 <= c <= 57]
        if digits:
            j = digits[n % len(digits)]
            return data[:j] + bytes([48 + (data[j] - 47) % 10]) + data[j + 1:]
    elif kind == "space-before-colon" and b":" in lines[i]:
        lines[i] = lines[i].replace(b":", b" :", 1)
    elif kind == "bare-lf":
        return b"\r\n".join(lines[:i]) + b"\n" + b"\r\n".join(lines[i:])
    elif kind == "truncate":
        return data[:n % (len(data) + 1)]
    elif kind == "double-crlf":
        lines.insert(i, b"")
    return b"\r\n".join(lines)


def framed_by_client(stream: bytes) -> list[tuple[str, str, bytes]]:
    """What a strict origin reads in the client's own bytes: (method, target, body) each."""
    out = []
    while stream:
        try:
            parsed = read_request(stream)
        except (BadRequestBytes, ValueError):
            break
        if parsed is None:
            break
        method, target, _, _, body, used = parsed
        out.append((method, target, body))
        stream = stream[used:]
    return out


def origin_form(target: str) -> str:
    return "/" + target.split("/", 3)[3] if target.startswith("http://") else target


@FUZZ
@given(st.lists(a_request, min_size=1, max_size=3), mutations, st.integers(1, 3))
def test_the_origin_only_ever_reads_requests_a_client_framed(fuzzed, requests, changes, pieces):
    proxy, origin = fuzzed
    example = next(_ids)
    stream = b"".join(build(example, i, r, origin) for i, r in enumerate(requests))
    for kind, n in changes:
        stream = mutate(stream, kind, n)
    before = len(origin.seen())
    converse(proxy.port, stream, pieces)
    prefix = f"/fz/{example}/"
    seen = [r for r in origin.seen()[before:] if r.target.startswith(prefix) or "/hidden/" in r.target]
    assert not [r for r in seen if "/hidden/" in r.target], "a request no ACL saw reached the origin"
    assert not origin.errors, origin.errors
    reference = [(m, origin_form(t), b) for m, t, b in framed_by_client(stream)]
    got = [(r.method, r.target, r.body) for r in seen]
    # each forwarded request is one the client framed, at most once, in the client's order
    position = 0
    for request in got:
        assert request in reference[position:], (request, reference, stream)
        position = reference.index(request, position) + 1


# ------------------------------------------------------------ replies

FOREIGN = (b"HTTP/1.1 200 FOREIGN\r\nSet-Cookie: FOREIGN=1\r\nCache-Control: max-age=600\r\n"
           b"Content-Length: 8\r\n\r\nFOREIGN!")

# kind -> (framing fields, body on the wire, bytes the origin appends after that reply)
REPLY_MUTATIONS = {
    "clean": lambda body: (b"Content-Length: %d\r\n" % len(body), body, b""),
    "chunked": lambda body: (b"Transfer-Encoding: chunked\r\n", chunked(body), b""),
    "foreign-after": lambda body: (b"Content-Length: %d\r\n" % len(body), body, FOREIGN),
    "foreign-head-after": lambda body: (b"Content-Length: %d\r\n" % len(body), body,
                                        b"HTTP/1.1 200 FOREIGN\r\nSet-Cookie: FOREIGN=1\r\n"),
    "foreign-empty-after": lambda body: (b"Content-Length: %d\r\n" % len(body), body,
                                         b"HTTP/1.1 200 FOREIGN\r\nSet-Cookie: FOREIGN=1\r\nContent-Length: 0\r\n\r\n"),
    "crlf-after": lambda body: (b"Content-Length: %d\r\n" % len(body), body, b"\r\n"),
    "garbage-after": lambda body: (b"Content-Length: %d\r\n" % len(body), body, b"FOREIGN garbage"),
    "chunked-foreign-after": lambda body: (b"Transfer-Encoding: chunked\r\n", chunked(body), FOREIGN),
    "connection-unframes": lambda body: (b"Connection: Content-Length\r\nContent-Length: %d\r\n" % len(body),
                                         body, FOREIGN),
    "connection-unchunks": lambda body: (b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n",
                                         chunked(body), FOREIGN),
    "cl-and-te": lambda body: (b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(body),
                               chunked(body), FOREIGN),
    "two-lengths": lambda body: (b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(body), len(body) + 8),
                                 body, b"FOREIGN!"),
    "gzip-chunked": lambda body: (b"Transfer-Encoding: gzip, chunked\r\n", chunked(body), FOREIGN),
    "many-fields": lambda body: (b"".join(b"X-%d: a\r\n" % i for i in range(300))
                                 + b"Content-Length: %d\r\n" % len(body), body, FOREIGN),
    "interim-with-body": lambda body: (b"Content-Length: %d\r\n" % len(body), body, b""),   # and a 150 first
    "truncated-then-close": lambda body: (b"Content-Length: %d\r\n" % (len(body) + 50), body, b""),
    "close-delimited": lambda body: (b"Connection: close\r\n", body, b""),
    "unasked-101": lambda body: (b"", b"", b""),
}
CLOSES = {"truncated-then-close", "close-delimited"}


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def mutated_reply(kind: str, req, split: float | None):
    """The origin's reply of ``kind`` to ``req``; ``split``: sent in two writes, cut at that
    fraction of the reply proper (never at its end: bytes that come after a reply in a
    later read are, for any HTTP/1.1 proxy, the next reply)."""
    body = f"M {req.target}\n".encode()
    if kind == "unasked-101":
        reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: FOREIGN\r\nConnection: Upgrade\r\n\r\n"
        extra = b"FOREIGN tunnel"
    else:
        fields, wire, extra = REPLY_MUTATIONS[kind](body)
        if req.method == "HEAD":
            wire = b""
        reply = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n" + fields + b"\r\n" + wire
        if kind == "interim-with-body":
            reply = b"HTTP/1.1 150 Odd\r\nContent-Length: 8\r\n\r\nFOREIGN!" + reply
    if split is None:
        pieces = reply + extra
    else:
        cut = min(len(reply) - 1, max(1, int(len(reply) * split)))
        pieces = [reply[:cut], reply[cut:] + extra]
    return (pieces, True) if kind in CLOSES else pieces


def client_replies(data: bytes, methods: list[str]) -> list[tuple[int, bytes]]:
    """The complete replies a client can read from ``data`` (1xx skipped): (status, body)."""
    out = []
    for method in methods:
        while True:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                return out
            lines = data[:end].split(b"\r\n")
            status = int(lines[0].split()[1])
            fields = {}
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                fields[k.strip().lower()] = v.strip()
            data = data[end + 4:]
            if status >= 200:
                break
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif fields.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                eol = data.find(b"\r\n")
                if eol < 0:
                    return out
                size = int(data[:eol], 16)
                if len(data) < eol + 2 + size + 2:
                    return out
                body += data[eol + 2:eol + 2 + size]
                data = data[eol + 2 + size + 2:]
                if size == 0:
                    break
        elif b"content-length" in fields:
            n = int(fields[b"content-length"])
            if len(data) < n:
                return out
            body, data = data[:n], data[n:]
        else:
            body, data = data, b""
        out.append((status, body))
    return out


@FUZZ
@given(st.lists(st.sampled_from(sorted(REPLY_MUTATIONS)), min_size=3, max_size=3),
       st.sampled_from(["GET", "HEAD"]), st.booleans(), st.one_of(st.none(), st.floats(0.02, 0.98)))
def test_no_reply_byte_ever_reaches_another_transaction(fuzzed, kinds, first_method, pipelined, split):
    proxy, origin = fuzzed
    example = next(_ids)
    paths = [f"/rp/{example}/{i}" for i in range(3)]
    chosen = dict(zip(paths, kinds))
    origin.answer = lambda req: mutated_reply(chosen.get(req.target, "clean"), req, split)
    try:
        # one client pipelines two requests; a second one asks for the second again, and a third URL
        first = [(first_method, paths[0]), ("GET", paths[1])]
        second = [("GET", paths[1]), ("GET", paths[2])]
        for conversation in (first, second):
            exchanges = [conversation] if pipelined else [[one] for one in conversation]
            for sent in exchanges:
                data = b"".join(f"{m} {origin.url(p)} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for m, p in sent)
                received = converse(proxy.port, data)
                assert b"FOREIGN" not in received, (kinds, received)
                for (method, path), (status, body) in zip(sent, client_replies(received, [m for m, _ in sent])):
                    if status == 200 and method == "GET":
                        assert body == f"M {path}\n".encode(), (kinds, sent, received)
    finally:
        origin.answer = marker_reply
