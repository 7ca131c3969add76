"""Interception decisions, without sockets: the pure rules (squidpy/intercept.py) and
exchange transcripts of intercepted requests (URL from Host and the original
destination, Squid's Host verification, ORIGINAL_DST, what the cache may do, tproxy's
spoofed source).  End to end, in network namespaces: tests/test_intercept_netns.py."""

from __future__ import annotations

import socket
import struct

import pytest

from squidpy import intercept
from squidpy.config.loader import ConfigErrors, load
from squidpy.config.values import parse_http_port
from squidpy.exchange import ClientInfo, State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.http.url import BadTarget, parse_target
from squidpy.proxy.client_side import sockaddr
from tests.exchange_kit import NOW, FakeCache, FakeShared, make, response_head, sent, stored, upstream

ORIGIN, OTHER, CLIENT = "198.51.100.2", "198.51.100.3", "192.0.2.2"
CACHEABLE = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n"
POLICY = """
acl clients src 192.0.2.0/24 2001:db8:1::/64
acl blocked dstdomain blocked.test
http_access deny blocked
http_access allow clients
http_access deny all
"""


def client(mode="intercept", dst=(ORIGIN, 80), src=(CLIENT, 40000), to_proxy=False):
    return ClientInfo(src[0], src[1], dst[0], dst[1], "3129", interception=mode, to_proxy=to_proxy)


def shared(extra="", cache=True, addresses=None):
    return FakeShared(POLICY + extra, cache=FakeCache() if cache else None,
                      addresses={"origin.test": [ORIGIN], "other.test": [OTHER], "blocked.test": [ORIGIN],
                                 **(addresses or {})})


def request(target="/a", host=b"origin.test", method="GET", extra=b""):
    host_line = b"Host: " + host + b"\r\n" if host is not None else b""
    return b"%s %s HTTP/1.1\r\n%sUser-Agent: ua/1\r\n%s\r\n" % (method.encode(), target.encode(), host_line, extra)


def through(x, out, reply=CACHEABLE, body=b"hello"):
    """From a Connect to the end of the reply."""
    assert isinstance(out[-1], c.Connect), out
    out = x.handle(ev.Connected(out[-1].addresses[0] if out[-1].addresses else ORIGIN, out[-1].port))
    out += x.handle_all([ev.ResponseStarted(response_head(reply)), ev.ResponseBody(body),
                         ev.ResponseEnd(reusable=True)])
    return out


def logged(out):
    return next(cmd.entry for cmd in out if isinstance(cmd, c.Log))


# ---------------------------------------------------------------- http_port options
def test_intercept_transparent_and_tproxy_options():
    assert parse_http_port(["3129", "intercept"]).interception == "intercept"
    assert parse_http_port(["3129", "transparent"]).interception == "intercept"     # the old name, as Squid
    assert parse_http_port(["[::]:3130", "tproxy", "name=tp"]).interception == "tproxy"
    assert parse_http_port(["3128"]).interception is None


@pytest.mark.parametrize("args, says", [
    (["3129", "intercept", "tproxy"], "TPROXY option requires its own interception port"),
    (["3129", "tproxy", "transparent"], "Intercept mode requires its own interception port"),
    (["3129", "intercept=on"], "takes no value"),
])
def test_modes_need_a_port_of_their_own(args, says):
    with pytest.raises(ValueError, match=says):
        parse_http_port(args)


def test_interception_directives_load_with_their_defaults():
    config = load(text="http_port 3129 intercept\n")
    assert (config.host_verify_strict, config.client_dst_passthru) == (False, True)
    assert config.spoof_client_ip.empty_allows
    config = load(text="http_port 3130 tproxy\nhost_verify_strict on\nclient_dst_passthru off\n"
                       "acl lan src 10.0.0.0/8\nspoof_client_ip deny lan\n")
    assert config.host_verify_strict and not config.client_dst_passthru
    assert len(config.spoof_client_ip.rules) == 1


