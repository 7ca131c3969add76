"""cache_peer and the peer, ICP and PROXY protocol directives: read as Squid 5.7 reads them."""

from __future__ import annotations

import base64

import pytest

from squidpy.config import loader
from squidpy.peers.peer import PARENT, SIBLING, CarpKey, login_fields, parse_cache_peer

CONF = "/etc/squidpy/peers.conf"


def load(text: str):
    return loader.load(CONF, text=text)


def errors_of(text: str) -> list[str]:
    with pytest.raises(loader.ConfigErrors) as e:
        load(text)
    return [str(err) for err in e.value.errors]


def peer(line: str):
    warnings = []
    p = parse_cache_peer(line.split(), warnings.append)
    return p, warnings


# ------------------------------------------------------------ one line

def test_host_is_lowered_and_the_name_keeps_its_spelling():
    p, warnings = peer("Parent.Example.COM parent 3128 3130")
    assert (p.host, p.name, p.type, p.http_port, p.icp_port) == ("parent.example.com", "Parent.Example.COM",
                                                                 PARENT, 3128, 3130)
    assert warnings == []
    assert peer("p parent 3128 0 name=Other")[0].name == "Other"
    assert peer("p parent 3128 0 name=")[0].name == "p"        # Squid keeps the host for an empty name=


@pytest.mark.parametrize("word", ["sibling", "neighbor", "neighbour"])
def test_sibling_spellings(word):
    assert peer(f"s {word} 3128 3130")[0].type == SIBLING


def test_unknown_type_is_a_sibling_with_a_warning():
    p, warnings = peer("s parnet 3128 3130")
    assert p.type == SIBLING
    assert warnings == ["Unknown neighbor type: parnet (taken as 'sibling', as Squid does)"]


def test_ports_by_number_or_service_name():
    assert peer("p parent http 0")[0].http_port == 80
    with pytest.raises(ValueError, match="HTTP-PORT cannot be 0"):
        peer("p parent 0 0")
    with pytest.raises(ValueError, match="out of range"):
        peer("p parent 70000 0")
    with pytest.raises(ValueError, match="neither a port number nor a known tcp service"):
        peer("p parent no-such-service 0")
    with pytest.raises(ValueError, match="expected: cache_peer HOST TYPE"):
        peer("p parent 3128")


def test_flags():
    p, warnings = peer("p parent 3128 3130 proxy-only no-query background-ping no-digest closest-only default "
                       "round-robin weighted-round-robin no-netdb-exchange allow-miss")
    assert warnings == []
    assert all((p.proxy_only, p.no_query, p.background_ping, p.no_digest, p.closest_only, p.default,
                p.round_robin, p.weighted_round_robin, p.no_netdb_exchange, p.allow_miss))


def test_numbers_and_squids_floors():
    p, _ = peer("p parent 3128 0 weight=5 basetime=20 connect-timeout=7 connect-fail-limit=3 max-conn=9 standby=2")
    assert (p.weight, p.basetime, p.connect_timeout, p.connect_fail_limit, p.max_conn, p.standby) == (5, 20, 7.0, 3, 9, 2)
    p, _ = peer("p parent 3128 0 weight=0 connect-fail-limit=0 connect-timeout=0")
    assert (p.weight, p.connect_fail_limit, p.connect_timeout) == (1, 10, None)
    assert peer("p parent 3128 0 weight=-4")[0].weight == 1
    with pytest.raises(ValueError, match="'weight=heavy': 'heavy' is not a whole number"):
        peer("p parent 3128 0 weight=heavy")
    with pytest.raises(ValueError, match="max-conn=2 is lower than its standby=3"):
        peer("p parent 3128 0 max-conn=2 standby=3")


def test_carp_and_its_key():
    p, _ = peer("p parent 3128 0 carp carp-key=host,path")
    assert p.carp and p.carp_key == CarpKey(host=True, path=True)
    # Squid matches each word by its prefix
    assert peer("p parent 3128 0 carp carp-key=hostname,schemes")[0].carp_key == CarpKey(scheme=True, host=True)
    with pytest.raises(ValueError, match="carp-key specified on non-carp peer p/3128"):
        peer("p parent 3128 0 carp-key=host carp")
    with pytest.raises(ValueError, match="invalid carp-key 'query'"):
        peer("p parent 3128 0 carp carp-key=host,query")
    with pytest.raises(ValueError, match="invalid carp-key ''"):
        peer("p parent 3128 0 carp carp-key=host,")


