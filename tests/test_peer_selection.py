"""Peer selection and peer health as Squid 5.7 decides them: pure, a clock passed in, no sockets."""

from __future__ import annotations

import pytest

from squidpy.acl.checklist import Checklist, Pending
from squidpy.config import loader
from squidpy.http.url import parse_target
from squidpy.peers.health import PeerHealth, int_average
from squidpy.peers.selection import (
    ANY_OLD_PARENT, CARP, FIRST_PARENT_MISS, FIRSTUP_PARENT, HIER_DIRECT, PARENT_HIT, ROUNDROBIN_PARENT,
    SIBLING_HIT, SOURCEHASH_PARENT, USERHASH_PARENT, Direct, PeerSelector, PeerTable, Ping, RequestFacts, Selected,
    is_hierarchical)

NOW = 1_800_000_000.0


def setup(text: str, up: bool = True):
    config = loader.load("/etc/squidpy/sel.conf", text=text)
    table = PeerTable(config.cache_peer, NOW)
    for p in config.cache_peer:
        table.resolved(p, ["127.0.0.1"])       # which asks for a probe, as in Squid
    if up:
        for p in table.probes_due(NOW - 5):
            table.probe_done(p, True, NOW - 5)
    return config, table


def facts(url: str = "http://www.example.com/a", method: str = "GET", client: str = "10.0.0.7", **kw):
    target = parse_target(method, url)
    ch = Checklist(src=client, method=method, url=target.url, scheme=target.scheme, host=target.host,
                   port=target.port, path=target.path, ip_literal=target.ip_literal)
    scheme = "" if method == "CONNECT" else target.scheme
    kw.setdefault("hierarchical", is_hierarchical(method, scheme, []))
    return RequestFacts(method, target.url, scheme, target.host, target.port, target.path, client, ch, **kw)


def names(result: Selected) -> list[tuple[str | None, str]]:
    return [(d.peer.name if d.peer else None, d.code) for d in result.destinations]


def select(config, table, now: float = NOW, **kw) -> list[tuple[str | None, str]]:
    result = PeerSelector(table, config, facts(**kw), now).start()
    assert isinstance(result, Selected)
    return names(result)


# ------------------------------------------------------------ direct or hierarchy

def test_one_parent_then_the_origin():
    config, table = setup("cache_peer up.example.net parent 3128 0\n")
    assert select(config, table) == [("up.example.net", FIRSTUP_PARENT), (None, HIER_DIRECT)]


def test_non_hierarchical_requests_go_direct_unless_told_otherwise():
    config, table = setup("cache_peer p parent 3128 0\n")
    assert select(config, table, method="POST") == [(None, HIER_DIRECT)]
    assert select(config, table, url="www.example.com:443", method="CONNECT") == [(None, HIER_DIRECT)]
    assert select(config, table, url="https://www.example.com/") == [("p", FIRSTUP_PARENT), (None, HIER_DIRECT)]
    config, table = setup("cache_peer p parent 3128 0\nnonhierarchical_direct off\n")
    assert select(config, table, method="POST") == [("p", FIRSTUP_PARENT), (None, HIER_DIRECT)]


def test_hierarchical_is_squids_flag():
    assert is_hierarchical("GET", "http", [])
    assert is_hierarchical("TRACE", "http", [])
    assert not is_hierarchical("GET", "http", [(b"Authorization", b"Basic x")])
    assert is_hierarchical("GET", "https", [])      # Squid: only http GETs look at the method's cacheability
    assert not is_hierarchical("GET", "cache_object", [])
    assert not is_hierarchical("HEAD", "http", [])
    assert not is_hierarchical("GET", "http", [], loop_detected=True)


def test_never_direct_sends_everything_to_parents():
    config, table = setup("cache_peer p parent 3128 0\nnever_direct allow all\n")
    assert select(config, table) == [("p", FIRSTUP_PARENT)]
    assert select(config, table, method="POST") == [("p", FIRSTUP_PARENT)]
    assert select(config, table, url="www.example.com:443", method="CONNECT") == [("p", FIRSTUP_PARENT)]


