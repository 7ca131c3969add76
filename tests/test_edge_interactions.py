"""Exchange transcripts where features merged separately meet: interception with cache_peer
lines (Squid 5.7's peer_select.cc rules for intercepted requests), tcp_outgoing_address and
tproxy's spoofed source on peer connections (Squid's getOutgoingAddress applies to every
connection), miss_access before peer selection, delay pools and no-delay peers.
Events in, commands out, no sockets."""

from __future__ import annotations

from squidpy.acl.outgoing import Bind, for_probe, for_standby
from squidpy.exchange import ClientInfo, State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.helpers.protocol import parse_reply
from tests.exchange_kit import NOW, FakeCache, FakeShared, make, peers_known, response_head, sent

ORIGIN, OTHER, CLIENT = "198.51.100.2", "198.51.100.3", "192.0.2.2"
PARENT_IP, PARENT2_IP = "192.0.2.10", "192.0.2.11"
REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n"
POLICY = """
acl clients src 192.0.2.0/24 10.0.0.0/8
http_access allow clients
http_access deny all
"""
PARENT = "cache_peer parent.test parent 3128 0 name=up no-query\n"


def shared(extra: str = "", cache: bool = False) -> FakeShared:
    s = FakeShared(POLICY + extra, cache=FakeCache() if cache else None,
                   addresses={"origin.test": [ORIGIN], "other.test": [OTHER]})
    if s.config.cache_peer:
        peers_known(s)
    return s


def client(mode: str | None = "intercept") -> ClientInfo:
    if mode is None:
        return ClientInfo("10.0.0.5", 40000, "127.0.0.1", 3128)
    return ClientInfo(CLIENT, 40000, ORIGIN, 80, "3129", interception=mode)


def request(host: bytes = b"origin.test", target: str = "/a") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ua/1\r\n\r\n" % (target.encode(), host)


def connect(out) -> c.Connect:
    assert isinstance(out[-1], c.Connect), out
    return out[-1]


def finish(x, out):
    cmd = connect(out)
    out = x.handle(ev.Connected(cmd.addresses[0] if cmd.addresses else ORIGIN, cmd.port))
    out += x.handle_all([ev.ResponseStarted(response_head(REPLY)), ev.ResponseBody(b"hello"),
                         ev.ResponseEnd(reusable=True)])
    return next(cmd.entry for cmd in out if isinstance(cmd, c.Log)), out


# ---------------------------------------------------------------- (a) interception with cache_peer lines
def test_a_verified_intercepted_request_goes_to_the_parent_like_any_other():
    """Squid 5.7 selects peers for intercepted requests; only DIRECT becomes ORIGINAL_DST."""
    x = make(request(), shared(PARENT), client=client())
    cmd = connect(x.handle(ev.RequestStarted))
    assert (cmd.host, cmd.port, cmd.peer.name, cmd.addresses) == ("parent.test", 3128, "up", [PARENT_IP])
    e, out = finish(x, [cmd])
    assert (e.hierarchy, e.server_ip, e.url) == ("FIRSTUP_PARENT", PARENT_IP, "http://origin.test/a")
    head = next(cmd.data for cmd in out if isinstance(cmd, c.SendUpstream) and cmd.head)
    assert head.startswith(b"GET http://origin.test/a HTTP/1.1\r\n")       # absolute form, to a proxy


def test_when_the_parent_fails_direct_means_the_original_destination():
    x = make(request(), shared(PARENT), client=client())
    cmd = connect(x.handle(ev.RequestStarted))
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "refused", 503, PARENT_IP))
    assert connect(out) == c.Connect("http", ORIGIN, 80, addresses=[ORIGIN])
    e, _ = finish(x, out)
    assert (e.hierarchy, e.server_ip) == ("ORIGINAL_DST", ORIGIN)


