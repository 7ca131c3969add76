"""Unit tests (no sockets) for the decisions behind issue 10's policy holes: addresses
compared as addresses, URLs normalised as Squid normalises them before url_regex,
requests to the proxy itself, PURGE, the manager's object filter, and the bounded
DNS caches and connection pool.  The same cases run end to end in
tests/test_security_e2e.py, and against Squid 5.7 in tests/test_squid_differential.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.names import dns, error

from squidpy.acl.check import evaluate
from squidpy.acl.checklist import Checklist, Pending
from squidpy.config import loader
from squidpy.http.url import BadTarget, internal_target, parse_target, rfc1738_unescape
from squidpy.ip import ip_address, ip_key, ip_text, numeric_ipv4
from squidpy.proxy.dns import DnsCache, DnsError, LruCache
from squidpy.http.url import parse_target as _parse_target
from squidpy.mgr.internal import url_contains
from squidpy.mgr.pages import render as render_page
from squidpy.mgr.request import manager_request
from squidpy.proxy.server_side import ServerPool


def conf(text: str):
    return loader.load("/etc/squidpy/t.conf", text=text)


def checklist_for(method: str, url: str, src: str = "10.0.0.7") -> Checklist:
    """The checklist the proxy and ``squidpy check`` both build from a request target."""
    t = parse_target(method, url)
    return Checklist(src=src, method=method, url=t.url, scheme=t.scheme, host=t.host, port=t.port,
                     path=t.path, ip_literal=t.ip_literal)


def verdict(config, method: str, url: str, **facts) -> bool:
    ch = checklist_for(method, url)
    for name, value in facts.items():
        setattr(ch, name, value)
    return config.http_access.check(ch).allowed


# ------------------------------------------------------------ one reading of an address

@pytest.mark.parametrize("text,canonical", [
    ("127.0.0.9", "127.0.0.9"),
    ("::ffff:127.0.0.9", "127.0.0.9"),
    ("::ffff:7f00:9", "127.0.0.9"),
    ("0:0:0:0:0:ffff:7f00:0009", "127.0.0.9"),
    ("[::ffff:127.0.0.9]", "127.0.0.9"),
    ("::1", "::1"),
    ("[0:0::1]", "::1"),
    ("fe80::1%eth0", "fe80::1"),
])
def test_ipv4_mapped_addresses_are_ipv4(text, canonical):
    assert ip_text(text) == canonical
    assert ip_key(text) == ip_key(canonical)
    assert str(ip_address(text)) == canonical


def test_text_that_is_not_an_address_stays_as_it_is():
    assert ip_text("www.example.com") == "www.example.com"
    with pytest.raises(ValueError):
        ip_address("127.0.0.09")


@pytest.mark.parametrize("host,address", [
    ("2130706441", "127.0.0.9"),        # one 32-bit number
    ("0x7f.0.0.9", "127.0.0.9"),        # hex part
    ("0x7f000009", "127.0.0.9"),
    ("127.9", "127.0.0.9"),             # a.b: b fills 24 bits
    ("127.0.9", "127.0.0.9"),           # a.b.c: c fills 16 bits
    ("0177.0.0.9", "127.0.0.9"),        # octal part
    ("127.0.0.9", "127.0.0.9"),
])
def test_numeric_hosts_are_read_as_squid_reads_them(host, address):
    """Squid parses URL hosts with getaddrinfo(AI_NUMERICHOST), i.e. inet_aton's forms."""
    assert str(numeric_ipv4(host)) == address


@pytest.mark.parametrize("host", ["example.com", "1e100.net", "0x7f.example", "cafe", "127.0.0.09", "1.2.3.4.5",
                                  "4294967296"])
def test_other_hosts_are_not_numeric(host):
    assert numeric_ipv4(host) is None


