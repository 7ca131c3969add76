"""SslBump as states of the exchange (squidpy.exchange.bumping): transcripts, no sockets.
Each test feeds events to a CONNECT exchange on an ssl-bump port and compares the commands
with what Squid's steps call for; then requests inside a bumped connection."""

from __future__ import annotations

import dataclasses

import pytest

from squidpy.exchange import ClientInfo, Exchange, State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.exchange.bumping import BumpedInfo, inner_url
from squidpy.tls.ca import init_ca
from squidpy.tls.errors import SQUID_TLS_ERR_CONNECT, CertError, TlsFailure, parse_error_name
from squidpy.tls.hello import parse_client_hello
from squidpy.tls.mint import SIGN_TRUSTED, SIGN_UNTRUSTED
from tests.exchange_kit import NOW, FakeShared, request_head, sent
from tests.tlsbytes import openssl_client_hello
from tests.tlscert import TestCA

POLICY = """
acl local src 10.0.0.0/8
acl step1 at_step SslBump1
acl banks ssl::server_name .bank.test
acl blocked dstdomain .blocked.test
http_access deny blocked
http_access allow local
http_access deny all
"""


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory):
    pem, _ = init_ca(str(tmp_path_factory.mktemp("ca")), "Transcript CA")
    return pem


def connect(ca_pem, rules: str, host: str = "www.site.test", port: int = 443, extra: str = "") -> Exchange:
    shared = FakeShared(POLICY + f"http_port 3128 ssl-bump tls-cert={ca_pem}\n" + rules + extra)
    listen = shared.config.http_port[-1]
    client = ClientInfo("10.0.0.7", 40000, "10.0.0.1", 3128, "", listen.tls)
    return Exchange(shared, client, request_head(f"CONNECT {host}:{port} HTTP/1.1\r\n\r\n".encode()), NOW)


def hello(name: str | None = "www.site.test"):
    return parse_client_hello(openssl_client_hello(name))


def kinds(commands) -> list[str]:
    return [type(cmd).__name__.lstrip("_") for cmd in commands]


@pytest.fixture(scope="module")
def origin_cert():
    cert, _ = TestCA("Origin Root").issue(["www.site.test"])
    return cert


ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def test_peek_then_bump(ca_pem, origin_cert):
    x = connect(ca_pem, "ssl_bump peek step1\nssl_bump bump all\n")
    out = x.handle(ev.RequestStarted)
    assert out == [c.SendToClient(ESTABLISHED), c.ReadClientHello] and x.state is State.BUMP_CLIENT_HELLO
    out = x.handle(ev.ClientHelloRead(hello()))
    assert out == [c.ConnectTls("www.site.test", 443, "www.site.test", None)] and x.state is State.CONNECTING
    out = x.handle(ev.ServerTlsReady("192.0.2.9", 443, origin_cert))
    assert kinds(out) == ["StartClientTls"]
    props = out[0].props
    assert (props.common_name, props.mimic, props.sign) == ("www.site.test", origin_cert, SIGN_TRUSTED)
    out = x.handle(ev.ClientTlsReady("TLSv1.3", "http/1.1"))
    assert kinds(out) == ["Bumped", "Log", "Finished"]
    info, entry = out[0].info, out[1].entry
    assert (info.connect_host, info.connect_port, info.sni, info.server_cert) == (
        "www.site.test", 443, "www.site.test", origin_cert)
    assert (entry.result, entry.status, entry.reply_header_size, entry.hierarchy, entry.server_ip) == (
        "NONE_NONE", 200, 0, "HIER_DIRECT", "192.0.2.9")
    assert entry.bump_mode == "bump" and entry.sni == "www.site.test"
    assert out[2] == c.Finished(True)


def test_client_first_mints_from_the_name(ca_pem):
    x = connect(ca_pem, "ssl_bump bump all\n")
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ClientHelloRead(hello("sni.site.test")))
    assert kinds(out) == ["StartClientTls"] and out[0].props.mimic is None
    assert out[0].props.common_name == "sni.site.test"
    out = x.handle(ev.ClientTlsReady())
    assert out[1].entry.hierarchy == "HIER_NONE"


