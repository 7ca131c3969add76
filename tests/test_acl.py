"""Unit tests: Squid's ACL language — every type, the access list rules, errors and warnings."""

from __future__ import annotations

import time

import pytest

from squidpy.acl.check import evaluate, render
from squidpy.acl.checklist import Checklist, Pending
from squidpy.config import loader


def conf(text: str, path: str = "/etc/squidpy/acl.conf"):
    return loader.load(path, text=text)


def ch(**kw) -> Checklist:
    defaults = dict(src="10.0.0.7", method="GET", url="http://www.example.com/index.html", scheme="http",
                    host="www.example.com", port=80, path="/index.html")
    defaults.update(kw)
    return Checklist(**defaults)


def acl(text: str, name: str = "a"):
    return conf(text).acls.get(name)


# ------------------------------------------------------------ addresses

@pytest.mark.parametrize("value,inside,outside", [
    ("10.0.0.0/8", "10.200.1.1", "11.0.0.1"),
    ("10.0.0.0/255.0.0.0", "10.1.2.3", "9.255.255.255"),
    ("192.168.1.10", "192.168.1.10", "192.168.1.11"),
    ("172.16.0.1-172.16.0.99", "172.16.0.50", "172.16.0.100"),
    ("fd00::/8", "fd12::1", "fe80::1"),
    ("::1", "::1", "::2"),
    ("all", "8.8.8.8", None),
])
def test_src_forms(value, inside, outside):
    a = acl(f"acl a src {value}\n")
    assert a.match(ch(src=inside))
    if outside:
        assert not a.match(ch(src=outside))


def test_src_matches_ipv4_mapped_clients():
    assert acl("acl a src 10.0.0.0/8\n").match(ch(src="::ffff:10.1.1.1"))


def test_dst_needs_a_lookup():
    a = acl("acl a dst 93.184.216.0/24\n")
    with pytest.raises(Pending) as p:
        a.match(ch())
    assert p.value.fact == "dst"
    assert a.match(ch(dst=["2001:db8::1", "93.184.216.34"]))
    assert not a.match(ch(dst=[]))


def test_localip():
    a = acl("acl a localip 192.168.1.1\n")
    assert a.match(ch(local_ip="192.168.1.1")) and not a.match(ch(local_ip="127.0.0.1"))


# ------------------------------------------------------------ domains

def test_dstdomain_leading_dot_covers_subdomains():
    a = acl("acl a dstdomain .facebook.com\n")
    for host in ("facebook.com", "www.facebook.com", "a.b.facebook.com", "WWW.FaceBook.COM", "facebook.com."):
        assert a.match(ch(host=host)), host
    for host in ("notfacebook.com", "facebook.com.evil.net", "facebook.co"):
        assert not a.match(ch(host=host)), host


def test_dstdomain_without_dot_is_exact():
    a = acl("acl a dstdomain example.com\n")
    assert a.match(ch(host="example.com"))
    assert not a.match(ch(host="www.example.com"))


def test_dstdomain_ip_literal_text_then_reverse_lookup():
    a = acl("acl a dstdomain .example.com 93.184.216.34\n")
    assert a.match(ch(host="93.184.216.34", ip_literal=True))
    with pytest.raises(Pending) as p:
        a.match(ch(host="1.2.3.4", ip_literal=True))
    assert p.value.fact == "dst_name"
    assert a.match(_with(ch(host="1.2.3.4", ip_literal=True), dst_name="www.example.com"))
    assert not a.match(_with(ch(host="1.2.3.4", ip_literal=True), dst_name=""))


def test_dstdomain_dash_n_never_looks_up():
    a = acl("acl a dstdomain -n .example.com\n")
    assert not a.match(ch(host="1.2.3.4", ip_literal=True))


def _with(c: Checklist, **facts) -> Checklist:
    for k, v in facts.items():
        setattr(c, k, v)
    return c


def test_srcdomain_uses_the_clients_name():
    a = acl("acl a srcdomain .accounting.example.lan\n")
    with pytest.raises(Pending) as p:
        a.match(ch())
    assert p.value.fact == "src_name"
    assert a.match(_with(ch(), src_name="pc12.accounting.example.lan"))
    assert not a.match(_with(ch(), src_name=""))