def test_never_direct_with_every_parent_dead_leaves_nothing():
    config, table = setup("cache_peer p parent 3128 0\nnever_direct allow all\n", up=False)
    assert select(config, table) == []
    config, table = setup("cache_peer p parent 3128 0\n", up=False)
    assert select(config, table) == [(None, HIER_DIRECT)]


def test_always_direct_wins_over_never_direct():
    config, table = setup("cache_peer p parent 3128 0\nacl intranet dstdomain .corp\n"
                          "always_direct allow intranet\nnever_direct allow all\n")
    assert select(config, table, url="http://wiki.corp/") == [(None, HIER_DIRECT)]
    assert select(config, table) == [("p", FIRSTUP_PARENT)]


def test_always_direct_deny_alone_allows_everything_else():
    """The last line's opposite, as in Squid: 'always_direct deny X' alone is 'allow !X'."""
    config, table = setup("cache_peer p parent 3128 0\nacl partner dstdomain .partner.test\n"
                          "always_direct deny partner\n")
    assert select(config, table) == [(None, HIER_DIRECT)]
    assert select(config, table, url="http://a.partner.test/") == [("p", FIRSTUP_PARENT), (None, HIER_DIRECT)]


def test_prefer_direct_puts_the_origin_first():
    config, table = setup("cache_peer p parent 3128 0\nprefer_direct on\n")
    assert select(config, table) == [(None, HIER_DIRECT), ("p", FIRSTUP_PARENT)]


def test_a_loop_goes_direct():
    config, table = setup("cache_peer p parent 3128 0\n")
    assert select(config, table, loop_detected=True) == [(None, HIER_DIRECT)]


def test_slow_acl_in_never_direct_asks_for_the_fact_and_is_asked_again():
    config, table = setup("cache_peer p parent 3128 0\nacl inside dst 10.0.0.0/8\nnever_direct allow !inside\n")
    request = facts()
    selector = PeerSelector(table, config, request, NOW)
    with pytest.raises(Pending) as pending:
        selector.start()
    assert pending.value.fact == "dst"
    request.checklist.dst = ["93.184.216.34"]
    assert names(selector.start()) == [("p", FIRSTUP_PARENT)]
    assert selector.direct is Direct.NO


def test_every_usable_parent_follows_and_each_peer_only_once():
    config, table = setup("cache_peer a parent 3128 0\ncache_peer s sibling 3128 0\n"
                          "cache_peer b parent 3129 0 default\ncache_peer c parent 3130 0\n")
    assert select(config, table) == [("a", FIRSTUP_PARENT), ("b", ANY_OLD_PARENT), ("c", ANY_OLD_PARENT),
                                     (None, HIER_DIRECT)]
    table.state(config.cache_peer[0]).tcp_up = 0        # a is dead
    assert select(config, table) == [("b", FIRSTUP_PARENT), ("c", ANY_OLD_PARENT), (None, HIER_DIRECT)]


def test_cache_peer_access_and_fast_checks_only():
    config, table = setup("acl intranet dstdomain .corp\nacl inside dst 10.0.0.0/8\n"
                          "cache_peer a parent 3128 0\ncache_peer b parent 3129 0\ncache_peer c parent 3130 0\n"
                          "cache_peer_access a deny intranet\ncache_peer_access c allow inside\n")
    # c's ACL would need a DNS lookup: in a fast check it does not match, so c is not used
    assert select(config, table, url="http://wiki.corp/") == [("b", FIRSTUP_PARENT), (None, HIER_DIRECT)]
    assert select(config, table) == [("a", FIRSTUP_PARENT), ("b", ANY_OLD_PARENT), (None, HIER_DIRECT)]


