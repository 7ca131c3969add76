"""HTTPS interception (``https_port ... intercept ssl-bump``) as transcripts, no sockets.
The connection enters SslBump as Squid's fake CONNECT to the original destination: no
``200 Connection established`` is sent (the client sent no CONNECT), the steps decide, a
splice goes to the original destination and is logged with the SNI's name, refusals reset,
and requests inside a bumped connection are verified against and sent to the address the
client connected to.  End to end, in network namespaces: tests/test_intercept_https.py."""

from __future__ import annotations

import pytest

from squidpy.config.loader import ConfigErrors, load
from squidpy.config.values import parse_http_port
from squidpy.exchange import ClientInfo, Exchange, State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.exchange.bumping import BumpedInfo
from squidpy.tls.ca import init_ca
from squidpy.tls.hello import parse_client_hello
from tests.exchange_kit import NOW, FakeShared, kinds, request_head
from tests.tlsbytes import openssl_client_hello
from tests.tlscert import TestCA

ORIGIN, CLIENT = "198.51.100.2", "192.0.2.2"
POLICY = """
acl clients src 192.0.2.0/24
acl step1 at_step SslBump1
acl banks ssl::server_name .bank.test
http_access allow clients
http_access deny all
"""


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory):
    pem, _ = init_ca(str(tmp_path_factory.mktemp("ca")), "Intercept CA")
    return pem


def shared_for(ca_pem, rules: str, mode: str = "intercept", policy: str = POLICY, **kw) -> FakeShared:
    return FakeShared(policy + f"https_port 3130 {mode} ssl-bump tls-cert={ca_pem}\n" + rules, **kw)


def intercepted(shared: FakeShared, mode: str = "intercept", to_proxy: bool = False,
                dst: tuple[str, int] = (ORIGIN, 443)) -> Exchange:
    """What client_side makes of a new connection: the CONNECT nobody sent."""
    listen = shared.config.https_port[-1]
    client = ClientInfo(CLIENT, 40000, dst[0], dst[1], "3130", listen.tls, interception=mode, to_proxy=to_proxy)
    x = Exchange(shared, client, request_head(f"CONNECT {dst[0]}:{dst[1]} HTTP/1.1\r\n\r\n".encode()), NOW)
    x.intercepted_tls = True
    return x


def hello(name: str | None):
    return parse_client_hello(openssl_client_hello(name))


# ---------------------------------------------------------------- the port's options
def test_https_port_takes_intercept_and_tproxy_with_ssl_bump(ca_pem):
    port = parse_http_port(["3130", "intercept", "ssl-bump", f"tls-cert={ca_pem}"], https=True)
    assert port.interception == "intercept" and port.tls.ssl_bump
    assert parse_http_port(["3131", "tproxy", "ssl-bump", f"tls-cert={ca_pem}"], https=True).interception == "tproxy"
    config = load(text=f"https_port 3130 intercept ssl-bump tls-cert={ca_pem}\n")
    assert config.https_port[0].tls.server_context is None       # it bumps: no static certificate of its own