def test_dstdom_regex():
    a = acl(r"acl a dstdom_regex -i (^|\.)ads?[0-9]*\." "\n")
    assert a.match(ch(host="ad1.Example.com")) and a.match(ch(host="x.ads.example.com"))
    assert not a.match(ch(host="reads.example.com"))


# ------------------------------------------------------------ URLs and headers

def test_url_regex_and_case_switches():
    a = acl("acl a url_regex -i \\.MP3$ +i ^http://Exact/\n")
    assert a.match(ch(url="http://x/song.mp3"))
    assert a.match(ch(url="http://Exact/"))
    assert not a.match(ch(url="http://exact/"))


def test_urlpath_regex():
    a = acl("acl a urlpath_regex -i \\.exe$\n")
    assert a.match(ch(path="/download/setup.EXE"))
    assert not a.match(ch(path="/setup.exe.html"))


def test_browser_and_referer():
    headers = [(b"User-Agent", b"Mozilla/5.0 (X11)"), (b"Referer", b"http://intranet.example.lan/page")]
    assert acl("acl a browser ^Mozilla/\n").match(ch(request_headers=headers))
    assert not acl("acl a browser ^curl\n").match(ch(request_headers=headers))
    assert acl("acl a referer_regex ^http://intranet\\.\n").match(ch(request_headers=headers))
    assert not acl("acl a browser .\n").match(ch(request_headers=[]))


def test_req_header_one_header_per_acl():
    a = acl("acl a req_header Accept-Language -i ^FR\nacl a req_header accept-language ^de\n")
    assert a.match(ch(request_headers=[(b"Accept-Language", b"fr-CH, en")]))
    assert a.match(ch(request_headers=[(b"accept-language", b"de")]))
    assert not a.match(ch(request_headers=[(b"Accept-Language", b"en")]))
    assert "cannot match both the accept-language and X-Test headers; use an any-of ACL" in errors(
        "acl a req_header Accept-Language ^fr\nacl a req_header X-Test yes\n")[0]


def test_reply_types():
    c = ch()
    c.reply_status = 404
    c.reply_headers = [(b"Content-Type", b"video/mp4"), (b"Server", b"nginx/1.2")]
    assert acl("acl a http_status 400-499\n").match(c)
    assert acl("acl a http_status 500-\n").match(c) is False
    assert acl("acl a rep_mime_type -i ^VIDEO/\n").match(c)
    assert acl("acl a rep_header Server ^nginx\n").match(c)
    assert not acl("acl a rep_header X-None .\n").match(c)


# ------------------------------------------------------------ ports, methods, protocols, names

def test_ports_and_ranges():
    a = acl("acl a port 80 443 1025-65535\n")
    for p in (80, 443, 1025, 8080, 65535):
        assert a.match(ch(port=p))
    for p in (22, 1024, 25):
        assert not a.match(ch(port=p))


def test_localport_and_myportname():
    assert acl("acl a localport 3128\n").match(ch(local_port=3128))
    assert acl("acl a myportname office\n").match(ch(port_name="office"))
    assert not acl("acl a myportname office\n").match(ch(port_name="Office"))


def test_method_and_proto():
    assert acl("acl a method post PUT\n").match(ch(method="POST"))
    assert acl("acl a proto HTTPS\n").match(ch(scheme="https"))
    assert acl("acl a proto AUTHORITY\n").match(ch(scheme="authority", method="CONNECT"))


def test_maxconn_matches_above_the_limit():
    a = acl("acl a maxconn 3\n")
    c = ch()
    c.client_connections = 3
    assert not a.match(c)
    c.client_connections = 4
    assert a.match(c)


def test_time_windows():
    a = acl("acl a time MTWHF 08:00-17:30\nacl a time A 10:00-12:00\n")

    def at(text):
        return ch(now=time.mktime(time.strptime(text, "%Y-%m-%d %H:%M")))

    assert a.match(at("2026-11-23 09:15"))        # a Monday
    assert a.match(at("2026-11-23 17:30"))        # the end minute is included, as in Squid
    assert not a.match(at("2026-11-23 17:31"))
    assert not a.match(at("2026-11-22 09:15"))    # Sunday
    assert a.match(at("2026-11-28 11:00"))        # Saturday morning window
    assert acl("acl a time D\n").match(at("2026-11-25 23:59"))
    # each range takes the days written since the previous one: 13:00-14:00 is every day
    split = acl("acl a time M 08:00-09:00 13:00-14:00\n")
    assert split.match(at("2026-11-22 13:30")) and not split.match(at("2026-11-22 08:30"))