def test_no_sni_uses_the_connect_host(ca_pem):
    x = connect(ca_pem, "ssl_bump bump all\n", host="192.0.2.44")
    assert x.handle(ev.RequestStarted) == [c.LookUp("dst_name", "192.0.2.44")]     # dstdomain on an address
    x.handle(ev.FactKnown("dst_name", ""))
    out = x.handle(ev.ClientHelloRead(hello(None)))
    assert out[0].props.common_name == "192.0.2.44"


def test_splice_at_step2_logs_twice_as_squid_does(ca_pem):
    x = connect(ca_pem, "ssl_bump peek step1\nssl_bump splice banks\nssl_bump bump all\n")
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ClientHelloRead(hello("www.bank.test")))
    assert kinds(out) == ["Log", "Connect"] and out[1].tunnel
    first = out[0].entry
    assert (first.result, first.status, first.hierarchy, first.reply_header_size) == ("NONE_NONE", 200, "HIER_NONE", 0)
    out = x.handle(ev.Connected("192.0.2.9", 443))
    assert out == [c.StartTunnel()]                    # no second "200 Connection established"
    out = x.handle(ev.TunnelEnded(100, 200))
    assert kinds(out) == ["Log", "Finished"]
    assert (out[0].entry.result, out[0].entry.reply_body_size) == ("TCP_TUNNEL", 200)


def test_peek_at_the_server_then_splice(ca_pem):
    x = connect(ca_pem, "ssl_bump peek step1\nssl_bump peek all\nssl_bump bump all\n")
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ClientHelloRead(hello()))
    assert out == [c.PeekServer("www.site.test", 443, None)]
    out = x.handle(ev.ServerHelloRead(None, b"\x16\x03\x03flight", None, "192.0.2.9", 443))
    # bump is impossible after a peek: splice, logged once when the tunnel ends (as Squid 5.7 does)
    assert out == [c.StartTunnel(b"\x16\x03\x03flight")] and x.state is State.TUNNEL
    out = x.handle(ev.TunnelEnded(100, 200))
    assert kinds(out) == ["Log", "Finished"]
    e = out[0].entry
    assert (e.result, e.status, e.hierarchy, e.server_ip) == ("TCP_TUNNEL", 200, "HIER_DIRECT", "192.0.2.9")


def test_stare_then_terminate_on_the_certificate(ca_pem):
    bank, _ = TestCA().issue(["www.bank.test"])
    x = connect(ca_pem, "ssl_bump stare step1\nssl_bump stare all\n", extra="ssl_bump terminate banks\n"
                                                                              "ssl_bump bump all\n")
    x.handle(ev.RequestStarted)
    x.handle(ev.ClientHelloRead(hello("innocent.test")))
    out = x.handle(ev.ServerTlsReady("192.0.2.9", 443, bank))
    assert kinds(out) == ["AbortUpstream", "AbortClient", "Log", "Finished"]
    assert out[-1] == c.Finished(False)


def test_terminate_at_step1(ca_pem):
    x = connect(ca_pem, "ssl_bump terminate all\n")
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["AbortClient", "Log", "Finished"]
    assert (out[1].entry.result, out[1].entry.status) == ("NONE_NONE", 0)


def test_a_client_that_is_not_tls(ca_pem):
    x = connect(ca_pem, "ssl_bump peek step1\nssl_bump bump all\n")
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ClientHelloRead(None, "the client sent plain HTTP", not_tls=True))
    assert kinds(out) == ["AbortClient", "Log", "Finished"]
    assert (out[1].entry.result, out[1].entry.status) == ("NONE_NONE", 200)


def test_the_client_refuses_our_certificate(ca_pem):
    x = connect(ca_pem, "ssl_bump bump all\n")
    x.handle(ev.RequestStarted)
    x.handle(ev.ClientHelloRead(hello()))
    failure = TlsFailure(parse_error_name("SQUID_TLS_ERR_ACCEPT")[0], lib_error="tlsv1 alert unknown ca")
    out = x.handle(ev.ClientTlsFailed(failure))
    assert kinds(out) == ["Log", "Finished"] and out[-1] == c.Finished(False)
    assert "unknown ca" in out[0].entry.error_detail