def test_a_bad_interception_line_names_file_and_line():
    with pytest.raises(ConfigErrors) as e:
        load(text="http_port 3128\nhttp_port 3129 intercept tproxy\n")
    assert ":2:" in str(e.value) and "own interception port" in str(e.value)


# ---------------------------------------------------------------- the URL
def url_of(method, target, host, dst, port):
    return intercept.intercepted_request(method, target, host, dst, port, {}.get)[0].url


@pytest.mark.parametrize("target, host, url", [
    ("/a?b=1", b"origin.test", "http://origin.test/a?b=1"),
    ("/a", b"Origin.Test:8080", "http://origin.test:8080/a"),
    ("/a", b"origin.test:80", "http://origin.test/a"),
    ("/a", b"[2001:db8:2::2]", "http://[2001:db8:2::2]/a"),
    ("/a", None, "http://198.51.100.2/a"),                       # no Host: the original destination
    ("/a", b"", "http://198.51.100.2/a"),
    ("http://elsewhere.test/x", b"origin.test", "http://elsewhere.test/x"),     # absolute form is kept
])
def test_url_from_host_or_original_destination(target, host, url):
    assert url_of("GET", target, host, ORIGIN, 80) == url


def test_url_without_host_carries_a_port_that_is_not_the_default():
    assert url_of("GET", "/a", None, "2001:db8:2::2", 8080) == "http://[2001:db8:2::2]:8080/a"


@pytest.mark.parametrize("host", [b"evil.test/x", b"a@origin.test", b"origin.test?q", b"o.test#f", b"two words",
                                  b"bad_host!", b"origin.test:99999x"])
def test_a_host_that_is_no_authority_is_refused(host):
    with pytest.raises(BadTarget) as e:
        url_of("GET", "/a", host, ORIGIN, 80)
    assert e.value.error == "ERR_INVALID_URL"


def test_asterisk_names_no_host_on_an_interception_port():
    with pytest.raises(BadTarget):
        url_of("OPTIONS", "*", b"origin.test", ORIGIN, 80)


# ---------------------------------------------------------------- Squid's hostHeaderVerify
KNOWN = {"origin.test": [ORIGIN], "cdn.test": ["203.0.113.9", ORIGIN], "other.test": [OTHER]}


def intercepted(host, dst=ORIGIN, dst_port=80, target="/a"):
    """The verdict, for an origin-form request (whose URL the Host makes) and, the same,
    for one in absolute form (whose Host is verified apart)."""
    verdict = intercept.intercepted_request("GET", target, host, dst, dst_port, KNOWN.get)[1]
    if host and target == "/a" and b"_" not in host and b"0x" not in host and not host.endswith(b":"):
        assert intercept.intercepted_request("GET", "http://elsewhere.test/a", host, dst, dst_port,
                                             KNOWN.get)[1] == verdict
    return verdict


def forwarded(host, method="GET", url="http://origin.test/a"):
    return intercept.verify_forwarded(host, method, parse_target(method, url))


def test_intercepted_host_must_resolve_to_where_the_client_connected():
    assert intercepted(b"origin.test").verified
    assert intercepted(b"Origin.Test.:80").verified
    assert intercepted(b"cdn.test").verified                        # one of its addresses is enough
    assert intercepted(b"198.51.100.2").verified                     # an address: no lookup
    assert intercepted(b"[2001:db8:2::2]:80", dst="2001:db8:2::2").verified
    assert intercepted(b"[::ffff:198.51.100.2]").verified
    assert intercepted(b"other.test").mismatch == ("local IP", "any domain IP")
    assert intercepted(b"198.51.100.3").mismatch == ("local IP", "any domain IP")
    assert intercepted(b"bad_name!", target="http://o.test/").mismatch == ("local IP", "any domain IP")
    assert intercepted(b"fresh.test") == "fresh.test"                # not known yet: look it up
    assert intercepted(b"FRESH.test.") == "fresh.test"
    assert intercepted(None) is intercept.SKIPPED and intercepted(b"") is intercept.SKIPPED


