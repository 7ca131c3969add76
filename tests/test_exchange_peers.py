"""Exchange transcripts with cache_peer lines: peer selection, retries and CONNECT through a
parent as states of the exchange (events in, commands out, no sockets, a fixed clock)."""

from __future__ import annotations

import base64

from squidpy.exchange import State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from tests.exchange_kit import NOW, FakeCache, FakeShared, kinds, make, peers_known, response_head, sent, upstream

OPEN = "acl local src 10.0.0.0/8 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
GET = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nUser-Agent: t\r\n\r\n"
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n"


def with_peers(lines: str, cache: FakeCache | None = None, up: bool = True) -> FakeShared:
    shared = FakeShared(OPEN + lines, cache=cache)
    peers_known(shared, up)
    return shared


def connect_of(out) -> c.Connect:
    found = [cmd for cmd in out if isinstance(cmd, c.Connect)]
    assert len(found) == 1, out
    return found[0]


def entry_of(out):
    return next(cmd.entry for cmd in out if isinstance(cmd, c.Log))


def reply(x, raw=REPLY, body=b"hello"):
    return x.handle_all([ev.ResponseStarted(response_head(raw)), ev.ResponseBody(body),
                         ev.ResponseEnd(reusable=True, bytes_in=len(raw) + len(body))])


# ------------------------------------------------------------ through a parent
def test_a_get_goes_to_the_parent_in_absolute_form_and_is_logged_with_its_code():
    x = make(GET, with_peers("cache_peer parent.test parent 3128 0 name=up\n"))
    cmd = connect_of(x.handle(ev.RequestStarted))
    assert (cmd.host, cmd.port, cmd.peer.name, cmd.addresses, cmd.tunnel) == (
        "parent.test", 3128, "up", ["192.0.2.10"], False)
    assert x.state is State.CONNECTING
    out = x.handle(ev.Connected("192.0.2.10", 3128))
    head = upstream(out)
    assert head.startswith(b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n")
    assert b"Via: 1.1 proxy.test" in head and b"Proxy-Authorization" not in head
    out = reply(x)
    e = entry_of(out)
    assert (e.result, e.hierarchy, e.server_ip) == ("TCP_MISS", "FIRSTUP_PARENT", "192.0.2.10")
    assert sent(out).endswith(b"hello")


def test_a_failed_parent_is_counted_and_the_next_candidate_tried():
    shared = with_peers("cache_peer a.test parent 3128 0 connect-fail-limit=1\ncache_peer b.test parent 3129 0\n")
    x = make(GET, shared)
    assert connect_of(x.handle(ev.RequestStarted)).peer.name == "a.test"
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, "192.0.2.10"))
    assert [cmd.message for cmd in out if isinstance(cmd, c.Report)] == [
        "TCP connection to a.test/3128 failed", "Detected DEAD Parent: a.test"]
    assert connect_of(out).peer.name == "b.test"
    x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, "192.0.2.11"))
    out = [*x.handle(ev.Connected("198.51.100.1", 80))]
    assert upstream(out).startswith(b"GET /a HTTP/1.1\r\n")         # the origin itself, last
    e = entry_of(reply(x))
    assert (e.hierarchy, e.server_ip) == ("HIER_DIRECT", "198.51.100.1")
    assert not shared.peers.state(shared.peers.find("a.test")).up(NOW, 10)


def test_never_direct_with_no_usable_parent_answers_as_squid_does():
    x = make(GET, with_peers("cache_peer a.test parent 3128 0\nnever_direct allow all\n", up=False))
    out = x.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"X-Squid-Error: ERR_READ_ERROR 0" in sent(out)
    e = entry_of(out)
    assert (e.result, e.status, e.hierarchy) == ("TCP_MISS", 502, "HIER_NONE")


def test_every_candidate_failing_answers_with_the_last_failure():
    x = make(GET, with_peers("cache_peer a.test parent 3128 0\nnever_direct allow all\n"))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, "192.0.2.10"))
    assert sent(out).startswith(b"HTTP/1.1 503 ")
    e = entry_of(out)
    assert (e.error, e.hierarchy, e.server_ip) == ("ERR_CONNECT_FAIL", "FIRSTUP_PARENT", "192.0.2.10")