def test_origin_tls_failure_is_kept_for_the_first_request(ca_pem):
    x = connect(ca_pem, "ssl_bump peek step1\nssl_bump bump all\n")
    x.handle(ev.RequestStarted)
    x.handle(ev.ClientHelloRead(hello()))
    failure = TlsFailure(parse_error_name("X509_V_ERR_CERT_HAS_EXPIRED")[0])
    out = x.handle(ev.ConnectFailed("ERR_SECURE_CONNECT_FAIL", failure.detail(), 503, "192.0.2.9", failure))
    assert kinds(out) == ["StartClientTls"] and out[0].props.mimic is None
    assert out[0].props.sign == SIGN_TRUSTED
    out = x.handle(ev.ClientTlsReady())
    info = out[0].info
    assert info.failure[0] == "ERR_SECURE_CONNECT_FAIL" and out[1].entry.hierarchy == "HIER_NONE"


def test_untrusted_origins_are_signed_untrusted(ca_pem, origin_cert):
    x = connect(ca_pem, "ssl_bump peek step1\nssl_bump bump all\n",
                extra="sslproxy_cert_error allow all\n")
    x.handle(ev.RequestStarted)
    x.handle(ev.ClientHelloRead(hello()))
    unknown = CertError(parse_error_name("X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY")[0], origin_cert)
    out = x.handle(ev.ServerTlsReady("192.0.2.9", 443, origin_cert, (unknown,)))
    assert out[0].props.sign == SIGN_UNTRUSTED


def test_denied_connect_is_bumped_to_show_its_page(ca_pem):
    x = connect(ca_pem, "", host="www.blocked.test")
    out = x.handle(ev.RequestStarted)
    assert out == [c.SendToClient(ESTABLISHED), c.ReadClientHello]
    x.handle(ev.ClientHelloRead(hello("www.blocked.test")))
    out = x.handle(ev.ClientTlsReady())
    assert kinds(out) == ["Bumped", "Log", "Finished"]
    assert (out[1].entry.result, out[1].entry.status) == ("TCP_DENIED", 200)
    assert out[0].info.denial is not None


def test_denied_connect_without_bump_denied_connect(ca_pem):
    x = connect(ca_pem, "", host="www.blocked.test", extra="bump_denied_connect off\n")
    out = x.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ")


# ---------------------------------------------------------------- inside a bumped connection

def inner(ca_pem, raw: bytes, info: BumpedInfo, extra: str = "") -> Exchange:
    shared = FakeShared(POLICY + extra)
    client = ClientInfo("10.0.0.7", 40000, "10.0.0.1", 3128, "", None, info)
    return Exchange(shared, client, request_head(raw), NOW)


def test_inner_request_has_an_https_url_and_tls_facts(ca_pem, origin_cert):
    info = BumpedInfo("www.site.test", 8443, "www.site.test", origin_cert)
    x = inner(ca_pem, b"GET /a?b HTTP/1.1\r\nHost: www.site.test\r\n\r\n", info,
              "acl sitecert ssl::server_name --server-provided www.site.test\nhttp_access deny sitecert\n")
    out = x.handle(ev.RequestStarted)
    assert x.entry.url == "https://www.site.test:8443/a?b"
    assert x.checklist.sni == "www.site.test" and x.checklist.server_cert is origin_cert
    assert sent(out).startswith(b"HTTP/1.1 200 ") is False


def test_inner_urls():
    from squidpy.http.message import RequestHead
    info = BumpedInfo("192.0.2.1", 443, "sni.test")
    with_host = RequestHead("GET", "/x", "1.1", [(b"Host", b"Named.Test")])
    no_host = RequestHead("GET", "/x", "1.1", [])
    assert inner_url(info, with_host, "/x") == "https://Named.Test/x"
    assert inner_url(info, no_host, "/x") == "https://sni.test/x"
    assert inner_url(BumpedInfo("2001:db8::1", 8443), no_host, "/y") == "https://[2001:db8::1]:8443/y"
    assert inner_url(BumpedInfo("a.test", 8443), RequestHead("GET", "/", "1.1", [(b"Host", b"a.test:9")]),
                     "/") == "https://a.test:9/"