def test_max_conn_keeps_a_busy_peer_out_unless_a_standby_connection_waits():
    config, table = setup("cache_peer a parent 3128 0 max-conn=2 standby=1\ncache_peer b parent 3129 0\n")
    table.state(config.cache_peer[0]).conn_open = 2
    assert select(config, table)[0] == ("b", FIRSTUP_PARENT)
    table.state(config.cache_peer[0]).standby_idle = 1
    assert select(config, table)[0] == ("a", FIRSTUP_PARENT)


def test_siblings_are_not_for_reloads_revalidations_or_loops():
    config, table = setup("cache_peer s sibling 3128 3130\nicp_port 3131\n")
    selector = PeerSelector(table, config, facts(), NOW)
    sibling = config.cache_peer[0]
    assert selector.allowed_to_use(sibling)
    for flag in ("no_cache", "refresh", "need_validation", "loop_detected"):
        assert not PeerSelector(table, config, facts(**{flag: True}), NOW).allowed_to_use(sibling)


# ------------------------------------------------------------ the methods that pick one parent

def test_round_robin_follows_squids_order():
    """Squid's counters start at 1 for the first peer and 0 for the others (its first
    reset runs while the first cache_peer line is read); ties go to the later peer."""
    config, table = setup("cache_peer a parent 3128 0 round-robin\ncache_peer b parent 3129 0 round-robin\n"
                          "cache_peer c parent 3130 0 round-robin\n")
    picks = [select(config, table)[0][0] for _ in range(8)]
    assert picks == ["c", "b", "c", "b", "a", "c", "b", "a"]
    assert {code for _, code in [select(config, table)[0]]} == {ROUNDROBIN_PARENT}
    again = PeerTable(config.cache_peer, NOW, first=False)      # after a reconfigure: all at 0
    assert {again.state(p).rr_count for p in config.cache_peer} == {0}


def test_round_robin_weights_and_the_five_minute_reset():
    config, table = setup("cache_peer a parent 3128 0 round-robin weight=2\ncache_peer b parent 3129 0 round-robin\n")
    picks = [select(config, table)[0][0] for _ in range(9)]
    assert picks == ["b", "a", "b", "a", "a", "b", "a", "a", "b"]
    select(config, table, now=NOW + 299)
    assert [table.state(p).rr_count for p in config.cache_peer] == [7, 4]
    select(config, table, now=NOW + 300)        # reset to 1 first, then one more pick
    assert sorted(table.state(p).rr_count for p in config.cache_peer) == [1, 2]


def test_weighted_round_robin_favours_the_faster_parent_and_logs_roundrobin():
    config, table = setup("cache_peer a parent 3128 0 weighted-round-robin\n"
                          "cache_peer b parent 3129 0 weighted-round-robin\n")
    table.state(config.cache_peer[0]).rtt = 10
    table.state(config.cache_peer[1]).rtt = 40
    picks = [select(config, table)[0] for _ in range(50)]
    assert {code for _, code in picks} == {ROUNDROBIN_PARENT}        # Squid 5.7 has no WEIGHTED_ code
    assert [p for p, _ in picks].count("a") == 40


def test_carp_skips_a_dead_member_and_moves_only_its_share():
    lines = "".join(f"cache_peer 127.0.0.1 parent {3128 + i} 0 carp name=n{i}\n" for i in range(3))
    config, table = setup(lines)
    urls = [f"http://www.example.com/object/{i}" for i in range(600)]
    before = {u: select(config, table, url=u)[0] for u in urls}
    assert {code for _, code in before.values()} == {CARP}
    assert all(200 - 60 < list(p for p, _ in before.values()).count(f"n{i}") < 200 + 60 for i in range(3))
    table.state(config.cache_peer[1]).tcp_up = 0
    after = {u: select(config, table, url=u)[0] for u in urls}
    moved = [u for u in urls if after[u] != before[u]]
    assert moved and all(before[u][0] == "n1" for u in moved)
    assert all(after[u][0] != "n1" for u in urls)
    table.state(config.cache_peer[1]).tcp_up = 10
    assert {u: select(config, table, url=u)[0] for u in urls} == before


