"""Unit tests: tcp_outgoing_address, hosts_file, append_domain, the order addresses are
tried in, and the persistence and timeout directives' decisions (no sockets)."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.names import dns

from squidpy.acl.checklist import Checklist
from squidpy.acl.outgoing import Bind, outgoing_addresses
from squidpy.acl.checklist import Pending
from squidpy.config.loader import ConfigErrors, load
from squidpy.exchange.session import Close, ClientSession
from squidpy.http.url import BadTarget, parse_target, with_domain
from squidpy.proxy.dns import DnsCache, read_hosts
from squidpy.proxy.timeouts import Timeouts, idle_time
from tests.exchange_kit import make


def conf(text: str):
    return load(text=text + "\nhttp_access deny all\n", path="/etc/squidpy/squid.conf")


# ------------------------------------------------------------ tcp_outgoing_address

OUTGOING = """
acl good src 10.0.2.0/24
acl normal src 10.0.0.0/24
acl v6net dst 2001:db8::/32
tcp_outgoing_address 2001:db8::c001 good
tcp_outgoing_address 10.1.0.2 good
tcp_outgoing_address 2001:db8::beef normal
tcp_outgoing_address 10.1.0.1 normal
tcp_outgoing_address 10.1.0.3
"""


def test_each_ip_version_gets_the_first_line_of_its_own_version_that_matches():
    lines = conf(OUTGOING).tcp_outgoing_address
    assert outgoing_addresses(lines, Checklist(src="10.0.2.9")) == Bind("10.1.0.2", "2001:db8::c001")
    assert outgoing_addresses(lines, Checklist(src="10.0.0.9")) == Bind("10.1.0.1", "2001:db8::beef")
    assert outgoing_addresses(lines, Checklist(src="192.0.2.1")) == Bind("10.1.0.3", None)


def test_dst_acls_test_each_address_being_connected_to():
    lines = conf("acl lab dst 192.0.2.0/24\ntcp_outgoing_address 10.9.9.9 lab\n"
                 "tcp_outgoing_address 10.1.1.1\n").tcp_outgoing_address
    with pytest.raises(Pending):                       # the origin's addresses must be known first
        outgoing_addresses(lines, Checklist(src="10.0.0.1"))
    ch = Checklist(src="10.0.0.1", dst=["192.0.2.7", "198.51.100.1", "2001:db8::1"])
    bind = outgoing_addresses(lines, ch)
    assert [bind.local_for(a) for a in ch.dst] == ["10.9.9.9", "10.1.1.1", None]
    assert ch.dst == ["192.0.2.7", "198.51.100.1", "2001:db8::1"]          # left as it was


def test_other_lookups_do_not_match_and_no_address_means_no_bind():
    lines = conf("acl names srcdomain .lan\ntcp_outgoing_address 10.9.9.9 names\n").tcp_outgoing_address
    assert outgoing_addresses(lines, Checklist(src="10.0.0.1")) is None
    lines = conf("tcp_outgoing_address any_addr\n").tcp_outgoing_address
    assert outgoing_addresses(lines, Checklist(src="10.0.0.1")) is None


@pytest.mark.parametrize("line, message", [
    ("tcp_outgoing_address proxy.example", "not an IP address"),
    ("tcp_outgoing_address no_addr", "no connection can be made from"),
    ("tcp_outgoing_address", "expected: tcp_outgoing_address ADDRESS"),
    ("tcp_outgoing_address 10.0.0.1 undefined", "used before it is defined"),
])
def test_bad_outgoing_lines_are_refused(line, message):
    with pytest.raises(ConfigErrors) as e:
        conf(line + "\n")
    assert "squid.conf:1:" in str(e.value) and message in str(e.value)


# ------------------------------------------------------------ hosts_file and append_domain

def test_the_hosts_file_is_read_as_squid_reads_it_but_keeps_every_address(tmp_path):
    path = tmp_path / "hosts"
    path.write_bytes(b"127.0.0.1 localhost\n::1 localhost ip6-localhost\n# comment\n"
                     b"10.0.0.1 wiki#no blank after the name: not read\n10.0.0.2 Intranet docs # fine\n"
                     b"bogus name\n  10.0.0.3 indented\n10.0.0.4 last-without-newline")
    hosts = read_hosts(str(path))
    assert hosts.names == {"localhost": ["127.0.0.1", "::1"], "ip6-localhost": ["::1"], "intranet": ["10.0.0.2"],
                           "docs": ["10.0.0.2"]}
    assert hosts.addresses == {"127.0.0.1": "localhost", "::1": "localhost", "10.0.0.2": "intranet"}
    with_domain = read_hosts(str(path), ".corp.test")
    assert with_domain.names["intranet.corp.test"] == ["10.0.0.2"] and "intranet" not in with_domain.names
    path.write_bytes(b"127.0.0.1 localhost\n127.0.0.1 vm\n")
    assert read_hosts(str(path)).addresses == {"127.0.0.1": "localhost"}     # the first line names it
    assert read_hosts(None).names == {} and read_hosts(str(tmp_path / "missing")).names == {}


class Resolver:
    """Answers A and AAAA queries when told to, in the order ``first`` says."""

    def __init__(self, first: str):
        self.first = first
        self.resolvers = [self]
        self.pending = {}
        self.asked = []

    def _ask(self, kind, name):
        self.asked.append(name)
        d = defer.Deferred()
        self.pending[kind] = (d, name)
        return d

    def answer(self):
        for k in (self.first, "AAAA" if self.first == "A" else "A"):
            deferred, asked = self.pending.pop(k)
            record = dns.Record_A("192.0.2.1") if k == "A" else dns.Record_AAAA("2001:db8::1")
            deferred.callback(([dns.RRHeader(asked, dns.A if k == "A" else dns.AAAA, dns.IN, 60, record)], [], []))

    def lookupAddress(self, name, timeout=None):
        return self._ask("A", name)

    def lookupIPV6Address(self, name, timeout=None):
        return self._ask("AAAA", name)


def resolved(cache, name, resolver=None):
    out = []
    cache.resolve(name).addCallbacks(out.append, lambda f: out.append(f.value))
    if resolver is not None and resolver.pending:
        resolver.answer()
    return out[0]


@pytest.mark.parametrize("first, order", [("A", ["192.0.2.1", "2001:db8::1"]),
                                          ("AAAA", ["2001:db8::1", "192.0.2.1"])])
def test_addresses_keep_the_order_the_answers_came_in_as_in_squid_5(first, order):
    resolver = Resolver(first)
    cache = DnsCache(resolver, 3600, 60, clock=lambda: 0.0)
    assert resolved(cache, "o.test", resolver) == order
    assert cache.cached("o.test") == order


def test_names_in_the_hosts_file_are_never_asked_of_dns(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("192.0.2.9 static.test\n")
    resolver = Resolver("A")
    cache = DnsCache(resolver, 3600, 60, clock=lambda: 0.0, hosts=read_hosts(str(path)))
    assert resolved(cache, "static.test") == ["192.0.2.9"] and cache.cached("static.test") == ["192.0.2.9"]
    assert resolver.asked == [] and cache.cached_name("192.0.2.9") == "static.test"


def test_append_domain_gives_dotless_hosts_the_domain():
    assert with_domain(parse_target("GET", "http://wiki/x"), ".corp.test").url == "http://wiki.corp.test/x"
    assert with_domain(parse_target("CONNECT", "wiki:443"), ".corp.test").host == "wiki.corp.test"
    for kept in ("http://a.b/x", "http://10.0.0.1/", "http://[::1]/", "/squid-internal-mgr/info"):
        target = parse_target("GET", kept)
        assert with_domain(target, ".corp.test") is target
    with pytest.raises(BadTarget):
        with_domain(parse_target("GET", "http://" + "w" * 250 + "/"), ".corp.test")
    with pytest.raises(ConfigErrors) as e:
        conf("append_domain corp.test\n")
    assert "must begin with a '.'" in str(e.value)


def test_the_exchange_appends_the_domain_before_acls_and_the_log():
    from tests.exchange_kit import FakeShared
    from squidpy.exchange import events as ev
    x = make(b"GET http://wiki/x HTTP/1.1\r\nHost: wiki\r\n\r\n",
             FakeShared("append_domain .corp.test\nacl w dstdomain wiki.corp.test\nhttp_access allow w\n"))
    out = x.handle(ev.RequestStarted)
    assert out[0].host == "wiki.corp.test" and x.entry.url == "http://wiki.corp.test/x"


# ------------------------------------------------------------ persistence and timeouts

def test_pconn_lifetime_shortens_the_idle_wait_to_at_least_a_second():
    class Conn:
        opened = 100.0
    assert idle_time(120, 0, Conn, 500.0) == 120
    assert idle_time(120, 600, Conn, 150.0) == 120
    assert idle_time(120, 600, Conn, 650.0) == 50
    assert idle_time(120, 600, Conn, 900.0) == 1.0


def test_the_sweep_fires_on_the_deadline_or_the_limit():
    class Watched:
        deadline = limit = None
        fired = 0

        def timed_out(self):
            self.fired += 1
    a, b, c = Watched(), Watched(), Watched()
    a.deadline, b.limit, c.limit = 0.0, 0.0, 1e18
    t = Timeouts()
    for w in (a, b, c):
        t.add(w)
    t.sweep()
    assert (a.fired, b.fired, c.fired) == (1, 1, 0)


def test_an_eof_while_a_body_is_read_closes_at_once_unless_half_closed_clients():
    x = make(b"POST http://o.test/ HTTP/1.1\r\nHost: o.test\r\nContent-Length: 10\r\n\r\n")
    s = ClientSession()
    s.received(x, has_body=True)
    assert s.half_closed(False) == [Close(linger=False)] and s.closed
    y = make(b"POST http://o.test/ HTTP/1.1\r\nHost: o.test\r\nContent-Length: 10\r\n\r\n")
    s = ClientSession()
    s.received(y, has_body=True)
    assert s.half_closed(True) == [] and s.closing and not s.closed
    z = make(b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n")
    s = ClientSession()
    s.received(z, has_body=False)
    assert s.half_closed(False) == []                # a complete request is answered first


def test_persistence_and_timeout_directives_have_squids_defaults():
    c = conf("")
    assert (c.client_persistent_connections, c.server_persistent_connections,
            c.persistent_connection_after_error, c.half_closed_clients) == (True, True, True, False)
    assert (c.request_start_timeout, c.client_lifetime, c.pconn_lifetime, c.write_timeout) == (
        300, 86400, 0, 900)
    assert c.hosts_file == "/etc/hosts" and c.append_domain is None and c.tcp_outgoing_address == []