def test_inner_request_of_a_denied_connect_gets_the_page_then_the_connection_closes(ca_pem):
    shared = FakeShared(POLICY)
    verdict = shared.config.http_access.check(_connect_checklist(shared, "www.blocked.test"))
    info = BumpedInfo("www.blocked.test", 443, "www.blocked.test", denial=(verdict, shared.config.http_access))
    x = inner(ca_pem, b"GET /page HTTP/1.1\r\nHost: www.blocked.test\r\n\r\n", info)
    out = x.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ") and b"ERR_ACCESS_DENIED" in sent(out)
    log = [cmd for cmd in out if isinstance(cmd, c.Log)][0].entry
    assert (log.result, log.url) == ("NONE_NONE", "https://www.blocked.test/page")
    assert out[-1] == c.Finished(False)


def test_inner_request_after_an_origin_tls_failure(ca_pem):
    failure = TlsFailure(parse_error_name("X509_V_ERR_CERT_HAS_EXPIRED")[0])
    info = BumpedInfo("old.test", 443, "old.test",
                      failure=("ERR_SECURE_CONNECT_FAIL", failure.detail(), 503, failure))
    x = inner(ca_pem, b"GET / HTTP/1.1\r\nHost: old.test\r\n\r\n", info)
    out = x.handle(ev.RequestStarted)
    body = sent(out)
    assert body.startswith(b"HTTP/1.1 503 ") and b"(TLS code: X509_V_ERR_CERT_HAS_EXPIRED)" in body
    assert out[-1] == c.Finished(False)


def test_inner_requests_go_to_the_origin_as_https(ca_pem):
    info = BumpedInfo("www.site.test", 443, "www.site.test")
    x = inner(ca_pem, b"GET /p HTTP/1.1\r\nHost: www.site.test\r\n\r\n", info)
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("https", "www.site.test", 443)]


def _connect_checklist(shared, host):
    from squidpy.acl.checklist import Checklist
    return Checklist(src="10.0.0.7", method="CONNECT", url=f"{host}:443", scheme="authority", host=host, port=443,
                     path="")


def test_failed_tls_code():
    assert TlsFailure(SQUID_TLS_ERR_CONNECT).brief() == "SQUID_TLS_ERR_CONNECT"


# ---------------------------------------------------------------- proxy authentication and SslBump

AUTH = """
auth_param basic program /bin/true
acl users proxy_auth REQUIRED
acl alice proxy_auth alice
acl secret urlpath_regex ^/secret
"""


def test_the_bumped_connection_keeps_the_connects_user(ca_pem):
    from squidpy.auth.decide import DONE
    shared = FakeShared(AUTH + f"http_access allow users\nhttp_port 3128 ssl-bump tls-cert={ca_pem}\n"
                                "ssl_bump bump all\n")
    client = ClientInfo("10.0.0.7", 40000, "10.0.0.1", 3128, "", shared.config.http_port[-1].tls)
    x = Exchange(shared, client, request_head(b"CONNECT www.site.test:443 HTTP/1.1\r\n"
                                              b"Proxy-Authorization: Basic YWxpY2U6cHc=\r\n\r\n"), NOW)   # alice:pw
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["AskHelper"]
    out = x.handle(ev.HelperAnswered("basic", _reply("OK")))
    assert out == [c.SendToClient(ESTABLISHED), c.ReadClientHello]
    x.handle(ev.ClientHelloRead(hello()))
    out = x.handle(ev.ClientTlsReady())
    assert out[0].info.auth.kind == DONE and out[0].info.auth.user == "alice"
    assert out[1].entry.user_login == "alice"


def _reply(result: str):
    from squidpy.helpers.protocol import parse_reply
    return parse_reply(result)


def inner_with_user(ca_pem, raw: bytes, user: str | None, policy: str) -> Exchange:
    from squidpy.auth.decide import DONE, Outcome, inherited
    info = BumpedInfo("www.site.test", 443, "www.site.test",
                      auth=inherited(Outcome(DONE, "basic", user) if user else None))
    shared = FakeShared(AUTH + policy)
    client = ClientInfo("10.0.0.7", 40000, "10.0.0.1", 3128, "", None, info)
    return Exchange(shared, client, request_head(raw), NOW)


