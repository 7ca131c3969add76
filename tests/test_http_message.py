"""Unit tests: request targets and the proxy's header rewriting (no sockets)."""

from __future__ import annotations

import pytest

from squidpy.http import message
from squidpy.http.message import (
    CHUNKED,
    CLOSE,
    INVALID,
    LENGTH,
    NO_BODY,
    Framing,
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


def test_upgrade_goes_upstream_only_as_the_rules_allow():
    h = head([("Connection", "Upgrade"), ("Upgrade", "websocket")])
    _, headers = upstream(h)
    names = [k.lower() for k, _ in headers]
    assert "upgrade" not in names and "connection" not in names
    _, headers = upstream(h, upgrade=b"websocket")
    assert ("Upgrade", "websocket") in headers and ("Connection", "upgrade") in headers


def test_chunked_request_is_rechunked():
    h = head([("Transfer-Encoding", "chunked")], method="POST")
    assert h.framing == message.CHUNKED_BODY
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

def response(headers, status=200, version="1.1", method="GET"):
    return ResponseHead(status, b"OK", version, [(k.encode(), v.encode()) for k, v in headers],
                        request_method=method)


def test_framing_towards_the_client():
    def to_client(headers, version="1.1", method="GET", status=200):
        return message.client_framing(response(headers, status=status, method=method).framing, version)

    assert to_client([("Content-Length", "5")]) == Framing(LENGTH, 5)
    assert to_client([("Content-Length", "5")], method="HEAD") == Framing(NO_BODY, 5)
    assert to_client([("Transfer-Encoding", "chunked")]).kind == CHUNKED
    assert to_client([("Transfer-Encoding", "chunked")], version="1.0").kind == CLOSE
    assert to_client([]).kind == CHUNKED
    assert to_client([], version="1.0").kind == CLOSE
    assert to_client([], status=304).kind == NO_BODY
    assert to_client([("Content-Length", "5")], status=204) == Framing(NO_BODY)


@pytest.mark.parametrize("headers,expected", [
    ([], Framing(NO_BODY)),
    ([("Content-Length", "0")], Framing(LENGTH, 0)),
    ([("Content-Length", "47"), ("Connection", "keep-alive, Content-Length")], Framing(LENGTH, 47)),
    ([("Transfer-Encoding", "chunked"), ("Connection", "Transfer-Encoding")], Framing(CHUNKED)),
    ([("Transfer-Encoding", "gzip, chunked")], Framing(INVALID)),
    ([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], Framing(INVALID)),
    ([("Transfer-Encoding", "identity")], Framing(INVALID)),
])
def test_request_framing_ignores_connection_tokens(headers, expected):
    assert head(headers, method="POST").framing == expected


@pytest.mark.parametrize("headers,status,method,expected", [
    ([("Content-Length", "5")], 200, "GET", Framing(LENGTH, 5)),
    ([], 200, "GET", Framing(CLOSE)),
    ([("Transfer-Encoding", "chunked")], 200, "GET", Framing(CHUNKED)),
    ([("Transfer-Encoding", "identity")], 200, "GET", Framing(CLOSE)),
    ([("Transfer-Encoding", "gzip, chunked")], 200, "GET", Framing(INVALID)),
    ([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], 200, "GET", Framing(INVALID)),
    ([("Content-Length", "5"), ("Connection", "Content-Length")], 200, "GET", Framing(INVALID)),
    ([("Transfer-Encoding", "chunked"), ("Connection", "close, transfer-encoding")], 200, "GET", Framing(INVALID)),
    ([("Content-Length", "5"), ("Connection", "Content-Length")], 304, "GET", Framing(INVALID)),
    ([("Content-Length", "5")], 150, "GET", Framing(INVALID)),
    ([("Content-Length", "0")], 101, "GET", Framing(NO_BODY)),
    ([("Content-Length", "5")], 200, "HEAD", Framing(NO_BODY, 5)),
    ([("Transfer-Encoding", "chunked")], 200, "HEAD", Framing(NO_BODY)),
    ([("Content-Length", "5")], 304, "GET", Framing(NO_BODY, 5)),
    ([("Content-Length", "5")], 204, "GET", Framing(NO_BODY)),
])
def test_reply_framing(headers, status, method, expected):
    assert response(headers, status=status, method=method).framing == expected


def test_unframable_messages_are_never_rewritten():
    with pytest.raises(ValueError):
        upstream(head([("Transfer-Encoding", "gzip")], method="POST"))
    resp = response([("Content-Length", "5"), ("Connection", "Content-Length")])
    with pytest.raises(ValueError):
        message.response_head_for_client(resp, Framing(LENGTH, 5), True, "1.1", None, None)


def test_framing_fields_come_from_the_decision_not_the_received_fields():
    _, headers = upstream(head([("Connection", "keep-alive, Content-Length, Host, Via, X-Forwarded-For"),
                                ("Content-Length", "47"), ("Via", "1.0 other")], method="POST"))
    assert headers.count(("Content-Length", "47")) == 1
    assert [k for k, _ in headers].count("Host") == 1
    assert ("Via", "1.1 proxy1 (squidpy/%s)" % message.__version__) in headers
    assert ("X-Forwarded-For", "10.1.2.3") in headers
    resp = response([("Content-Length", "5"), ("Content-Length", "5")])
    raw = message.response_head_for_client(resp, resp.framing, True, "1.1", None, None)
    assert raw.count(b"Content-Length") == 1


@pytest.mark.parametrize("tail,data,heads,clean", [
    (b"", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 1, True),
    (b"", b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 InjectedOK\r\n\r\n", 1, False),
    (b"", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", 2, True),
    (b"", b"HTTP/1.1 200 OK\r\n\r\nxyz", 1, False),
    (b"\r\n\r", b"\nHTTP/1.1 200 Injected\r\n\r\n", 1, False),
    (b"K\r\n", b"\r\n", 1, True),
])
def test_reads_end_after_heads(tail, data, heads, clean):
    assert message.reads_end_after_heads(tail, data, heads) is clean


def test_response_head_for_client():
    resp = response([("Content-Length", "5"), ("Connection", "X-Hop"), ("X-Hop", "1"), ("ETag", '"a"')])
    raw = message.response_head_for_client(resp, resp.framing, False, "1.1", b"1.1 p (squidpy)", b"MISS from p")
    text = raw.decode()
    assert text.startswith("HTTP/1.1 200 OK\r\n")
    assert "X-Hop" not in text and 'ETag: "a"' in text and "Content-Length: 5" in text
    assert "Connection: close\r\n" in text and "Via: 1.1 p (squidpy)" in text and "X-Cache: MISS from p" in text
    assert "Date: " in text
    assert text.endswith("\r\n\r\n")


def test_response_to_http10_keep_alive_client():
    resp = response([("Content-Length", "1")])
    raw = message.response_head_for_client(resp, resp.framing, True, "1.0", None, None)
    assert b"Connection: keep-alive\r\n" in raw


def test_chunked_response_drops_length():
    resp = response([("Transfer-Encoding", "chunked")])
    raw = message.response_head_for_client(resp, message.CHUNKED_BODY, True, "1.1", None, None)
    assert raw.count(b"Transfer-Encoding: chunked") == 1


def test_close_delimited_reply_is_chunked_without_its_length():
    resp = response([])
    raw = message.response_head_for_client(resp, message.client_framing(resp.framing, "1.1"), True, "1.1", None, None)
    assert b"Transfer-Encoding: chunked\r\n" in raw and b"Content-Length" not in raw


def test_mime_type():
    assert response([("Content-Type", "text/html; charset=utf-8")]).mime_type == "text/html"
    assert response([]).mime_type is None


@pytest.mark.parametrize("line,refusal", [
    (b"HTTP/1.1 200 Connection established", None), (b"HTTP/1.0 200 OK", None),
    (b"HTTP/1.1 403 Forbidden", 403), (b"HTTP/1.1 407 Proxy Authentication Required", 407),
    (b"HTTP/1.1 503 Service Unavailable", 503), (b"HTTP/1.1 204 No Content", 502),
    (b"HTTP/1.1 302 Found", 502), (b"HTTP/1.1 2000 x", 502), (b"SSH-2.0-OpenSSH", 502), (b"", 502),
])
def test_a_parents_answer_to_our_connect(line, refusal):
    """Only 200 opens the tunnel (Squid's Http::Tunneler); an error status is passed on."""
    from squidpy.http.message import tunnel_refusal
    assert tunnel_refusal(line) == refusal
