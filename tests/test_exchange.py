"""Exchange transcripts: events in, commands out, no sockets, no clock but a fixed one.

Each test walks one path of a request's life (the way mitmproxy tests its layers as
playbooks) and asserts the exact commands, or the parts of them that matter.
"""

from __future__ import annotations

import pytest

from squidpy.exchange import IllegalEvent, State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.exchange.exchange import TRANSITIONS
from tests.exchange_kit import NOW, FakeCache, FakeShared, kinds, make, response_head, sent, stored, upstream

GET = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nUser-Agent: t\r\n\r\n"
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n"


def forwarded(x, reply=REPLY, body=b"hello", reused=False):
    """Drive an exchange from its start to a complete reply from the origin."""
    out = x.handle(ev.RequestStarted)
    out += x.handle(ev.Connected("192.0.2.1", 80, reused=reused))
    out += x.handle_all([ev.ResponseStarted(response_head(reply)), ev.ResponseBody(body),
                         ev.ResponseEnd(reusable=True, bytes_in=len(reply) + len(body))])
    return out


# ---------------------------------------------------------------- a plain miss
def test_miss_connects_forwards_relays_and_logs():
    x = make(GET)
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("http", "o.test", 80)]
    assert x.state is State.CONNECTING
    out = x.handle(ev.Connected("192.0.2.1", 80, "10.0.0.1", 5555))
    assert kinds(out) == ["SendUpstream"]
    head = upstream(out)
    assert head.startswith(b"GET /a HTTP/1.1\r\nHost: o.test\r\n")
    assert b"Via: 1.1 proxy.test" in head and b"X-Forwarded-For: 10.0.0.7\r\n" in head
    assert out[0].head and out[0].method == "GET"
    out = x.handle_all([ev.ResponseStarted(response_head(REPLY)), ev.ResponseBody(b"hello"),
                        ev.ResponseEnd(reusable=True, bytes_in=70)])
    assert kinds(out) == ["SendToClient", "SendToClient", "ReleaseUpstream", "Log", "Finished"]
    reply = sent(out)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\nhello")
    assert b"X-Cache: MISS from proxy.test" in reply
    assert out[2] == c.ReleaseUpstream(True)
    assert out[-1] == c.Finished(keep_alive=True)
    e = out[-2].entry
    assert (e.result, e.status, e.hierarchy, e.server_ip, e.url) == (
        "TCP_MISS", 200, "HIER_DIRECT", "192.0.2.1", "http://o.test/a")
    assert e.end == NOW and e.upstream_bytes_in == 70
    assert x.state is State.DONE


def test_head_request_tells_the_driver_no_body_follows():
    x = make(b"HEAD http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n")
    x.handle(ev.RequestStarted)
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert out[0].method == "HEAD"


def test_http10_client_gets_close_delimited_reply_as_is():
    x = make(b"GET http://o.test/ HTTP/1.0\r\n\r\n")
    out = forwarded(x, reply=b"HTTP/1.1 200 OK\r\n\r\n", body=b"abc")
    reply = sent(out)
    assert b"Connection: close" in reply and b"Transfer-Encoding" not in reply
    assert out[-1] == c.Finished(keep_alive=False)


def test_close_delimited_reply_is_chunked_for_http11_clients():
    x = make(GET)
    out = forwarded(x, reply=b"HTTP/1.1 200 OK\r\n\r\n", body=b"abc")
    assert sent(out).endswith(b"Transfer-Encoding: chunked\r\nVia: 1.1 proxy.test (squidpy/"
                              + sent(out).split(b"(squidpy/")[1].split(b")")[0] + b")\r\n"
                              b"X-Cache: MISS from proxy.test\r\n\r\n3\r\nabc\r\n0\r\n\r\n")