def test_requests_inside_inherit_the_user_without_asking_a_helper(ca_pem):
    x = inner_with_user(ca_pem, b"GET /p HTTP/1.1\r\nHost: www.site.test\r\n\r\n", "alice",
                        "http_access deny !alice\nhttp_access allow users\n")
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("https", "www.site.test", 443)]
    assert x.entry.user_login == "alice"


def test_their_own_proxy_authorization_is_ignored(ca_pem):
    """Squid authenticates no request inside a bumped connection: bob's header changes nothing."""
    x = inner_with_user(ca_pem, b"GET /p HTTP/1.1\r\nHost: www.site.test\r\n"
                        b"Proxy-Authorization: Basic Ym9iOnB3\r\n\r\n", "alice",
                        "http_access deny !alice\nhttp_access allow users\n")
    out = x.handle(ev.RequestStarted)
    assert out == [c.Connect("https", "www.site.test", 443)] and x.entry.user_login == "alice"


def test_a_denial_by_an_authentication_acl_inside_is_a_403_and_closes(ca_pem):
    x = inner_with_user(ca_pem, b"GET /p HTTP/1.1\r\nHost: www.site.test\r\n\r\n", "bob",
                        "http_access deny !alice\nhttp_access allow users\n")
    out = x.handle(ev.RequestStarted)
    reply = sent(out)
    assert reply.startswith(b"HTTP/1.1 403 ") and b"ERR_CACHE_ACCESS_DENIED" in reply
    assert b"Proxy-Authenticate" not in reply
    assert out[-1] == c.Finished(False)         # Squid 5.7: Connection: close after an error inside TLS
    log = [cmd for cmd in out if isinstance(cmd, c.Log)][0].entry
    assert (log.result, log.status, log.user_login) == ("TCP_DENIED", 403, "bob")


def test_without_the_connects_credentials_authentication_acls_do_not_match(ca_pem):
    policy = "http_access allow users\nhttp_access deny secret\nhttp_access allow all\n"
    x = inner_with_user(ca_pem, b"GET /secret HTTP/1.1\r\nHost: www.site.test\r\n"
                        b"Proxy-Authorization: Basic YWxpY2U6cHc=\r\n\r\n", None, policy)
    out = x.handle(ev.RequestStarted)
    assert kinds(out)[0] == "SendToClient" and sent(out).startswith(b"HTTP/1.1 403 ")
    assert b"ERR_ACCESS_DENIED" in sent(out)   # 'allow users' did not match; 'deny secret' decided
    x = inner_with_user(ca_pem, b"GET /open HTTP/1.1\r\nHost: www.site.test\r\n\r\n", None, policy)
    assert x.handle(ev.RequestStarted) == [c.Connect("https", "www.site.test", 443)]
    x = inner_with_user(ca_pem, b"GET /p HTTP/1.1\r\nHost: www.site.test\r\n\r\n", None,
                        "http_access deny !users\nhttp_access allow all\n")
    out = x.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ") and b"ERR_CACHE_ACCESS_DENIED" in sent(out)


# ---------------------------------------------------------------- SslBump's server connection and cache_peer

def via_peers(ca_pem, rules: str, peer_lines: str, up: bool = True) -> Exchange:
    """A CONNECT on an ssl-bump port of a proxy with cache_peer lines (their addresses known,
    probed alive unless ``up`` is False)."""
    from squidpy.peers.selection import PeerTable
    shared = FakeShared(POLICY + f"http_port 3128 ssl-bump tls-cert={ca_pem}\n" + rules + peer_lines)
    table = shared.peers = PeerTable(shared.config.cache_peer, NOW)
    for i, peer in enumerate(table.peers):
        table.resolved(peer, [f"192.0.2.{10 + i}"])
    if up:
        for peer in table.probes_due(NOW - 5):
            table.probe_done(peer, True, NOW - 5)
    client = ClientInfo("10.0.0.7", 40000, "10.0.0.1", 3128, "", shared.config.http_port[-1].tls)
    return Exchange(shared, client, request_head(b"CONNECT www.site.test:443 HTTP/1.1\r\n\r\n"), NOW)