@pytest.mark.parametrize("option", ["carp", "sourcehash", "userhash"])
def test_hashing_is_for_parents_only(option):
    with pytest.raises(ValueError, match=f"non-parent {option} peer s/3128"):
        peer(f"s sibling 3128 0 {option}")


def test_login_values():
    assert peer("p parent 3128 0 login=user%20name:p%25ss")[0].login == "user name:p%ss"
    assert peer("p parent 3128 0 login=PASSTHRU")[0].login == "PASSTHRU"
    p, warnings = peer("p parent 3128 0 login=NEGOTIATE:HTTP/proxy")
    assert p.login == "NEGOTIATE:HTTP/proxy" and "Kerberos" in warnings[0]
    with pytest.raises(ValueError, match="login= needs a value"):
        peer("p parent 3128 0 login=")


@pytest.mark.parametrize("option, message", [
    ("originserver", "reverse proxy"),
    ("forceddomain=www.example.com", "accelerator"),
    ("front-end-https=on", "accelerator"),
    ("htcp", "HTCP"), ("htcp=no-clr", "HTCP"), ("htcp-oldsquid", "HTCP"),
    ("multicast-responder", "multicast"),
])
def test_refused_options_say_why(option, message):
    with pytest.raises(ValueError, match=message):
        peer(f"p parent 3128 0 {option}")


def test_multicast_peers_are_refused():
    with pytest.raises(ValueError, match="multicast"):
        peer("224.0.1.20 multicast 3128 3130")


def test_ignored_and_unknown_options_warn_and_the_rest_of_a_comment_is_skipped():
    p, warnings = peer("p parent 3128 0 no-delay no-tproxy digest-url=http://x/ connection-auth=off ttl=5 "
                       "frobnicate # default proxy-only")
    assert p.no_delay and p.no_tproxy          # delay pools and tproxy exist: their peer options are read
    assert warnings == [
        "cache_peer option 'digest-url=http://x/' is ignored: squidpy does not fetch cache digests",
        "cache_peer option 'connection-auth=off' is ignored: squidpy does not pin connections for NTLM or Negotiate",
        "cache_peer option 'ttl=5' is ignored: squidpy sends no multicast ICP queries",
        "Ignoring unknown cache_peer option 'frobnicate'",
    ]
    assert not p.default and not p.proxy_only


