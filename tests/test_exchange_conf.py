"""Exchange transcripts for configuration-driven decisions: header rules on every head,
follow_x_forwarded_for, miss_access, tcp_outgoing_address, persistence, and error pages in
the client's language.  Events in, exact commands out, no sockets."""

from __future__ import annotations

import pytest

from squidpy.acl.outgoing import Bind
from squidpy.errors import ErrorPages
from squidpy.exchange import State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from tests.exchange_kit import FakeCache, FakeShared, kinds, make, response_head, sent, stored, upstream

GET = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nUser-Agent: t\r\nCookie: id=1\r\n\r\n"
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nServer: origin/1\r\n\r\n"
POLICY = "acl local src 10.0.0.0/8 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"


def shared(extra: str = "", policy: str = POLICY, **kw) -> FakeShared:
    return FakeShared(extra + policy, **kw)


def forwarded(x, reply=REPLY, body=b"hello"):
    out = x.handle(ev.RequestStarted)
    out += x.handle(ev.Connected("192.0.2.1", 80))
    out += x.handle_all([ev.ResponseStarted(response_head(reply)), ev.ResponseBody(body),
                         ev.ResponseEnd(reusable=True, bytes_in=len(reply) + len(body))])
    return out


def head_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0] + b"\r\n"


# ------------------------------------------------------------ header rules on every head

RULES = """
acl inside src 10.0.0.0/8
request_header_access Cookie deny all
request_header_add X-Client "%>a" inside
reply_header_access Server deny all
reply_header_replace Server hidden
reply_header_access Content-Length deny all
reply_header_add X-Proxied yes
"""


def test_request_rules_shape_what_the_origin_receives():
    x = make(GET, shared(RULES))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.Connected("192.0.2.1", 80))
    request = upstream(out)
    assert b"Cookie" not in request and request.endswith(b"X-Client: 10.0.0.7\r\n\r\n")
    assert b"User-Agent: t\r\n" in request and b"Via: 1.1 proxy.test" in request
    assert x.entry.upstream_bytes_out == len(request)


def test_reply_rules_shape_a_forwarded_reply_but_never_its_framing():
    x = make(GET, shared(RULES))
    out = forwarded(x)
    reply = sent(out)
    assert b"Server: hidden\r\n" in reply and b"X-Proxied: yes\r\n\r\nhello" in reply
    assert b"Content-Length: 5\r\n" in reply          # named by a rule, still there
    assert x.entry.reply_header_size == len(head_of(reply)) + 2


def test_reply_rules_shape_a_hit():
    s = FakeShared(RULES + POLICY, cache=FakeCache())
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"Server", b"origin/1"),
                                       (b"Content-Length", b"5")], b"hello")
    s.cache.memory["http://o.test/a"] = (reply, b"hello", ())
    out = make(GET, s).handle(ev.RequestStarted)
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    assert b"Server: hidden\r\n" in sent(out) and b"X-Proxied: yes\r\n" in sent(out)
    assert b"Content-Length: 5\r\n" in sent(out) and sent(out).endswith(b"\r\n\r\nhello")


def test_reply_rules_shape_squidpys_own_replies():
    x = make(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n",
             shared(RULES + "reply_header_access X-Squid-Error deny all\n", policy="http_access deny all\n"))
    out = x.handle(ev.RequestStarted)
    head = head_of(sent(out))
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"Server: hidden\r\n" in head and b"X-Squid-Error" not in head and b"X-Proxied: yes\r\n" in head
    body = sent(out)[len(head) + 2:]
    assert f"Content-Length: {len(body)}\r\n".encode() in head


def test_reply_rules_apply_to_replies_refused_before_their_target_was_read():
    x = make(b"GET http://o.test:99999/ HTTP/1.1\r\nHost: o.test\r\n\r\n", shared(RULES))
    out = x.handle(ev.RequestStarted)
    assert b"X-Proxied: yes\r\n" in sent(out) and b"Server: hidden\r\n" in sent(out)