@pytest.mark.parametrize("target,host", [
    ("http://[::ffff:127.0.0.9]/", "127.0.0.9"),
    ("http://[::ffff:7f00:9]/", "127.0.0.9"),
    ("http://[0:0:0:0:0:ffff:7f00:0009]/", "127.0.0.9"),
    ("http://2130706441/", "127.0.0.9"),
    ("http://0x7f.0.0.9/", "127.0.0.9"),
    ("http://127.9/", "127.0.0.9"),
    ("http://127.0.0.9./", "127.0.0.9"),
    ("http://Casino.Example.COM./", "casino.example.com"),
])
def test_url_hosts_are_canonical(target, host):
    t = parse_target("GET", target)
    assert t.host == host
    assert t.url == f"http://{host}/"
    assert t.ip_literal == (host[0].isdigit())


def test_connect_to_a_mapped_address_is_the_ipv4_address():
    t = parse_target("CONNECT", "[::ffff:127.0.0.9]:8443")
    assert (t.host, t.port, t.url, t.ip_literal) == ("127.0.0.9", 8443, "127.0.0.9:8443", True)


@pytest.mark.parametrize("target", ["http://999.1.1.1/", "http://1.2.3.4.5/", "http://./"])
def test_digits_that_are_no_address_are_refused(target):
    with pytest.raises(BadTarget):
        parse_target("GET", target)


# ------------------------------------------------------------ every ACL that takes an address

ADDRESS_POLICY = """
acl blocked dstdomain -n 127.0.0.9
acl blocked6 dstdomain -n [::2] ::ffff:127.0.0.3
acl badnet dst ::ffff:10.0.0.0/104
acl badclient src ::ffff:192.168.5.0/120
acl inside localip ::ffff:127.0.0.1
http_access deny blocked
http_access deny blocked6
http_access deny badclient
http_access deny badnet
http_access allow inside
http_access deny all
"""


@pytest.mark.parametrize("method,url", [
    ("GET", "http://127.0.0.9/"),
    ("GET", "http://[::ffff:127.0.0.9]/"),
    ("GET", "http://[::ffff:7f00:9]/"),
    ("GET", "http://[0:0:0:0:0:ffff:7f00:0009]/"),
    ("GET", "http://2130706441/"),
    ("GET", "http://0x7f.0.0.9:8080/x"),
    ("CONNECT", "[::ffff:127.0.0.9]:443"),
    ("CONNECT", "127.0.0.9:443"),
    ("GET", "http://[::2]/"),
    ("GET", "http://[0::2]/"),
    ("GET", "http://127.0.0.3/"),
])
def test_dstdomain_ip_entries_catch_every_spelling(method, url):
    c = conf(ADDRESS_POLICY)
    assert not verdict(c, method, url, dst=["127.0.0.1"])
    assert verdict(c, "GET", "http://127.0.0.10/", dst=["127.0.0.10"])


def test_address_acls_compare_addresses():
    c = conf(ADDRESS_POLICY)
    assert not verdict(c, "GET", "http://a.example/", dst=["10.1.2.3"])               # dst ::ffff:10.0.0.0/104
    assert not verdict(c, "GET", "http://a.example/", dst=["::ffff:10.1.2.3"])
    ch = checklist_for("GET", "http://a.example/", src="::ffff:192.168.5.7")          # src, mapped both sides
    ch.dst = ["10.200.0.1"]
    assert not c.http_access.check(ch).allowed
    ch = checklist_for("GET", "http://a.example/", src="192.168.5.7")
    ch.dst = ["11.0.0.1"]
    assert not c.http_access.check(ch).allowed
    ch = checklist_for("GET", "http://a.example/", src="10.9.9.9")
    ch.dst = ["11.0.0.1"]
    ch.local_ip = "::ffff:127.0.0.1"                                                  # localip
    assert c.http_access.check(ch).allowed


def test_to_localhost_catches_mapped_destinations():
    c = conf("http_access deny to_localhost\nhttp_access allow all\n")
    assert not verdict(c, "GET", "http://[::ffff:127.0.0.1]:8080/", dst=["127.0.0.1"])
    assert not verdict(c, "GET", "http://name.example/", dst=["::ffff:127.0.0.1"])