# ---------------------------------------------------------------- refusals before anything is forwarded
@pytest.mark.parametrize("raw, status, error", [
    (b"GET http://o.test/ HTTP/2.0\r\n\r\n", 505, "ERR_UNSUP_HTTPVERSION"),
    (b"GET http://o.test:99999/ HTTP/1.1\r\nHost: o.test\r\n\r\n", 400, "ERR_INVALID_URL"),
    (b"CONNECT o.test:443 HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 400, "ERR_INVALID_REQ"),
    (b"POST http://o.test/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400, "ERR_INVALID_REQ"),
])
def test_invalid_requests_are_answered_here_and_close(raw, status, error):
    x = make(raw)
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    assert sent(out).startswith(b"HTTP/1.1 %d " % status)
    assert out[1].entry.error == error
    assert out[-1] == c.Finished(keep_alive=False)


def test_forwarding_loop_is_denied():
    x = make(b"GET http://o.test/ HTTP/1.1\r\nVia: 1.1 proxy.test (squidpy/1)\r\n\r\n")
    out = x.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ")
    assert out[1].entry.result == "TCP_DENIED"


def test_denied_client_gets_403_and_nothing_is_forwarded():
    x = make(GET, client_ip="192.168.1.1")
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    assert sent(out).startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"X-Squid-Error: ERR_ACCESS_DENIED 0" in sent(out)
    assert out[1].entry.result == "TCP_DENIED"
    assert out[-1] == c.Finished(keep_alive=True)


def test_deny_info_redirect_and_reset():
    shared = FakeShared("acl bad dstdomain o.test\nacl b2 dstdomain p.test\n"
                        "deny_info http://block.test/?u=%U bad\ndeny_info TCP_RESET b2\n"
                        "http_access deny bad\nhttp_access deny b2\nhttp_access allow all\n")
    out = make(GET, shared).handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 302 Found\r\n")
    assert b"Location: http://block.test/?u=http%3A%2F%2Fo.test%2Fa\r\n" in sent(out)
    out = make(b"GET http://p.test/ HTTP/1.1\r\n\r\n", shared).handle(ev.RequestStarted)
    assert kinds(out) == ["AbortClient", "Log", "Finished"]
    assert out[1].entry.status == 0 and out[1].entry.result == "TCP_DENIED"


def test_dst_acl_looks_the_name_up_then_decides():
    shared = FakeShared("acl inside dst 192.0.2.0/24\nhttp_access deny inside\nhttp_access allow all\n")
    x = make(GET, shared)
    out = x.handle(ev.RequestStarted)
    assert out == [c.LookUp("dst", "o.test")]
    assert x.state is State.CHECKING
    out = x.handle(ev.FactKnown("dst", ["192.0.2.5"], seconds=0.25))
    assert sent(out).startswith(b"HTTP/1.1 403 ")
    assert out[1].entry.dns_time == 0.25


def test_dst_acl_addresses_are_reused_for_the_connect():
    shared = FakeShared("acl inside dst 192.0.2.0/24\nhttp_access allow inside\nhttp_access deny all\n")
    x = make(GET, shared)
    x.handle(ev.RequestStarted)
    out = x.handle(ev.FactKnown("dst", ["192.0.2.5"]))
    assert out == [c.Connect("http", "o.test", 80, addresses=["192.0.2.5"])]


def test_failed_lookup_matches_nothing():
    shared = FakeShared("acl inside dst 192.0.2.0/24\nhttp_access allow inside\nhttp_access deny all\n")
    x = make(GET, shared)
    x.handle(ev.RequestStarted)
    out = x.handle(ev.FactKnown("dst", []))
    assert sent(out).startswith(b"HTTP/1.1 403 ")


# ---------------------------------------------------------------- CONNECT
def test_connect_opens_a_tunnel_and_logs_when_it_ends():
    x = make(b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n")
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("authority" and "http", "o.test", 443, tunnel=True)] or out[0].tunnel
    out = x.handle(ev.Connected("192.0.2.1", 443))
    assert out == [c.SendToClient(b"HTTP/1.1 200 Connection established\r\n\r\n"), c.StartTunnel()]
    assert x.state is State.TUNNEL
    assert x.handle(ev.ClientGone) == []        # the tunnel logs when it ends
    out = x.handle(ev.TunnelEnded(bytes_up=10, bytes_down=20))
    assert kinds(out) == ["Log", "Finished"]
    e = out[0].entry
    assert (e.result, e.status, e.reply_body_size, e.request_body_size) == ("TCP_TUNNEL", 200, 20, 10)
    assert out[1] == c.Finished(False)


def test_connect_failure_is_a_503_page_logged_as_squid_logs_it():
    x = make(b"CONNECT o.test:443 HTTP/1.1\r\n\r\n")
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, "192.0.2.1"))
    assert sent(out).startswith(b"HTTP/1.1 503 ")
    e = out[1].entry
    # Squid 5.7, side by side: NONE_NONE/503 0 CONNECT 127.0.0.1:1 - HIER_DIRECT/127.0.0.1 -
    assert (e.result, e.hierarchy, e.server_ip) == ("NONE_NONE", "HIER_DIRECT", "192.0.2.1")
    assert out[-1] == c.Finished(False)


# ---------------------------------------------------------------- request bodies
POST = b"POST http://o.test/up HTTP/1.1\r\nHost: o.test\r\nContent-Length: 6\r\n\r\n"
CHUNKED_POST = b"POST http://o.test/up HTTP/1.1\r\nHost: o.test\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_body_before_the_connection_is_buffered_then_sent():
    x = make(POST)
    x.handle(ev.RequestStarted)
    assert x.handle(ev.RequestBody(b"abc")) == []
    assert x.handle(ev.RequestBody(b"def")) == []
    assert x.handle(ev.RequestEnd) == []
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert upstream(out).endswith(b"\r\n\r\nabcdef")
    assert b"Content-Length: 6\r\n" in upstream(out)


def test_chunked_body_is_rechunked_and_ended():
    x = make(CHUNKED_POST)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.RequestBody(b"hello"))
    assert upstream(out) == b"5\r\nhello\r\n"
    assert upstream(x.handle(ev.RequestEnd)) == b"0\r\n\r\n"