def test_intercepted_host_port_must_be_the_port_connected_to():
    assert intercepted(b"origin.test:8080").mismatch == ("intercepted port", "8080")
    assert intercepted(b"origin.test:8080", dst_port=8080).verified
    assert intercepted(b"origin.test", dst_port=8080).verified          # no port in Host: not compared
    assert intercepted(b"origin.test:").mismatch == ("intercepted port", "")      # an empty port is port 0
    assert intercepted(b"origin.test:", target="http://o.test/").mismatch == ("intercepted port", "")
    # not a port: part of the name (which resolves to nothing); it cannot make a URL
    assert intercepted(b"origin.test:0x50", target="http://o.test/").mismatch == ("local IP", "any domain IP")
    with pytest.raises(BadTarget):
        intercepted(b"origin.test:0x50")
    assert intercepted(b"[2001:db8::1]:81", dst="2001:db8::1").mismatch == ("intercepted port", "81")


def test_addresses_decide_after_the_lookup():
    assert intercept.check_addresses(["203.0.113.9", ORIGIN], ORIGIN).verified
    assert intercept.check_addresses(["::ffff:198.51.100.2"], ORIGIN).verified
    assert intercept.check_addresses([OTHER], ORIGIN).mismatch == ("local IP", "any domain IP")
    assert not intercept.check_addresses([], ORIGIN).verified          # the lookup failed


def test_forward_proxy_host_must_name_the_url_when_strict():
    assert forwarded(b"origin.test").verified
    assert forwarded(b"ORIGIN.test").verified
    assert forwarded(None) is intercept.SKIPPED
    assert forwarded(b"other.test").mismatch == ("other.test", "origin.test")
    assert forwarded(b"origin.tes").outcome == "failed"
    assert forwarded(b"origin.test:81").mismatch == ("URL port", "81")
    assert forwarded(b"origin.test", url="http://origin.test:81/").mismatch == ("URL port", "default port")
    assert forwarded(b"origin.test:81", url="http://origin.test:81/").verified
    assert forwarded(b"[2001:db8::1]", url="http://[2001:db8::1]/").verified
    assert forwarded(b"origin.test", method="CONNECT", url="origin.test:443").verified


def test_failures_refused_when_strict_and_always_for_connect():
    assert intercept.refuse_unverified(True, "GET")
    assert intercept.refuse_unverified(False, "CONNECT")
    assert not intercept.refuse_unverified(False, "GET")


def test_where_requests_go():
    assert intercept.to_original_destination(True, passthru=True, verified=True)
    assert intercept.to_original_destination(True, passthru=False, verified=False)
    assert not intercept.to_original_destination(True, passthru=False, verified=True)
    assert not intercept.to_original_destination(False, passthru=True, verified=False)


def test_addressed_to_the_proxy_itself():
    # NAT: nothing was translated
    assert intercept.addressed_to_proxy("intercept", ("192.0.2.1", 3129), ("192.0.2.1", 3129), 3129)
    assert not intercept.addressed_to_proxy("intercept", ("192.0.2.1", 3129), (ORIGIN, 80), 3129)
    # TPROXY: the socket's address is the destination; ours when it is our port
    assert intercept.addressed_to_proxy("tproxy", ("192.0.2.1", 3129), ("192.0.2.1", 3129), 3129)
    assert not intercept.addressed_to_proxy("tproxy", (ORIGIN, 80), (ORIGIN, 80), 3129)


def test_security_alert_lines_as_squid_writes_them():
    lines = intercept.security_alert(("local IP", "any domain IP"), ("2001:db8:2::2", 80), (CLIENT, 5),
                                     b"curl/8", "http://other.test/")
    assert lines == [
        "SECURITY ALERT: Host header forgery detected on local=[2001:db8:2::2]:80 remote=192.0.2.2:5 "
        "(local IP does not match any domain IP)",
        "SECURITY ALERT: By user agent: curl/8",
        "SECURITY ALERT: on URL: http://other.test/",
    ]
    assert len(intercept.security_alert(("a", "b"), (ORIGIN, 80), (CLIENT, 5), None, "u")) == 2