def test_reply_rules_shape_interim_replies():
    x = make(GET, shared("reply_header_add X-Early 1\n"))
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.InterimResponse(response_head(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")))
    assert sent(out) == b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\nVia: 1.1 proxy.test (squidpy/%s)\r\n" \
        b"X-Early: 1\r\n\r\n" % x.shared.via_header.split(b"squidpy/")[1].rstrip(b")")


def test_reply_acls_in_reply_rules_see_the_reply():
    x = make(GET, shared("acl html rep_mime_type text/html\nreply_header_add X-Html 1 html\n"))
    out = forwarded(x, REPLY.replace(b"text/plain", b"text/html"))
    assert b"X-Html: 1\r\n" in sent(out)
    assert b"X-Html" not in sent(forwarded(make(GET, shared("acl html rep_mime_type text/html\n"
                                                            "reply_header_add X-Html 1 html\n"))))


def test_suppressed_version_names_squidpy_alone():
    x = make(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n",
             shared("httpd_suppress_version_string on\n", policy="http_access deny all\n"))
    out = x.handle(ev.RequestStarted)
    assert b"Server: squidpy\r\n" in sent(out) and b"(squidpy)" not in sent(out).split(b"\r\n\r\n")[0]


# ------------------------------------------------------------ follow_x_forwarded_for

XFF = "acl lb src 10.0.0.7\nfollow_x_forwarded_for allow lb\nacl inner src 192.168.0.0/16\n"
XFF_GET = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nX-Forwarded-For: 192.168.1.5\r\n\r\n"


def test_http_access_tests_the_indirect_client_and_the_log_shows_it():
    x = make(XFF_GET, shared(XFF, policy="http_access allow inner\nhttp_access deny all\n"))
    assert x.handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]
    assert x.entry.client_ip == "192.168.1.5" and x.checklist.src == "192.168.1.5"
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert b"X-Forwarded-For: 192.168.1.5, 10.0.0.7\r\n" in upstream(out)    # the direct client is appended


def test_acl_uses_indirect_client_off_keeps_acls_on_the_connecting_client():
    x = make(XFF_GET, shared(XFF + "acl_uses_indirect_client off\n",
                             policy="http_access allow inner\nhttp_access deny all\n"))
    out = x.handle(ev.RequestStarted)
    assert out[-2].entry.status == 403 and x.entry.client_ip == "192.168.1.5"


def test_log_uses_indirect_client_off_logs_the_connecting_client():
    x = make(XFF_GET, shared(XFF + "log_uses_indirect_client off\n", policy="http_access allow inner\n"))
    x.handle(ev.RequestStarted)
    assert x.entry.client_ip == "10.0.0.7" and x.checklist.src == "192.168.1.5"


def test_an_untrusted_client_s_x_forwarded_for_is_ignored():
    x = make(XFF_GET, shared(XFF, policy="http_access allow inner\nhttp_access deny all\n"), client_ip="10.0.0.8")
    out = x.handle(ev.RequestStarted)
    assert out[-2].entry.status == 403 and x.entry.client_ip == "10.0.0.8"


def test_a_srcdomain_in_follow_x_forwarded_for_looks_the_tested_address_up():
    x = make(b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nX-Forwarded-For: 192.168.1.5, 172.16.0.9\r\n\r\n",
             shared("acl ours srcdomain .proxies.lan\nfollow_x_forwarded_for allow ours\n"
                    "acl inner src 192.168.0.0/16\n", policy="http_access allow inner\nhttp_access deny all\n"))
    assert x.handle(ev.RequestStarted) == [c.LookUp("src_name", "10.0.0.7")]
    assert x.handle(ev.FactKnown("src_name", "lb.proxies.lan")) == [c.LookUp("src_name", "172.16.0.9")]
    # the last address is tested too (nothing is left after it), as Squid tests it
    assert x.handle(ev.FactKnown("src_name", "edge.proxies.lan")) == [c.LookUp("src_name", "192.168.1.5")]
    out = x.handle(ev.FactKnown("src_name", "pc5.office.lan"))
    assert out == [c.Connect("http", "o.test", 80)] and x.entry.client_ip == "192.168.1.5"