def test_large_buffered_body_pauses_the_client_until_connected():
    x = make(b"POST http://o.test/up HTTP/1.1\r\nContent-Length: 400000\r\n\r\n")
    x.handle(ev.RequestStarted)
    assert x.handle(ev.RequestBody(b"x" * 200000)) == []
    assert x.handle(ev.RequestBody(b"x" * 100000)) == [c.PauseClient("body")]
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert out[-1] == c.ResumeClient("body")


def test_body_over_request_body_max_size_is_413_and_upstream_reset():
    shared = FakeShared("request_body_max_size 4 bytes\nhttp_access allow all\n")
    x = make(b"POST http://o.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", shared)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.RequestBody(b"12345"))
    assert kinds(out)[0] == "AbortUpstream"
    assert sent(out).startswith(b"HTTP/1.1 413 ")
    assert out[-1] == c.Finished(False)


def test_malformed_body_after_forwarding_resets_upstream():
    x = make(CHUNKED_POST)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.RequestInvalid("ERR_INVALID_REQ", "bad chunk", 400))
    assert kinds(out) == ["AbortUpstream", "SendToClient", "Log", "Finished"]
    assert out[-1] == c.Finished(False)


def test_reply_before_the_body_ends_closes_the_client_afterwards():
    x = make(POST)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle_all([ev.ResponseStarted(response_head(REPLY)), ev.ResponseBody(b"hello"),
                        ev.ResponseEnd(reusable=True)])
    assert b"Connection: close" in sent(out)
    assert c.ReleaseUpstream(False) in out      # the origin may still expect the body
    assert out[-1] == c.Finished(False)
    assert x.handle(ev.RequestBody(b"late")) == []


# ---------------------------------------------------------------- replies
def test_interim_replies_reach_http11_clients_only():
    x = make(POST)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.InterimResponse(response_head(b"HTTP/1.1 100 Continue\r\n\r\n")))
    assert sent(out).startswith(b"HTTP/1.1 100 Continue\r\n")
    y = make(b"POST http://o.test/ HTTP/1.0\r\nContent-Length: 1\r\n\r\n")
    y.handle(ev.RequestStarted)
    y.handle(ev.Connected("192.0.2.1", 80))
    assert y.handle(ev.InterimResponse(response_head(b"HTTP/1.1 100 Continue\r\n\r\n"))) == []