def test_original_destination_structures():
    v4 = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 80) + socket.inet_aton(ORIGIN) + bytes(8)
    assert sockaddr(v4) == (ORIGIN, 80)
    v6 = (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 8080, 0)
          + socket.inet_pton(socket.AF_INET6, "2001:db8:2::2") + bytes(4))
    assert sockaddr(v6) == ("2001:db8:2::2", 8080)
    mapped = (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 80, 0)
              + socket.inet_pton(socket.AF_INET6, "::ffff:198.51.100.2") + bytes(4))
    assert sockaddr(mapped) == (ORIGIN, 80)
    assert sockaddr(b"\x00" * 4) is None


# ---------------------------------------------------------------- transcripts
def test_verified_request_goes_to_the_original_destination_and_is_cached():
    x = make(request(), shared(), client=client())
    out = x.handle(ev.RequestStarted)
    assert out == [c.LookUpCache("http://origin.test/a", x.head.headers)]      # verified from the DNS cache
    assert x.host_verified
    out = x.handle(ev.CacheFound(None, None, ()))
    assert out[-1] == c.Connect("http", ORIGIN, 80, addresses=[ORIGIN])
    out = through(x, out)
    head = upstream(out)
    assert head.startswith(b"GET /a HTTP/1.1\r\nHost: origin.test\r\n")
    assert any(isinstance(cmd, c.StoreStart) for cmd in out)
    e = logged(out)
    assert (e.url, e.result, e.hierarchy, e.server_ip) == ("http://origin.test/a", "TCP_MISS", "ORIGINAL_DST", ORIGIN)
    assert (e.client_ip, e.local_ip, e.local_port) == (CLIENT, ORIGIN, 80)     # %la/%lp: the original destination


def test_host_not_known_yet_is_looked_up_first():
    x = make(request(host=b"fresh.test"), shared(), client=client())
    out = x.handle(ev.RequestStarted)
    assert out == [c.LookUp("host", "fresh.test")] and x.state is State.VERIFYING_HOST
    out = x.handle(ev.FactKnown("host", ["203.0.113.1", ORIGIN], 0.004))
    assert isinstance(out[-1], c.LookUpCache) and x.host_verified
    assert x.entry.dns_time == 0.004


def test_forged_host_goes_to_the_original_destination_past_the_cache():
    cache = FakeCache()
    url = "http://other.test/a"
    cache.memory[url] = (stored(url, [(b"Cache-Control", b"max-age=600"), (b"Content-Length", b"4")], b"real"),
                         b"real", ())
    x = make(request(host=b"other.test"), FakeShared(POLICY, cache=cache, addresses={"other.test": [OTHER]}),
             client=client())
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("http", ORIGIN, 80, addresses=[ORIGIN])]        # not served the stored copy
    assert not x.host_verified
    out = through(x, out)
    assert not any(isinstance(cmd, (c.StoreStart, c.LeadFetch, c.LookUpCache)) for cmd in out)
    assert not any(isinstance(cmd, c.Report) for cmd in out)                 # not strict: no alert
    e = logged(out)
    assert (e.url, e.result, e.hierarchy) == ("http://other.test/a", "TCP_MISS", "ORIGINAL_DST")
    assert sent(out).endswith(b"hello")


