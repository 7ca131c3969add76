"""Delay pools without sockets: the directives, Squid's classes and buckets over an
injected clock, the pool a request falls into, the exchange's Throttle command, and
the one timer per pool that wakes waiting transfers."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from squidpy.acl.checklist import Checklist
from squidpy.config.loader import ConfigErrors, load
from squidpy.delay import ClientBucket, ClientPool, ClientPoolSpec, DelayPool, PoolSpec, Rate, parse_rate, select
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.mgr import pages
from squidpy.mgr.request import ManagerRequest
from squidpy.proxy.throttle import TICK, Throttles
from tests.exchange_kit import FakeShared, make, response_head

T = 1000.0


def conf(text: str):
    return load(text="acl all_v4 src 0.0.0.0/0\n" + text, path="/etc/squidpy/squidpy.conf")


# ---------------------------------------------------------------- the directives
def test_rates_as_squid_writes_them():
    assert parse_rate("8000/8000") == Rate(8000, 8000)
    assert parse_rate("600/64000") == Rate(600, 64000)
    assert parse_rate("none") is None and parse_rate("-1/-1") is None
    for bad in ("8000", "8k/8k", "1/", "/5", "a/b"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_pools_are_configured_in_squids_order():
    c = conf("delay_pools 2\ndelay_class 1 2\ndelay_parameters 1 none 8000/8000\n"
             "delay_access 1 allow all_v4\ndelay_class 2 3\ndelay_parameters 2 32000/32000 8000/8000 600/8000\n"
             "delay_access 2 deny all_v4\ndelay_initial_bucket_level 10\n"
             "client_delay_pools 1\nclient_delay_parameters 1 1024 2048\nclient_delay_access 1 allow all_v4\n")
    assert [(p.number, p.klass, p.rates) for p in c.delay_specs] == [
        (1, 2, (None, Rate(8000, 8000))), (2, 3, (Rate(32000, 32000), Rate(8000, 8000), Rate(600, 8000)))]
    assert c.delay_initial_bucket_level == 10
    assert [(p.number, p.rate, p.maximum) for p in c.client_delay_specs] == [(1, 1024, 2048)]
    assert load(text="").delay_specs == [] and load(text="").delay_pools == 0


@pytest.mark.parametrize("text, message", [
    ("delay_class 1 2\n", "pool 1 is not one of the 0 pools delay_pools declares"),
    ("delay_pools 1\ndelay_class 1 6\n", "'6' is not a delay pool class (1 to 5)"),
    ("delay_pools 1\ndelay_parameters 1 none\n", "pool 1 has no delay_class yet"),
    ("delay_pools 1\ndelay_class 1 3\ndelay_parameters 1 none 8000/8000\n", "a class 3 pool takes 3 rate(s)"),
    ("delay_pools 1\ndelay_class 1 1\ndelay_parameters 1 8k\n", "'8k' is not a delay rate"),
    ("delay_pools 1\ndelay_class 1 1\ndelay_class 1 2\n", "pool 1 has a class already"),
    ("delay_pools 1\ndelay_access 2 allow all_v4\n", "pool 2 is not one of the 1 pools"),
    ("client_delay_pools 1\nclient_delay_parameters 1 1024\n", "expected: client_delay_parameters POOL"),
])
def test_mistakes_are_named_with_file_and_line(text, message):
    with pytest.raises(ConfigErrors) as e:
        conf(text)
    assert message in str(e.value)
    assert "/etc/squidpy/squidpy.conf:" in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("delay_pools 2\ndelay_class 1 1\ndelay_parameters 1 none\n", "delay pool 2 has no delay_class line"),
    ("delay_pools 1\ndelay_class 1 1 64000/64000\n", "delay pool 1 has no delay_parameters line"),
    ("client_delay_pools 1\n", "client delay pool 1 has no client_delay_parameters line"),
])
def test_incomplete_pools_are_accepted_as_squid_accepts_them(text, message):
    """squid -k parse accepts these; such a pool limits nothing."""
    c = conf(text)
    assert any(message in str(w) and "limits nothing" in str(w) for w in c.warnings), c.warnings
    assert all(p.number != 2 for p in c.delay_specs) and c.client_delay_specs == []


def test_a_pool_nobody_can_use_is_warned_about():
    c = conf("delay_pools 1\ndelay_class 1 1\ndelay_parameters 1 1000/1000\n")
    assert any("delay pool 1 has no delay_access lines" in str(w) for w in c.warnings)


# ---------------------------------------------------------------- buckets and classes
def pool(klass, *rates, initial=50):
    return DelayPool(PoolSpec(1, klass, tuple(parse_rate(r) for r in rates)), initial, T)


def levels(delay):
    return [round(b.level) for b, _ in delay.buckets]


def test_class_1_one_aggregate_bucket_refilled_by_the_time_passed():
    p = pool(1, "1000/4000")
    d = p.id_for("10.0.0.7", None, None, T)
    assert levels(d) == [2000]                        # delay_initial_bucket_level 50 %
    assert d.wanted(65536, T) == 2000 and d.wanted(500, T) == 500
    d.used(2500)                                      # a read may overdraw ...
    assert d.wanted(65536, T) == 0
    assert d.wanted(65536, T + 0.4) == 0              # ... and is repaid first
    assert d.wanted(65536, T + 1.5) == 1000
    assert d.wanted(65536, T + 100) == 4000           # never above the maximum
    assert d.seconds_until(1000, T + 100) == 0
    d.used(4000)
    assert d.seconds_until(1000, T + 100) == pytest.approx(1.0)
    assert p.id_for("10.9.9.9", None, None, T).buckets[0][0] is p.aggregate   # one bucket for all
    assert p.bytes == 6500


def test_class_2_an_individual_bucket_per_host_byte_and_ipv6_only_aggregate():
    p = pool(2, "none", "8000/8000", initial=100)
    a = p.id_for("10.0.0.7", None, None, T)
    b = p.id_for("10.1.2.7", None, None, T)         # same last byte: same bucket, as in Squid
    c_ = p.id_for("10.0.0.8", None, None, T)
    assert a.buckets[0][0] is b.buckets[0][0] and a.buckets[0][0] is not c_.buckets[0][0]
    assert sorted(p.individual) == [7, 8] and p.aggregate is None
    assert p.id_for("2001:db8::7", None, None, T) is None           # nothing limits it
    limited = pool(2, "1000/1000", "8000/8000").id_for("2001:db8::7", None, None, T)
    assert len(limited.buckets) == 1                                # the aggregate only


def test_class_3_network_and_host_buckets_and_class_4_users_and_class_5_tags():
    p = pool(3, "32000/32000", "8000/8000", "600/8000", initial=0)
    d = p.id_for("192.168.5.20", None, None, T)
    assert [b for b, _ in d.buckets] == [p.aggregate, p.network[5], p.hosts[5][20]]
    assert d.wanted(65536, T + 1) == 600             # the individual bucket is the tightest
    d.used(600)
    assert p.network[5].level == pytest.approx(8000 - 600)          # the network shares the cost
    other_host = p.id_for("192.168.5.21", None, None, T + 1)
    assert other_host.wanted(65536, T + 1) == 0                      # a new host starts at 0 % here
    assert other_host.wanted(65536, T + 2) == 600
    p4 = pool(4, "none", "none", "none", "1000/1000")
    assert len(p4.id_for("10.0.0.1", "alice", None, T).buckets) == 1 and "alice" in p4.users
    assert p4.id_for("10.0.0.1", None, None, T) is None             # no user: no limit
    p5 = pool(5, "1000/1000")
    assert p5.id_for("10.0.0.1", None, "students", T).buckets[0][0] is p5.tags["students"]
    assert p5.id_for("10.0.0.1", None, None, T) is None


def test_the_first_pool_whose_delay_access_allows_is_used():
    c = conf("acl lan src 10.0.0.0/8\nacl big url_regex \\.iso$\nacl far dst 192.0.2.0/24\n"
             "delay_pools 3\ndelay_class 1 1\ndelay_parameters 1 1000/1000\ndelay_access 1 allow far\n"
             "delay_class 2 1\ndelay_parameters 2 2000/2000\ndelay_access 2 allow lan big\n"
             "delay_access 2 deny all\ndelay_class 3 1\ndelay_parameters 3 3000/3000\ndelay_access 3 allow lan\n")
    ch = lambda url: Checklist(src="10.0.0.7", url=url)      # noqa: E731
    assert select(c.delay_specs, ch("http://o/x.iso")) == 1  # pool 1 needs a lookup: no match here
    assert select(c.delay_specs, ch("http://o/x.html")) == 2
    assert select(c.delay_specs, Checklist(src="172.16.0.1", url="http://o/x.iso")) is None


def test_a_client_bucket_as_squids_bandwidth_bucket():
    b = ClientBucket(1000, 2000, 3000, T)             # started over its maximum (initial 150 %)
    assert b.take(5000, T) == 3000
    b.refill(T + 0.0005)
    assert b.level == 0 and b.stamp == T              # under one byte: not even the clock moves
    assert b.take(5000, T + 1.5) == 1500
    assert b.seconds_until(1000, T + 1.5) == pytest.approx(1.0)
    fat = ClientBucket(1000, 2000, 3000, T)
    fat.take(500, T)
    assert fat.take(0, T + 10) == 0 and fat.level == 2500      # the extra is spent before any refill
    pool_ = ClientPool(ClientPoolSpec(1, 1000, 2048), 50)
    assert pool_.bucket_for("10.0.0.7", T) is pool_.bucket_for("10.0.0.7", T)
    assert pool_.bucket_for("10.0.0.7", T).level == 1024


def test_the_delay_page_from_a_pools_report():
    p = pool(3, "32000/32000", "none", "600/8000", initial=50)
    p.id_for("10.0.3.7", None, None, T)
    report = {"kid": None, "delay": {"pools": [p.report(T)], "client_pools": []}}
    body, _ = pages.render(ManagerRequest("delay"), [report], [])
    assert body.decode() == (
        "Delay pools configured: 1\n\nPool: 1\n\tClass: 3\n\n"
        "\tAggregate:\n\t\tMax: 32000\n\t\tRestore: 32000\n\t\tCurrent: 16000\n\n"
        "\tNetwork:\n\t\tDisabled.\n\n\n\n"
        "\tIndividual:\n\t\tMax: 8000\n\t\tRestore: 600\n\t\tCurrent [Network 3]: 7:4000\n\n\n")


# ---------------------------------------------------------------- the exchange decides
POOLED = """
acl local src 10.0.0.0/8 127.0.0.0/8
acl slow rep_mime_type -i ^video/
http_access allow local
http_access deny all
delay_pools 2
delay_class 1 1
delay_parameters 1 1000/1000
delay_access 1 allow slow
delay_class 2 2
delay_parameters 2 none 5000/5000
delay_access 2 allow local
"""


def test_the_exchange_throttles_a_reply_by_its_pool_once_its_head_is_known():
    x = make(b"GET http://o.test/v HTTP/1.1\r\nHost: o.test\r\n\r\n", FakeShared(POOLED))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert out[0] == c.Throttle(1, "10.0.0.7", None, None)      # from the first byte: no reply facts yet
    out = x.handle(ev.ResponseStarted(response_head(
        b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 3\r\n\r\n")))
    assert out[0] == c.Throttle(0, "10.0.0.7", None, None)      # pool 1 now: a reply ACL matched
    x = make(b"GET http://o.test/p HTTP/1.1\r\nHost: o.test\r\n\r\n", FakeShared(POOLED))
    x.handle(ev.RequestStarted)
    x.handle(ev.Connected("192.0.2.1", 80))
    out = x.handle(ev.ResponseStarted(response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")))
    assert out[0] == c.Throttle(1, "10.0.0.7", None, None)
    x = make(b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n", FakeShared(POOLED))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.Connected("192.0.2.1", 443))
    assert out == [c.Throttle(1, "10.0.0.7", None, None),
                   c.SendToClient(b"HTTP/1.1 200 Connection established\r\n\r\n"), c.StartTunnel()]
    x = make(b"GET http://o.test/p HTTP/1.1\r\nHost: o.test\r\n\r\n",
             FakeShared(POOLED.replace("delay_access 2 allow local", "delay_access 2 deny local")))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert not any(isinstance(cmd, c.Throttle) for cmd in out)
    out = x.handle(ev.ResponseStarted(response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")))
    assert out[0] == c.Throttle(None, "10.0.0.7", None, None)   # no pool once the reply is known
    x = make(b"GET http://o.test/p HTTP/1.1\r\nHost: o.test\r\n\r\n")          # no pools: no command
    x.handle(ev.RequestStarted)
    out = x.handle(ev.Connected("192.0.2.1", 80))
    out += x.handle(ev.ResponseStarted(response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")))
    assert not any(isinstance(cmd, c.Throttle) for cmd in out)


# ---------------------------------------------------------------- one timer per pool
class Reading:
    """Just enough of an origin connection for the throttle: its reads pause and resume."""

    def __init__(self):
        self.delay = None
        self.paused = set()
        self.transport = object()           # not TCP: reads are not resized

    def pause_reading(self, reason):
        self.paused.add(reason)

    def resume_reading(self, reason):
        self.paused.discard(reason)


def test_waiting_reads_are_woken_by_one_timer_per_pool():
    clock = Clock()
    config = conf("delay_pools 1\ndelay_class 1 1\ndelay_parameters 1 1000/1000\n"
                  "delay_access 1 allow all_v4\ndelay_initial_bucket_level 100\n")
    throttles = Throttles(clock, config, clock=clock.seconds)
    servers = [Reading() for _ in range(3)]
    for s in servers:
        assert throttles.attach(s, 0, "10.0.0.7", None, None)
    servers[0].delay.read(1000)                     # the shared bucket is empty: all three wait
    for s in servers[1:]:
        s.delay.read(0)
    assert all(s.paused == {"delay"} for s in servers)
    assert len(clock.getDelayedCalls()) == 1        # one timer for the pool, not one per connection
    clock.advance(TICK)
    assert all(s.paused == set() for s in servers)  # 100 bytes came in: they read again
    assert clock.getDelayedCalls() == []            # nobody waits: no timer
    servers[0].delay.detach()
    assert servers[0].delay is None
    report = throttles.report()
    assert report["pools"][0]["bytes"] == 1000 and report["pools"][0]["pauses"] == 3


class Written:
    """A client connection's transport that keeps what is written to it."""

    connected = True

    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data.extend(data)