def test_faulty_reply_in_the_same_read_replaces_the_head_with_an_error_page():
    x = make(GET)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle_all([ev.ResponseStarted(response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")),
                        ev.ResponseBody(b"ab"),
                        ev.UpstreamFailed("ERR_INVALID_RESP", "bad chunk", 502)])
    assert sent(out).startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert out[-2].entry.result == "TCP_MISS" and out[-2].entry.status == 502


def test_fault_after_the_head_left_cuts_the_reply_short():
    x = make(GET)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    x.handle(ev.ResponseStarted(response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")))
    out = x.handle(ev.UpstreamFailed("ERR_READ_ERROR", "closed", 502))
    assert kinds(out) == ["AbortUpstream", "AbortClient", "Log", "Finished"]
    assert out[2].entry.result == "TCP_MISS_ABORTED"


def test_events_after_the_exchange_let_go_of_the_origin_are_not_delivered():
    shared = FakeShared("acl big rep_mime_type video/mp4\nhttp_reply_access deny big\n"
                        "http_access allow all\n")
    x = make(GET, shared)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle_all([ev.ResponseStarted(response_head(
        b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 3\r\n\r\n")),
        ev.ResponseBody(b"abc"), ev.ResponseEnd(True)])
    assert kinds(out)[0] == "AbortUpstream"
    assert sent(out).startswith(b"HTTP/1.1 403 ")
    assert out[-2].entry.result == "TCP_DENIED_REPLY"


def test_reply_body_max_size():
    shared = FakeShared("reply_body_max_size 4 bytes\nhttp_access allow all\n")
    x = make(GET, shared)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.ResponseStarted(response_head(REPLY)))
    assert kinds(out)[0] == "AbortUpstream" and sent(out).startswith(b"HTTP/1.1 403 ")
    y = make(GET, shared)
    y.handle(ev.RequestStarted)
    y.handle(ev.Connected("192.0.2.1", 80))
    y.handle(ev.ResponseStarted(response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")))
    out = y.handle(ev.ResponseBody(b"12345"))
    assert kinds(out) == ["AbortUpstream", "AbortClient", "Log", "Finished"]


def test_unrequested_101_is_a_502():
    x = make(GET)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.ResponseStarted(response_head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n")))
    assert sent(out).startswith(b"HTTP/1.1 502 ")


def test_read_timeout_is_504():
    x = make(GET)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.TimedOut("read"))
    assert kinds(out)[0] == "AbortUpstream"
    assert sent(out).startswith(b"HTTP/1.1 504 ")


# ---------------------------------------------------------------- retries
def test_idempotent_request_is_retried_once_on_a_fresh_connection():
    x = make(GET)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80, reused=True))
    out = x.handle(ev.UpstreamFailed("ERR_ZERO_SIZE_OBJECT", "closed", 502, retriable=True))
    assert out == [c.AbortUpstream, c.Connect("http", "o.test", 80, fresh=True)]
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.UpstreamFailed("ERR_ZERO_SIZE_OBJECT", "closed", 502, retriable=True))
    assert sent(out).startswith(b"HTTP/1.1 502 ")


def test_post_is_not_retried():
    x = make(POST)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80, reused=True))
    x.handle(ev.RequestBody(b"abcdef"))
    out = x.handle(ev.UpstreamFailed("ERR_ZERO_SIZE_OBJECT", "closed", 502, retriable=True))
    assert sent(out).startswith(b"HTTP/1.1 502 ")


# ---------------------------------------------------------------- the client goes away
@pytest.mark.parametrize("steps", [1, 2])
def test_client_gone_aborts_the_origin_and_logs_aborted(steps):
    x = make(GET)
    events = [ev.RequestStarted, ev.Connected("192.0.2.1", 80),
              ev.ResponseStarted(response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"))]
    for event in events[:steps + 1]:
        x.handle(event)
    out = x.handle(ev.ClientGone)
    assert kinds(out) == ["AbortUpstream", "Log", "Finished"]
    assert out[1].entry.result.endswith("_ABORTED")


def test_client_gone_while_connecting_never_uses_the_connection():
    x = make(GET)
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ClientGone)
    assert kinds(out) == ["Log", "Finished"]
    with pytest.raises(IllegalEvent):
        x.handle(ev.Connected("192.0.2.1", 80))


# ---------------------------------------------------------------- illegal orders
def test_response_before_the_request_is_illegal():
    x = make(GET)
    with pytest.raises(IllegalEvent):
        x.handle(ev.ResponseStarted(response_head(REPLY)))


def test_two_responses_are_illegal():
    x = make(GET)
    forwarded(x)
    with pytest.raises(IllegalEvent):
        x.handle(ev.ResponseStarted(response_head(REPLY)))


def test_body_after_abort_is_illegal():
    x = make(GET)
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    x.handle(ev.ClientGone)
    with pytest.raises(IllegalEvent):
        x.handle(ev.ResponseBody(b"late"))


def test_every_state_is_reachable_and_every_handler_documented():
    states = {state for state, _ in TRANSITIONS}
    assert states == set(State)
    for handler, _ in TRANSITIONS.values():
        assert handler.__doc__ or handler.__name__.startswith("_"), handler


# ---------------------------------------------------------------- pages the proxy serves itself
def test_origin_form_requests_get_the_proxy_s_own_pages_if_allowed():
    out = make(b"GET /proxy.pac HTTP/1.1\r\nHost: proxy.test:3128\r\n\r\n").handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"PROXY proxy.test:3128" in sent(out)
    assert out[1].entry.url == "http://proxy.test:3128/proxy.pac"
    out = make(b"GET /proxy.pac HTTP/1.1\r\n\r\n", client_ip="192.168.1.1").handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ")


def test_an_absolute_url_naming_the_proxy_is_its_own_page_as_in_squid():
    """client_side.cc: a /squid-internal- path on visible_hostname and the first
    http_port is served here; the same path on another host:port is forwarded (but
    for the address and port the request came to: squidpy serves that too)."""
    x = make(b"GET http://PROXY.test:3128/squid-internal-mgr/info HTTP/1.1\r\n\r\n")
    out = x.handle(ev.RequestStarted)
    assert [type(command) for command in out] == [c.CollectStats] and out[0].action == "info"  # the manager's figures
    assert x.entry.url == "http://proxy.test:3128/squid-internal-mgr/info"
    for other in (b"http://proxy.test:3129", b"http://127.0.0.1:3128"):
        x = make(b"GET " + other + b"/squid-internal-mgr/info HTTP/1.1\r\n\r\n")
        assert any(isinstance(command, c.Connect) for command in x.handle(ev.RequestStarted)), other


def test_trace_with_max_forwards_zero_is_answered_here():
    out = make(b"TRACE http://o.test/ HTTP/1.1\r\nMax-Forwards: 0\r\n\r\n").handle(ev.RequestStarted)
    assert sent(out).endswith(b"TRACE http://o.test/ HTTP/1.1\r\nMax-Forwards: 0\r\n\r\n")


# ---------------------------------------------------------------- the cache
def cache_shared(**kw):
    return FakeShared(cache=FakeCache(**kw))


def test_memory_hit_is_one_write():
    shared = cache_shared()
    x = make(GET, shared)
    assert x.handle(ev.RequestStarted) == [c.LookUpCache("http://o.test/a", x.head.headers)]
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"Content-Length", b"5")], b"hello",
                   age=10)
    out = x.handle(ev.CacheFound(reply, b"hello", ()))
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    assert b"Age: 10\r\n" in sent(out) and sent(out).endswith(b"hello")
    assert b"X-Cache: HIT from proxy.test" in sent(out)
    assert out[1].entry.result == "TCP_MEM_HIT" and out[1].entry.hierarchy == "HIER_NONE"