# ------------------------------------------------------------ URLs as url_regex sees them

@pytest.mark.parametrize("text,seen", [
    ("/cas%69no", "/casino"),
    ("/cas%49no", "/casIno"),
    ("/ca%73%69no", "/casino"),
    ("/x?cas%2569no", "/x?cas%69no"),       # one pass only
    ("/x?cas%%69no", "/x?cas%69no"),        # %% is %
    ("/x%00casino", "/x%00casino"),         # %00 is kept
    ("/%2Fa", "//a"),
    ("/%e9t%C3%A9", "/\xe9t\xc3\xa9"),      # bytes, as Latin-1
    ("/50%", "/50%"),
    ("/50%4", "/50%4"),
    ("/%zz", "/%zz"),
])
def test_rfc1738_unescape_decodes_as_squid(text, seen):
    assert rfc1738_unescape(text) == seen


URL_POLICY = """
acl casino url_regex -i casino
acl cpath urlpath_regex -i ^/cas.no
acl exe urlpath_regex \\.exe$
http_access deny casino
http_access deny cpath
http_access deny exe
http_access allow all
"""


@pytest.mark.parametrize("url,allowed", [
    ("http://a.example/casino", False),
    ("http://a.example/cas%69no", False),
    ("http://a.example/cas%49no", False),
    ("http://a.example/x?ca%73%69no", False),
    ("http://a.example/%63as.no", False),
    ("http://CASINO.example/", False),
    ("http://a.example/setup%2Eexe", False),
    ("http://a.example/x?cas%2569no", True),
    ("http://a.example/x?cas%%69no", True),
    ("http://a.example/%2Fcas.no", True),
    ("http://a.example/fine", True),
])
def test_url_acls_match_the_normalised_url(url, allowed):
    assert verdict(conf(URL_POLICY), "GET", url) is allowed


def test_urlpath_regex_never_matches_a_connect():
    c = conf("acl any_path urlpath_regex .*\nhttp_access deny any_path\nhttp_access allow all\n")
    assert verdict(c, "CONNECT", "a.example:443")
    assert not verdict(c, "GET", "http://a.example/")


def test_squidpy_check_sees_the_same_normalised_url():
    c = conf(URL_POLICY)
    ch = checklist_for("GET", "http://a.example/cas%49no")
    report = evaluate(c.http_access, ch, lambda fact: [])
    assert not report.verdict.allowed and report.verdict.rule.text == "http_access deny casino"


# ------------------------------------------------------------ requests to the proxy itself

def test_an_origin_form_request_is_the_proxys_own_url():
    t = internal_target("/squid-internal-mgr/info", "Proxy.Example.LAN", 3128)
    assert (t.kind, t.scheme, t.host, t.port, t.ip_literal) == ("internal", "http", "proxy.example.lan", 3128, False)
    assert t.url == "http://proxy.example.lan:3128/squid-internal-mgr/info"
    assert internal_target("/", "proxy", 80).url == "http://proxy/"
    assert internal_target("/", "proxy_1", 3128).host == "proxy_1"       # not a DNS name: kept as written


MANAGER_POLICY = """
acl blocked dstdomain .blocked.example
acl dnsbad dst 203.0.113.0/24
acl local src 127.0.0.0/8
http_access deny blocked
http_access deny dnsbad
http_access allow local manager
http_access deny manager
http_access deny to_localhost
http_access allow local
http_access deny all
"""


def internal_checklist(path: str, src: str = "127.0.0.1") -> Checklist:
    t = internal_target(path, "proxy.example.lan", 3128)
    return Checklist(src=src, url=t.url, scheme=t.scheme, host=t.host, port=t.port, path=t.path,
                     ip_literal=t.ip_literal)


