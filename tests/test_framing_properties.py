"""Property tests (hypothesis): whatever fields a message carries, what squidpy
writes for the next hop frames exactly the body it received.

Random header sets (random Connection tokens, duplicated and odd framing
fields, every hop-by-hop name, any case) are written as raw bytes and parsed
by httptools exactly as the proxy parses them.  What llhttp accepts becomes a
head; :func:`framing_of` decides its framing; the rewriting functions produce
the head for the next hop, the body is framed as the decision says, and
httptools parses the result back: one message, the same body, nothing left
over, one framing field.  No sockets: each example takes well under a
millisecond.
"""

from __future__ import annotations

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squidpy.http import message
from squidpy.http.message import CHUNKED, CLOSE, INVALID, LENGTH, NO_BODY, RequestHead, ResponseHead

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELD_NAMES = [
    "Content-Length", "Transfer-Encoding", "Connection", "Proxy-Connection", "Keep-Alive", "TE",
    "Trailer", "Upgrade", "Host", "Via", "X-Forwarded-For", "Max-Forwards", "Proxy-Authorization",
    "Cookie", "Date", "X-Custom",
]


def any_case(name: str):
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(name, flips)))


field_name = st.sampled_from(FIELD_NAMES).flatmap(any_case)
connection_value = st.lists(st.one_of(field_name, st.sampled_from(["close", "keep-alive", "upgrade", ""])),
                            min_size=1, max_size=5).flatmap(
    lambda tokens: st.sampled_from([", ", ",", " ,  "]).map(lambda sep: sep.join(tokens)))
odd_value = st.sampled_from([
    "0", "5", "05", "5, 5", "+5", " 5 ", "-1", "chunked", "CHUNKED", " chunked ", "gzip, chunked",
    "chunked, gzip", "chunked, chunked", "identity", "xchunked", "", "a=b", "1.1 other", "10.0.0.9",
])


extra_fields = st.lists(st.one_of(
    st.tuples(st.just("Connection"), connection_value),
    st.tuples(st.just("Proxy-Connection"), connection_value),
    st.tuples(field_name, odd_value),
), max_size=6)

body_bytes = st.binary(max_size=300)
modes = st.sampled_from(["length", "chunked", "none"])


def chunk(body: bytes, sizes: list[int]) -> bytes:
    """``body`` chunked in pieces of the given sizes (cycled), last chunk included."""
    out, pos, i = [], 0, 0
    while pos < len(body):
        n = max(1, sizes[i % len(sizes)] if sizes else len(body))
        out.append(b"%x\r\n%s\r\n" % (len(body[pos:pos + n]), body[pos:pos + n]))
        pos += n
        i += 1
    out.append(b"0\r\n\r\n")
    return b"".join(out)


class Parsed:
    """What httptools makes of some bytes: fields, body, complete messages."""

    def __init__(self):
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.messages = 0
        self.heads = 0

    def on_header(self, name, value):
        if self.heads == self.messages:     # not trailers
            self.headers.append((name, value))

    def on_headers_complete(self):
        self.heads += 1

    def on_body(self, data):
        self.body += data

    def on_message_complete(self):
        self.messages += 1


def parse(kind, data: bytes):
    """(Parsed, parser) if llhttp takes ``data`` as exactly one complete message, else None."""
    p = Parsed()
    parser = (httptools.HttpRequestParser if kind == "request" else httptools.HttpResponseParser)(p)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass                        # what follows an upgrade is not HTTP
    except httptools.HttpParserError:
        return None
    return (p, parser) if p.messages == 1 else None


def names(headers) -> list[bytes]:
    return [k.lower() for k, _ in headers]


def frame(body: bytes, framing) -> bytes:
    return chunk(body, [7]) if framing.kind == CHUNKED else body


@pytest.mark.slow
@SETTINGS
@given(modes, body_bytes, extra_fields, st.lists(st.integers(1, 64), max_size=4),
       st.sampled_from(["1.1", "1.0"]), st.sampled_from(["on", "off", "transparent", "delete", "truncate"]))