def test_sourcehash_and_userhash():
    config, table = setup("cache_peer a parent 3128 0 sourcehash\ncache_peer b parent 3129 0 sourcehash\n")
    by_client = {select(config, table, client=f"10.0.{i // 250}.{i % 250}")[0] for i in range(200)}
    assert {code for _, code in by_client} == {SOURCEHASH_PARENT} and len(by_client) == 2
    assert len({select(config, table, client="10.9.9.9", url=f"http://x.test/{i}")[0] for i in range(20)}) == 1
    config, table = setup("cache_peer a parent 3128 0 userhash\ncache_peer b parent 3129 0 userhash\n")
    assert select(config, table)[0] == ("a", FIRSTUP_PARENT)          # no user name: next method
    by_user = {select(config, table, user=f"user{i}")[0] for i in range(50)}
    assert {code for _, code in by_user} == {USERHASH_PARENT} and len(by_user) == 2


# ------------------------------------------------------------ ICP

ICP_CONF = ("icp_port 3131\ncache_peer s1 sibling 3128 3130\ncache_peer s2 sibling 3129 3130\n"
            "cache_peer p parent 3140 3141 weight=2 basetime=5\ncache_peer q parent 3142 3143\n"
            "cache_peer quiet parent 3150 0\n")


def start_ping(config, table, now=NOW, **kw):
    selector = PeerSelector(table, config, facts(**kw), now)
    ping = selector.start()
    assert isinstance(ping, Ping)
    return selector, ping


def test_icp_queries_go_to_every_peer_with_an_icp_port():
    config, table = setup(ICP_CONF)
    selector, ping = start_ping(config, table)
    assert [q.peer.name for q in ping.queries] == ["s1", "s2", "p", "q"]
    assert {q.url for q in ping.queries} == {"http://www.example.com/a"}
    assert len({q.reqnum for q in ping.queries}) == 4
    assert ping.timeout == 0.005                    # twice no measured round trip: the 5 ms minimum


def test_a_sibling_hit_comes_first():
    config, table = setup(ICP_CONF)
    selector, ping = start_ping(config, table)
    s2 = ping.queries[1]
    assert selector.icp_reply(ping.queries[0].peer, "ICP_MISS", ping.queries[0].reqnum, NOW + 0.001) is None
    result = selector.icp_reply(s2.peer, "ICP_HIT", s2.reqnum, NOW + 0.002)
    assert names(result) == [("s2", SIBLING_HIT), ("p", FIRSTUP_PARENT), ("q", ANY_OLD_PARENT),
                             ("quiet", ANY_OLD_PARENT), (None, HIER_DIRECT)]
    assert not result.timed_out


def test_a_parent_hit():
    config, table = setup(ICP_CONF)
    selector, ping = start_ping(config, table)
    q = ping.queries[3]
    result = selector.icp_reply(q.peer, "ICP_HIT", q.reqnum, NOW + 0.001)
    assert (result.destinations[0].peer.name, result.destinations[0].code) == ("q", PARENT_HIT)


def test_first_parent_miss_weighs_weight_and_basetime():
    config, table = setup(ICP_CONF)
    selector, ping = start_ping(config, table)
    replies = {q.peer.name: q for q in ping.queries}
    for name, at in (("s1", 0.001), ("q", 0.010), ("s2", 0.011), ("p", 0.020)):
        result = selector.icp_reply(replies[name].peer, "ICP_MISS", replies[name].reqnum, NOW + at)
    # q: 10 ms / 1; p: (20 - 5) / 2 = 7 ms: p is "first"
    assert names(result) == [
        ("p", FIRST_PARENT_MISS), ("q", ANY_OLD_PARENT), ("quiet", ANY_OLD_PARENT), (None, HIER_DIRECT)]


