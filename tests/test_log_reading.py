"""Unit tests: reading log lines back (squid, common, combined), filters, times, and the
report's figures on a crafted log whose answers are worked out by hand."""

from __future__ import annotations

import gzip
import ipaddress
import re

import pytest

from squidpy.log import files as logfiles
from squidpy.log.filters import Selection, parse_status, parse_when
from squidpy.log.html import render_html
from squidpy.log.parse import domain_of, is_hit, parse_common, parse_line, parse_squid
from squidpy.log.report import Report, render_text, sections
from tests.logdata import T0, crafted_lines, write_crafted
from tests.test_logformat import utc  # noqa: F401  (an autouse fixture: TZ=UTC)

# ------------------------------------------------------------ parsing

def test_squid_native_line_from_real_squid():
    r = parse_squid("1795369446.172  14343 127.0.0.1 TCP_TUNNEL/200 11987 CONNECT example.com:443 - "
                    "HIER_DIRECT/93.184.216.34 -")
    assert (r.time, r.elapsed, r.client, r.result, r.status, r.size) == (1795369446.172, 14343, "127.0.0.1", "TCP_TUNNEL", 200, 11987)
    assert (r.method, r.url, r.user, r.hierarchy, r.peer, r.mime) == ("CONNECT", "example.com:443", "-", "HIER_DIRECT",
                                                                      "93.184.216.34", "-")
    assert r.domain == "example.com" and not r.denied and not r.hit


def test_squid_line_with_a_spaced_user_name_and_mime_headers():
    r = parse_squid("1795369446.165 13 10.0.0.7 TCP_MISS/200 1450 GET http://e.com/ John Smith HIER_DIRECT/1.2.3.4 text/html")
    assert (r.user, r.hierarchy, r.mime) == ("John Smith", "HIER_DIRECT", "text/html")
    r = parse_squid("1795369446.165 13 10.0.0.7 TCP_MISS/200 1450 GET http://e.com/ - HIER_DIRECT/1.2.3.4 text/html "
                    "[Host: e.com\\r\\n] [HTTP/1.1 200 OK\\r\\n]")
    assert (r.user, r.mime) == ("-", "text/html")


@pytest.mark.parametrize("line", [
    "", "garbage", "1795369446.165 13 10.0.0.7 TCP_MISS/200 1450 GET http://e.com/ -",
    "abc 13 10.0.0.7 TCP_MISS/200 1450 GET http://e.com/ - HIER_DIRECT/1.2.3.4 text/html",
    "1795369446.165 13 10.0.0.7 TCP_MISS 1450 GET http://e.com/ - HIER_DIRECT/1.2.3.4 text/html",
    '10.0.0.7 - - [22/Nov/2026:17:44:06 +0000] "GET http://e.com/ HTTP/1.1" abc 1450',
    '10.0.0.7 - - [32/Nov/2026:17:44:06 +0000] "GET http://e.com/ HTTP/1.1" 200 1450',
])
def test_malformed_lines_give_none(line):
    assert parse_line(line) is None


def test_common_and_combined():
    r = parse_common('10.0.0.7 - alice [22/Nov/2026:18:44:06 +0100] "GET http://e.com/x HTTP/1.1" 200 1450 TCP_MISS:HIER_DIRECT')
    assert (r.time, r.client, r.user, r.method, r.url, r.status, r.size, r.result, r.hierarchy) == (
        1795369446, "10.0.0.7", "alice", "GET", "http://e.com/x", 200, 1450, "TCP_MISS", "HIER_DIRECT")
    r = parse_common('10.0.0.7 - - [22/Nov/2026:17:44:06 +0000] "GET http://e.com/x HTTP/1.1" 304 - '
                     '"http://r/\\"q\\"" "Moz \\\\ 5" TCP_IMS_HIT:HIER_NONE')
    assert (r.size, r.referer, r.agent, r.result) == (0, 'http://r/"q"', "Moz \\ 5", "TCP_IMS_HIT")
    assert r.hit
    apache = parse_line('192.0.2.1 - - [22/Nov/2026:17:44:06 -0500] "GET /index.html HTTP/1.0" 200 512')
    assert apache.time == 1795369446 + 5 * 3600 and apache.result is None and apache.domain == "-"


@pytest.mark.parametrize("url,method,domain", [
    ("http://WWW.Example.com:8080/x?y", "GET", "www.example.com"), ("example.com:443", "CONNECT", "example.com"),
    ("http://[2001:db8::1]:80/", "GET", "2001:db8::1"), ("[2001:db8::1]:443", "CONNECT", "2001:db8::1"),
    ("https://user:pw@host.test/", "GET", "host.test"), ("error:invalid-request", "NONE", "-"),
])
def test_domain_of(url, method, domain):
    assert domain_of(url, method) == domain


