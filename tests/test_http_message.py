"""Unit tests: request targets and the proxy's header rewriting (no sockets)."""

from __future__ import annotations

import pytest

from squidpy.http import message
from squidpy.http.message import (
    CHUNKED,
    CLOSE,
    LENGTH,
    NO_BODY,
    RequestHead,
    ResponseHead,
)
from squidpy.http.url import BadTarget, parse_target

# ------------------------------------------------------------ targets

def test_absolute_form():
    t = parse_target("GET", "http://WWW.Example.COM:8080/a/b?c=d")
    assert (t.kind, t.scheme, t.host, t.port, t.path) == ("absolute", "http", "www.example.com", 8080, "/a/b?c=d")
    assert t.url == "http://www.example.com:8080/a/b?c=d"
    assert t.authority == "www.example.com:8080"


def test_default_port_is_not_shown():
    t = parse_target("GET", "http://example.com:80")
    assert (t.port, t.path, t.url, t.authority) == (80, "/", "http://example.com/", "example.com")


def test_query_without_path():
    assert parse_target("GET", "http://example.com?x=1").path == "/?x=1"


def test_ipv6_literal():
    t = parse_target("GET", "http://[::1]:8080/")
    assert (t.host, t.ip_literal, t.authority, t.url) == ("::1", True, "[::1]:8080", "http://[::1]:8080/")


def test_connect_authority_form():
    t = parse_target("CONNECT", "www.example.com:443")
    assert (t.kind, t.host, t.port, t.url) == ("authority", "www.example.com", 443, "www.example.com:443")


def test_origin_form_is_for_the_proxy_itself():
    assert parse_target("GET", "/").kind == "origin"


@pytest.mark.parametrize("method,target,error", [
    ("GET", "http://user:pass@example.com/", "ERR_INVALID_URL"),
    ("GET", "http://evil.com@good.com/", "ERR_INVALID_URL"),
    ("GET", "http:///path", "ERR_INVALID_URL"),
    ("GET", "http://exa mple.com/", "ERR_INVALID_URL"),
    ("GET", "http://example.com:99999/", "ERR_INVALID_URL"),
    ("GET", "http://example.com:-1/", "ERR_INVALID_URL"),
    ("GET", "http://[::1/", "ERR_INVALID_URL"),
    ("GET", "http://example.com/#frag", "ERR_INVALID_URL"),
    ("GET", "http://999.1.1.1/", "ERR_INVALID_URL"),
    ("GET", "example.com/", "ERR_INVALID_URL"),
    ("GET", "ftp://example.com/", "ERR_UNSUP_REQ"),
    ("CONNECT", "example.com", "ERR_INVALID_URL"),
    ("CONNECT", "example.com:0", "ERR_INVALID_URL"),
])
def test_bad_targets(method, target, error):
    with pytest.raises(BadTarget) as e:
        parse_target(method, target)
    assert e.value.error == error


# ------------------------------------------------------------ request rewriting

def head(headers, method="GET", version="1.1"):
    return RequestHead(method, "http://example.com/", version, [(k.encode(), v.encode()) for k, v in headers])


def upstream(h, **kw):
    args = dict(path="/p", authority="example.com", client_ip="10.1.2.3",
                via=message.via_value("1.1", "proxy1"), xff_mode="on")
    args.update(kw)
    raw = message.request_head_for_origin(h, **args)
    lines = raw.decode().split("\r\n")
    return lines[0], [tuple(l.split(": ", 1)) for l in lines[1:] if l]


def test_request_line_and_host_from_uri():
    line, headers = upstream(head([("Host", "other.com"), ("Accept", "*/*")]))
    assert line == "GET /p HTTP/1.1"
    assert headers[0] == ("Host", "example.com")
    assert ("Host", "other.com") not in headers


def test_hop_by_hop_and_connection_named_fields_removed():
    _, headers = upstream(head([
        ("Connection", "close, X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"), ("Proxy-Authorization", "Basic x"), ("TE", "trailers"),
        ("Trailer", "X"), ("Upgrade", "h2c"), ("Cookie", "a=b"),
    ]))
    names = [k.lower() for k, _ in headers]
    for gone in ("connection", "x-secret", "keep-alive", "proxy-connection", "proxy-authorization", "te",
                 "trailer", "upgrade"):
        assert gone not in names
    assert ("Cookie", "a=b") in headers