# ------------------------------------------------------------ predefined

def test_predefined_acls():
    c = conf("")
    assert c.acls.get("localhost").match(ch(src="127.0.0.1"))
    assert not c.acls.get("localhost").match(ch(src="127.0.0.2"))
    assert c.acls.get("to_localhost").match(ch(dst=["127.0.0.5"]))
    assert c.acls.get("CONNECT").match(ch(method="CONNECT"))
    assert c.acls.get("manager").match(ch(url="http://proxy/squid-internal-mgr/info"))
    assert c.acls.get("all").match(ch(src="203.0.113.9"))


# ------------------------------------------------------------ http_access semantics

RULES = """
acl localnet src 10.0.0.0/8
acl social dstdomain .facebook.com
acl office time MTWHF 08:00-18:00
acl SSL_ports port 443
acl CONNECT method CONNECT
http_access deny CONNECT !SSL_ports
http_access deny social office
http_access allow localnet
"""


def test_first_full_match_decides_and_acls_are_anded():
    access = conf(RULES).http_access
    monday_noon = time.mktime(time.strptime("2026-11-23 12:00", "%Y-%m-%d %H:%M"))
    sunday = time.mktime(time.strptime("2026-11-22 12:00", "%Y-%m-%d %H:%M"))
    assert not access.check(ch(host="www.facebook.com", now=monday_noon)).allowed
    assert access.check(ch(host="www.facebook.com", now=sunday)).allowed      # AND: not office hours
    v = access.check(ch(method="CONNECT", scheme="authority", host="x", port=22))
    assert not v.allowed and v.rule.where == "/etc/squidpy/acl.conf:7"


def test_repeated_acl_lines_are_ored():
    a = acl("acl a dstdomain .one.com\nacl a dstdomain .two.com\n")
    assert a.match(ch(host="x.one.com")) and a.match(ch(host="x.two.com"))


def test_no_match_answers_the_opposite_of_the_last_line():
    access = conf(RULES).http_access
    v = access.check(ch(src="192.168.1.1"))
    assert not v.allowed and v.implicit and v.rule.text == "http_access allow localnet"
    access = conf("acl x src 10.0.0.0/8\nhttp_access deny x\n").http_access
    assert access.check(ch(src="192.168.1.1")).allowed


def test_no_http_access_at_all_denies_everything():
    v = conf("").http_access.check(ch())
    assert not v.allowed and v.rule is None


def test_negation():
    access = conf("acl localnet src 10.0.0.0/8\nhttp_access deny !localnet\nhttp_access allow all\n").http_access
    assert not access.check(ch(src="8.8.8.8")).allowed
    assert access.check(ch(src="10.1.1.1")).allowed


# ------------------------------------------------------------ errors and warnings

def errors(text: str) -> list[str]:
    with pytest.raises(loader.ConfigErrors) as e:
        conf(text)
    return [str(x) for x in e.value.errors]


@pytest.mark.parametrize("text,message", [
    ("acl a nosuchtype x\n", "unknown ACL type 'nosuchtype'"),
    ("http_access allow ghost\n", "ACL 'ghost' is used before it is defined"),
    ("acl a src 10.0.0.300\n", "'10.0.0.300' is not an IP address"),
    ("acl a src 10.0.0.0/40\n", "is not a valid network"),
    ("acl a url_regex (unclosed\n", "bad regular expression '(unclosed'"),
    ("acl a dstdomain \"/nonexistent/list.txt\"\n", "cannot read the values of ACL 'a'"),
    ("acl a port 70000\n", "not a port range within 0-65535"),
    ("acl a time 18:00-08:00\n", "the start is after the end"),
    ("acl a time 08:00-25:00\n", "is not a valid time range"),
    ("acl a src 10.0.0.0/8\nacl a dstdomain x.com\n", "already defined as type 'src'"),
    ("acl a maxconn many\n", "not a number of connections"),
    ("acl a dstdomain bad..name\n", "is not a domain name"),
    ("deny_info ERR_NOPE_PAGE all\n", "no error page named 'ERR_NOPE_PAGE'"),
    ("deny_info http://x/ nobody\n", "ACL 'nobody' is used before it is defined"),
    ("deny_info 200:http://x/ all\n", "a redirect needs a 3xx status"),
])
def test_configuration_errors_name_the_line(text, message):
    found = errors(text)
    assert any(message in e for e in found), found
    assert all(e.startswith("/etc/squidpy/acl.conf:") for e in found)


