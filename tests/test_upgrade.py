"""HTTP Upgrade: ``http_upgrade_request_protocols`` (Squid 5), without and with sockets.

By default no Upgrade offer goes upstream, as in Squid: the request goes on as
plain HTTP, and a 101 the proxy did not offer is a 502.  The end-to-end tests
run the same bytes through squidpy and through Squid 5.7 to a recording origin
and compare what the origin received and what the client got.
"""

from __future__ import annotations

import socket
import time

import pytest

from squidpy.acl.checklist import Checklist
from squidpy.config import loader
from squidpy.http.upgrade import switch_refusal
from tests.conftest import read_response
from tests.origin import RecordingOrigin, marker_reply
from tests.squidproc import SquidProcess

POLICY = """
acl local src 127.0.0.0/8
http_access allow local
http_access deny all
"""


def rules(lines: str):
    return loader.load("/etc/squidpy/up.conf", text=POLICY + lines).http_upgrade_request_protocols


def offers(lines: str, upgrade: bytes, ch: Checklist | None = None) -> bytes | None:
    return rules(lines).allowed_offers(upgrade, ch or Checklist(src="10.0.0.1"))


# ------------------------------------------------------------ the rules (pure)

def test_no_rules_forward_no_offer():
    assert offers("", b"websocket") is None


@pytest.mark.parametrize("lines,upgrade,expected", [
    ("http_upgrade_request_protocols websocket allow all", b"websocket", b"websocket"),
    ("http_upgrade_request_protocols websocket allow all", b"h2c, websocket", b"websocket"),
    ("http_upgrade_request_protocols websocket allow all", b"WebSocket", None),     # case-sensitive
    ("http_upgrade_request_protocols OTHER allow all", b"h2c,  websocket/13", b"h2c, websocket/13"),
    ("http_upgrade_request_protocols Foo deny all\nhttp_upgrade_request_protocols OTHER allow all",
     b"Foo, Bar", b"Bar"),
    # Squid's example: only Bar, except its first version
    ("http_upgrade_request_protocols Bar/1 deny all\nhttp_upgrade_request_protocols Bar allow all\n"
     "http_upgrade_request_protocols OTHER deny all", b"Bar/1, Bar/2, Bar, Baz", b"Bar/2, Bar"),
    # a rule for another version of the same name is inapplicable, yet OTHER is not tried
    ("http_upgrade_request_protocols Bar/1 allow all\nhttp_upgrade_request_protocols OTHER allow all",
     b"Bar/2", None),
    # the first matching rule decides; none matching drops the offer
    ("acl ten src 10.0.0.0/8\nhttp_upgrade_request_protocols websocket deny ten\n"
     "http_upgrade_request_protocols websocket allow all", b"websocket", None),
    ("acl other src 192.168.0.0/16\nhttp_upgrade_request_protocols websocket allow other", b"websocket", None),
    ("acl other src 192.168.0.0/16\nhttp_upgrade_request_protocols OTHER allow other", b"websocket", None),
    # a value that is not a list of protocols is dropped whole
    ("http_upgrade_request_protocols OTHER allow all", b"websocket, web socket", None),
    ("http_upgrade_request_protocols OTHER allow all", b"h2c/", None),
    ("http_upgrade_request_protocols OTHER allow all", b" , ", None),
])
def test_offers_are_filtered_as_squid_does(lines, upgrade, expected):
    assert offers(lines, upgrade) == expected


def test_an_acl_that_needs_a_lookup_drops_the_offer():
    ch = Checklist(src="10.0.0.1", host="example.com")
    assert offers("acl d dst 10.0.0.0/8\nhttp_upgrade_request_protocols websocket allow d", b"websocket", ch) is None


@pytest.mark.parametrize("line,message", [
    ("http_upgrade_request_protocols", "expected a protocol name"),
    ("http_upgrade_request_protocols websocket", "needs 'allow' or 'deny'"),
    ("http_upgrade_request_protocols web@socket allow all", "is not a protocol name"),
    ("http_upgrade_request_protocols websocket allow nosuchacl", "used before it is defined"),
])
def test_bad_lines_are_reported_with_file_and_line(line, message):
    with pytest.raises(loader.ConfigErrors) as e:
        loader.load("/etc/squidpy/up.conf", text=POLICY + line + "\n")
    text = str(e.value)
    assert "/etc/squidpy/up.conf:5:" in text and message in text