def test_a_forged_host_is_not_hierarchical_so_it_goes_to_the_original_destination_only():
    """clientHierarchical: an unverified intercepted request is not sent to parents while
    going direct is allowed (nonhierarchical_direct on)."""
    x = make(request(b"other.test"), shared(PARENT), client=client())
    out = x.handle(ev.RequestStarted)
    assert not x.host_verified
    assert connect(out) == c.Connect("http", ORIGIN, 80, addresses=[ORIGIN])
    e, _ = finish(x, out)
    assert (e.hierarchy, e.url) == ("ORIGINAL_DST", "http://other.test/a")
    assert x.selected.destinations == []        # no parent left to fall back on


def test_never_direct_sends_even_an_unverified_request_to_the_parent_as_squid_does():
    x = make(request(b"other.test"), shared(PARENT + "never_direct allow all\n"), client=client())
    cmd = connect(x.handle(ev.RequestStarted))
    assert cmd.peer is not None and cmd.peer.name == "up"
    e, _ = finish(x, [cmd])
    assert e.hierarchy == "FIRSTUP_PARENT"


def test_always_direct_on_an_interception_port_is_the_original_destination():
    x = make(request(), shared(PARENT + "always_direct allow all\n"), client=client())
    out = x.handle(ev.RequestStarted)
    assert connect(out) == c.Connect("http", ORIGIN, 80, addresses=[ORIGIN])
    assert finish(x, out)[0].hierarchy == "ORIGINAL_DST"


def test_without_passthru_direct_is_by_name_after_the_parent():
    x = make(request(), shared(PARENT + "client_dst_passthru off\n"), client=client())
    cmd = connect(x.handle(ev.RequestStarted))
    assert cmd.peer is not None
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "refused", 503, PARENT_IP))
    assert connect(out) == c.Connect("http", "origin.test", 80)
    assert finish(x, out)[0].hierarchy == "HIER_DIRECT"


def test_a_rewritten_intercepted_request_goes_by_name_not_to_the_original_destination():
    """Squid: a request the URL rewriter redirected is no longer "intercepted" for
    ORIGINAL_DST (flags.redirected): it goes to the new URL's host."""
    config = ('url_rewrite_program /bin/cat\n')
    x = make(request(), shared(config), client=client())
    out = x.handle(ev.RequestStarted)
    assert isinstance(out[-1], c.AskHelper), out
    out = x.handle(ev.HelperAnswered(out[-1].helper, parse_reply("OK rewrite-url=http://mirror.test/a")))
    assert connect(out) == c.Connect("http", "mirror.test", 80)
    assert finish(x, out)[0].hierarchy == "HIER_DIRECT"


def test_tproxy_requests_reach_parents_from_the_clients_address_unless_no_tproxy():
    x = make(request(), shared(PARENT), client=client("tproxy"))
    cmd = connect(x.handle(ev.RequestStarted))
    assert (cmd.peer.name, cmd.source) == ("up", CLIENT)
    x = make(request(), shared(PARENT.replace("no-query", "no-query no-tproxy")), client=client("tproxy"))
    cmd = connect(x.handle(ev.RequestStarted))
    assert (cmd.peer.name, cmd.source) == ("up", None)


# ---------------------------------------------------------------- (b) tcp_outgoing_address to peers
OUTGOING = """
acl to_parent dst 192.0.2.10
acl to_origin dst 198.51.100.2
tcp_outgoing_address 127.0.0.20 to_parent
tcp_outgoing_address 127.0.0.30 to_origin
tcp_outgoing_address 127.0.0.40
"""