def test_reply_acls_never_match_in_http_access_as_in_squid():
    c = conf("acl a http_status 200\nhttp_access deny a\nhttp_access allow all\n")
    assert "never matches here" in str(c.warnings[0]) and str(c.warnings[0]).startswith("/etc/squidpy/acl.conf:2:")
    assert c.http_access.check(ch()).allowed
    c = conf("acl a http_status 200\nhttp_access deny !a\nhttp_access allow all\n")
    assert not c.http_access.check(ch()).allowed


def test_bad_day_letters_are_ignored_with_a_warning():
    c = conf("acl a time XM 08:00-09:00\n")
    assert "'X' is not a day letter" in str(c.warnings[0])


def test_reply_types_are_allowed_in_http_reply_access():
    c = conf("acl video rep_mime_type ^video/\nhttp_reply_access deny video\n")
    assert len(c.http_reply_access.rules) == 1


def test_redundant_values_are_warned_about_at_their_line(tmp_path):
    (tmp_path / "list.txt").write_text(".example.com\nwww.example.com\n.example.com\n")
    main = tmp_path / "squidpy.conf"
    main.write_text('acl a dstdomain "list.txt"\nacl b src 10.0.0.0/8\nacl b src 10.1.0.0/16\n')
    c = loader.load(str(main))
    warnings = [str(w) for w in c.warnings]
    assert f"{tmp_path}/list.txt:2: WARNING: ACL 'a': 'www.example.com' is already matched by '.example.com'" in warnings
    assert f"{tmp_path}/list.txt:3: WARNING: ACL 'a': '.example.com' is listed more than once" in warnings
    assert any(w.startswith(f"{main}:3: WARNING: ACL 'b': '10.1.0.0-10.1.255.255' is already covered") for w in warnings)


# ------------------------------------------------------------ squidpy check (the pure part)

def test_check_explains_the_decision():
    c = conf(RULES + "deny_info http://block.example/?u=%u social\n")
    monday_noon = time.mktime(time.strptime("2026-11-23 12:00", "%Y-%m-%d %H:%M"))
    req = ch(host="www.facebook.com", url="http://www.facebook.com/", now=monday_noon)
    report = evaluate(c.http_access, req, lambda fact: None, c.deny_info)
    text = render(report, req, verbose=True)
    assert text.splitlines()[0] == "DENY  GET http://www.facebook.com/ from 10.0.0.7"
    assert "decided by /etc/squidpy/acl.conf:8: http_access deny social office" in text
    assert "social (dstdomain) matches, office (time) matches" in text
    assert "deny_info for ACL 'office'" not in text and report.deny_acl == "office"


def test_check_says_a_negated_acl_matched_as_verbose_does():
    c = conf("acl Safe_ports port 80 443\nhttp_access deny !Safe_ports\nhttp_access allow all\n")
    req = ch(url="http://www.example.com:8080/", port=8080)
    text = render(evaluate(c.http_access, req, lambda fact: None), req, verbose=True)
    assert "decided by /etc/squidpy/acl.conf:2: http_access deny !Safe_ports" in text
    assert "because !Safe_ports (port) matches (Safe_ports does not)" in text
    assert "!Safe_ports (port): yes" in text
    assert "does not match" not in text


def test_check_reports_the_implicit_default_and_runs_lookups():
    c = conf("acl remote dst 192.0.2.0/24\nhttp_access allow remote\n")
    asked = []
    report = evaluate(c.http_access, ch(), lambda fact: asked.append(fact) or ["198.51.100.1"])
    assert asked == ["dst"]
    text = render(report, ch())
    assert text.startswith("DENY") and "no http_access line matched" in text
    assert "looked up dst: ['198.51.100.1']" in text