def test_disk_hit_streams():
    x = make(GET, cache_shared())
    x.handle(ev.RequestStarted)
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"Content-Length", b"5")], b"hello")
    out = x.handle(ev.CacheFound(reply, None, ()))
    assert out == [c.StreamStored(reply, None)]
    out = x.handle(ev.StoredBody(b"hel"))
    assert kinds(out) == ["SendToClient", "SendToClient"]
    out += x.handle(ev.StoredBody(b"lo"))
    out += x.handle(ev.StoredBodyEnd(intact=True))
    assert sent(out).endswith(b"\r\n\r\nhello")
    assert out[-2].entry.result == "TCP_HIT"


def test_a_small_disk_hit_read_whole_is_one_write_and_still_a_tcp_hit():
    """The driver reads a body that fits the memory tier with the entry (and keeps it in
    memory): the reply goes out at once, and the log says where it came from, as Squid's."""
    x = make(GET, cache_shared())
    x.handle(ev.RequestStarted)
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"Content-Length", b"5")], b"hello")
    out = x.handle(ev.CacheFound(reply, b"hello", (), from_disk=True))
    assert kinds(out) == ["SendToClient", "Log", "Finished"] and sent(out).endswith(b"\r\n\r\nhello")
    assert out[1].entry.result == "TCP_HIT"


def test_damaged_disk_body_is_cut_short():
    x = make(GET, cache_shared())
    x.handle(ev.RequestStarted)
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60")], b"hello")
    x.handle(ev.CacheFound(reply, None, ()))
    x.handle(ev.StoredBody(b"he"))
    out = x.handle(ev.StoredBodyEnd(intact=False))
    assert "AbortClient" in kinds(out) and out[-2].entry.result == "TCP_HIT_ABORTED"


def test_missing_disk_body_is_a_swapfail_miss():
    x = make(GET, cache_shared())
    x.handle(ev.RequestStarted)
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60")], b"hello")
    x.handle(ev.CacheFound(reply, None, ()))
    out = x.handle(ev.StoredBodyMissing)
    assert out == [c.Connect("http", "o.test", 80)]
    out = x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle_all([ev.ResponseStarted(response_head(REPLY)), ev.ResponseBody(b"hello"), ev.ResponseEnd(True)])
    assert out[-2].entry.result == "TCP_SWAPFAIL_MISS"


def test_cacheable_miss_leads_a_collapsed_fetch_and_stores():
    shared = cache_shared()
    x = make(GET, shared)
    x.handle(ev.RequestStarted)
    out = x.handle(ev.CacheFound(None, None, ()))
    assert out == [c.LeadFetch("http://o.test/a"), c.Connect("http", "o.test", 80)]
    x.handle(ev.Connected("192.0.2.1", 80))
    reply = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\n"
    out = x.handle_all([ev.ResponseStarted(response_head(reply)), ev.ResponseBody(b"hello"), ev.ResponseEnd(True)])
    assert kinds(out) == ["StoreStart", "SendToClient", "StoreBody", "SendToClient", "ReleaseUpstream",
                          "StoreEnd", "ReleaseFetch", "Log", "Finished"]
    assert out[5] == c.StoreEnd("http://o.test/a", "http://o.test/a", (), (), NOW)


def test_second_miss_waits_for_the_first_and_looks_again():
    shared = cache_shared()
    shared.cache.pending["http://o.test/a"] = []
    y = make(GET, shared)
    y.handle(ev.RequestStarted)
    assert y.handle(ev.CacheFound(None, None, ())) == [c.WaitForFetch("http://o.test/a")]
    assert y.state is State.COLLAPSED
    assert y.handle(ev.CollapseReleased) == [c.LookUpCache("http://o.test/a", y.head.headers)]
    # still nothing stored: it fetches itself, without waiting again
    assert y.handle(ev.CacheFound(None, None, ())) == [c.Connect("http", "o.test", 80)]