PEEK_BUMP = "ssl_bump peek step1\nssl_bump bump all\n"
PEEK_SPLICE_AT_3 = "ssl_bump peek step1\nssl_bump peek all\nssl_bump splice all\n"
STARE_BUMP = "ssl_bump stare step1\nssl_bump stare all\nssl_bump bump all\n"
PARENT = "cache_peer up.test parent 3128 0 no-query name=up login=joe:pw\nnever_direct allow all\n"
THROUGH = b"CONNECT www.site.test:443 HTTP/1.1\r\nHost: www.site.test:443\r\nProxy-Authorization: Basic am9lOnB3\r\n\r\n"


def _hello_in(x, name: str = "www.site.test"):
    x.handle(ev.RequestStarted)
    return x.handle(ev.ClientHelloRead(hello(name)))


@pytest.mark.parametrize("rules", [PEEK_BUMP, STARE_BUMP])
def test_bumping_at_step2_reaches_the_origin_through_the_parent(ca_pem, origin_cert, rules):
    """Squid 5.7 forwards the CONNECT at step 2 (FwdState): never_direct sends it to the
    parent, which gets CONNECT host:port (with login=), TLS with the origin inside; the
    CONNECT's line names the parent as Squid logs it."""
    x = via_peers(ca_pem, rules, PARENT)
    out = _hello_in(x)
    assert len(out) == 1 and isinstance(out[0], c.ConnectTls) and x.state is State.CONNECTING
    cmd = out[0]
    assert (cmd.host, cmd.port, cmd.server_name, cmd.addresses, cmd.peer.name, cmd.through) == (
        "up.test", 3128, "www.site.test", ["192.0.2.10"], "up", THROUGH)
    out = x.handle(ev.ServerTlsReady("192.0.2.10", 3128, origin_cert))
    assert kinds(out) == ["StartClientTls"] and out[0].props.mimic is origin_cert
    out = x.handle(ev.ClientTlsReady("TLSv1.3", "http/1.1"))
    assert kinds(out) == ["Bumped", "Log", "Finished"]
    e = out[1].entry
    assert (e.result, e.status, e.hierarchy, e.server_ip) == ("NONE_NONE", 200, "FIRSTUP_PARENT", "192.0.2.10")


def test_peeking_at_the_server_through_the_parent_then_splicing_is_one_tunnel_line(ca_pem):
    x = via_peers(ca_pem, PEEK_SPLICE_AT_3, PARENT)
    out = _hello_in(x)
    assert out == [c.PeekServer("up.test", 3128, ["192.0.2.10"], peer=out[0].peer, through=THROUGH)]
    out = x.handle(ev.ServerHelloRead(None, b"\x16\x03\x03flight", None, "192.0.2.10", 3128))
    assert out == [c.StartTunnel(b"\x16\x03\x03flight")] and x.state is State.TUNNEL
    out = x.handle(ev.TunnelEnded(100, 200))
    e = out[0].entry
    assert (e.result, e.status, e.hierarchy, e.server_ip) == ("TCP_TUNNEL", 200, "FIRSTUP_PARENT", "192.0.2.10")


def test_cache_peer_access_and_always_direct_decide_where_the_server_connection_goes(ca_pem):
    """The same selection as any CONNECT: cache_peer_access keeps the parent for some
    sites; always_direct sends a site straight to the origin; a CONNECT is not
    hierarchical, so without never_direct it goes direct (Squid's peerSelect)."""
    lines = ("cache_peer up.test parent 3128 0 no-query\nacl safe dstdomain .bank.test\n"
             "cache_peer_access up.test deny safe\n")
    x = via_peers(ca_pem, STARE_BUMP, lines + "never_direct allow all\n")
    out = _hello_in(x)
    assert isinstance(out[0], c.ConnectTls) and out[0].peer.name == "up.test"
    x = via_peers(ca_pem, STARE_BUMP, lines + "acl site dstdomain www.site.test\nalways_direct allow site\n"
                                              "never_direct allow all\n")
    assert _hello_in(x) == [c.ConnectTls("www.site.test", 443, "www.site.test", None)]
    x = via_peers(ca_pem, STARE_BUMP, lines)
    assert _hello_in(x) == [c.ConnectTls("www.site.test", 443, "www.site.test", None)]
    x = via_peers(ca_pem, STARE_BUMP, lines + "nonhierarchical_direct off\n")
    out = _hello_in(x)
    assert out[0].peer.name == "up.test"
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, "192.0.2.10"))
    assert [cmd for cmd in out if not isinstance(cmd, c.Report)] == [
        c.ConnectTls("www.site.test", 443, "www.site.test", None)]     # then the origin itself
    out = x.handle(ev.ServerTlsReady("192.0.2.9", 443, None))
    assert x.entry.hierarchy == "HIER_DIRECT"