def test_a_timeout_drops_the_replies_so_far_and_marks_the_log():
    config, table = setup(ICP_CONF)
    selector, ping = start_ping(config, table)
    q = ping.queries[2]
    assert selector.icp_reply(q.peer, "ICP_MISS", q.reqnum, NOW + 0.001) is None
    result = selector.ping_timeout()
    assert result.timed_out
    assert names(result) == [
        ("p", FIRSTUP_PARENT), ("q", ANY_OLD_PARENT), ("quiet", ANY_OLD_PARENT), (None, HIER_DIRECT)]
    assert selector.ping_timeout() is None


def test_denied_and_unknown_replies_do_not_count():
    config, table = setup(ICP_CONF)
    selector, ping = start_ping(config, table)
    for q in ping.queries:
        assert selector.icp_reply(q.peer, "ICP_DENIED", q.reqnum, NOW + 0.001) is None
    assert selector.icp_reply(ping.queries[0].peer, "ICP_MISS", 999999, NOW + 0.001) is None
    for q in ping.queries[:3]:
        assert selector.icp_reply(q.peer, "ICP_MISS_NOFETCH", q.reqnum, NOW + 0.001) is None
    assert selector.icp_reply(ping.queries[3].peer, "ICP_MISS", ping.queries[3].reqnum, NOW + 0.002) is not None


def test_no_queries_without_our_icp_port_for_non_hierarchical_requests_or_when_going_direct():
    config, table = setup(ICP_CONF.replace("icp_port 3131\n", ""))
    assert isinstance(PeerSelector(table, config, facts(), NOW).start(), Selected)
    config, table = setup(ICP_CONF)
    assert isinstance(PeerSelector(table, config, facts(method="POST"), NOW).start(), Selected)
    assert isinstance(PeerSelector(table, config, facts(url="x.test:443", method="CONNECT"), NOW).start(), Selected)
    config, table = setup(ICP_CONF + "always_direct allow all\n")
    assert isinstance(PeerSelector(table, config, facts(), NOW).start(), Selected)
    # never_direct: even non-hierarchical requests ask the parents
    config, table = setup(ICP_CONF + "never_direct allow all\n")
    selector, ping = start_ping(config, table, method="POST")
    assert [q.peer.name for q in ping.queries] == ["p", "q"]


def test_the_wait_follows_the_parents_round_trips_within_bounds():
    config, table = setup(ICP_CONF)
    for name, rtt in (("p", 40), ("q", 60), ("s1", 500)):
        table.state(table.find(name)).rtt = rtt
    assert start_ping(config, table)[1].timeout == 0.1          # 2 * (40 + 60) / 2 parents
    table.state(table.find("p")).rtt = 5000
    assert start_ping(config, table)[1].timeout == 2.0          # maximum_icp_query_timeout
    config, table = setup(ICP_CONF + "icp_query_timeout 750\n")
    assert start_ping(config, table)[1].timeout == 0.75


def test_a_silent_icp_peer_is_dead_after_dead_peer_timeout_and_back_when_it_answers():
    config, table = setup(ICP_CONF)
    p = table.find("p")
    state = table.state(p)
    start_ping(config, table)                       # every peer queried at NOW; p never answers
    for name in ("s1", "s2", "q"):
        table.icp_reply_from(table.find(name), NOW + 1, 3)
    assert state.up(NOW + 10, 10)
    assert not state.up(NOW + 11, 10)
    selector, ping = start_ping(config, table, now=NOW + 11)
    assert selector.lines == ["Detected DEAD Parent: p"]
    assert "p" in [q.peer.name for q in ping.queries]       # dead peers are still queried
    assert selector.expected == 3                   # ... but no reply is expected of them
    table.icp_reply_from(p, NOW + 12, 8)
    assert state.up(NOW + 12, 10) and state.rtt == 8
    assert table.find("quiet") is not None and table.state(table.find("quiet")).up(NOW + 100, 10)


# ------------------------------------------------------------ health