def test_tcp_outgoing_address_applies_to_peer_connections_with_the_peers_address_as_dst():
    x = make(b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n", shared(PARENT + OUTGOING), client=client(None))
    cmd = connect(x.handle(ev.RequestStarted))
    assert cmd.peer.name == "up"
    assert cmd.bind == Bind(by_address=((PARENT_IP, "127.0.0.20"),))
    assert x.checklist.dst is None          # the request's own dst is not the peer's


def test_the_next_peer_gets_its_own_outgoing_address():
    peers = PARENT + "cache_peer parent2.test parent 3128 0 name=up2 no-query\n"
    x = make(b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n", shared(peers + OUTGOING), client=client(None))
    connect(x.handle(ev.RequestStarted))
    out = x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "refused", 503, PARENT_IP))
    cmd = connect(out)
    assert (cmd.peer.name, cmd.bind) == ("up2", Bind(by_address=((PARENT2_IP, "127.0.0.40"),)))


def test_standby_connections_choose_the_address_a_request_to_the_peer_gets():
    """Squid's PeerPoolMgr asks getOutgoingAddress too: the same Bind as a request's,
    so the driver pools both under one key and requests reuse the standby connections."""
    s = shared(PARENT + OUTGOING)
    x = make(b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n", s, client=client(None))
    cmd = connect(x.handle(ev.RequestStarted))
    assert for_standby(s.config.tcp_outgoing_address, "up", "parent.test", [PARENT_IP]) == cmd.bind


def test_a_standby_connection_is_for_a_made_up_request_without_a_client():
    """OPTIONS for ``*`` on the peer's host, initiated by peer-pool, no client address."""
    lines = shared("""
acl kids src 10.0.0.0/8
acl options method OPTIONS
acl pool transaction_initiator peer-pool
acl its_host dstdomain parent.test
acl via_up peername up
tcp_outgoing_address 127.0.0.50 kids
tcp_outgoing_address 127.0.0.60 options pool its_host via_up
tcp_outgoing_address 127.0.0.70
""").config.tcp_outgoing_address
    assert for_standby(lines, "up", "parent.test", [PARENT_IP]) == Bind(by_address=((PARENT_IP, "127.0.0.60"),))
    assert for_standby(lines, "up", "other.test", [PARENT_IP]) == Bind(by_address=((PARENT_IP, "127.0.0.70"),))
    assert for_standby(lines, "up2", "parent.test", [PARENT_IP]) == Bind(by_address=((PARENT_IP, "127.0.0.70"),))
    assert for_standby(shared("acl kids src 10.0.0.0/8\ntcp_outgoing_address 127.0.0.50 kids\n")
                       .config.tcp_outgoing_address, "up", "parent.test", [PARENT_IP]) is None


def test_a_probe_has_no_request_its_peer_and_the_address_probed_decide():
    """Squid's peerProbeConnect asks getOutgoingAddress with no request: ACLs about the
    request do not match (negated they do), peername and dst see the peer and the address
    probed, src sees no client."""
    lines = shared("""
acl anyone src all
acl kids src 10.0.0.0/8
acl options method OPTIONS
acl pool transaction_initiator all
acl its_host dstdomain parent.test
acl port_any port 1-65535
acl any_url url_regex http
acl http proto HTTP
acl via_up peername up
acl second dst 192.0.2.11
tcp_outgoing_address 127.0.0.50 kids
tcp_outgoing_address 127.0.0.51 options
tcp_outgoing_address 127.0.0.52 pool
tcp_outgoing_address 127.0.0.53 its_host
tcp_outgoing_address 127.0.0.54 port_any
tcp_outgoing_address 127.0.0.55 any_url
tcp_outgoing_address 127.0.0.56 http
tcp_outgoing_address 127.0.0.60 via_up second
tcp_outgoing_address 127.0.0.61 via_up !options anyone
tcp_outgoing_address 127.0.0.70
""").config.tcp_outgoing_address
    assert for_probe(lines, "up", [PARENT_IP, PARENT2_IP]) == Bind(
        by_address=((PARENT_IP, "127.0.0.61"), (PARENT2_IP, "127.0.0.60")))
    assert for_probe(lines, "other", [PARENT_IP]) == Bind(by_address=((PARENT_IP, "127.0.0.70"),))
    assert for_standby(lines, "up", "parent.test", [PARENT_IP]) == Bind(by_address=((PARENT_IP, "127.0.0.51"),))
    assert for_probe(shared("acl kids src 10.0.0.0/8\ntcp_outgoing_address 127.0.0.50 kids\n")
                     .config.tcp_outgoing_address, "up", [PARENT_IP]) is None


def test_tcp_outgoing_address_applies_to_the_original_destination():
    x = make(request(), shared(OUTGOING), client=client())
    cmd = connect(x.handle(ev.RequestStarted))
    assert cmd == c.Connect("http", ORIGIN, 80, addresses=[ORIGIN], bind=Bind(by_address=((ORIGIN, "127.0.0.30"),)))


def test_a_spoofed_tproxy_connection_ignores_tcp_outgoing_address():
    x = make(request(), shared(OUTGOING), client=client("tproxy"))
    cmd = connect(x.handle(ev.RequestStarted))
    assert (cmd.source, cmd.bind) == (CLIENT, None)
    x = make(request(), shared(OUTGOING + "spoof_client_ip deny all\n"), client=client("tproxy"))
    cmd = connect(x.handle(ev.RequestStarted))
    assert (cmd.source, cmd.bind) == (None, Bind(by_address=((ORIGIN, "127.0.0.30"),)))


# ---------------------------------------------------------------- (c) miss_access and peer selection
def test_a_miss_access_denial_comes_before_peer_selection():
    peers = "cache_peer sib.test sibling 3128 3130 name=sib\n" + PARENT + "icp_port 3130\n"
    s = shared(peers + "acl far src 10.0.0.0/8\nmiss_access deny far\n", cache=True)
    s.peers.icp_open = True
    x = make(b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n", s, client=client(None))
    out = x.handle(ev.RequestStarted)
    out += x.handle(ev.CacheFound(None, None, ()))
    assert not any(isinstance(cmd, (c.Connect, c.SendIcp)) for cmd in out)
    assert sent(out).startswith(b"HTTP/1.1 403 Forbidden") and x.selector is None
    e = next(cmd.entry for cmd in out if isinstance(cmd, c.Log))
    assert (e.result, e.hierarchy, e.error) == ("TCP_MISS", "HIER_NONE", "ERR_FORWARDING_DENIED")


def test_miss_access_allowing_leaves_peer_selection_as_it_was():
    s = shared(PARENT + "acl far src 172.16.0.0/12\nmiss_access deny far\n", cache=True)
    x = make(b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n", s, client=client(None))
    x.handle(ev.RequestStarted)
    cmd = connect(x.handle(ev.CacheFound(None, None, ())))
    assert cmd.peer.name == "up" and x.state is State.CONNECTING


# ---------------------------------------------------------------- delay pools and peers
DELAY = "delay_pools 1\ndelay_class 1 1\ndelay_parameters 1 1000/1000\ndelay_access 1 allow all\n"


def test_a_no_delay_peers_replies_are_not_slowed():
    x = make(b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n", shared(PARENT + DELAY), client=client(None))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.Connected(PARENT_IP, 3128))
    assert [cmd.pool is not None for cmd in out if isinstance(cmd, c.Throttle)] == [True]
    x = make(b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n",
             shared(PARENT.replace("no-query", "no-query no-delay") + DELAY), client=client(None))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.Connected(PARENT_IP, 3128))
    assert not any(isinstance(cmd, c.Throttle) for cmd in out)
    out = x.handle(ev.ResponseStarted(response_head(REPLY)))
    assert [cmd.pool for cmd in out if isinstance(cmd, c.Throttle)] == [None]


# ---------------------------------------------------------------- (e) a splice through a parent on an ssl-bump port
def spliced_connect(ca_pem: str, extra: str = "") -> tuple:
    from squidpy.exchange import Exchange
    from squidpy.tls.hello import parse_client_hello
    from tests.exchange_kit import request_head
    from tests.tlsbytes import openssl_client_hello
    s = shared(PARENT + "never_direct allow all\n" + f"http_port 3128 ssl-bump tls-cert={ca_pem}\n"
               "acl step1 at_step SslBump1\nssl_bump peek step1\nssl_bump splice all\n" + extra)
    x = Exchange(s, ClientInfo("10.0.0.7", 40000, "10.0.0.1", 3128, "", s.config.http_port[-1].tls),
                 request_head(b"CONNECT www.site.test:443 HTTP/1.1\r\n\r\n"), NOW)
    out = x.handle(ev.RequestStarted)
    assert sent(out) == ESTABLISHED                         # peeking: the client has its 200 at once
    out = x.handle(ev.ClientHelloRead(parse_client_hello(openssl_client_hello("www.site.test"))))
    return x, out


ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def test_a_splice_after_a_peek_through_a_parent_sends_no_second_200(tmp_path):
    from squidpy.tls.ca import init_ca
    ca_pem, _ = init_ca(str(tmp_path), "Transcript CA")
    x, out = spliced_connect(ca_pem)
    cmd = connect(out)
    assert (cmd.peer.name, cmd.tunnel) == ("up", True)
    out = x.handle(ev.Connected(PARENT_IP, 3128))
    head = next(cmd.data for cmd in out if isinstance(cmd, c.SendUpstream))
    assert head.startswith(b"CONNECT www.site.test:443 HTTP/1.1\r\n")
    out = x.handle(ev.ResponseStarted(response_head(b"HTTP/1.1 200 Connection established\r\n\r\n")))
    assert sent(out) == b""                                 # the client had its 200 before its ClientHello
    out = x.handle(ev.Upgraded(b""))
    assert out == [c.StartTunnel(b"")]
    out = x.handle(ev.TunnelEnded(10, 20))
    e = next(cmd.entry for cmd in out if isinstance(cmd, c.Log))
    assert (e.result, e.status, e.hierarchy, e.server_ip) == ("TCP_TUNNEL", 200, "FIRSTUP_PARENT", PARENT_IP)


def test_a_parents_refusal_of_a_spliced_connect_closes_the_client_mid_tls(tmp_path):
    from squidpy.tls.ca import init_ca
    ca_pem, _ = init_ca(str(tmp_path), "Transcript CA")
    x, out = spliced_connect(ca_pem)
    x.handle(ev.Connected(PARENT_IP, 3128))
    out = x.handle(ev.ResponseStarted(response_head(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")))
    assert sent(out) == b"" and c.AbortClient in out        # no HTTP answer inside the client's TLS
    e = next(cmd.entry for cmd in out if isinstance(cmd, c.Log))
    assert (e.result, e.hierarchy, e.server_ip) == ("TCP_TUNNEL", "FIRSTUP_PARENT", PARENT_IP)


def test_peername_chooses_the_outgoing_address_of_one_named_parent():
    """Squid's way to send one parent's traffic out of its own interface: a peername ACL
    on tcp_outgoing_address (the only place Squid 5.7 knows the peer's name)."""
    peers = PARENT + "cache_peer parent2.test parent 3128 0 name=up2 no-query\n"
    rules = ("acl via_up2 peername up2\nacl via_up_re peername_regex -i ^UP$\n"
             "tcp_outgoing_address 127.0.0.22 via_up2\ntcp_outgoing_address 127.0.0.21 via_up_re\n")
    x = make(b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n", shared(peers + rules), client=client(None))
    cmd = connect(x.handle(ev.RequestStarted))
    assert (cmd.peer.name, cmd.bind) == ("up", Bind(by_address=((PARENT_IP, "127.0.0.21"),)))
    cmd = connect(x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "refused", 503, PARENT_IP)))
    assert (cmd.peer.name, cmd.bind) == ("up2", Bind(by_address=((PARENT2_IP, "127.0.0.22"),)))
    assert x.checklist.dst_peer_name is None        # known to that check only