def test_a_parent_that_refuses_the_connect_gives_its_status_inside_tls(ca_pem):
    """Squid 5.7 relays the parent's refusal (a 403) to the first request inside TLS,
    logged NONE_NONE/403 HIER_NONE; another parent is tried first when there is one."""
    x = via_peers(ca_pem, PEEK_BUMP, "cache_peer a.test parent 3128 0 no-query\n"
                                     "cache_peer b.test parent 3129 0 no-query\nnever_direct allow all\n")
    _hello_in(x)
    refusal = ev.ConnectFailed("ERR_CONNECT_FAIL", "the parent answered our CONNECT with HTTP/1.1 403 Forbidden",
                               403, "192.0.2.10")
    out = x.handle(refusal)
    connects = [cmd for cmd in out if isinstance(cmd, c.ConnectTls)]
    assert len(connects) == 1 and connects[0].peer.name == "b.test"
    out = x.handle(dataclasses.replace(refusal, server_ip="192.0.2.11"))
    assert kinds(out)[-1] == "StartClientTls" and out[-1].props.mimic is None
    out = x.handle(ev.ClientTlsReady())
    info, e = out[0].info, out[1].entry
    assert (e.result, e.status, e.hierarchy, e.server_ip) == ("NONE_NONE", 200, "HIER_NONE", None)
    first = inner(ca_pem, b"GET /a HTTP/1.1\r\nHost: www.site.test\r\n\r\n", info)
    out = first.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ") and b"ERR_CONNECT_FAIL" in sent(out)
    e = [cmd for cmd in out if isinstance(cmd, c.Log)][0].entry
    assert (e.result, e.status, e.hierarchy) == ("NONE_NONE", 403, "HIER_NONE")


def test_no_usable_parent_answers_as_squid_does_inside_tls(ca_pem):
    """never_direct with the parent down: Squid 5.7 bumps the client and answers its
    first request 502 ERR_READ_ERROR (what it answers when selection finds nothing)."""
    x = via_peers(ca_pem, PEEK_SPLICE_AT_3, PARENT, up=False)
    out = _hello_in(x)
    assert kinds(out) == ["StartClientTls"]
    out = x.handle(ev.ClientTlsReady())
    first = inner(ca_pem, b"GET /a HTTP/1.1\r\nHost: www.site.test\r\n\r\n", out[0].info)
    out = first.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 502 ") and b"ERR_READ_ERROR" in sent(out)


def test_a_splice_at_step2_with_no_usable_parent_closes_the_client(ca_pem):
    x = via_peers(ca_pem, "ssl_bump peek step1\nssl_bump splice all\n", PARENT, up=False)
    out = _hello_in(x)
    assert kinds(out) == ["Log", "AbortClient", "Log", "Finished"]     # no HTTP page into a TLS handshake
    assert b"" == sent(out)


def test_a_tls_failure_through_the_parent_is_the_first_requests_error(ca_pem):
    x = via_peers(ca_pem, STARE_BUMP, PARENT)
    _hello_in(x)
    failure = TlsFailure(parse_error_name("X509_V_ERR_CERT_HAS_EXPIRED")[0])
    out = x.handle(ev.ConnectFailed("ERR_SECURE_CONNECT_FAIL", failure.detail(), 503, "192.0.2.10", failure))
    assert kinds(out)[-1] == "StartClientTls"
    out = x.handle(ev.ClientTlsReady())
    assert out[0].info.failure[0] == "ERR_SECURE_CONNECT_FAIL" and out[1].entry.hierarchy == "HIER_NONE"