def test_forged_host_refused_when_strict():
    x = make(request(host=b"other.test"), shared("host_verify_strict on\n"), client=client())
    out = x.handle(ev.RequestStarted)
    assert [type(cmd) for cmd in out] == [c.Report, c.Report, c.Report, c.SendToClient, c.Log, c.Finished]
    assert out[0].message.startswith("SECURITY ALERT: Host header forgery detected on local=198.51.100.2:80 "
                                     "remote=192.0.2.2:40000 (local IP does not match any domain IP)")
    assert out[1].message == "SECURITY ALERT: By user agent: ua/1"
    reply = sent(out)
    assert reply.startswith(b"HTTP/1.1 409 Conflict\r\n") and b"X-Squid-Error: ERR_CONFLICT_HOST 0" in reply
    e = logged(out)
    assert (e.result, e.status, e.hierarchy, e.url) == ("NONE_NONE", 409, "HIER_NONE", "http://other.test/a")


def test_wrong_port_in_host_fails_without_a_lookup():
    x = make(request(host=b"origin.test:8080"), shared(), client=client())
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("http", ORIGIN, 80, addresses=[ORIGIN])]    # to port 80, where the client went
    x = make(request(host=b"origin.test:8080"), shared("host_verify_strict on\n"), client=client())
    out = x.handle(ev.RequestStarted)
    assert "(intercepted port does not match 8080)" in out[0].message


def test_connect_with_a_forged_host_is_always_refused():
    x = make(b"CONNECT other.test:80 HTTP/1.1\r\nHost: other.test:80\r\n\r\n", shared(), client=client())
    out = x.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 409 Conflict") and logged(out).url == "other.test:80"


def test_no_host_means_the_original_destination_and_no_cache():
    x = make(b"GET /a HTTP/1.0\r\n\r\n", shared(), client=client())
    out = x.handle(ev.RequestStarted)
    assert out == [c.LookUp("dst_name", ORIGIN)]         # dstdomain of an address: its name
    out = x.handle(ev.FactKnown("dst_name", "origin.test"))
    assert out == [c.Connect("http", ORIGIN, 80, addresses=[ORIGIN])]
    assert x.entry.url == "http://198.51.100.2/a"


def test_request_to_the_interception_port_itself_is_refused_not_forwarded():
    x = make(request(host=b"192.0.2.1:3129"), shared(), client=client(dst=("192.0.2.1", 3129), to_proxy=True))
    out = x.handle(ev.RequestStarted)
    assert not any(isinstance(cmd, (c.Connect, c.LookUp)) for cmd in out)
    assert sent(out).startswith(b"HTTP/1.1 403 Forbidden")
    e = logged(out)
    assert (e.result, e.error, e.url) == ("TCP_DENIED", "ERR_ACCESS_DENIED", "http://192.0.2.1:3129/a")
    assert "would loop" in e.error_detail


def test_dstdomain_deny_answers_with_the_deny_page():
    x = make(request(host=b"blocked.test"), shared(), client=client())
    out = x.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 Forbidden")
    assert logged(out).url == "http://blocked.test/a" and logged(out).result == "TCP_DENIED"


def test_dst_acls_match_the_original_destination_under_passthru():
    policy = POLICY.replace("http_access deny blocked", "acl o dst 198.51.100.2\nhttp_access deny o")
    x = make(request(host=b"other.test"), FakeShared(policy, addresses={"other.test": [OTHER]}), client=client())
    out = x.handle(ev.RequestStarted)
    assert not any(isinstance(cmd, c.LookUp) for cmd in out)        # no lookup of other.test for dst
    assert sent(out).startswith(b"HTTP/1.1 403") and logged(out).result == "TCP_DENIED"


def test_without_passthru_a_verified_request_is_forwarded_by_name():
    x = make(request(), shared("client_dst_passthru off\n", cache=False), client=client())
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("http", "origin.test", 80)]
    out = through(x, out)
    assert logged(out).hierarchy == "HIER_DIRECT"
    x = make(request(host=b"other.test"), shared("client_dst_passthru off\n", cache=False), client=client())
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("http", ORIGIN, 80, addresses=[ORIGIN])]       # unverified: the original destination