def test_internal_requests_need_the_lookups_any_request_needs():
    """The proxy asks for ``dst`` of its own name like ``squidpy check`` does, instead of
    treating the pending lookup as a denial."""
    c = conf(MANAGER_POLICY)
    ch = internal_checklist("/squid-internal-mgr/info")
    with pytest.raises(Pending):
        c.http_access.check(ch)
    ch.dst = ["192.0.2.1"]
    assert c.http_access.check(ch).rule.text == "http_access allow local manager"
    ch = internal_checklist("/proxy.pac")
    ch.dst = ["127.0.1.1"]
    assert c.http_access.check(ch).rule.text == "http_access deny to_localhost"
    ch = internal_checklist("/proxy.pac", src="10.1.1.1")
    ch.dst = ["192.0.2.1"]
    assert not c.http_access.check(ch).allowed


# ------------------------------------------------------------ PURGE

@pytest.mark.parametrize("text,enabled", [
    ("http_access allow all\n", False),
    ("acl Purge method PURGE\nhttp_access allow all\n", True),
    ("acl writes method POST purge\nhttp_access allow all\n", True),        # values are upper-cased
    ("acl p url_regex PURGE\nhttp_access allow all\n", False),              # only a method ACL counts
])
def test_purge_is_enabled_only_by_a_method_acl_naming_it(text, enabled):
    assert conf(text).acls.names_method("PURGE") is enabled


# ------------------------------------------------------------ the manager's object filter

def test_object_filter_is_a_plain_substring():
    pattern = "(a+)+$"
    assert not url_contains("http://o.example/" + "a" * 64 + "b", pattern)
    assert url_contains("http://o.example/x(a+)+$", pattern)
    rows = [[u, 200, 1, "memory", 0.0, 0.0, -1, -1, 10]
            for u in ("http://o.example/" + "a" * 64 + "b", "http://o.example/x(a+)+$", "http://o.example/a.c")]
    report = {"kid": None, "objects": rows}

    def page(query: str) -> bytes:
        request = manager_request(_parse_target("GET", "cache_object://proxy/objects?" + query), [], [])
        return render_page(request, [report], [])[0]
    assert page("format=lines&pattern=%28a%2B%29%2B%24") == b"http://o.example/x(a+)+$ 200 1 memory\n"
    assert page("format=lines&pattern=a.c") == b"http://o.example/a.c 200 1 memory\n"   # '.' is a dot
    assert page("format=lines&pattern=%5B") == b""                  # not a regex: nothing to be "bad"
    blocks = page("pattern=a.c").decode()
    assert blocks.count("KEY ") == 1 and "\tGET http://o.example/a.c\n" in blocks


# ------------------------------------------------------------ bounded tables

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Resolver:
    """Answers synchronously: names in ``known`` have one address, others do not exist."""

    def __init__(self, known=()):
        self.known = set(known)
        self.queries = 0
        self.resolvers = [self]

    def lookupAddress(self, name, timeout=None):
        self.queries += 1
        if name.decode() in self.known:
            rr = dns.RRHeader(name, dns.A, dns.IN, 60, dns.Record_A("192.0.2.1", 60))
            return defer.succeed(([rr], [], []))
        return defer.fail(error.DNSNameError(name))

    def lookupIPV6Address(self, name, timeout=None):
        return defer.succeed(([], [], []))

    def lookupPointer(self, name, timeout=None):
        rr = dns.RRHeader(name, dns.PTR, dns.IN, 60, dns.Record_PTR(b"host.example", 60))
        return defer.succeed(([rr], [], []))


def resolve(cache: DnsCache, name: str):
    out = []
    cache.resolve(name).addCallbacks(out.append, lambda f: out.append(f.value))
    return out[0]


def test_lru_cache_trims_from_the_high_to_the_low_water_mark():
    lru = LruCache(100, 90, 95)
    for i in range(95):
        lru.put(i, i)
    assert len(lru) == 95
    lru.get(0)                          # used: moves to the young end
    lru.put(95, 95)                     # 96 > 95: trimmed below 90
    assert len(lru) == 89
    assert lru.get(0) == 0 and lru.get(95) == 95 and lru.get(1) is None