def test_a_peer_is_down_until_a_connection_succeeds_then_dies_after_its_failure_budget():
    config, table = setup("cache_peer p parent 3128 0 connect-fail-limit=3\n", up=False)
    p = config.cache_peer[0]
    state = table.state(p)
    assert not state.up(NOW, 10) and state.probe_wanted
    assert table.probes_due(NOW) == [p]
    assert table.probes_due(NOW) == []              # one probe at a time
    assert table.probe_done(p, True, NOW + 0.1) == []
    assert state.up(NOW, 10) and state.tcp_up == 3
    assert table.connect_failed(p, NOW) == ["TCP connection to p/3128 failed"]
    assert table.connect_failed(p, NOW) == ["TCP connection to p/3128 failed"]
    assert table.connect_failed(p, NOW) == ["TCP connection to p/3128 failed", "Detected DEAD Parent: p"]
    assert not state.up(NOW, 10)
    assert table.connect_failed(p, NOW) == ["TCP connection to p/3128 failed"]      # no second DEAD line


def test_probes_at_most_once_a_second_and_a_revival_resets_round_robin():
    config, table = setup("cache_peer p parent 3128 0 round-robin\ncache_peer q parent 3129 0 round-robin\n")
    p = config.cache_peer[0]
    for _ in range(10):
        table.connect_failed(p, NOW)
    table.state(config.cache_peer[1]).rr_count = 40
    assert not table.state(p).up(NOW, 10)
    assert table.probes_due(NOW) == [p]
    assert table.probe_done(p, False, NOW) == []                        # a failed probe is quiet
    table.state(p).up(NOW, 10)
    assert table.probes_due(NOW) == []                                  # same second
    assert table.probes_due(NOW + 1) == [p]
    assert table.probe_done(p, True, NOW + 1) == ["Detected REVIVED Parent: p"]
    assert {table.state(x).rr_count for x in config.cache_peer} == {1}


def test_a_probe_asked_for_while_one_runs_follows_it():
    config, table = setup("cache_peer p parent 3128 0\n", up=False)
    p = config.cache_peer[0]
    state = table.state(p)
    state.up(NOW, 10)
    assert table.probes_due(NOW) == [p]
    state.up(NOW, 10)
    assert table.probes_due(NOW + 1) == []          # still running
    table.probe_done(p, False, NOW + 2)
    assert table.probes_due(NOW + 2) == [p]


def test_a_peer_without_addresses_is_down_and_configuring_is_logged_once():
    config = loader.load("/x.conf", text="cache_peer p parent 3128 3130\n")
    table = PeerTable(config.cache_peer, NOW)
    p = config.cache_peer[0]
    table.connect_succeeded(p, NOW)
    assert not table.state(p).up(NOW, 10)
    assert table.resolved(p, ["192.0.2.1"]) == ["Configuring Parent p/3128/3130"]
    assert table.resolved(p, ["192.0.2.2"]) == []
    assert table.state(p).up(NOW, 10)
    assert table.peer_at("192.0.2.2", 3130) is p and table.peer_at("192.0.2.2", 3128) is None


def test_rtt_average_is_squids():
    assert int_average(0, 10, 1, 50) == 10
    assert int_average(10, 20, 2, 50) == 15
    assert int_average(100, 0, 80, 50) == 98
    state = PeerHealth(loader.load("/x.conf", text="cache_peer p parent 3128 3130\n").cache_peer[0])
    state.reply_received(NOW, 20000)                # outside 1..10000 ms: ignored
    assert state.rtt == 0 and state.pings_acked == 1


def test_the_other_parents_are_worked_out_when_a_retry_needs_them():
    config, table = setup("cache_peer a parent 3128 0 carp\ncache_peer b parent 3129 0\ncache_peer c parent 3130 0\n")
    result = PeerSelector(table, config, facts(), NOW).start()
    first = result.next(NOW)
    assert (first.peer.name, first.code) == ("a", CARP)
    table.state(config.cache_peer[1]).tcp_up = 0        # b died while a was tried
    second = result.next(NOW + 1)
    assert (second.peer.name, second.code) == ("c", ANY_OLD_PARENT)
    assert result.next(NOW + 1).direct and result.next(NOW + 1) is None