def test_a_502_from_a_parent_is_forwarded_to_the_next_one_and_a_503_is_not():
    lines = "cache_peer a.test parent 3128 0\ncache_peer b.test parent 3129 0\nnever_direct allow all\n"
    x = make(GET, with_peers(lines))
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.10", 3128))
    out = x.handle_all([ev.ResponseStarted(response_head(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\n")),
                        ev.ResponseBody(b"bad")])
    assert kinds(out) == ["AbortUpstream", "Connect"] and out[1].peer.name == "b.test"
    x.handle(ev.Connected("192.0.2.11", 3129))
    e = entry_of(reply(x))
    assert (e.status, e.hierarchy) == (200, "ANY_OLD_PARENT")
    x = make(GET, with_peers(lines))
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.10", 3128))
    out = reply(x, b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\n")
    assert sent(out).startswith(b"HTTP/1.1 503 ") and entry_of(out).hierarchy == "FIRSTUP_PARENT"


def test_retry_on_error_forwards_a_503_too():
    x = make(GET, with_peers("cache_peer a.test parent 3128 0\ncache_peer b.test parent 3129 0\n"
                             "never_direct allow all\nretry_on_error on\n"))
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.10", 3128))
    out = x.handle_all([ev.ResponseStarted(response_head(b"HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n"))])
    assert kinds(out) == ["AbortUpstream", "Connect"]


def test_a_reset_before_any_reply_is_retried_for_a_get_but_not_for_a_post():
    lines = "cache_peer a.test parent 3128 0\ncache_peer b.test parent 3129 0\nnever_direct allow all\n"
    x = make(GET, with_peers(lines))
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.10", 3128))
    out = x.handle(ev.UpstreamFailed("ERR_READ_ERROR", "reset", 502))
    assert kinds(out) == ["AbortUpstream", "Connect"] and out[1].peer.name == "b.test"
    post = b"POST http://o.test/f HTTP/1.1\r\nHost: o.test\r\nContent-Length: 2\r\n\r\n"
    x = make(post, with_peers(lines))
    x.handle(ev.RequestStarted)
    x.handle(ev.RequestBody(b"hi"))
    x.handle(ev.RequestEnd)
    x.handle(ev.Connected("192.0.2.10", 3128))
    out = x.handle(ev.UpstreamFailed("ERR_READ_ERROR", "reset", 502))
    assert sent(out).startswith(b"HTTP/1.1 502 ")


def test_a_parent_that_hangs_times_out_and_the_next_one_is_asked():
    x = make(GET, with_peers("cache_peer a.test parent 3128 0\ncache_peer b.test parent 3129 0\n"
                             "never_direct allow all\n"))
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.10", 3128))
    out = x.handle(ev.TimedOut("read"))
    assert connect_of(out).peer.name == "b.test"


def test_forward_max_tries_bounds_the_attempts():
    x = make(GET, with_peers("cache_peer a.test parent 3128 0\ncache_peer b.test parent 3129 0\n"
                             "forward_max_tries 1\n"))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, "192.0.2.10"))
    assert sent(out).startswith(b"HTTP/1.1 503 ")


# ------------------------------------------------------------ what is sent to a peer
def test_login_credentials_and_passing_the_clients_own():
    x = make(GET, with_peers("cache_peer a.test parent 3128 0 login=alice:s3cret\n"))
    x.handle(ev.RequestStarted)
    head = upstream(x.handle(ev.Connected("192.0.2.10", 3128)))
    assert b"Proxy-Authorization: Basic " + base64.b64encode(b"alice:s3cret") + b"\r\n" in head
    with_auth = GET.replace(b"User-Agent", b"Proxy-Authorization: Basic Ym9iOnB3\r\nUser-Agent")
    x = make(with_auth, with_peers("cache_peer a.test parent 3128 0 login=PASS\n"))
    x.handle(ev.RequestStarted)
    assert b"Proxy-Authorization: Basic Ym9iOnB3\r\n" in upstream(x.handle(ev.Connected("192.0.2.10", 3128)))
    x = make(with_auth, with_peers("cache_peer a.test parent 3128 0\n"))
    x.handle(ev.RequestStarted)
    assert b"Proxy-Authorization" not in upstream(x.handle(ev.Connected("192.0.2.10", 3128)))


def test_a_sibling_is_asked_only_for_what_it_has_and_a_proxy_only_reply_is_not_stored():
    shared = with_peers("icp_port 3130\ncache_peer s.test sibling 3128 3130 proxy-only\n", cache=FakeCache())
    x = make(GET, shared)
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["LookUpCache"]
    out = x.handle(ev.CacheFound(None, None, ()))
    query = [cmd for cmd in out if isinstance(cmd, c.SendIcp)][0].queries[0]
    out = x.handle(ev.IcpReply(query.peer, "ICP_HIT", query.reqnum, NOW + 0.01))
    assert kinds(out)[-1] == "Connect" and out[-1].peer.name == "s.test"
    head = upstream(x.handle(ev.Connected("192.0.2.10", 3128)))
    assert b"Cache-Control: only-if-cached\r\n" in head
    out = x.handle_all([ev.ResponseStarted(response_head(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 5\r\n\r\n")), ev.ResponseBody(b"hello"),
        ev.ResponseEnd(reusable=True)])
    assert "StoreStart" not in kinds(out)
    assert entry_of(out).hierarchy == "SIBLING_HIT"


def test_icp_timeout_is_marked_in_the_log():
    x = make(GET, with_peers("icp_port 3130\ncache_peer p.test parent 3128 3130\n"))
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["SendIcp"] and out[0].timeout == 0.005
    assert x.state is State.SELECTING
    out = x.handle(ev.TimedOut("icp"))
    assert kinds(out) == ["ForgetIcp", "Connect"]
    x.handle(ev.Connected("192.0.2.10", 3128))
    assert entry_of(reply(x)).hierarchy == "TIMEOUT_FIRSTUP_PARENT"


def test_a_never_direct_acl_needing_dns_is_looked_up_during_selection():
    x = make(GET, with_peers("acl inside dst 10.0.0.0/8\ncache_peer a.test parent 3128 0\n"
                             "never_direct allow !inside\n"))
    out = x.handle(ev.RequestStarted)
    assert out == [c.LookUp("dst", "o.test")] and x.state is State.SELECTING
    out = x.handle(ev.FactKnown("dst", ["203.0.113.9"]))
    assert connect_of(out).peer.name == "a.test"


# ------------------------------------------------------------ CONNECT through a parent
CONNECT = b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\nUser-Agent: t\r\n\r\n"


def test_connect_is_sent_to_the_parent_then_tunnelled():
    x = make(CONNECT, with_peers("cache_peer a.test parent 3128 0 login=u:p\nnever_direct allow all\n"))
    cmd = connect_of(x.handle(ev.RequestStarted))
    assert cmd.tunnel and cmd.peer.name == "a.test"
    out = x.handle(ev.Connected("192.0.2.10", 3128))
    head = upstream(out)
    assert head.startswith(b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n")
    assert b"Proxy-Authorization: Basic dTpw\r\n" in head and out[0].method == "CONNECT"
    assert x.state is State.AWAITING_REPLY
    out = x.handle_all([ev.ResponseStarted(response_head(b"HTTP/1.1 200 Connection established\r\n\r\n")),
                        ev.Upgraded(b"\x16\x03\x01", bytes_in=42)])
    assert sent(out) == b"HTTP/1.1 200 Connection established\r\n\r\n"
    assert out[-1] == c.StartTunnel(b"\x16\x03\x01")
    out = x.handle(ev.TunnelEnded(10, 20))
    e = entry_of(out)
    assert (e.result, e.status, e.hierarchy) == ("TCP_TUNNEL", 200, "FIRSTUP_PARENT")


def test_a_parents_refusal_of_connect_is_passed_on():
    x = make(CONNECT, with_peers("cache_peer a.test parent 3128 0\nnever_direct allow all\n"))
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.10", 3128))
    out = reply(x, b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 5\r\n\r\n")
    assert sent(out).startswith(b"HTTP/1.1 407 ")
    assert out[-1] == c.Finished(keep_alive=False)


def test_connect_goes_direct_by_default_even_with_parents():
    x = make(CONNECT, with_peers("cache_peer a.test parent 3128 0\n"))
    cmd = connect_of(x.handle(ev.RequestStarted))
    assert cmd.peer is None and cmd.tunnel and cmd.host == "o.test"


# ------------------------------------------------------------ requests inside a bumped connection
def bumped(shared: FakeShared, raw: bytes):
    from squidpy.exchange import ClientInfo, Exchange
    from squidpy.exchange.bumping import BumpedInfo
    client = ClientInfo("10.0.0.7", 40000, "10.0.0.1", 3128, "", None, BumpedInfo("o.test", 443, "o.test"))
    return Exchange(shared, client, __import__("tests.exchange_kit", fromlist=["request_head"]).request_head(raw),
                    NOW)


def test_a_bumped_request_goes_to_a_parent_through_a_connect_tunnel_never_in_clear():
    """Squid 5.7 (FwdState: encrypted traffic through a proxy): CONNECT to the parent (with
    its login= credentials), TLS with the origin inside, the request in origin form."""
    shared = with_peers("cache_peer a.test parent 3128 0 login=u:p\nnever_direct allow all\n")
    x = bumped(shared, b"GET /a HTTP/1.1\r\nHost: o.test\r\n\r\n")
    cmd = connect_of(x.handle(ev.RequestStarted))
    assert (cmd.host, cmd.port, cmd.peer.name, cmd.through_host) == ("a.test", 3128, "a.test", "o.test")
    assert cmd.through == (b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\nProxy-Authorization: Basic "
                           + base64.b64encode(b"u:p") + b"\r\n\r\n")
    head = upstream(x.handle(ev.Connected("192.0.2.10", 3128)))
    assert head.startswith(b"GET /a HTTP/1.1\r\nHost: o.test\r\n") and b"Proxy-Authorization" not in head
    e = entry_of(reply(x))
    assert (e.url, e.hierarchy) == ("https://o.test/a", "FIRSTUP_PARENT")


def test_a_bumped_request_goes_as_it_is_to_a_tls_parent():
    shared = with_peers("cache_peer a.test parent 3128 0 tls\nnever_direct allow all\n")
    x = bumped(shared, b"GET /a HTTP/1.1\r\nHost: o.test\r\n\r\n")
    assert connect_of(x.handle(ev.RequestStarted)).through is None
    assert upstream(x.handle(ev.Connected("192.0.2.10", 3128))).startswith(b"GET https://o.test/a HTTP/1.1\r\n")