def test_uncacheable_reply_releases_the_waiters_at_once():
    x = make(GET, cache_shared())
    x.handle(ev.RequestStarted)
    x.handle(ev.CacheFound(None, None, ()))
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.ResponseStarted(response_head(
        b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 5\r\n\r\n")))
    assert out[0] == c.ReleaseFetch("http://o.test/a", uncacheable=True)


def test_stale_entry_is_revalidated_and_a_304_freshens_it():
    x = make(GET, cache_shared())
    x.handle(ev.RequestStarted)
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"ETag", b'"v1"'),
                                        (b"Content-Length", b"5")], b"hello", age=120)
    out = x.handle(ev.CacheFound(reply, b"hello", ()))
    assert out == [c.Connect("http", "o.test", 80)]
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert b'If-None-Match: "v1"\r\n' in upstream(out)
    out = x.handle_all([ev.ResponseStarted(response_head(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n")),
                        ev.ResponseEnd(True)])
    assert kinds(out) == ["Freshen", "SendToClient", "Log", "Finished", "ReleaseUpstream"]
    assert sent(out).startswith(b"HTTP/1.1 200 OK\r\n") and sent(out).endswith(b"hello")
    e = out[2].entry
    assert (e.result, e.hierarchy, e.server_ip) == ("TCP_REFRESH_UNMODIFIED", "HIER_DIRECT", "192.0.2.1")


def test_stale_if_error_serves_stale_when_the_origin_is_down():
    x = make(GET, cache_shared())
    x.handle(ev.RequestStarted)
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60, stale-if-error=600")], b"hello", age=120)
    x.handle(ev.CacheFound(reply, b"hello", ()))
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, "192.0.2.1"))
    assert sent(out).endswith(b"hello")
    assert out[-2].entry.result == "TCP_REFRESH_FAIL_OLD"


def test_must_revalidate_without_origin_is_504():
    x = make(GET, cache_shared())
    x.handle(ev.RequestStarted)
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60, must-revalidate")], b"hello", age=120)
    x.handle(ev.CacheFound(reply, b"hello", ()))
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "refused", 503, "192.0.2.1"))
    assert sent(out).startswith(b"HTTP/1.1 504 ")
    assert out[-2].entry.result == "TCP_REFRESH_FAIL_ERR"


def test_stale_while_revalidate_serves_and_refreshes_in_the_background():
    x = make(GET, cache_shared())
    x.handle(ev.RequestStarted)
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60, stale-while-revalidate=600")], b"hello",
                   age=120)
    out = x.handle(ev.CacheFound(reply, b"hello", ()))
    assert kinds(out) == ["BackgroundRefresh", "SendToClient", "Log", "Finished"]


def test_background_refresh_always_revalidates_and_is_not_logged():
    x = make(GET, cache_shared(), background=True)
    x.handle(ev.RequestStarted)
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"ETag", b'"v"')], b"hello", age=1)
    assert x.handle(ev.CacheFound(reply, b"hello", ())) == [c.Connect("http", "o.test", 80)]
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle_all([ev.ResponseStarted(response_head(b"HTTP/1.1 304 Not Modified\r\n\r\n")),
                        ev.ResponseEnd(True)])
    assert "Log" not in kinds(out)


def test_only_if_cached_miss_is_504():
    x = make(b"GET http://o.test/a HTTP/1.1\r\nCache-Control: only-if-cached\r\n\r\n", cache_shared())
    x.handle(ev.RequestStarted)
    out = x.handle(ev.CacheFound(None, None, ()))
    assert sent(out).startswith(b"HTTP/1.1 504 ")


def test_conditional_hit_is_a_304():
    x = make(b"GET http://o.test/a HTTP/1.1\r\nIf-None-Match: \"v1\"\r\n\r\n", cache_shared())
    x.handle(ev.RequestStarted)
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"ETag", b'"v1"')], b"hello")
    out = x.handle(ev.CacheFound(reply, b"hello", ()))
    assert sent(out).startswith(b"HTTP/1.1 304 Not Modified\r\n") and sent(out).endswith(b"\r\n\r\n")
    assert out[1].entry.result == "TCP_INM_HIT"


def test_range_hits():
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"Content-Type", b"text/plain"),
                                        (b"Content-Length", b"10")], b"0123456789")
    x = make(b"GET http://o.test/a HTTP/1.1\r\nRange: bytes=2-4\r\n\r\n", cache_shared())
    x.handle(ev.RequestStarted)
    out = x.handle(ev.CacheFound(reply, b"0123456789", ()))
    assert sent(out).startswith(b"HTTP/1.1 206 Partial Content\r\n") and sent(out).endswith(b"234")
    assert b"Content-Range: bytes 2-4/10\r\n" in sent(out)
    y = make(b"GET http://o.test/a HTTP/1.1\r\nRange: bytes=0-0,5-6\r\n\r\n", cache_shared())
    y.handle(ev.RequestStarted)
    out = y.handle(ev.CacheFound(reply, b"0123456789", ()))
    assert b"multipart/byteranges; boundary=BOUNDARY" in sent(out)
    assert sent(out).endswith(b"--BOUNDARY--\r\n")
    z = make(b"GET http://o.test/a HTTP/1.1\r\nRange: bytes=50-60\r\n\r\n", cache_shared())
    z.handle(ev.RequestStarted)
    assert sent(z.handle(ev.CacheFound(reply, b"0123456789", ()))).startswith(b"HTTP/1.1 416 ")