@pytest.mark.parametrize("offered,upgrade,connection,refused", [
    (None, b"websocket", {b"upgrade"}, True),
    (b"websocket", None, {b"upgrade"}, True),
    (b"websocket", b" ", {b"upgrade"}, True),
    (b"websocket", b"websocket", set(), True),
    (b"websocket", b"websocket", {b"upgrade"}, False),
])
def test_a_switch_must_answer_an_offer(offered, upgrade, connection, refused):
    assert (switch_refusal(offered, upgrade, connection) is not None) is refused


# ------------------------------------------------------------ end to end, against Squid 5.7

SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nfirst-frame"


def switching(req):
    """An origin that switches protocols on /switch* whatever was asked, else answers plainly."""
    return SWITCHED if req.target.startswith("/switch") else marker_reply(req)


def through(port: int, origin: RecordingOrigin, path: str, upgrade: str | None, then: bytes = b""):
    """One request offering ``upgrade``: (status, body or the bytes after a 101, what the origin got)."""
    before = len(origin.seen())
    offer = f"Connection: Upgrade\r\nUpgrade: {upgrade}\r\n" if upgrade else ""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {origin.url(path)} HTTP/1.1\r\nHost: x\r\n{offer}\r\n".encode())
        f = s.makefile("rb")
        status, headers, body = read_response(f)
        if status == 101:
            body = f.read1(100)
            s.sendall(then)
    seen = origin.wait_for(before + 1)
    return status, body, seen[before]


@pytest.fixture(params=["squidpy", "squid"])
def pair(request, make_proxy, tmp_path, squid_stops):
    """A proxy of each kind with the given extra lines, and a switching recording origin
    (Squids finish stopping in the background: conftest.squid_stops)."""
    made = []
    squids = []

    def make(lines: str = ""):
        origin = RecordingOrigin(switching)
        made.append(origin)
        if request.param == "squidpy":
            return make_proxy(POLICY + lines), origin
        squid = SquidProcess(tmp_path / f"squid{len(made)}", POLICY + lines)
        squids.append(squid)
        return squid, origin

    yield make
    squid_stops(*squids)
    for origin in made:
        origin.stop()


def test_by_default_the_offer_is_removed_and_the_request_goes_on_as_http(pair):
    proxy, origin = pair()
    status, body, req = through(proxy.port, origin, "/plain", "websocket")
    assert (status, body) == (200, b"reply to GET /plain\n")
    assert req.header("Upgrade") is None
    assert "upgrade" not in (req.header("Connection") or "").lower()


@pytest.mark.parametrize("upgrade", ["websocket", None])
def test_a_switch_nobody_offered_is_502(pair, upgrade):
    proxy, origin = pair()
    status, body, _ = through(proxy.port, origin, "/switch", upgrade)
    assert status == 502 and b"ERR_INVALID_RESP" in body


def test_an_allowed_offer_goes_upstream_and_becomes_an_opaque_tunnel(pair):
    proxy, origin = pair("http_upgrade_request_protocols websocket allow local\n")
    status, first, req = through(proxy.port, origin, "/switch", "h2c, websocket", then=b"no-acl-sees-this")
    assert (status, first) == (101, b"first-frame")
    assert req.header("Upgrade") == "websocket"
    assert "upgrade" in req.header("Connection").lower()
    received = origin.received[req.connection]
    deadline = time.monotonic() + 5
    while not received.endswith(b"no-acl-sees-this") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert bytes(received).endswith(req.raw + b"no-acl-sees-this")


def test_an_upgrade_request_with_a_body_is_forwarded_as_http(pair):
    """httptools leaves such a body unread; squidpy reads it as HTTP, and what follows too."""
    proxy, origin = pair("http_upgrade_request_protocols OTHER allow all\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall((f"POST {origin.url('/up')} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                   f"Content-Length: 5\r\n\r\nhello"
                   f"GET {origin.url('/after')} HTTP/1.1\r\nHost: x\r\n\r\n").encode())
        f = s.makefile("rb")
        assert read_response(f)[2] == b"reply to POST /up\n"
        assert read_response(f)[2] == b"reply to GET /after\n"
    seen = origin.wait_for(2)
    assert [(r.target, r.body) for r in seen] == [("/up", b"hello"), ("/after", b"")]
    if not isinstance(proxy, SquidProcess):
        assert seen[0].header("Upgrade") is None        # (Squid forwards that offer)