def test_hits_are_squids():
    assert all(is_hit(r) for r in ("TCP_HIT", "TCP_MEM_HIT", "TCP_IMS_HIT", "TCP_INM_HIT", "TCP_REFRESH_UNMODIFIED",
                                   "TCP_HIT_ABORTED", "TCP_OFFLINE_HIT"))
    assert not any(is_hit(r) for r in ("TCP_MISS", "TCP_REFRESH_MODIFIED", "TCP_DENIED", "TCP_TUNNEL",
                                       "TCP_SWAPFAIL_MISS", None))


# ------------------------------------------------------------ times and filters

NOW = 1795369446.0     # Sunday 2026-11-22 17:44:06 UTC


@pytest.mark.parametrize("text,expected", [
    ("2026-11-22", T0 - 10 * 3600), ("2026-11-22 12:00", T0 + 7200), ("2026-11-22T12:00:30", T0 + 7230),
    ("12:00", T0 + 7200), ("today", T0 - 10 * 3600), ("yesterday", T0 - 34 * 3600),
    ("monday", T0 - 10 * 3600 - 6 * 86400), ("sunday", T0 - 10 * 3600), ("2h", NOW - 7200), ("7d", NOW - 7 * 86400),
    ("15m", NOW - 900), ("1w", NOW - 604800), ("1795341600", 1795341600), ("now", NOW),
])
def test_when(text, expected):
    assert parse_when(text, NOW) == expected


def test_bad_times_and_statuses_are_explained():
    with pytest.raises(ValueError, match="is not a time"):
        parse_when("last tuesday-ish", NOW)
    with pytest.raises(ValueError, match="is not a status"):
        parse_status("6xx")


def records():
    return [parse_line(l) for l in crafted_lines() if parse_line(l)]


def picked(**kw) -> list[str]:
    wanted = Selection(**kw).predicate()
    return [r.url for r in records() if wanted(r)]


def test_each_filter():
    assert picked(denied=True) == ["http://www.facebook.com/", "www.facebook.com:443", "http://ads.facebook.com/p"]
    assert picked(users=["bob"]) == ["www.facebook.com:443", "http://slow.test/x", "http://slow.test/y"]
    assert picked(domains=["facebook.com"]) == picked(domains=[".facebook.com"]) == picked(denied=True)
    assert picked(domains=["www.facebook.com"]) == ["http://www.facebook.com/", "www.facebook.com:443"]
    assert picked(statuses=["4xx"]) == ["http://www.facebook.com/", "www.facebook.com:443", "http://slow.test/x",
                                        "http://ads.facebook.com/p"]
    assert picked(statuses=["503", "304"]) == ["http://www.example.com/a", "http://down.test/"]
    assert picked(methods=["connect"]) == ["www.facebook.com:443", "mail.example.org:443", "mail.example.org:443",
                                           "chat.example.net:443"]
    assert picked(results=["TCP_MISS"]) == ["http://www.example.com/a", "http://slow.test/x", "http://slow.test/y",
                                            "http://down.test/", "http://www.example.com/big"]
    assert picked(clients=[ipaddress.ip_network("192.168.0.0/16")]) == ["http://www.example.com/big"]
    assert len(picked(clients=[ipaddress.ip_network("10.0.0.0/30")])) == 11
    assert picked(since=T0 + 7200) == ["http://www.example.com/a", "http://down.test/", "http://ads.facebook.com/p",
                                       "http://www.example.com/big"]
    assert picked(until=T0 + 30) == ["http://www.example.com/a", "http://www.example.com/b"]
    assert picked(grep=re.compile(r"slow\.test/y")) == ["http://slow.test/y"]
    assert picked(denied=True, users=["alice"]) == ["http://ads.facebook.com/p"]
    assert Selection().empty and not Selection(denied=True).empty


# ------------------------------------------------------------ the report, by hand

def crafted_report(tmp_path, **kw) -> Report:
    path = tmp_path / "access.log"
    write_crafted(path)
    rep = Report(**kw)
    for r in logfiles.records([str(path)], malformed=rep.malformed.add):
        rep.add(r)
    return rep