@pytest.mark.parametrize("args, message", [
    (["3130", "ssl-bump"], "ssl-bump on https_port requires tproxy/intercept which is missing."),
    (["3130", "intercept"], "https_port intercept without ssl-bump"),
    (["3130", "tproxy"], "https_port tproxy without ssl-bump"),
])
def test_what_https_interception_refuses(ca_pem, args, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        parse_http_port([*args, f"tls-cert={ca_pem}"], https=True)


def test_a_metrics_port_still_refuses_interception():
    with pytest.raises(ConfigErrors, match=r":1:.*interception .* is for http_port and https_port"):
        load(text="metrics_port 9301 intercept\n")


# ---------------------------------------------------------------- the steps
def test_peek_then_splice_by_sni(ca_pem):
    x = intercepted(shared_for(ca_pem, "ssl_bump peek step1\nssl_bump splice all\n",
                               addresses={"www.site.test": ["198.51.100.7", ORIGIN]}))
    assert x.handle(ev.RequestStarted) == [c.ReadClientHello]          # no 200: nobody asked for one
    assert x.state is State.BUMP_CLIENT_HELLO
    out = x.handle(ev.ClientHelloRead(hello("www.site.test")))
    assert kinds(out) == ["Log", "Connect"]
    first, connect = out[0].entry, out[1]
    first_checklist = out[0].checklist
    assert (first.result, first.status, first.url, first.hierarchy) == (
        "NONE_NONE", 0, f"{ORIGIN}:443", "HIER_NONE")
    assert connect.tunnel and connect.addresses == [ORIGIN] and connect.port == 443
    assert x.handle(ev.Connected(ORIGIN, 443)) == [c.StartTunnel()]
    out = x.handle(ev.TunnelEnded(500, 1500))
    tunnel = out[0].entry
    assert (tunnel.result, tunnel.status, tunnel.url, tunnel.hierarchy, tunnel.server_ip, tunnel.bump_mode) == (
        "TCP_TUNNEL", 200, "www.site.test:443", "ORIGINAL_DST", ORIGIN, "splice")
    # the second CONNECT was judged with a checklist of its own: the first one's facts stay
    assert (out[0].checklist.host, first_checklist.host) == ("www.site.test", ORIGIN)


def test_no_sni_splices_under_the_address(ca_pem):
    x = intercepted(shared_for(ca_pem, "ssl_bump peek step1\nssl_bump splice all\n"))
    x.handle(ev.RequestStarted)
    x.handle(ev.ClientHelloRead(hello(None)))
    x.handle(ev.Connected(ORIGIN, 443))
    assert x.handle(ev.TunnelEnded(1, 1))[0].entry.url == f"{ORIGIN}:443"


def test_ssl_server_name_sees_the_sni_and_terminate_resets(ca_pem):
    x = intercepted(shared_for(ca_pem, "ssl_bump peek step1\nssl_bump terminate banks\nssl_bump splice all\n"))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ClientHelloRead(hello("www.bank.test")))
    assert kinds(out) == ["AbortClient", "Log", "Finished"]
    entry = out[1].entry
    assert (entry.result, entry.status, entry.url, entry.sni) == ("NONE_NONE", 0, f"{ORIGIN}:443", "www.bank.test")


def test_splice_at_step1_sends_nothing_before_the_tunnel(ca_pem):
    x = intercepted(shared_for(ca_pem, "ssl_bump splice all\n"))
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["Connect"] and out[0].tunnel and out[0].addresses == [ORIGIN]
    assert x.handle(ev.Connected(ORIGIN, 443)) == [c.StartTunnel()]


def test_peek_then_bump_goes_to_the_original_destination(ca_pem):
    cert, _ = TestCA("Origin Root").issue(["www.site.test"])
    x = intercepted(shared_for(ca_pem, "ssl_bump peek step1\nssl_bump bump all\n"))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ClientHelloRead(hello("www.site.test")))
    assert out == [c.ConnectTls(ORIGIN, 443, "www.site.test", [ORIGIN])]
    out = x.handle(ev.ServerTlsReady(ORIGIN, 443, cert))
    assert kinds(out) == ["StartClientTls"] and out[0].props.common_name == "www.site.test"
    out = x.handle(ev.ClientTlsReady())
    assert kinds(out) == ["Bumped", "Log", "Finished"]
    info, entry = out[0].info, out[1].entry
    assert (info.connect_host, info.connect_port, info.sni) == (ORIGIN, 443, "www.site.test")
    assert (entry.result, entry.status, entry.url, entry.hierarchy, entry.server_ip) == (
        "NONE_NONE", 0, f"{ORIGIN}:443", "ORIGINAL_DST", ORIGIN)


# ---------------------------------------------------------------- refusals reset
def test_a_connection_to_the_port_itself_is_reset(ca_pem):
    x = intercepted(shared_for(ca_pem, "ssl_bump peek step1\nssl_bump splice all\n"), to_proxy=True,
                    dst=("192.0.2.1", 3130))
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["AbortClient", "Log", "Finished"]
    entry = out[1].entry
    assert (entry.result, entry.status, entry.reply_header_size, entry.url) == ("TCP_DENIED", 0, 0, "192.0.2.1:3130")


def test_a_denied_connect_without_ssl_bump_lines_is_reset(ca_pem):
    x = intercepted(shared_for(ca_pem, "bump_denied_connect off\n", policy=POLICY.replace(
        "http_access allow clients\n", "")))
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["AbortClient", "Log", "Finished"]
    assert (out[1].entry.result, out[1].entry.status) == ("TCP_DENIED", 403)