def test_a_tls_failure_retried_through_peer_selection_keeps_its_details(ca_pem):
    """The last candidate's TLS failure is the answer, logged as when nothing was retried:
    HIER_NONE/- with the TLS error (%err_detail, %ssl::<cert_errors)."""
    from tests.exchange_kit import make
    from tests.test_exchange_peers import with_peers
    x = make(b"GET https://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n",
             with_peers("cache_peer a.test parent 3128 0 no-query\n"))
    out = x.handle(ev.RequestStarted)
    assert [cmd.host for cmd in out if isinstance(cmd, c.Connect)] == ["a.test"]
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, "192.0.2.10"))
    assert [cmd.host for cmd in out if isinstance(cmd, c.Connect)] == ["o.test"]
    failure = TlsFailure(parse_error_name("X509_V_ERR_CERT_HAS_EXPIRED")[0])
    out = x.handle(ev.ConnectFailed("ERR_SECURE_CONNECT_FAIL", failure.detail(), 503, "198.51.100.1", failure))
    assert sent(out).startswith(b"HTTP/1.1 503 ") and b"X509_V_ERR_CERT_HAS_EXPIRED" in sent(out)
    e = [cmd for cmd in out if isinstance(cmd, c.Log)][0].entry
    assert (e.hierarchy, e.server_ip, e.tls_failure) == ("HIER_NONE", None, failure)


def test_a_bumped_request_the_parent_refuses_is_logged_hier_none(ca_pem):
    """Client-first: the request's own CONNECT to the parent is refused; Squid 5.7 answers
    with the parent's status and logs TCP_MISS/403 HIER_NONE/- (the parent was reached,
    then refused, as after a failed TLS handshake)."""
    from tests.test_exchange_peers import bumped, with_peers
    x = bumped(with_peers(PARENT), b"GET /a HTTP/1.1\r\nHost: www.site.test\r\n\r\n")
    x.handle(ev.RequestStarted)
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "the parent answered our CONNECT with HTTP/1.1 403 Forbidden",
                                    403, "192.0.2.10", reached=True))
    assert sent(out).startswith(b"HTTP/1.1 403 ") and b"ERR_CONNECT_FAIL" in sent(out)
    e = [cmd for cmd in out if isinstance(cmd, c.Log)][0].entry
    assert (e.result, e.status, e.hierarchy, e.server_ip) == ("TCP_MISS", 403, "HIER_NONE", None)


def test_miss_access_denying_the_server_connection(ca_pem):
    """The client is mid-TLS when miss_access denies: a splice at step 2 is closed
    (Squid 5.7 logs NONE_NONE/403 0), a bump shows ERR_FORWARDING_DENIED inside TLS."""
    deny = "miss_access deny all\n"
    x = via_peers(ca_pem, "ssl_bump peek step1\nssl_bump splice all\n", PARENT + deny)
    out = _hello_in(x)
    assert kinds(out) == ["Log", "AbortClient", "Log", "Finished"] and sent(out) == b""
    e = out[2].entry
    assert (e.result, e.status, e.hierarchy) == ("NONE_NONE", 403, "HIER_NONE")
    x = via_peers(ca_pem, PEEK_BUMP, PARENT + deny)
    out = _hello_in(x)
    assert kinds(out) == ["StartClientTls"]
    info = x.handle(ev.ClientTlsReady())[0].info
    out = inner(ca_pem, b"GET /a HTTP/1.1\r\nHost: www.site.test\r\n\r\n", info).handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ") and b"ERR_FORWARDING_DENIED" in sent(out)


def test_a_tls_parent_is_skipped_for_the_server_connection(ca_pem):
    """Squid sends a TLS parent no CONNECT and squidpy runs no TLS inside TLS: the next
    candidate (here the origin, nonhierarchical_direct off) is used instead."""
    x = via_peers(ca_pem, STARE_BUMP, "cache_peer up.test parent 3128 0 no-query tls\nnonhierarchical_direct off\n")
    assert _hello_in(x) == [c.ConnectTls("www.site.test", 443, "www.site.test", None)]