def test_disk_range_streams_from_its_start():
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"Content-Length", b"10")],
                   b"0123456789")
    x = make(b"GET http://o.test/a HTTP/1.1\r\nRange: bytes=2-4\r\n\r\n", cache_shared())
    x.handle(ev.RequestStarted)
    assert x.handle(ev.CacheFound(reply, None, ())) == [c.StreamStored(reply, (2, 4))]
    out = x.handle(ev.StoredBody(b"234")) + x.handle(ev.StoredBodyEnd(True))
    assert sent(out).startswith(b"HTTP/1.1 206 ") and sent(out).endswith(b"234")


def test_unsafe_method_invalidates():
    x = make(POST, cache_shared())
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    x.handle(ev.RequestBody(b"abcdef"))
    x.handle(ev.RequestEnd)
    out = x.handle_all([ev.ResponseStarted(response_head(
        b"HTTP/1.1 201 Created\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n")), ev.ResponseEnd(True)])
    assert c.Invalidate(("http://o.test/up", "http://o.test/b")) in out


def test_purge_is_refused_unless_an_acl_names_the_method():
    out = make(b"PURGE http://o.test/a HTTP/1.1\r\n\r\n", cache_shared()).handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ") and out[1].entry.result == "TCP_DENIED"
    shared = FakeShared("acl purge method PURGE\nhttp_access allow all\n", cache=FakeCache())
    x = make(b"PURGE http://o.test/a HTTP/1.1\r\n\r\n", shared)
    assert x.handle(ev.RequestStarted) == [c.Purge("http://o.test/a")]
    out = x.handle(ev.Purged(2))
    assert sent(out).startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Type" not in sent(out)
    assert out[1].entry.result == "TCP_MISS"


# ---------------------------------------------------------------- memory
@pytest.mark.parametrize("path", ["miss", "hit", "denied", "tunnel"])
def test_an_exchange_is_freed_by_reference_counting(path):
    """No reference cycles: a finished exchange goes at once, not at the next full
    garbage collection (which, with many cached objects, comes rarely)."""
    import gc
    import weakref

    gc.disable()
    try:
        if path == "miss":
            x = make(GET)
            forwarded(x)
        elif path == "hit":
            x = make(GET, cache_shared())
            x.handle(ev.RequestStarted)
            x.handle(ev.CacheFound(stored("http://o.test/a", [(b"Cache-Control", b"max-age=60")], b"hi"), b"hi", ()))
        elif path == "denied":
            x = make(GET, client_ip="192.168.1.1")
            x.handle(ev.RequestStarted)
        else:
            x = make(b"CONNECT o.test:443 HTTP/1.1\r\n\r\n")
            x.handle(ev.RequestStarted)
            x.handle(ev.Connected("192.0.2.1", 443))
            x.handle(ev.TunnelEnded(1, 2))
        assert x.state is State.DONE
        ref = weakref.ref(x)
        del x
        assert ref() is None
    finally:
        gc.enable()


def test_memory_tier_answers_without_a_lookup_command():
    shared = cache_shared()
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60")], b"hello")
    shared.cache.memory["http://o.test/a"] = (reply, b"hello", ())
    out = make(GET, shared).handle(ev.RequestStarted)
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    assert out[1].entry.result == "TCP_MEM_HIT"


def test_architecture_page_shows_the_transitions_of_the_code():
    from pathlib import Path

    from squidpy.exchange import doc
    page = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    assert doc.render() in page, "regenerate: python -m squidpy.exchange.doc --write"


def test_client_no_cache_is_a_reload_without_lookup_or_validators():
    x = make(b"GET http://o.test/a HTTP/1.1\r\nCache-Control: no-cache\r\n\r\n", cache_shared())
    assert x.handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert b"If-None-Match" not in upstream(out)
    reply = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\n"
    out = x.handle_all([ev.ResponseStarted(response_head(reply)), ev.ResponseBody(b"ok"), ev.ResponseEnd(True)])
    assert "StoreEnd" in kinds(out) and out[-2].entry.result == "TCP_MISS"


# ---------------------------------------------------------------- freshness decisions, on the fixed clock
STALE = [(b"Cache-Control", b"max-age=60"), (b"ETag", b'"v1"'), (b"Content-Length", b"5")]   # 120 s old: stale


def looked_up(raw: bytes, reply, shared=None):
    """An exchange for ``raw`` that found ``reply`` (with the body b"hello") in memory."""
    x = make(raw, shared or cache_shared())
    x.handle(ev.RequestStarted)
    return x, x.handle(ev.CacheFound(reply, b"hello", ()))


@pytest.mark.parametrize("max_stale, served", [("90", True), ("", True), ("10", False)])
def test_max_stale_serves_what_is_stale_by_less(max_stale, served):
    """RFC 9111 5.2.1.2: 60 s stale is within max-stale=90 (and a bare max-stale), not 10."""
    value = f"max-stale={max_stale}" if max_stale else "max-stale"
    x, out = looked_up(b"GET http://o.test/a HTTP/1.1\r\nCache-Control: " + value.encode() + b"\r\n\r\n",
                       stored("http://o.test/a", STALE, b"hello", age=120))
    if served:
        assert kinds(out) == ["SendToClient", "Log", "Finished"] and sent(out).endswith(b"hello")
        assert out[1].entry.result == "TCP_MEM_HIT"
    else:
        assert out == [c.Connect("http", "o.test", 80)]