def test_tls_options(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    p, warnings = peer(f"p parent 3129 0 tls tls-cafile={ca} tls-cert={cert} tls-key={cert} "
                       "tls-flags=DONT_VERIFY_DOMAIN tls-min-version=1.2 tls-domain=proxy.example.net "
                       "tls-default-ca=off tls-no-npn tls-cipher=HIGH")
    tls = p.tls
    assert warnings == []
    assert tls.cafiles == [str(ca)] and tls.certs == [(str(cert), str(cert))]
    assert tls.verify_peer and not tls.verify_domain
    assert (tls.min_version, tls.domain, tls.default_ca, tls.npn, tls.cipher) == (
        "1.2", "proxy.example.net", False, False, "HIGH")
    # the older ssl* spellings, and any tls-* option alone, turn TLS on
    assert peer(f"p parent 3129 0 sslcafile={ca}")[0].tls.cafiles == [str(ca)]
    assert peer("p parent 3129 0 ssl")[0].tls is not None
    assert peer("p parent 3129 0 tls tls-disable")[0].tls is None
    with pytest.raises(ValueError, match="no such file"):
        peer("p parent 3129 0 tls-cafile=/nonexistent/ca.pem")
    with pytest.raises(ValueError, match="cert= option must be set before key="):
        peer(f"p parent 3129 0 tls-key={cert}")
    with pytest.raises(ValueError, match="unknown TLS flag 'VERIFY_EVERYTHING'"):
        peer("p parent 3129 0 tls-flags=VERIFY_EVERYTHING")
    assert peer("p parent 3129 0 tls-frob=1")[1] == ["Ignoring unknown cache_peer option 'frob=1' (a TLS option)"]


def test_tls_options_are_squids_peer_options(tmp_path):
    """The words of tls_outgoing_options (squidpy.tls.options), with cache_peer's tls-
    prefix or the older ssl one."""
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    tls = peer(f"p parent 3129 0 sslcert={cert} sslkey={cert} sslflags=DONT_VERIFY_PEER:DONT_VERIFY_DOMAIN "
               "ssloptions=NO_TLSv1 sslcipher=HIGH ssldomain=proxy.example.net")[0].tls
    assert tls.certs == [(str(cert), str(cert))] and not tls.verify_peer and not tls.verify_domain
    assert (tls.options, tls.cipher, tls.domain) == ("NO_TLSv1", "HIGH", "proxy.example.net")
    assert tls.uses_default_ca(True)            # the system's CAs unless said otherwise
    assert not peer("p parent 3129 0 tls tls-flags=NO_DEFAULT_CA")[0].tls.uses_default_ca(True)
    # tls-disable clears what came before; a later option turns TLS on again, from scratch
    again = peer("p parent 3129 0 tls-domain=a.example tls-disable tls-cipher=HIGH")[0].tls
    assert (again.domain, again.cipher) == (None, "HIGH")
    _, warnings = peer("p parent 3129 0 tls tls-min-version=2.0 tls-options=NO_SUCH_THING")
    assert warnings == ["unknown TLS minimum version '2.0' (1.0, 1.1, 1.2 or 1.3); ignored",
                        "unknown TLS option 'NO_SUCH_THING'; ignored"]


def test_a_tls_file_openssl_cannot_use_is_an_error_at_its_line(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    assert errors_of(f"cache_peer p.example parent 3128 0 tls tls-cafile={ca}\n") == [
        f"{CONF}:1: cache_peer p.example tls-cafile={ca}: cannot read CA certificates from it"]


# ------------------------------------------------------------ the whole configuration

def test_peers_in_order_and_their_access_rules():
    config = load("acl intranet dstdomain .corp\n"
                  "cache_peer a.example.net parent 3128 0 name=A\n"
                  "cache_peer 127.0.0.1 parent 3129 3130 name=B\n"
                  "cache_peer_access a deny intranet\n"
                  "cache_peer_access B allow intranet\n"
                  "cache_peer_access B deny all\n")
    a, b = config.cache_peer
    assert (a.name, a.index, a.where, b.index) == ("A", 1, f"{CONF}:2", 2)
    assert [r.text for r in a.access.rules] == ["cache_peer_access a deny intranet"]
    assert len(b.access.rules) == 2


def test_a_name_used_twice_is_an_error():
    assert errors_of("cache_peer 127.0.0.1 parent 3128 0\ncache_peer 127.0.0.1 parent 3129 0\n") == [
        f"{CONF}:2: cache_peer: cache_peer 127.0.0.1 specified twice (first at {CONF}:1); "
        "give one of them another name= to tell them apart"]
    assert errors_of("cache_peer a parent 3128 0 name=X\ncache_peer b parent 3129 0 name=x\n")


def test_cache_peer_access_names_a_peer():
    assert errors_of("cache_peer a parent 3128 0\ncache_peer_access b deny all\n") == [
        f"{CONF}:2: cache_peer_access: No cache_peer 'b' (name a cache_peer line above: its name= or its host)"]
    assert errors_of("cache_peer a parent 3128 0\ncache_peer_access a deny nosuchacl\n")


def test_directive_defaults():
    config = load("")
    assert config.cache_peer == [] and not config.never_direct and not config.always_direct
    assert (config.prefer_direct, config.nonhierarchical_direct, config.forward_max_tries, config.retry_on_error) == (
        False, True, 25, False)
    assert (config.dead_peer_timeout, config.peer_connect_timeout, config.background_ping_rate) == (10, 30, 10)
    assert (config.icp_port, config.icp_query_timeout, config.maximum_icp_query_timeout,
            config.minimum_icp_query_timeout) == (0, 0, 2000, 5)
    assert (config.icp_hit_stale, config.log_icp_queries, config.udp_incoming_address) == (False, True, "")
    assert not config.icp_access and not config.proxy_protocol_access


def test_direct_rules_and_switches():
    config = load("acl local dstdomain .corp\nalways_direct allow local\nnever_direct allow all\n"
                  "prefer_direct on\nnonhierarchical_direct off\nforward_max_tries 3\n"
                  "dead_peer_timeout 1 minute\npeer_connect_timeout 5\nicp_port 3130\nicp_access allow all\n"
                  "icp_query_timeout 500\nretry_on_error on\nudp_incoming_address 127.0.0.2\n")
    assert len(config.always_direct.rules) == 1 and len(config.never_direct.rules) == 1
    assert (config.prefer_direct, config.nonhierarchical_direct, config.forward_max_tries) == (True, False, 3)
    assert (config.dead_peer_timeout, config.peer_connect_timeout, config.icp_port) == (60, 5, 3130)
    assert (config.icp_query_timeout, config.retry_on_error, len(config.icp_access.rules)) == (500, True, 1)
    assert config.udp_incoming_address == "127.0.0.2"


def test_require_proxy_header():
    config = load("http_port 127.0.0.1:3128 require-proxy-header\nhttp_port 3129\n"
                  "acl lb src 10.0.0.5\nproxy_protocol_access allow lb\n")
    assert [p.require_proxy_header for p in config.http_port] == [True, False]
    assert len(config.proxy_protocol_access.rules) == 1
    assert errors_of("http_port 3128 require-proxy-header=yes\n") == [
        f"{CONF}:1: http_port: require-proxy-header takes no value"]


# ------------------------------------------------------------ login=

def basic(text: str) -> bytes:
    return b"Basic " + base64.b64encode(text.encode())


@pytest.mark.parametrize("login, has_own, user, expected", [
    (None, True, None, (False, None)),
    ("alice:secret", True, None, (False, basic("alice:secret"))),
    ("*:secret", False, "bob", (False, basic("bob:secret"))),
    ("*:secret", False, None, (False, basic("-:secret"))),
    ("*@branch1:secret", False, "bob", (False, basic("bob@branch1:secret"))),
    ("PASS", True, None, (True, None)),
    ("PASS", False, None, (True, None)),
    ("PASSTHRU", True, None, (True, None)),
    ("PROXYPASS", True, None, (True, None)),
    ("PROXYPASS", False, None, (True, basic("PROXYPASS"))),     # Squid 5.7 really sends this
    ("NEGOTIATE", True, None, (False, None)),
])
def test_login_fields(login, has_own, user, expected):
    headers = [(b"Proxy-Authorization", b"Basic Y2xpZW50OnB3")] if has_own else [(b"Host", b"x")]
    assert login_fields(login, headers, user) == expected


# ------------------------------------------------------------ the same verdicts as Squid

ACCEPTED_BY_BOTH = [
    "cache_peer Parent.Example.COM parent 3128 3130 proxy-only weight=0 carp carp-key=host,path name=P1",
    "cache_peer 127.0.0.1 sibling 3128 3130 no-query allow-miss login=*:x connect-fail-limit=0 name=S1",
    "cache_peer 127.0.0.1 parent 3129 0 sourcehash max-conn=4 standby=2 name=P2 frobnicate",
    "cache_peer 127.0.0.1 parnet 3129 0 name=P3",
]
REFUSED_BY_BOTH = [
    "cache_peer s sibling 3128 0 carp",
    "cache_peer p parent 3128 0 carp-key=host carp",
    "cache_peer p parent 3128 0 carp carp-key=host,query",
    "cache_peer p parent 3128 0 max-conn=2 standby=3",
    "cache_peer p parent 3128 0 weight=heavy",
    "cache_peer p parent 0 0",
    "cache_peer p parent 3128 0\ncache_peer P parent 3129 0",
]


@pytest.mark.parametrize("line", ACCEPTED_BY_BOTH)
def test_squid_accepts_what_squidpy_accepts(make_squid, line):
    squid = make_squid(line, start=False)
    assert squid.parse().returncode == 0, squid.parse().stderr
    load(line + "\n")


@pytest.mark.parametrize("line", REFUSED_BY_BOTH)
def test_squid_refuses_what_squidpy_refuses(make_squid, line):
    squid = make_squid(line, start=False)
    assert squid.parse().returncode != 0
    assert errors_of(line + "\n")