def test_maxconn_counts_the_indirect_client_s_own_connections():
    s = shared(XFF + "acl hog maxconn 0\n", policy="http_access deny hog\nhttp_access allow all\n")
    s.connections = {"10.0.0.7": 5, "192.168.1.5": 0}
    x = make(XFF_GET, s)
    assert x.handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]


# ------------------------------------------------------------ miss_access

MISS = "acl lan src 10.0.0.0/8\nmiss_access deny !lan\n"


def test_miss_access_denies_fetches_with_err_forwarding_denied():
    x = make(GET, shared(MISS, policy="http_access allow all\n"), client_ip="192.0.2.50")
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    assert sent(out).startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"X-Squid-Error: ERR_FORWARDING_DENIED 0\r\n" in sent(out)
    assert (out[1].entry.result, out[1].entry.hierarchy) == ("TCP_MISS", "HIER_NONE")
    assert kinds(make(GET, shared(MISS, policy="http_access allow all\n")).handle(ev.RequestStarted)) == ["Connect"]


def test_miss_access_leaves_hits_alone():
    s = FakeShared(MISS + "http_access allow all\n", cache=FakeCache())
    reply = stored("http://o.test/a", [(b"Cache-Control", b"max-age=60"), (b"Content-Length", b"5")], b"hello")
    s.cache.memory["http://o.test/a"] = (reply, b"hello", ())
    out = make(GET, s, client_ip="192.0.2.50").handle(ev.RequestStarted)
    assert out[1].entry.result == "TCP_MEM_HIT" and sent(out).endswith(b"hello")


def test_miss_access_follows_deny_info_and_covers_connect():
    s = shared(MISS + "deny_info http://blocked.example/ lan\n", policy="http_access allow all\n")
    out = make(GET, s, client_ip="192.0.2.50").handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 302 Found\r\n") and b"Location: http://blocked.example/" in sent(out)
    out = make(b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n", shared(MISS, policy="http_access allow all\n"),
               client_ip="192.0.2.50").handle(ev.RequestStarted)
    assert b"ERR_FORWARDING_DENIED" in sent(out) and out[-2].entry.result == "NONE_NONE"      # as Squid logs it


def test_miss_access_tests_the_connecting_client_never_the_indirect_one():
    s = shared("acl lb src 10.0.0.7\nfollow_x_forwarded_for allow lb\nacl lan src 10.0.0.0/8\n"
               "miss_access allow lan\nmiss_access deny all\n", policy="http_access allow all\n")
    x = make(XFF_GET, s)
    assert kinds(x.handle(ev.RequestStarted)) == ["Connect"] and x.checklist.src == "192.168.1.5"


# ------------------------------------------------------------ tcp_outgoing_address

def test_the_connect_command_carries_the_local_addresses():
    s = shared("acl me src 10.0.0.7\ntcp_outgoing_address 10.1.0.1 me\ntcp_outgoing_address 2001:db8::1\n")
    assert make(GET, s).handle(ev.RequestStarted) == [
        c.Connect("http", "o.test", 80, bind=Bind("10.1.0.1", "2001:db8::1"))]
    assert make(GET, s, client_ip="10.0.0.8").handle(ev.RequestStarted) == [
        c.Connect("http", "o.test", 80, bind=Bind(None, "2001:db8::1"))]