@pytest.mark.parametrize("max_age, fresh_enough", [(30, True), (5, False)])
def test_request_max_age_validates_what_is_older(max_age, fresh_enough):
    """RFC 9111 5.2.1.1: a fresh entry 10 s old serves a client asking max-age=30, not max-age=5."""
    x, out = looked_up(b"GET http://o.test/a HTTP/1.1\r\nCache-Control: max-age=%d\r\n\r\n" % max_age,
                       stored("http://o.test/a", STALE, b"hello", age=10))
    assert (kinds(out) == ["SendToClient", "Log", "Finished"]) is fresh_enough
    if not fresh_enough:
        assert out == [c.Connect("http", "o.test", 80)]
        assert b'If-None-Match: "v1"\r\n' in upstream(x.handle(ev.Connected("192.0.2.1", 80)))


def test_offline_mode_serves_stale_without_asking():
    x, out = looked_up(GET, stored("http://o.test/a", STALE, b"hello", age=120), cache_shared(offline=True))
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    assert out[1].entry.result == "TCP_OFFLINE_HIT"


def test_stale_without_validators_is_refetched_and_replaced():
    x, out = looked_up(GET, stored("http://o.test/a", [(b"Cache-Control", b"max-age=60")], b"hello", age=120))
    assert out == [c.Connect("http", "o.test", 80)]
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert b"If-None-Match" not in upstream(out) and b"If-Modified-Since" not in upstream(out)
    reply = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\n"
    out = x.handle_all([ev.ResponseStarted(response_head(reply)), ev.ResponseBody(b"world"), ev.ResponseEnd(True)])
    assert "StoreEnd" in kinds(out) and sent(out).endswith(b"world")


def test_stale_with_last_modified_only_is_revalidated_with_if_modified_since():
    lm = b"Thu, 01 Jan 2026 00:00:00 GMT"
    x, _ = looked_up(GET, stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"Last-Modified", lm)],
                                 b"hello", age=120))
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert b"If-Modified-Since: " + lm + b"\r\n" in upstream(out) and b"If-None-Match" not in upstream(out)


@pytest.mark.parametrize("cc, max_stale, result, status", [
    (b"max-age=60, stale-if-error=600", -1.0, "TCP_REFRESH_FAIL_OLD", 200),   # RFC 5861 4
    (b"max-age=60", -1.0, "TCP_REFRESH_FAIL_OLD", 200),       # within max_stale (a week), as Squid
    (b"max-age=60", 0.0, "TCP_REFRESH_FAIL_ERR", 503),        # refresh_pattern max-stale=0: the error
])
def test_a_5xx_to_a_revalidation(cc, max_stale, result, status):
    from squidpy.cache.policy import RefreshRule
    x, _ = looked_up(GET, stored("http://o.test/a", [(b"Cache-Control", cc), (b"ETag", b'"e"'),
                                                     (b"Content-Length", b"5")], b"hello", age=120),
                     cache_shared(rule=RefreshRule(max_stale=max_stale)))
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle_all([ev.ResponseStarted(response_head(b"HTTP/1.1 503 Service Unavailable\r\n"
                                                         b"Content-Length: 4\r\n\r\n")),
                        ev.ResponseBody(b"down"), ev.ResponseEnd(True)])
    assert sent(out).startswith(b"HTTP/1.1 %d " % status)
    assert sent(out).endswith(b"hello" if status == 200 else b"down")
    log = next(cmd for cmd in out if isinstance(cmd, c.Log)).entry
    assert (log.result, log.status, log.hierarchy) == (result, status, "HIER_DIRECT")


@pytest.mark.parametrize("status, cc, stores", [
    (b"302 Found", b"max-age=60", True),        # any final status, with explicit freshness (RFC 9111 3)
    (b"302 Found", None, False),                # 302 is not heuristically cacheable (RFC 9110 15.1)
    (b"206 Partial Content", b"max-age=60", False),     # not a complete reply (RFC 9111 3.3)
])
def test_what_a_miss_stores(status, cc, stores):
    x = make(GET, cache_shared())
    x.handle(ev.RequestStarted)
    x.handle(ev.CacheFound(None, None, ()))
    x.handle(ev.Connected("192.0.2.1", 80))
    head = b"HTTP/1.1 " + status + b"\r\n" + (b"Cache-Control: " + cc + b"\r\n" if cc else b"") + \
        b"Content-Length: 5\r\n\r\n"
    out = x.handle_all([ev.ResponseStarted(response_head(head)), ev.ResponseBody(b"hello"), ev.ResponseEnd(True)])
    assert ("StoreEnd" in kinds(out)) is stores