def test_a_denied_connect_is_bumped_to_show_the_page_without_a_200(ca_pem):
    x = intercepted(shared_for(ca_pem, "ssl_bump peek step1\nssl_bump splice all\n",
                               policy=POLICY.replace("http_access allow clients\n", "")))
    assert x.handle(ev.RequestStarted) == [c.ReadClientHello]
    out = x.handle(ev.ClientHelloRead(hello("www.site.test")))
    assert kinds(out) == ["StartClientTls"] and out[0].props.common_name == "www.site.test"
    out = x.handle(ev.ClientTlsReady())
    assert (out[1].entry.result, out[1].entry.status) == ("TCP_DENIED", 0)
    assert out[0].info.denial is not None


# ---------------------------------------------------------------- inside a bumped intercepted connection
def inner(ca_pem, raw: bytes, addresses: dict | None = None) -> Exchange:
    shared = shared_for(ca_pem, "ssl_bump peek step1\nssl_bump bump all\n", addresses=addresses)
    listen = shared.config.https_port[-1]
    client = ClientInfo(CLIENT, 40000, ORIGIN, 443, "3130", listen.tls, BumpedInfo(ORIGIN, 443, "www.site.test"),
                        interception="intercept")
    return Exchange(shared, client, request_head(raw), NOW)


def test_a_bumped_request_is_verified_and_sent_to_the_original_destination(ca_pem):
    x = inner(ca_pem, b"GET /a HTTP/1.1\r\nHost: www.site.test\r\n\r\n", {"www.site.test": [ORIGIN]})
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("https", "www.site.test", 443, addresses=[ORIGIN], original_dst=True)]
    assert x.entry.url == "https://www.site.test/a" and x.host_verified


def test_a_bumped_request_for_a_name_elsewhere_still_goes_where_the_client_connected(ca_pem):
    x = inner(ca_pem, b"GET /b HTTP/1.1\r\nHost: other.test\r\n\r\n")
    assert x.handle(ev.RequestStarted) == [c.LookUp("host", "other.test")]
    out = x.handle(ev.FactKnown("host", ["198.51.100.3"]))
    assert out == [c.Connect("https", "other.test", 443, addresses=[ORIGIN], original_dst=True)]
    assert not x.host_verified           # so neither stored nor answered from the cache


def test_a_bumped_request_naming_another_port_fails_verification(ca_pem):
    x = inner(ca_pem, b"GET /c HTTP/1.1\r\nHost: www.site.test:8443\r\n\r\n", {"www.site.test": [ORIGIN]})
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["Connect"] and out[0].addresses == [ORIGIN] and not x.host_verified


# ---------------------------------------------------------------- a splice at step 2: Squid's second CONNECT
SPLICE = "ssl_bump peek step1\nssl_bump splice all\n"
SOCIAL = POLICY.replace("http_access allow clients\n",
                        "acl social dstdomain .social.test\nhttp_access deny social\nhttp_access allow clients\n")


def spliced(ca_pem, sni: str, policy: str = POLICY, **kw) -> tuple[Exchange, list]:
    """An intercepted connection peeked at step 1 and spliced at step 2, once its hello is read."""
    x = intercepted(shared_for(ca_pem, SPLICE, policy=policy, names={ORIGIN: "cdn.test"}, **kw))
    assert x.handle(ev.RequestStarted) == [c.ReadClientHello]
    return x, x.handle(ev.ClientHelloRead(hello(sni)))


def test_a_dstdomain_denial_of_the_sni_resets_the_splice(ca_pem):
    """The first CONNECT (to the address) passes http_access; the second, named after the SNI,
    is denied by dstdomain: nothing is spliced, the client is reset."""
    x, out = spliced(ca_pem, "www.social.test", policy=SOCIAL, addresses={"www.social.test": [ORIGIN]})
    assert kinds(out) == ["Log", "AbortClient", "Log", "Finished"]
    first, second = out[0].entry, out[2].entry
    assert (first.result, first.status, first.url) == ("NONE_NONE", 0, f"{ORIGIN}:443")
    assert (second.result, second.status, second.url, second.hierarchy, second.bump_mode) == (
        "TCP_DENIED", 403, "www.social.test:443", "HIER_NONE", "splice")
    assert second.denied_by is not None and second.reply_header_size == second.reply_body_size == 0