def test_a_dst_acl_in_tcp_outgoing_address_looks_the_origin_up_first():
    s = shared("acl lab dst 192.0.2.0/24\ntcp_outgoing_address 10.9.9.9 lab\n")
    x = make(GET, s)
    assert x.handle(ev.RequestStarted) == [c.LookUp("dst", "o.test")] and x.state is State.CHECKING
    out = x.handle(ev.FactKnown("dst", ["198.51.100.4", "192.0.2.8"]))
    bind = Bind(by_address=(("198.51.100.4", None), ("192.0.2.8", "10.9.9.9")))
    assert out == [c.Connect("http", "o.test", 80, addresses=["198.51.100.4", "192.0.2.8"], bind=bind)]
    cached = make(GET, FakeShared("acl lab dst 192.0.2.0/24\ntcp_outgoing_address 10.9.9.9 lab\n" + POLICY,
                                  addresses={"o.test": ["192.0.2.8"]}))
    assert cached.handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80, addresses=["192.0.2.8"],
                                                          bind=Bind(by_address=(("192.0.2.8", "10.9.9.9"),)))]


def test_a_retry_on_a_fresh_connection_keeps_the_local_address():
    x = make(GET, shared("tcp_outgoing_address 10.1.0.1\n"))
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80, reused=True))
    out = x.handle(ev.UpstreamFailed("ERR_ZERO_SIZE_OBJECT", "closed", retriable=True))
    assert out[-1] == c.Connect("http", "o.test", 80, fresh=True, bind=Bind("10.1.0.1", None))


# ------------------------------------------------------------ persistence

def test_client_persistent_connections_off_closes_after_each_reply():
    x = make(GET, shared("client_persistent_connections off\n"))
    out = forwarded(x)
    assert b"Connection: close\r\n" in sent(out) and out[-1] == c.Finished(keep_alive=False)


def test_server_persistent_connections_off_asks_the_origin_to_close_and_never_pools():
    x = make(GET, shared("server_persistent_connections off\n"))
    out = forwarded(x)
    assert b"Connection: close\r\n" in upstream(out) and c.ReleaseUpstream(False) in out
    assert out[-1] == c.Finished(keep_alive=True)


def test_persistent_connection_after_error_off_closes_after_an_error_status():
    s = shared("persistent_connection_after_error off\n")
    out = forwarded(make(GET, s), REPLY.replace(b"200 OK", b"404 Not Found"))
    assert out[-1] == c.Finished(keep_alive=False) and b"Connection: close\r\n" in sent(out)
    assert forwarded(make(GET, s))[-1] == c.Finished(keep_alive=True)
    denied = make(GET, shared("persistent_connection_after_error off\n", policy="http_access deny all\n"))
    assert denied.handle(ev.RequestStarted)[-1] == c.Finished(keep_alive=False)


# ------------------------------------------------------------ error pages in the client's language

@pytest.fixture
def langpack(tmp_path):
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "ERR_ACCESS_DENIED").write_text("Zugriff verweigert: %U")
    return str(tmp_path)


def test_an_error_page_says_its_language(langpack):
    s = shared(policy="http_access deny all\n")
    s.error_pages = ErrorPages(None, "proxy.test", "webmaster", langpack=langpack)
    out = make(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\nAccept-Language: xx, de\r\n\r\n",
               s).handle(ev.RequestStarted)
    head, body = sent(out).split(b"\r\n\r\n", 1)
    assert body == b"Zugriff verweigert: http://o.test/"
    assert b"\r\nVary: Accept-Language\r\nContent-Language: de\r\n" in head
    assert c.Report("warning", "Error Pages Missing Language: xx") in out
    again = make(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\nAccept-Language: xx\r\n\r\n", s)
    out = again.handle(ev.RequestStarted)
    assert "Report" not in kinds(out) and b"Content-Language: en\r\n" in sent(out)      # reported once


def test_error_log_languages_off_reports_nothing(langpack):
    s = shared("error_log_languages off\n", policy="http_access deny all\n")
    s.error_pages = ErrorPages(None, "proxy.test", "webmaster", langpack=langpack)
    out = make(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\nAccept-Language: xx\r\n\r\n",
               s).handle(ev.RequestStarted)
    assert "Report" not in kinds(out)