def test_via_appended_after_existing():
    _, headers = upstream(head([("Via", "1.0 other")]))
    assert [v for k, v in headers if k == "Via"] == ["1.0 other", "1.1 proxy1 (squidpy/%s)" % message.__version__]


@pytest.mark.parametrize("mode,existing,expected", [
    ("on", None, "10.1.2.3"),
    ("on", "1.1.1.1", "1.1.1.1, 10.1.2.3"),
    ("off", "1.1.1.1", "1.1.1.1, unknown"),
    ("transparent", "1.1.1.1", "1.1.1.1"),
    ("transparent", None, None),
    ("delete", "1.1.1.1", None),
    ("truncate", "1.1.1.1", "10.1.2.3"),
])
def test_forwarded_for_modes(mode, existing, expected):
    h = head([("X-Forwarded-For", existing)] if existing else [])
    _, headers = upstream(h, xff_mode=mode)
    got = [v for k, v in headers if k == "X-Forwarded-For"]
    assert got == ([expected] if expected else [])


def test_upgrade_kept_when_requested():
    _, headers = upstream(head([("Connection", "Upgrade"), ("Upgrade", "websocket")]))
    assert ("Upgrade", "websocket") in headers and ("Connection", "Upgrade") in headers


def test_chunked_request_is_rechunked():
    h = head([("Transfer-Encoding", "chunked")], method="POST")
    assert h.chunked
    _, headers = upstream(h)
    assert headers.count(("Transfer-Encoding", "chunked")) == 1


def test_keep_alive_rules():
    assert head([]).keep_alive
    assert not head([("Connection", "close")]).keep_alive
    assert not head([], version="1.0").keep_alive
    assert head([("Connection", "keep-alive")], version="1.0").keep_alive
    assert head([("Proxy-Connection", "keep-alive")], version="1.0").keep_alive


def test_forwarding_loop_detection():
    assert message.is_forwarding_loop([b"1.1 a, 1.1 Proxy1 (squidpy/0)"], "proxy1")
    assert not message.is_forwarding_loop([b"1.1 proxy10"], "proxy1")


# ------------------------------------------------------------ response rewriting

def response(headers, status=200, version="1.1"):
    return ResponseHead(status, b"OK", version, [(k.encode(), v.encode()) for k, v in headers])


def test_framing():
    cl = response([("Content-Length", "5")])
    ch = response([("Transfer-Encoding", "chunked")])
    none = response([])
    assert message.response_framing("GET", cl, "1.1") == LENGTH
    assert message.response_framing("HEAD", cl, "1.1") == NO_BODY
    assert message.response_framing("GET", ch, "1.1") == CHUNKED
    assert message.response_framing("GET", ch, "1.0") == CLOSE
    assert message.response_framing("GET", none, "1.1") == CHUNKED
    assert message.response_framing("GET", none, "1.0") == CLOSE
    assert message.response_framing("GET", response([], status=304), "1.1") == NO_BODY
    assert message.response_framing("GET", response([], status=204), "1.1") == NO_BODY


def test_response_head_for_client():
    resp = response([("Content-Length", "5"), ("Connection", "X-Hop"), ("X-Hop", "1"), ("ETag", '"a"')])
    raw = message.response_head_for_client(resp, LENGTH, False, "1.1", b"1.1 p (squidpy)", b"MISS from p")
    text = raw.decode()
    assert text.startswith("HTTP/1.1 200 OK\r\n")
    assert "X-Hop" not in text and 'ETag: "a"' in text and "Content-Length: 5" in text
    assert "Connection: close\r\n" in text and "Via: 1.1 p (squidpy)" in text and "X-Cache: MISS from p" in text
    assert "Date: " in text
    assert text.endswith("\r\n\r\n")


def test_response_to_http10_keep_alive_client():
    raw = message.response_head_for_client(response([("Content-Length", "1")]), LENGTH, True, "1.0", None, None)
    assert b"Connection: keep-alive\r\n" in raw


def test_chunked_response_drops_length():
    resp = response([("Transfer-Encoding", "chunked")])
    raw = message.response_head_for_client(resp, CHUNKED, True, "1.1", None, None)
    assert raw.count(b"Transfer-Encoding: chunked") == 1


def test_mime_type():
    assert response([("Content-Type", "text/html; charset=utf-8")]).mime_type == "text/html"
    assert response([]).mime_type is None