class Client:
    def __init__(self, ip="10.0.0.7"):
        self.client_ip, self.client_port, self.local_ip, self.local_port, self.port_name = ip, 4000, "10.0.0.1", 3128, ""
        self.transport = Written()

    def _source(self):
        return None


def test_a_client_pool_sends_what_the_bucket_allows_and_shares_it_between_connections():
    clock = Clock()
    config = conf("client_delay_pools 1\nclient_delay_parameters 1 1000 1000\nclient_delay_access 1 allow all\n"
                  "client_delay_initial_bucket_level 0\n")
    throttles = Throttles(clock, config, clock=clock.seconds)
    a, b = Client(), Client()
    wa, wb = throttles.limit_client(a), throttles.limit_client(b)
    assert wa.bucket is wb.bucket                    # one bucket per client address
    assert throttles.limit_client(Client("2001:db8::1")) is not None     # any address family, as in Squid
    wa.write(b"x" * 3000)
    wb.write(b"y" * 3000)
    assert a.transport.data == b"" and wa.queued == 3000
    assert len(clock.getDelayedCalls()) == 1
    for _ in range(10):
        clock.advance(TICK)                          # 100 bytes a tick, shared by the two
    assert len(a.transport.data) + len(b.transport.data) == pytest.approx(1000, abs=2)
    assert abs(len(a.transport.data) - len(b.transport.data)) <= 100
    for _ in range(60):
        clock.advance(TICK)
    assert bytes(a.transport.data) == b"x" * 3000 and bytes(b.transport.data) == b"y" * 3000
    assert clock.getDelayedCalls() == [] and wa.queued == 0
    assert throttles.report()["client_pools"][0]["bytes"] == 6000


def test_a_client_pool_is_chosen_by_the_address_a_proxy_protocol_header_gave():
    """Squid chooses once the client's address is known (whenClientIpKnown): behind a
    load balancer, the client's, not the balancer's."""
    from squidpy.exchange.exchange import ClientInfo
    clock = Clock()
    config = conf("acl far src 192.0.2.0/24\nclient_delay_pools 1\nclient_delay_parameters 1 1000 1000\n"
                  "client_delay_access 1 allow far\n")
    throttles = Throttles(clock, config, clock=clock.seconds)
    balancer = Client("10.0.0.9")
    assert throttles.limit_client(balancer) is None
    forwarded = ClientInfo("192.0.2.7", 5000, "10.0.0.1", 3128, "")
    writer = throttles.limit_client(balancer, forwarded)
    assert writer is not None and writer.client is balancer
    assert writer.bucket is throttles.limit_client(Client("192.0.2.7")).bucket   # the client's own bucket