def test_requests_go_upstream_framed_exactly_as_received(mode, body, extra, sizes, version, xff):
    fields = [(k, v) for k, v in extra]
    if mode == "length":
        fields.append(("Content-Length", str(len(body))))
        wire_body = body
    elif mode == "chunked":
        fields.append(("Transfer-Encoding", "chunked"))
        wire_body = chunk(body, sizes)
    else:
        wire_body = b""
    raw = (f"POST http://example.com/p HTTP/{version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
           + "\r\n").encode("latin-1") + wire_body
    got = parse("request", raw)
    if got is None:
        return                      # llhttp refused it: squidpy answers 400 and forwards nothing
    received, parser = got
    if parser.should_upgrade():
        return                      # an Upgrade request: its body is read separately (client_side)
    head = RequestHead("POST", "http://example.com/p", version, received.headers)
    framing = head.framing
    te = [t for v in (v for k, v in received.headers if k.lower() == b"transfer-encoding") for t in
          (p.strip().lower() for p in v.split(b",")) if t]
    if framing.kind == INVALID:
        assert te and te != [b"chunked"]        # only a coding squidpy cannot frame makes it so
        return
    assert framing.kind in (LENGTH, CHUNKED, NO_BODY)
    if framing.kind == LENGTH:
        assert framing.length == len(received.body)
    elif framing.kind == NO_BODY:
        assert received.body == b""
    upstream = message.request_head_for_origin(head, "/p", "example.com", "10.0.0.1",
                                               message.via_value("1.1", "proxy"), xff)
    sent = parse("request", upstream + frame(received.body, framing))
    assert sent is not None, upstream
    out, _ = sent
    assert out.body == received.body
    out_names = names(out.headers)
    assert out_names.count(b"host") == 1
    assert out_names.count(b"content-length") + out_names.count(b"transfer-encoding") == (
        0 if framing.kind == NO_BODY else 1)
    for hop in message.HOP_BY_HOP - {b"transfer-encoding"}:
        assert hop not in out_names
    assert b"via" in out_names


reply_statuses = st.sampled_from([200, 200, 204, 206, 304, 404, 100, 101, 150])


@SETTINGS
@given(modes, body_bytes, extra_fields, st.lists(st.integers(1, 64), max_size=4), reply_statuses,
       st.sampled_from(["GET", "HEAD"]), st.sampled_from(["1.1", "1.0"]))
def test_replies_go_to_the_client_framed_exactly_as_received(mode, body, extra, sizes, status, method, client):
    fields = [(k, v) for k, v in extra]
    has_body = method != "HEAD" and status >= 200 and status not in (204, 304)
    if mode == "length":
        fields.append(("Content-Length", str(len(body))))
        wire_body = body if has_body else b""
    elif mode == "chunked":
        fields.append(("Transfer-Encoding", "chunked"))
        wire_body = chunk(body, sizes) if has_body else b""
    else:
        wire_body = b""
    raw = (f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode(
        "latin-1") + wire_body
    whole = has_body and mode != "none" and status != 101
    got = parse("response", raw) if whole else head_only(raw)
    if got is None:
        return                      # llhttp refused it: 502, the connection is closed
    received, _ = got
    resp = ResponseHead(status, b"X", "1.1", received.headers, request_method=method)
    framing = resp.framing
    tokens = {t.strip().lower() for k, v in received.headers if k.lower() == b"connection" for t in v.split(b",")}
    if tokens & message.FRAMING_FIELDS:
        assert framing.kind == INVALID          # the origin tried to unframe its own reply
    if framing.kind == INVALID:
        return
    if whole and framing.kind == LENGTH:
        assert framing.length == len(received.body)     # the decision agrees with what llhttp read
    to_client = message.client_framing(framing, client)
    head = message.response_head_for_client(resp, to_client, True, client, b"1.1 p (squidpy)", None)
    out_names = names(head_fields(head))
    framing_count = out_names.count(b"content-length") + out_names.count(b"transfer-encoding")
    if to_client.kind == CLOSE:
        assert framing_count == 0
        return
    if to_client.kind == NO_BODY:
        assert out_names.count(b"transfer-encoding") == 0 and out_names.count(b"content-length") <= 1
        return
    assert framing_count == 1
    if not whole:                   # the body was not on the wire: any the framing allows
        received.body = b"z" * framing.length if framing.kind == LENGTH else b"what came before the end"
    sent = parse("response", head + frame(received.body, to_client))
    assert sent is not None, head
    assert sent[0].body == received.body


def head_only(raw: bytes):
    """The fields of a reply llhttp accepts up to its head (replies without a framed body)."""
    p = Parsed()
    parser = httptools.HttpResponseParser(p)
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError:
        return None
    return (p, parser) if p.heads == 1 else None


def head_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    lines = head.split(b"\r\n")[1:]
    return [tuple(line.split(b": ", 1)) for line in lines if line]