def test_an_sni_resolving_elsewhere_is_refused_409(ca_pem):
    x, out = spliced(ca_pem, "www.elsewhere.test", addresses={"www.elsewhere.test": ["198.51.100.9"]})
    assert kinds(out) == ["Log", "Report", "Report", "AbortClient", "Log", "Finished"]
    assert [r.message for r in out[1:3]] == [
        f"SECURITY ALERT: Host header forgery detected on local={ORIGIN}:443 remote={CLIENT}:40000 "
        "(local IP does not match any domain IP)",
        "SECURITY ALERT: on URL: www.elsewhere.test:443"]
    refused = out[4].entry
    assert (refused.result, refused.status, refused.url, refused.error, refused.bump_mode) == (
        "NONE_NONE", 409, "www.elsewhere.test:443", "ERR_CONFLICT_HOST", None)


def test_the_sni_is_looked_up_when_not_cached(ca_pem):
    x, out = spliced(ca_pem, "www.new.test")
    assert kinds(out) == ["Log", "LookUp"] and out[1] == c.LookUp("host", "www.new.test")
    assert x.state is State.VERIFYING_HOST
    out = x.handle(ev.FactKnown("host", [ORIGIN], seconds=0.004))
    assert kinds(out) == ["Connect"] and out[0].tunnel and out[0].addresses == [ORIGIN]
    assert x.entry.dns_time == 0.004


def test_an_sni_that_does_not_resolve_is_refused_after_its_lookup(ca_pem):
    x, out = spliced(ca_pem, "www.nowhere.test")
    out = x.handle(ev.FactKnown("host", []))
    assert kinds(out) == ["Report", "Report", "AbortClient", "Log", "Finished"]
    assert (out[3].entry.result, out[3].entry.status) == ("NONE_NONE", 409)


def test_the_second_connect_sees_the_sni_in_ssl_acls_and_dstdomain(ca_pem):
    """ssl::server_name and at_step see the SNI and step 2 in the second CONNECT's http_access."""
    policy = POLICY.replace("http_access allow clients\n", "acl late at_step SslBump2\nacl named ssl::server_name "
                            ".ok.test\nhttp_access deny late !named\nhttp_access allow clients\n")
    x, out = spliced(ca_pem, "www.ok.test", policy=policy, addresses={"www.ok.test": [ORIGIN], "www.no.test": [ORIGIN]})
    assert kinds(out) == ["Log", "Connect"]
    x, out = spliced(ca_pem, "www.no.test", policy=policy, addresses={"www.no.test": [ORIGIN]})
    assert kinds(out) == ["Log", "AbortClient", "Log", "Finished"] and out[2].entry.status == 403


def test_no_sni_makes_the_second_connect_to_the_address(ca_pem):
    x, out = spliced(ca_pem, None, policy=SOCIAL)
    assert kinds(out) == ["Log", "Connect"] and out[1].addresses == [ORIGIN]
    assert x.entry.url == f"{ORIGIN}:443"


def test_a_splice_after_peeking_at_the_server_is_logged_once_under_the_address(ca_pem):
    """Step 3: Squid tunnels its first CONNECT (no second one, no Host verification,
    no http_access of the SNI): one TCP_TUNNEL line under the address."""
    x = intercepted(shared_for(ca_pem, "ssl_bump peek all\nssl_bump splice all\n", policy=SOCIAL,
                               names={ORIGIN: "cdn.test"}))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ClientHelloRead(hello("www.social.test")))
    assert out == [c.PeekServer(ORIGIN, 443, [ORIGIN])]
    out = x.handle(ev.ServerHelloRead(None, b"\x16\x03\x03", "not a hello", ORIGIN, 443))
    assert kinds(out) == ["StartTunnel"]
    out = x.handle(ev.TunnelEnded(10, 20))
    assert kinds(out) == ["Log", "Finished"]
    entry = out[0].entry
    assert (entry.result, entry.status, entry.url, entry.hierarchy, entry.bump_mode) == (
        "TCP_TUNNEL", 200, f"{ORIGIN}:443", "ORIGINAL_DST", "splice")