def test_tproxy_connects_with_the_clients_address_unless_denied():
    x = make(request(), shared(cache=False), client=client("tproxy"))
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("http", ORIGIN, 80, addresses=[ORIGIN], source=CLIENT)]
    x = make(request(), shared("spoof_client_ip deny clients\n", cache=False), client=client("tproxy"))
    assert x.handle(ev.RequestStarted) == [c.Connect("http", ORIGIN, 80, addresses=[ORIGIN])]
    x = make(request(), shared(cache=False), client=client("intercept"))
    assert x.handle(ev.RequestStarted)[-1].source is None


def test_ipv6_interception():
    v6 = client(dst=("2001:db8:2::2", 80), src=("2001:db8:1::2", 5000))
    x = make(request(host=b"[2001:db8:2::2]"), FakeShared(POLICY, names={"2001:db8:2::2": "origin6.test"}),
             client=v6)
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("http", "2001:db8:2::2", 80, addresses=["2001:db8:2::2"])] and x.host_verified
    out = through(x, out)
    assert upstream(out).startswith(b"GET /a HTTP/1.1\r\nHost: [2001:db8:2::2]\r\n")
    assert logged(out).url == "http://[2001:db8:2::2]/a"


def test_a_host_that_is_no_authority_gets_400():
    x = make(request(host=b"evil.test/x"), shared(), client=client())
    out = x.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 400") and logged(out).error == "ERR_INVALID_URL"


def test_connect_failure_to_the_original_destination_is_logged_as_such():
    x = make(request(), shared(cache=False), client=client())
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, ORIGIN))
    e = logged(out)
    assert (e.status, e.hierarchy, e.server_ip) == (503, "ORIGINAL_DST", ORIGIN)


def test_forward_proxy_requests_are_unchanged_by_default():
    x = make(b"GET http://origin.test/a HTTP/1.1\r\nHost: other.test\r\n\r\n", shared(cache=False),
             client_ip=CLIENT)
    assert x.handle(ev.RequestStarted) == [c.Connect("http", "origin.test", 80)]


def test_forward_proxy_under_strict_verification():
    strict = "host_verify_strict on\n"
    x = make(b"GET http://origin.test/a HTTP/1.1\r\nHost: other.test\r\n\r\n", shared(strict, cache=False),
             client_ip=CLIENT)
    out = x.handle(ev.RequestStarted)
    assert "(other.test does not match origin.test)" in out[0].message
    assert sent(out).startswith(b"HTTP/1.1 409 Conflict")
    x = make(b"GET http://origin.test/a HTTP/1.1\r\nHost: origin.test\r\n\r\n", shared(strict, cache=False),
             client_ip=CLIENT)
    assert x.handle(ev.RequestStarted) == [c.Connect("http", "origin.test", 80)]
    x = make(b"GET /pac HTTP/1.1\r\nHost: anything.test\r\n\r\n", shared(strict, cache=False), client_ip=CLIENT)
    out = x.handle(ev.RequestStarted)
    assert not any(isinstance(cmd, c.Report) for cmd in out)          # the proxy's own pages are not checked


def test_lookup_failure_means_unverified():
    x = make(request(host=b"gone.test"), shared(), client=client())
    assert x.handle(ev.RequestStarted) == [c.LookUp("host", "gone.test")]
    out = x.handle(ev.FactKnown("host", []))
    assert out == [c.Connect("http", ORIGIN, 80, addresses=[ORIGIN])] and not x.host_verified


def test_verified_hit_is_served_from_memory():
    cache = FakeCache()
    url = "http://origin.test/a"
    cache.memory[url] = (stored(url, [(b"Cache-Control", b"max-age=600"), (b"Content-Length", b"4")], b"real",
                                age=1), b"real", ())
    x = make(request(), FakeShared(POLICY, cache=cache, addresses={"origin.test": [ORIGIN]}), client=client())
    out = x.handle(ev.RequestStarted)
    assert sent(out).endswith(b"real") and logged(out).result == "TCP_MEM_HIT"
    assert logged(out).hierarchy == "HIER_NONE" and logged(out).end == NOW