def test_ipcache_stays_bounded_under_endless_distinct_names():
    clock = Clock()
    resolver = Resolver(known={"known.example"})
    cache = DnsCache(resolver, 3600, 60, ipcache=(100, 90, 95), fqdncache_size=50, clock=clock)
    assert resolve(cache, "known.example") == ["192.0.2.1"]
    for i in range(5000):
        assert isinstance(resolve(cache, f"nx{i}.example"), DnsError)
        if i % 7 == 0:
            resolve(cache, "known.example")         # kept warm: least recently used goes first
        assert cache.ipcache_entries <= 95
    assert cache.ipcache_entries >= 89
    queries = resolver.queries
    assert resolve(cache, "known.example") == ["192.0.2.1"] and resolver.queries == queries   # still cached
    assert isinstance(resolve(cache, "nx0.example"), DnsError) and resolver.queries == queries + 1  # forgotten
    for i in range(1000):
        out = []
        cache.reverse(f"198.51.{i // 256}.{i % 256}").addCallback(out.append)
        assert out == ["host.example"] and cache.fqdncache_entries <= 47


def test_negative_answers_expire_by_the_injected_clock():
    clock = Clock()
    resolver = Resolver()
    cache = DnsCache(resolver, 3600, 60, clock=clock)
    resolve(cache, "nx.example")
    resolve(cache, "nx.example")
    assert resolver.queries == 1
    clock.now += 61
    resolve(cache, "nx.example")
    assert resolver.queries == 2


def test_ipcache_size_zero_caches_nothing():
    resolver = Resolver(known={"a.example"})
    cache = DnsCache(resolver, 3600, 60, ipcache=(0, 90, 95), clock=Clock())
    resolve(cache, "a.example")
    resolve(cache, "a.example")
    assert resolver.queries == 2 and cache.ipcache_entries == 0


def test_ipcache_directives_have_squids_defaults():
    c = conf("http_access deny all\n")
    assert (c.ipcache_size, c.ipcache_low, c.ipcache_high, c.fqdncache_size) == (1024, 90, 95, 1024)
    c = conf("ipcache_size 10\nipcache_low 50\nipcache_high 80\nfqdncache_size 0\nhttp_access deny all\n")
    assert (c.ipcache_size, c.ipcache_low, c.ipcache_high, c.fqdncache_size) == (10, 50, 80, 0)
    with pytest.raises(loader.ConfigErrors) as e:
        conf("ipcache_high 101\n")
    assert "t.conf:1" in str(e.value)


class Transport:
    def __init__(self):
        self.closed = False

    def loseConnection(self):
        self.closed = True


class Conn:
    """What the pool reads of a ServerConnection."""

    def __init__(self, key):
        self.key, self.connected, self.transport = key, True, Transport()
        self.txn = self.parser = None
        self.idle = False
        self.deadline = 0.0
        self.delay = None           # not in a delay pool

    def detach(self):
        pass


def test_pool_keys_live_only_while_they_have_idle_connections():
    pool = ServerPool(None, None, SimpleNamespace(connect_timeout=60, server_idle_pconn_timeout=60,
                                                  reply_header_max_size=65536, pconn_lifetime=0,
                                                  write_timeout=900))
    conns = [Conn(("http", f"o{i}.example", 80)) for i in range(1000)]
    for c in conns:
        pool.release(c)
    assert len(pool.idle) == 1000
    for c in conns[:500]:
        assert pool.get_idle(c.key) is c              # taken for reuse
    for c in conns[500:]:
        c.connected = False
        pool.forget(c)                                # closed while idle
    assert pool.idle == {}
    gone = Conn(("http", "gone.example", 80))
    gone.connected = False
    pool.release(gone)                                # a dead connection is never kept
    assert pool.idle == {} and gone.transport.closed
    stale = Conn(("http", "stale.example", 80))
    pool.release(stale)
    stale.connected = False
    assert pool.get_idle(stale.key) is None and pool.idle == {}
