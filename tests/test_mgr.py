"""The cache manager and /metrics, without sockets: manager URLs and passwords,
counting, pages laid out as Squid 5 lays them out, Prometheus output, and the
exchange's transcripts for requests to the proxy itself."""

from __future__ import annotations

import base64
import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from squidpy.acl.checklist import Checklist
from squidpy.config.loader import load
from squidpy.config.secrets import MASK, configuration_text, redact
from squidpy.exchange import State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.http.url import BadTarget, addressed_to_proxy, parse_target
from squidpy.log.entry import LogEntry
from squidpy.mgr import pages, prometheus
from squidpy.mgr.actions import ACTIONS
from squidpy.mgr.request import (
    CacheMgrPasswd, ManagerError, ManagerRequest, is_metrics, manager_request, password_ok, protection,
)
from squidpy.mgr.stats import BOUNDS, HIT, MISS, TUNNEL, Counters, Stats, quantile, status_class
from tests.exchange_kit import NOW, FakeShared, make, sent

T0 = 1_800_000_000.0


def target(url: str, method: str = "GET"):
    return parse_target(method, url)


def basic(user: str, password: str) -> list:
    return [(b"Authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))]


# ---------------------------------------------------------------- manager URLs
def test_cache_object_urls_are_for_the_proxy_itself_whatever_host_they_name():
    t = target("cache_object://WHATEVER.example:99/counters")
    assert (t.kind, t.scheme, t.host, t.port, t.path) == ("internal", "cache_object", "whatever.example", 99,
                                                          "/counters")
    assert t.url == "cache_object://whatever.example:99/counters"
    t = target("cache_object://localhost")
    assert t.url == "cache_object://localhost/" and t.port == 3128
    # squidclient -u: Squid accepts a user in the URL and drops it (the password there is not used)
    assert target("cache_object://u:pw@localhost/info").url == "cache_object://localhost/info"
    with pytest.raises(BadTarget):
        target("http://u:pw@example.com/")          # other URLs still refuse a user
    with pytest.raises(BadTarget):
        target("cache_obj_ect://x/")                 # only Squid's own scheme may hold a '_'


def test_actions_passwords_and_parameters_as_squid_reads_them():
    r = manager_request(target("cache_object://h/"), [], [])
    assert r.action == "menu"                        # cache_object: an empty action is the menu
    r = manager_request(target("http://p:3128/squid-internal-mgr/"), [], [])
    assert r is None                                 # an absolute URL is not internal by itself ...
    r = manager_request(target("/squid-internal-mgr/"), [], [])
    assert r is None                                 # ... nor an origin-form one before internal_target
    from squidpy.http.url import internal_target
    r = manager_request(internal_target("/squid-internal-mgr/", "p", 3128), [], [])
    assert r.action == "index"                       # http: an empty action is the index
    r = manager_request(target("cache_object://h/5min@s3cret?pattern=x&Format=json"), [], [])
    assert (r.action, r.password, r.params) == ("5min", "s3cret", {"pattern": "x", "format": "json"})
    with pytest.raises(ManagerError):                # '@' is no password separator in http URLs: 404
        manager_request(internal_target("/squid-internal-mgr/5min@s3cret", "p", 3128), [], [])
    with pytest.raises(ManagerError):
        manager_request(target("cache_object://h/no_such_action"), [], [])
    # a Basic Authorization field wins over the URL's password
    r = manager_request(target("cache_object://h/5min@wrong"), basic("admin", "right"), [])
    assert (r.user, r.password) == ("admin", "right")
    r = manager_request(target("cache_object://h/5min@pw"), [(b"Authorization", b"Basic !!!")], [])
    assert r.password == "pw"                        # an unreadable field is ignored


PASSWORDS = [CacheMgrPasswd("s3cret", ("5min", "config")), CacheMgrPasswd("none", ("info",)),
             CacheMgrPasswd("disable", ("objects",)), CacheMgrPasswd("other", ("5min", "all"))]


def test_cachemgr_passwd_as_squid_applies_it():
    assert protection("counters", []) == "public"
    assert protection("config", []) == "hidden"      # config needs a password line of its own
    assert protection("5min", PASSWORDS) == "protected"
    assert protection("info", PASSWORDS) == "public"
    assert protection("objects", PASSWORDS) == "disabled"
    assert protection("counters", PASSWORDS) == "protected"      # via 'all' on the last line
    with pytest.raises(ManagerError):
        manager_request(target("cache_object://h/config"), [], [])          # hidden: 404
    with pytest.raises(ManagerError):
        manager_request(target("cache_object://h/objects"), [], PASSWORDS)  # disabled: 404
    ok = lambda url, headers=(): password_ok(manager_request(target(url), list(headers), PASSWORDS),
                                             PASSWORDS)
    assert ok("cache_object://h/5min@s3cret")
    assert not ok("cache_object://h/5min@other")     # the first line naming the action decides
    assert not ok("cache_object://h/5min")
    assert ok("cache_object://h/5min", basic("x", "s3cret"))
    assert not ok("cache_object://h/5min@s3cret", basic("x", ""))     # the field's empty password wins
    assert ok("cache_object://h/info")
    assert ok("cache_object://h/counters@other") and not ok("cache_object://h/counters")


def test_menu_lists_actions_with_their_protection_in_squids_layout():
    text = pages.menu(PASSWORDS)
    lines = text.splitlines()
    assert len(lines) == len(ACTIONS)
    assert lines[0] == " index                 \tCache Manager Interface         \tprotected"
    assert " info                  \tGeneral Runtime Information     \tpublic" in lines
    assert any(re.fullmatch(r" objects +\tAll Cache Objects +\tdisabled", line) for line in lines)


# ---------------------------------------------------------------- the proxy's own URLs
def test_own_urls_are_recognised_by_name_and_port_or_by_the_address_they_came_to():
    names = ("proxy.lan", "alias.lan")
    own = lambda url, local=("10.0.0.1", 3128): addressed_to_proxy(target(url), names, 3128, *local)
    assert own("http://PROXY.lan:3128/squid-internal-mgr/info")
    assert own("http://alias.lan:3128/squid-internal-static/icons/x")
    assert not own("http://proxy.lan:3129/squid-internal-mgr/info")    # another port: not this proxy
    assert not own("http://proxy.lan:3128/index.html")                 # Squid: only /squid-internal-*
    assert not own("http://other.lan:3128/squid-internal-mgr/info")
    assert own("http://10.0.0.1:3128/squid-internal-mgr/info")         # the address it arrived on
    assert own("http://10.0.0.1:3128/proxy.pac")
    assert not own("http://10.0.0.1:80/squid-internal-mgr/info")
    assert not own("https://proxy.lan:3128/squid-internal-mgr/info")
    # a name known (hosts_file, the DNS cache) to have the address it arrived on
    known = {"self.lan": ["10.0.0.9", "10.0.0.1"], "other.lan": ["10.0.0.2"]}.get
    by_name = lambda url: addressed_to_proxy(target(url), names, 3128, "10.0.0.1", 3128, known)
    assert by_name("http://self.lan:3128/index.html")
    assert not by_name("http://self.lan:3129/index.html")              # another port
    assert not by_name("http://other.lan:3128/index.html")
    assert not by_name("http://unknown.lan:3128/index.html")           # not looked up: forwarded


def checklist(url: str, to_proxy: bool) -> Checklist:
    t = target(url)
    ch = Checklist(url=t.url, scheme=t.scheme, host=t.host, port=t.port, path=t.path)
    ch.to_proxy = to_proxy
    return ch


def test_the_manager_acl_matches_squids_urls_and_our_own_metrics_only():
    manager = load(text="").acls.get("manager")
    assert manager.type_name == "url_regex"
    assert manager.match(checklist("cache_object://localhost/info", True))
    assert manager.match(checklist("http://x:3128/squid-internal-mgr/info", True))
    assert manager.match(checklist("http://elsewhere/squid-internal-mgr/info", False))   # as in Squid
    assert manager.match(checklist("http://proxy:3128/metrics", True))
    assert manager.match(checklist("http://proxy:3128/metrics?x=1", True))
    assert not manager.match(checklist("http://grafana.example/metrics", False))  # someone else's
    assert not manager.match(checklist("http://proxy:3128/metrics/x", True))
    from squidpy.http.url import Target
    assert is_metrics(Target("internal", "http", "p", 3128, "/metrics?x", False))
    assert not is_metrics(target("http://p:3128/metrics"))         # forwarded, unless it names the proxy


# ---------------------------------------------------------------- counting
def entry(result="TCP_MISS", status=200, method="GET", start=T0, elapsed=0.02, sent_body=1000, server=True,
          client="10.0.0.7", error=None, denied=None, up_in=1200, up_out=300) -> LogEntry:
    e = LogEntry(start)
    e.end = start + elapsed
    e.result, e.status, e.method, e.client_ip = result, status, method, client
    e.request_header_size, e.reply_header_size, e.reply_body_size = 100, 200, sent_body
    e.error, e.denied_by = error, denied
    if server:
        e.server_ip, e.upstream_bytes_in, e.upstream_bytes_out = "192.0.2.1", up_in, up_out
    return e


def test_record_counts_what_squid_counts():
    s = Stats(T0)
    s.record(entry())
    s.record(entry("TCP_MEM_HIT", server=False, elapsed=0.0005))
    s.record(entry("TCP_HIT", server=False, elapsed=0.003))
    s.record(entry("TCP_REFRESH_UNMODIFIED", elapsed=0.03))
    s.record(entry("TCP_TUNNEL", method="CONNECT", up_in=5000, up_out=700, elapsed=2.0))
    s.record(entry("TCP_DENIED", status=403, server=False, error="ERR_ACCESS_DENIED",
                   denied=("squid.conf:7", "http_access deny !Safe_ports"), client="10.0.0.8"))
    s.record(entry("TCP_MISS_ABORTED", status=200))
    c = s.snapshot()
    assert (c.requests, c.hits, c.mem_hits, c.disk_hits, c.errors, c.aborted) == (7, 3, 1, 1, 1, 1)
    assert c.bytes_out == 7 * 1200 and c.hit_bytes_out == 3 * 1200 and c.bytes_in == 700
    assert (c.server_requests, c.server_other_requests) == (4, 1)
    assert c.server_bytes_in == 1200 * 3 + 5000 and c.server_other_bytes_in == 5000
    assert c.swap_ins == 1
    assert c.denied == {("squid.conf:7", "http_access deny !Safe_ports"): 1}
    assert c.by[("TCP_MISS", 200, "GET")] == 1 and c.by[("TCP_TUNNEL", 200, "CONNECT")] == 1
    assert sum(c.svc[HIT]) == 2 and sum(c.svc[MISS]) == 2 and sum(c.svc[TUNNEL]) == 1   # an aborted miss too
    assert c.svc[HIT][0] == 1                        # 0.5 ms: the first bucket (<= 1 ms)
    assert sum(c.all_svc()) == 7
    assert set(s.clients()) == {"10.0.0.7", "10.0.0.8"}
    assert s.clients()["10.0.0.7"] == {"TCP_MISS": 1, "TCP_MEM_HIT": 1, "TCP_HIT": 1, "TCP_REFRESH_UNMODIFIED": 1,
                                       "TCP_TUNNEL": 1, "TCP_MISS_ABORTED": 1}
    assert s.requests() == 7


def test_counters_travel_as_json_add_up_and_subtract():
    s = Stats(T0)
    for _ in range(3):
        s.record(entry())
    s.record(entry(denied=("f:1", "http_access deny all"), error="ERR_ACCESS_DENIED"))
    c = s.snapshot()
    back = Counters.from_json(json.loads(json.dumps(c.to_json())))
    assert back.to_json() == c.to_json()
    total = c.copy().add(back)
    assert total.requests == 8 and total.denied == {("f:1", "http_access deny all"): 2}
    assert sum(total.all_svc()) == 8
    delta = total.minus(c)
    assert delta.requests == 4 and delta.by == {("TCP_MISS", 200, "GET"): 4}


def test_counters_declare_every_scalar_for_the_type_checker():
    """Counters sets SCALARS by name; its annotations are how mypy knows them: the two
    lists must name the same counters."""
    from squidpy.mgr.stats import SCALARS
    assert set(Counters.__annotations__) == set(SCALARS)


def test_minute_copies_give_the_5_and_60_minute_windows():
    s = Stats(T0)
    s.record(entry())
    for minute in range(1, 8):
        s.record(entry())
        s.tick(T0 + 60 * minute)
    at, old = s.since(300, T0 + 60 * 7 + 10)
    assert at == T0 + 120 and old.requests == 3       # the newest copy at least 5 minutes old
    at, old = s.since(3600, T0 + 60 * 7)
    assert at == T0 and old.requests == 0              # not an hour yet: since the start
    assert s.recorded(300, T0) is not None and s.recorded(900, T0) is None
    for minute in range(8, 61):
        s.tick(T0 + 60 * minute)
    assert s.recorded(3600, T0) is not None and s.recorded(28800, T0) is None
    assert len(s.hours) == 2                            # one copy an hour


def test_histogram_quantiles_interpolate_like_prometheus():
    counts = [0] * (len(BOUNDS) + 1)
    assert quantile(counts, 0.5) == 0.0
    counts[BOUNDS.index(0.1)] = 10                      # ten answers between 50 and 100 ms
    assert quantile(counts, 0.5) == pytest.approx(0.075)
    counts[-1] = 100                                    # mostly slower than the last bound
    assert quantile(counts, 0.5) == BOUNDS[-1]
    assert [status_class(s) for s in (0, 200, 304, 404, 503, 999)] == ["000", "2xx", "3xx", "4xx", "5xx", "000"]


def test_dns_lookups_are_counted_by_outcome():
    s = Stats(T0)
    s.record_dns(0.0, "hit")
    s.record_dns(0.0, "negative_hit")
    s.record_dns(0.02, "miss")
    s.record_fqdn("miss")
    s.record_fqdn("hit")
    c = s.snapshot()
    assert (c.dns_requests, c.dns_hits, c.dns_negative_hits, c.dns_misses) == (3, 1, 1, 1)
    assert sum(c.dns_svc) == 1 and s.fqdn == {"requests": 2, "hits": 1, "negative_hits": 0, "misses": 1}


# ---------------------------------------------------------------- pages
def report(stats: Stats, kid=None, now=T0 + 90, **gauges) -> dict:
    """A process's report as squidpy.proxy.reports builds it, from a Stats."""
    r = prometheus.empty_report()
    r.update(kid=kid, pid=100 + (kid or 0), version="9.9", started=stats.started, now=now,
             last_tick=stats.minutes[0][0], counters=stats.snapshot().to_json())
    r["since"] = {str(s): [stats.since(s, now)[0], stats.since(s, now)[1].to_json()] for s in (300, 3600)}
    r["recorded"] = {str(s): (lambda f: None if f is None else [f[0], f[1].to_json()])(stats.recorded(s, now))
                     for s in (300, 900, 3600, 28800, 86400, 259200)}
    r["gauges"].update(gauges)
    return r


def busy_stats() -> Stats:
    s = Stats(T0)
    for i in range(8):
        s.record(entry("TCP_MEM_HIT" if i % 2 else "TCP_MISS", server=not i % 2, client=f"10.0.0.{i % 3}"))
    return s


def render(action, reports, **params):
    body, ctype = pages.render(ManagerRequest(action, params=params), reports, [])
    return body.decode()


def test_info_keeps_squids_labels_where_scripts_parse_them():
    r = report(busy_stats(), clients=3, mem_entries=4, mem_bytes=4096, mem_limit=1 << 20, max_fd=1024, fds_open=10)
    text = render("info", [r])
    assert text.startswith("Squid Object Cache: Version 9.9\n")
    assert "\tNumber of clients accessing cache:\t3\n" in text
    assert "\tNumber of HTTP requests received:\t8\n" in text
    assert "\tAverage HTTP requests per minute since start:\t5.3\n" in text     # 8 in 90 seconds
    assert "\tHits as % of all requests:\t5min: 50.0%, 60min: 50.0%\n" in text
    assert "\tMemory hits as % of hit requests:\t5min: 100.0%, 60min: 100.0%\n" in text
    assert re.search(r"\tHits as % of bytes sent:\t5min: -?\d+\.\d%, 60min: -?\d+\.\d%\n", text)
    assert "\tStorage Mem size:\t4 KB\n" in text
    assert re.search(r"^\tCache Misses: +0\.0\d{4} +0\.0\d{4}$", text, re.M)
    assert "\tMaximum number of file descriptors:   1024\n" in text
    assert "\t     4 Hot Object Cache Items\n" in text
    for label in ("Connection information for squid:", "Cache information for squid:",
                  "Median Service Times (seconds)  5 min    60 min:", "Resource usage for squid:",
                  "File descriptor usage for squid:", "Internal Data Structures:"):
        assert label + "\n" in text


def test_counters_and_intervals_are_name_value_lines():
    s = busy_stats()
    text = render("counters", [report(s)])
    values = dict(line.split(" = ", 1) for line in text.splitlines())
    assert values["client_http.requests"] == "8" and values["client_http.hits"] == "4"
    assert values["client_http.kbytes_out"] == str(8 * 1200 // 1024)
    assert values["server.all.requests"] == "4" and values["icp.pkts_sent"] == "0"
    assert values["sample_time"].startswith(f"{int(T0)}.0 (")
    text = render("5min", [report(s)])
    values = dict(line.split(" = ", 1) for line in text.splitlines())
    assert values["client_http.requests"] == f"{8 / 90:f}/sec"
    assert values["client_http.hit_median_svc_time"].endswith(" seconds")
    assert list(values)[:3] == ["sample_start_time", "sample_end_time", "client_http.requests"]


def test_workers_pages_add_the_kids_up_or_show_each_kid_as_squid_does():
    kids = [report(busy_stats(), kid=1, clients=3, disk_path="/c", disk_entries=50, disk_bytes=1 << 20,
                   disk_limit=1 << 30, mem_entries=2),
            report(busy_stats(), kid=2, clients=2, disk_path="/c", disk_entries=50, disk_bytes=1 << 20,
                   disk_limit=1 << 30, mem_entries=3)]
    text = render("info", kids)
    assert "\tNumber of HTTP requests received:\t16\n" in text
    assert "\tNumber of clients accessing cache:\t5\n" in text
    assert "\t    50 on-disk objects\n" in text              # the shared cache_dir counted once
    assert "\t     5 Hot Object Cache Items\n" in text       # each kid's memory tier
    assert "client_http.requests = 16\n" in render("counters", kids)
    kids[0]["clients"] = [["10.0.0.1", "", 1, 3, {"TCP_MISS": 3}]]
    kids[1]["clients"] = [["10.0.0.2", "h2", 0, 1, {"TCP_MEM_HIT": 1}]]
    text = render("client_list", kids)
    assert text.startswith("by kid1 {\nCache Clients:\nAddress: 10.0.0.1\n")
    assert "} by kid1\n\nby kid2 {\nCache Clients:\nAddress: 10.0.0.2\nName:    h2\n" in text
    assert text.endswith("HTTP: 1 Requests, 1 Hits (100%)\n} by kid2\n\n")
    assert not render("client_list", [kids[0] | {"kid": None}]).startswith("by kid")
    info = json.loads(pages.render(ManagerRequest("info", params={"format": "json"}), kids, [])[0])
    assert (info["requests"], info["hits"], info["kids"], info["disk_entries"]) == (16, 8, 2, 50)


def test_per_kid_pages_in_squids_layout():
    r = report(busy_stats())
    r["ipcache"] = {"stats": {"requests": 5, "hits": 3, "negative_hits": 1, "numeric_hits": 0, "misses": 1},
                    "entries": [["o.test", False, False, 3, 297, ["192.0.2.1", "2001:db8::1"]],
                                ["nx.test", False, True, 1, 59, []]]}
    text = render("ipcache", [r])
    assert "IPcache Requests: 5\nIPcache Hits:            3\n" in text
    assert text.endswith(             # Squid's " %-32.32s %c%c %6d %6d %2d(%2d)", then "%s %45.45s-%3s\n"
        " Hostname                        Flg lstref    TTL  N(b)\n"
        " " + "o.test".ljust(32) + "    " + "3".rjust(6) + " " + "297".rjust(6) + "  2( 0)"
        + " " + "192.0.2.1".rjust(45) + "-OK \n"
        + " " * 57 + " " + "2001:db8::1".rjust(45) + "-OK \n"
        + " " + "nx.test".ljust(32) + "  N " + "1".rjust(6) + " " + "59".rjust(6) + "  0( 0)\n")
    r["fqdncache"] = {"stats": {"requests": 1, "hits": 1, "negative_hits": 0, "misses": 0},
                      "entries": [["127.0.0.1", True, False, -1, ["localhost"]]]}
    assert "127.0.0.1" + " " * 38 + " H -001   1 localhost\n" in render("fqdncache", [r])
    r["pconn"] = {"uses": {"1": 4, "3": 1}, "idle": [["192.0.2.1", 80, "o.test"], ["2001:db8::1", 8080, "v6.test"]]}
    assert render("pconn", [r]) == ("\n Pool 0 Stats\nserver-peers persistent connection counts:\n\n"
                                    "\t Requests\t Connection Count\n\t --------\t ----------------\n"
                                    "\t1\t4\n\t3\t1\n\n Pool 0 Hash Table\n\t item 0:\t192.0.2.1:80/o.test\n"
                                    "\t item 1:\t[2001:db8::1]:8080/v6.test\n")
    r["fds"] = [[7, "Socket", 118, 135, 0, "127.0.0.1:4000", "Reading next request"]]
    assert render("filedescriptors", [r]).splitlines()[-1] == \
        "   7 Socket  118     135        0  127.0.0.1:4000        Reading next request"
    text = render("utilization", [r])
    assert text.startswith("Cache Utilisation:\n\nLast 5 minutes:\n(no values recorded yet)\n")
    assert "Totals since cache startup:\nsample_time = " in text


def test_per_kid_percentages_are_rounded_as_squids_int_percent():
    """Squid's Math::intPercent rounds (2 hits of 16 requests: 13%, 14 misses: 88%); the
    page Squid 5.7 printed for that client, side by side on this machine."""
    r = report(busy_stats())
    r["clients"] = [["127.0.0.1", "localhost", 1, 16, {"TCP_MISS": 14, "TCP_MEM_HIT": 2}]]
    text = render("client_list", [r])
    assert "        TCP_MISS                  14  88%\n        TCP_MEM_HIT                2  13%\n" in text
    assert text.endswith("HTTP: 16 Requests, 2 Hits ( 13%)\n")
    r["gauges"].update(disk_path="/c", disk_bytes=0, disk_limit=1 << 30, disk_entries=0,
                       disk_fs=[30444388, 264212084, 630564, 16777216])
    text = render("storedir", [r])
    assert "Filesystem Space in use: 30444388/264212084 KB (12%)\n" in text      # 11.52%
    assert "Filesystem Inodes in use: 630564/16777216 (4%)\n" in text           # 3.76%


def test_objects_blocks_and_the_plain_list():
    r = report(busy_stats())
    r["objects"] = [["http://o.test/a", 200, 1000, "memory", T0, T0, -1, T0 - 99, 180],
                    ["http://o.test/b", 404, 10, "disk", T0, T0, T0 + 60, -1, 0]]
    text = render("objects", [r])
    assert text.count("KEY ") == 2 and "\tGET http://o.test/a\n" in text and "\tobject_sz: 1180\n" in text
    assert "\tSTORE_OK      IN_MEMORY     SWAPOUT_NONE PING_NONE   \n" in text
    assert f"\tLV:{int(T0)} LU:{int(T0)} LM:{int(T0) - 99} EX:-1       \n" in text
    assert render("objects", [r], pattern="/b") .count("KEY ") == 1
    assert render("objects", [r, r | {"kid": 2}], format="lines") == \
        "http://o.test/a 200 1000 memory\nhttp://o.test/b 404 10 disk\n"


def test_delay_page_in_squids_layout():
    r = report(busy_stats())
    r["delay"] = {"pools": [{"number": 1, "class": 3, "members": [
        {"label": "Aggregate", "layout": "single", "restore": 32000, "max": 32000, "buckets": [16000]},
        {"label": "Network", "layout": "vector", "restore": None, "max": None, "buckets": []},
        {"label": "Individual", "layout": "hosts", "restore": 600, "max": 8000,
         "buckets": [[0, [[7, 4000], [9, 123]]]]}]}]}
    assert render("delay", [r]) == (
        "Delay pools configured: 1\n\nPool: 1\n\tClass: 3\n\n"
        "\tAggregate:\n\t\tMax: 32000\n\t\tRestore: 32000\n\t\tCurrent: 16000\n\n"
        "\tNetwork:\n\t\tDisabled.\n\n\n\n"
        "\tIndividual:\n\t\tMax: 8000\n\t\tRestore: 600\n\t\tCurrent [Network 0]: 7:4000 9:123\n\n\n")


def test_config_page_hides_secrets():
    assert redact("cachemgr_passwd", "s3cret info menu") == f"cachemgr_passwd {MASK} info menu"
    assert redact("cachemgr_passwd", "none info") == "cachemgr_passwd none info"
    assert redact("cache_peer", "p.lan parent 3128 0 login=bob:hunter2") == \
        f"cache_peer p.lan parent 3128 0 login=bob:{MASK}"
    assert redact("auth_param", "basic program /usr/lib/squid/basic_ldap_auth -b dc=x -D cn=p -w hunter2 -h ldap") \
        == f"auth_param basic program /usr/lib/squid/basic_ldap_auth -b dc=x -D cn=p -w {MASK} -h ldap"
    assert redact("auth_param", "basic program /usr/lib/squid/basic_ldap_auth -D cn=p -whunter2 -h ldap") \
        == f"auth_param basic program /usr/lib/squid/basic_ldap_auth -D cn=p -w{MASK} -h ldap"
    assert redact("external_acl_type", "g %LOGIN /bin/ext -W /etc/pw") == \
        "external_acl_type g %LOGIN /bin/ext -W /etc/pw"                  # a file that holds it: shown
    assert redact("url_rewrite_program", "/bin/r --password hunter2 http://u:pw@h/") == \
        f"url_rewrite_program /bin/r --password {MASK} http://u:{MASK}@h/"
    config = load(text="acl a src 10.0.0.0/8\nhttp_access allow a\ncachemgr_passwd hunter2 all\n", path="/x.conf")
    text = configuration_text(config)
    assert "hunter2" not in text and f"cachemgr_passwd {MASK} all\n" in text
    assert "acl a src 10.0.0.0/8\nhttp_access allow a\n" in text and "\nhttp_port 3128\n" in text


# ---------------------------------------------------------------- /metrics
def families(reports) -> dict:
    return {f.name: f for f in text_string_to_metric_families(prometheus.render(reports).decode())}


def samples(family, **labels) -> float:
    return sum(s.value for s in family.samples
               if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith(("_created",)))


def test_metrics_add_up_the_kids():
    one, two = busy_stats(), busy_stats()
    two.record(entry("TCP_DENIED", status=403, server=False, error="ERR_ACCESS_DENIED",
                     denied=("squid.conf:3", "http_access deny all")))
    fams = families([report(one, kid=1, mem_entries=2, disk_entries=9, disk_path="/c"),
                     report(two, kid=2, mem_entries=3, disk_entries=9, disk_path="/c")])
    assert samples(fams["squidpy_requests"], result="TCP_MISS", status_class="2xx", method="GET") == 8
    assert samples(fams["squidpy_requests"], status_class="4xx") == 1
    assert samples(fams["squidpy_client_http_hits"]) == 8
    assert samples(fams["squidpy_denied_requests"], line="squid.conf:3") == 1
    duration = fams["squidpy_request_duration_seconds"]
    assert [s.value for s in duration.samples if s.name.endswith("_count") and s.labels["kind"] == "hit"] == [8]
    assert samples(fams["squidpy_cache_objects"], tier="memory") == 5
    assert samples(fams["squidpy_cache_objects"], tier="disk") == 9          # shared: once
    assert samples(fams["squidpy_processes"]) == 2
    assert samples(fams["squidpy_hit_ratio"], window="5min") == pytest.approx(8 / 17)


def test_every_metric_name_is_known_up_front():
    names = prometheus.metric_names()
    assert {"squidpy_requests_total", "squidpy_request_duration_seconds_bucket", "squidpy_hit_ratio",
            "squidpy_cache_bytes", "squidpy_client_connections", "squidpy_dns_pending_lookups",
            "squidpy_helper_queue_length", "squidpy_denied_requests_total",
            "squidpy_delay_pool_bucket_bytes"} <= names


# ---------------------------------------------------------------- the exchange's transcripts
def test_a_cache_object_request_is_answered_by_the_proxy_with_every_kids_figures():
    x = make(b"GET cache_object://localhost/info HTTP/1.0\r\nHost: localhost\r\n\r\n", client_ip="127.0.0.1")
    out = x.handle(ev.RequestStarted)
    assert out == [c.CollectStats("info", ACTIONS["info"].needs, {})]
    assert x.state is State.COLLECTING
    out = x.handle(ev.StatsCollected([report(busy_stats())]))
    reply = sent(out)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Type: text/plain;charset=utf-8\r\n" in reply
    assert b"\r\nExpires: " in reply and b"Squid Object Cache: Version 9.9\n" in reply
    e = out[-2].entry
    assert (e.result, e.status, e.url, e.hierarchy) == ("TCP_MISS", 200, "cache_object://localhost/info", "HIER_NONE")


POLICY = """
acl local src 127.0.0.0/8
http_access allow local manager
http_access deny manager
http_access allow local
http_access deny all
cachemgr_passwd s3cret config
"""


def test_a_manager_password_is_asked_with_401_and_a_realm():
    x = make(b"GET cache_object://localhost/config HTTP/1.0\r\n\r\n", FakeShared(POLICY), client_ip="127.0.0.1")
    out = x.handle(ev.RequestStarted)
    reply = sent(out)
    assert reply.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b'WWW-Authenticate: Basic realm="config"\r\n' in reply
    assert b"X-Squid-Error: ERR_CACHE_MGR_ACCESS_DENIED 0\r\n" in reply
    assert any(isinstance(cmd, c.Report) and "password needed for 'config'" in cmd.message for cmd in out)
    x = make(b"GET cache_object://localhost/config@s3cret HTTP/1.0\r\n\r\n", FakeShared(POLICY),
             client_ip="127.0.0.1")
    assert x.handle(ev.RequestStarted) == [c.CollectStats("config", ACTIONS["config"].needs, {})]


def test_unknown_or_hidden_actions_are_404_invalid_url():
    for url in (b"cache_object://h/nonesuch", b"cache_object://h/config"):
        x = make(b"GET " + url + b" HTTP/1.0\r\n\r\n", client_ip="127.0.0.1")
        out = x.handle(ev.RequestStarted)
        assert sent(out).startswith(b"HTTP/1.1 404 Not Found\r\n") and b"ERR_INVALID_URL" in sent(out)
        assert out[-2].entry.result == "TCP_MISS"


def test_the_manager_acl_guards_cache_object_urls():
    x = make(b"GET cache_object://localhost/info HTTP/1.0\r\n\r\n", FakeShared(POLICY), client_ip="10.0.0.7")
    out = x.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ")
    where, text = out[-2].entry.denied_by
    assert text == "http_access deny manager" and where.endswith(":4")


def test_an_own_url_through_the_proxy_is_answered_once_never_forwarded():
    x = make(b"GET http://proxy.test:3128/squid-internal-mgr/menu HTTP/1.1\r\nHost: proxy.test:3128\r\n\r\n")
    out = x.handle(ev.RequestStarted)
    assert out == [c.CollectStats("menu", ACTIONS["menu"].needs, {})]     # no Connect to ourselves
    x = make(b"GET http://10.0.0.1:3128/proxy.pac HTTP/1.1\r\nHost: 10.0.0.1:3128\r\n\r\n")
    out = x.handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 200 OK\r\n") and b"FindProxyForURL" in sent(out)
    assert not any(isinstance(cmd, c.Connect) for cmd in out)
    x = make(b"GET http://proxy.test:3128/elsewhere HTTP/1.1\r\nHost: proxy.test:3128\r\n\r\n")
    assert isinstance(x.handle(ev.RequestStarted)[0], c.Connect)         # Squid: only /squid-internal-


def test_metrics_for_the_proxy_itself_and_the_metrics_port():
    x = make(b"GET /metrics HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
    out = x.handle(ev.RequestStarted)
    assert out == [c.CollectStats("metrics", prometheus_needs(), {})]
    out = x.handle(ev.StatsCollected([report(busy_stats())]))
    reply = sent(out)
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n" in reply
    assert b"\nsquidpy_requests_total{" in reply
    from squidpy.exchange import ClientInfo, Exchange
    from tests.exchange_kit import request_head
    metrics_client = ClientInfo("10.0.0.7", 4000, "10.0.0.1", 9301, "", metrics_port=True)
    x = Exchange(FakeShared(), metrics_client, request_head(b"GET /metrics HTTP/1.1\r\n\r\n"), NOW)
    assert x.handle(ev.RequestStarted) == [c.CollectStats("metrics", prometheus_needs(), {})]
    assert x.entry.url == "http://proxy.test:9301/metrics"
    for raw in (b"GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n", b"GET /squid-internal-mgr/info HTTP/1.1\r\n\r\n",
                b"CONNECT o.test:443 HTTP/1.1\r\n\r\n"):
        x = Exchange(FakeShared(), metrics_client, request_head(raw), NOW)
        out = x.handle(ev.RequestStarted)
        assert sent(out).startswith(b"HTTP/1.1 404 ") and not any(isinstance(cmd, c.Connect) for cmd in out)


def prometheus_needs():
    from squidpy.mgr.actions import needs_of
    return needs_of("metrics")


def test_a_bounded_client_table_never_loses_the_totals(monkeypatch):
    from squidpy.mgr import stats as stats_module
    monkeypatch.setattr(stats_module, "CLIENT_TABLE_MAX", 4)
    s = Stats(T0)
    for i in range(10):
        s.record(entry(client=f"10.0.0.{i}"))
    assert len(s.table) <= 5 and s.requests() == 10
    assert s.snapshot().by == {("TCP_MISS", 200, "GET"): 10}
    clients = s.clients()
    assert "-" in clients and clients["10.0.0.9"] == {"TCP_MISS": 1}     # the newest kept as they are
    assert s.client_count() == len(clients) - 1
    assert sum(n for results in clients.values() for n in results.values()) == 10