def test_report_figures_on_the_crafted_log(tmp_path):
    rep = crafted_report(tmp_path)
    assert (rep.requests, rep.bytes, rep.denied) == (14, 98600, 3)
    assert (rep.first, rep.last) == (T0 + 10, T0 + 7204)
    assert rep.malformed.count == 1 and rep.malformed.examples == [(f"{tmp_path}/access.log:13", "garbage line here")]
    assert rep.clients.top(2) == [("10.0.0.1", [4, 57900, 1]), ("10.0.0.2", [4, 31400, 1])]
    assert rep.clients.rows["10.0.0.3"] == [3, 4900, 1] and rep.clients.rows["192.168.1.10"] == [1, 100, 0]
    assert rep.users.top(5) == [("alice", [4, 57900, 1]), ("bob", [3, 4900, 1])]     # requests, bytes, denied
    sites = rep.sites_of(["alice", "bob"], 5)
    assert sum(r[0] for _, r in sites["alice"]) == 4 and sum(r[1] for _, r in sites["bob"]) == 4900
    assert [(d, r[0], r[1]) for d, r in rep.domains.top(3)] == [
        ("www.example.com", 4, 4400), ("mail.example.org", 2, 70000), ("slow.test", 2, 1000)]
    assert [(d, r[2]) for d, r in rep.denied_by(rep.domains, 10)] == [("www.facebook.com", 2), ("ads.facebook.com", 1)]
    assert [(c, r[2]) for c, r in rep.denied_by(rep.clients, 10)] == [("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1)]
    assert (rep.hit_requests, rep.cacheable_requests, rep.hit_bytes, rep.cacheable_bytes) == (3, 8, 3800, 9900)
    assert rep.hit_ratio_requests == 3 / 8 and rep.hit_ratio_bytes == 3800 / 9900
    assert dict(rep.status) == {200: 8, 403: 3, 404: 1, 304: 1, 503: 1}
    assert dict(rep.results) == {"TCP_MISS": 4, "TCP_HIT": 1, "TCP_MEM_HIT": 1, "TCP_DENIED": 3, "TCP_TUNNEL": 3,
                                 "TCP_REFRESH_UNMODIFIED": 1, "TCP_MISS_ABORTED": 1}
    assert rep.traffic() == ("hour", [(T0, 5, 12300), (T0 + 3600, 5, 78000), (T0 + 7200, 4, 8300)])
    # established tunnels only; the denied CONNECT is counted apart
    assert rep.connect.top(5) == [("mail.example.org:443", [2, 70000]), ("chat.example.net:443", [1, 7000])]
    assert rep.connect_refused.top(5) == [("www.facebook.com:443", [1, 1, 0])]
    # top domains count what was served; www.facebook.com was only ever denied
    assert [(d, r[6], r[7]) for d, r in rep.served_domains(10)][:3] == [
        ("www.example.com", 4, 4400), ("mail.example.org", 2, 70000), ("slow.test", 2, 1000)]
    assert "www.facebook.com" not in [d for d, _ in rep.served_domains(10)]
    assert rep.slowest_domains(10, min_requests=1) == [
        ("slow.test", 2, 400.0, 500), ("www.example.com", 4, 90.0, 120), ("down.test", 1, 50.0, 50),
        ("cdn.example.com", 1, 40.0, 40)]
    assert [d for d, *_ in rep.slowest_domains(10, min_requests=2)] == ["slow.test", "www.example.com"]
    assert rep.approximate == []


def test_report_text(tmp_path):
    text = render_text(crafted_report(tmp_path), top=3, min_requests=2)
    assert re.search(r"requests\s+14\n", text)
    assert re.search(r"cache hit ratio, requests\s+37.5%", text)
    assert re.search(r"cache hit ratio, bytes\s+38.4%", text)
    assert re.search(r"denied requests\s+3 \(21.4%\)", text)
    assert re.search(r"10.0.0.1\s+4\s+28.6%\s+56.5 KiB", text)
    assert re.search(r"2026-11-22 11:00\s+5\s+76.2 KiB", text)
    assert re.search(r"slow.test\s+2\s+400\s+500", text)
    assert f"{tmp_path}/access.log:13  garbage line here" in text


def test_connect_table_counts_established_tunnels_and_shows_refused_ones_apart():
    """20 refused CONNECTs to facebook are no '20 tunnels'; denials stay out of Top domains."""
    rep = Report()
    lines = [f"{T0 + i}.000      0 10.0.0.2 TCP_DENIED/403 3900 CONNECT www.facebook.com:443 - HIER_NONE/- text/html"
             for i in range(20)]
    lines += [f"{T0 + 30}.000     10 10.0.0.2 NONE_NONE/503 4100 CONNECT down.test:443 - HIER_NONE/- text/html",
              f"{T0 + 31}.000      0 10.0.0.2 TCP_DENIED/200 0 CONNECT bumped.test:443 - HIER_NONE/- -",
              f"{T0 + 32}.000   9000 10.0.0.2 TCP_TUNNEL/200 7000 CONNECT mail.example.org:443 - HIER_DIRECT/198.51.100.7 -",
              f"{T0 + 33}.000     40 10.0.0.2 TCP_MISS/200 500 GET http://cdn.example.com/c - HIER_DIRECT/192.0.2.1 text/css"]
    for line in lines:
        rep.add(parse_line(line))
    assert rep.connect.top(10) == [("mail.example.org:443", [1, 7000])]
    assert rep.connect_refused.top(10) == [("www.facebook.com:443", [20, 20, 0]), ("bumped.test:443", [1, 1, 0]),
                                           ("down.test:443", [1, 0, 1])]
    assert [d for d, _ in rep.served_domains(10)] == ["cdn.example.com", "down.test", "mail.example.org"]
    text = render_text(rep)
    top_domains = text.split("Top 10 domains")[1].split("\n\n")[0]
    assert "facebook" not in top_domains and "cdn.example.com" in top_domains
    tunnels = text.split("CONNECT destinations (tunnels established)")[1].split("\n\n")[0]
    assert "facebook" not in tunnels and re.search(r"mail.example.org:443\s+1\s+6.8 KiB", tunnels)
    refused = text.split("CONNECTs without a tunnel")[1].split("\n\n")[0]
    assert re.search(r"www.facebook.com:443\s+20\s+0", refused) and re.search(r"down.test:443\s+0\s+1", refused)
    page = render_html(rep, generated=T0)
    connect = page.split('id="table-connect"')[1].split("</table>")[0]
    assert "mail.example.org:443" in connect and "facebook" not in connect
    assert "www.facebook.com:443" in page.split('id="table-connect-refused"')[1].split("</table>")[0]
    assert "facebook" not in page.split('id="chart-domains"')[1].split("</figure>")[0]


def test_tables_stay_bounded_and_say_they_are_approximate():
    from squidpy.log.parse import Record
    rep = Report(max_keys=100)
    for i in range(5000):
        rep.add(Record(T0 + i, 5, f"10.0.{i // 250}.{i % 250}", "TCP_MISS", 200, 10, "GET",
                       f"http://d{i}.test/", "-", "HIER_DIRECT", "-", "-"))
    rep.add(Record(T0, 5, "10.0.0.0", "TCP_MISS", 200, 10, "GET", "http://d0.test/", "-", "HIER_DIRECT", "-", "-"))
    assert len(rep.clients.rows) <= 100 and len(rep.domains.rows) <= 100
    assert rep.approximate == ["clients", "domains"]
    assert sum(r[0] for r in rep.clients.rows.values()) + rep.clients.others[0] == rep.requests == 5001
    assert "approximate" in render_text(rep)


def test_files_are_read_oldest_first_and_merged(tmp_path):
    lines = crafted_lines()
    with gzip.open(tmp_path / "access.log.1.gz", "wt") as g:       # the oldest part, compressed
        g.write("\n".join(lines[:5]) + "\n")
    (tmp_path / "access.log.0").write_text("\n".join(lines[5:10]) + "\n")
    (tmp_path / "access.log").write_text("\n".join(lines[10:]) + "\n")
    paths = logfiles.rotated_siblings(str(tmp_path / "access.log"))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["access.log", "access.log.0", "access.log.1.gz"]
    bad = []
    times = [r.time for r in logfiles.records(paths, malformed=lambda w, l: bad.append(w))]
    assert times == sorted(times) and len(times) == 14
    assert bad == [f"{tmp_path}/access.log:3"]


def test_last_lines_reads_backwards(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("".join(f"line {i}\n" for i in range(10000)))
    assert logfiles.last_lines(str(path), 3, block=100) == ["line 9997", "line 9998", "line 9999"]
    assert logfiles.last_lines(str(path), 2, lambda l: l.endswith("5"), block=64) == ["line 9985", "line 9995"]
    assert logfiles.last_lines(str(path), 0) == []


def test_html_page_is_self_contained_and_escapes_log_text(tmp_path):
    rep = crafted_report(tmp_path)
    rep.add(parse_line('10.9.9.9 - - [22/Nov/2026:12:00:05 +0000] "GET http://<script>alert(1)</script>/ HTTP/1.1" 200 5'))
    page = render_html(rep, top=20, min_requests=1, generated=T0)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "&lt;script&gt;" in page
    assert not re.search(r'(src|href)="(https?:)?//', page) and "@import" not in page
    for chart in ("chart-requests", "chart-bytes", "chart-hits-requests", "chart-hits-bytes", "chart-domains",
                  "chart-status", "chart-clients", "chart-denied"):
        assert f'id="{chart}"' in page
    assert page.count("<svg") >= 8
    assert 'name="viewport"' in page and "@media print" in page
    assert [s["id"] for s in sections(rep)][:3] == ["totals", "clients", "users"]
