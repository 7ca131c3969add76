"""ACL types added for Squid 5.7 parity, and Squid's way of compiling regular expressions."""

from __future__ import annotations

import pytest

from squidpy.acl.checklist import Checklist
from squidpy.config import loader
from squidpy.log.entry import LogEntry


def conf(text: str):
    return loader.load("/etc/squid/squid.conf", text=text)


def ch(**kw) -> Checklist:
    defaults = dict(src="10.0.0.7", url="http://www.example.com/index.html", host="www.example.com",
                    path="/index.html")
    defaults.update(kw)
    return Checklist(**defaults)


def problems(text: str) -> list[str]:
    with pytest.raises(loader.ConfigErrors) as e:
        conf(text)
    return [str(x) for x in e.value.errors]


# ------------------------------------------------------------ regular expressions as Squid compiles them

def test_one_expression_per_line_and_case_run():
    a = conf("acl a url_regex -i ^http://WWW\\. +i /index\\.html$ -i EXAMPLE\n").acls.get("a")
    assert [r.icase for r in a.matcher.regexes] == [True, False, True]
    assert a.match(ch(url="http://www.x/")) and a.match(ch(url="x/index.html")) and a.match(ch(url="example"))
    assert not a.match(ch(url="x/INDEX.HTML"))


def test_each_line_starts_case_sensitive():
    a = conf("acl a url_regex -i foo\nacl a url_regex bar\n").acls.get("a")
    assert a.match(ch(url="FOO")) and not a.match(ch(url="BAR"))


def test_patterns_are_joined_as_squid_joins_them():
    # "a)|(b" alone is refused by regcomp, but Squid compiles "(a)|(b)"; so does squidpy
    a = conf("acl a url_regex a)|(b\n").acls.get("a")
    assert a.match(ch(url="xb")) and a.match(ch(url="xa"))
    # a back-reference numbers groups of the joined expression; Squid then compiles each alone
    b = conf("acl b url_regex (x)\\1 y\n").acls.get("b")
    assert b.match(ch(url="xx")) and b.match(ch(url="y")) and not b.match(ch(url="x"))


def test_bad_regular_expressions_are_errors_at_their_line(tmp_path):
    (tmp_path / "re.txt").write_text("ok\n*bad\n")
    conf_file = tmp_path / "squid.conf"
    conf_file.write_text('acl a url_regex "re.txt"\n')
    with pytest.raises(loader.ConfigErrors) as e:
        loader.load(str(conf_file))
    assert [str(x) for x in e.value.errors] == [
        f"{tmp_path}/re.txt:2: ACL 'a': bad regular expression '*bad': Invalid preceding regular expression"]


def test_unnecessary_wildcards_are_dropped_with_squids_note():
    c = conf("acl a url_regex ^.*foo .*\nacl b url_regex ^.*.*\n")
    said = " ".join(str(w) for w in c.warnings)
    assert "'^.*foo' has unnecessary wildcard(s); using 'foo'" in said
    assert "'^.*.*' has only wildcards and matches all strings; using '.*'" in said
    assert c.acls.get("b").match(ch(url="anything"))


def test_a_regex_word_may_hold_an_escaped_blank():
    a = conf("acl a browser Mozilla/5\\.0\\ \\(X11 curl\n").acls.get("a")
    assert a.match(ch(request_headers=[(b"User-Agent", b"Mozilla/5.0 (X11; Linux)")]))
    assert a.match(ch(request_headers=[(b"User-Agent", b"curl/8")]))


# ------------------------------------------------------------ new types

def test_any_of_and_all_of():
    c = conf("acl net src 10.0.0.0/8\nacl get method GET\nacl ex dstdomain .example.com\n"
             "acl either any-of net ex\nacl either any-of get\n"
             "acl both all-of net !get\nacl both all-of ex get\n")
    either, both = c.acls.get("either"), c.acls.get("both")
    assert either.match(ch(src="192.0.2.1", method="GET", host="x.org"))
    assert not either.match(ch(src="192.0.2.1", method="POST", host="x.org"))
    assert both.match(ch(src="10.1.1.1", method="POST", host="x.org"))      # first line
    assert both.match(ch(src="192.0.2.1", method="GET"))                      # second line
    assert not both.match(ch(src="10.1.1.1", method="GET", host="x.org"))
    assert "ACL 'nope' is used before it is defined" in problems("acl x any-of nope\n")[0]


def test_annotations_and_note():
    c = conf("acl tag annotate_transaction category=video\nacl more annotate_transaction category+=music\n"
             "acl is_video note category video\nacl has_cat note category\n"
             "acl listed note -m category music\n")
    req = ch()
    assert not c.acls.get("has_cat").match(req)
    assert c.acls.get("tag").match(req) and c.acls.get("more").match(req)
    assert req.notes == [("category", "video"), ("category", "music")]
    assert c.acls.get("is_video").match(req) and c.acls.get("has_cat").match(req)
    req.notes = [("category", "news,music")]
    assert c.acls.get("listed").match(req) and not c.acls.get("is_video").match(req)
    assert "cannot test both the 'color' and 'weight' annotations" in problems(
        "acl banned note color green\nacl banned note weight heavy\n")[0]


def test_annotate_client_annotates_the_connection():
    class Connection:
        notes = None

    c = conf("acl vip annotate_client vip=yes\nacl is_vip note vip yes\n")
    req = ch()
    assert not c.acls.get("vip").match(req)          # no client connection: no match, as in Squid
    req.connection = Connection()
    assert c.acls.get("vip").match(req) and c.acls.get("is_vip").match(req)
    assert req.connection.notes == [("vip", "yes")]


def test_has():
    c = conf("acl req has request\nacl rep has response\n")
    req = ch()
    assert c.acls.get("req").match(req) and not c.acls.get("rep").match(req)
    req.reply_status = 200
    assert c.acls.get("rep").match(req)
    assert "names one component" in problems("acl x has request response\n")[0]


@pytest.mark.parametrize("value,share", [("0.25", 0.25), ("1/4", 0.25), ("1:3", 0.25)])
def test_random(value, share):
    a = conf(f"acl r random {value}\n").acls.get("r")
    req = ch()
    req.random = lambda: share - 0.01
    assert a.match(req)
    req.random = lambda: share
    assert not a.match(req)


@pytest.mark.parametrize("value", ["1", "5/4", "0:3", "half"])
def test_random_refuses_bad_shares(value):
    assert problems(f"acl r random {value}\n")


def test_hier_code_and_squid_error_come_from_the_transaction():
    c = conf("acl direct hier_code HIER_DIRECT\nacl none hier_code HIER_NONE\n"
             "acl failed squid_error ERR_CONNECT_FAIL\nacl fine squid_error ERR_NONE\n")
    req = ch()
    assert c.acls.get("none").match(req) and c.acls.get("fine").match(req)       # in http_access
    req.entry = entry = LogEntry()
    entry.hierarchy, entry.error = "HIER_DIRECT", "ERR_CONNECT_FAIL"
    assert c.acls.get("direct").match(req) and c.acls.get("failed").match(req)
    assert "no such hier_code 'DIRECT'" in problems("acl x hier_code DIRECT\n")[0]
    assert "is not a Squid error name" in problems("acl x squid_error ERR_NOPE\n")[0]


def test_transaction_initiator_req_mime_type_and_referer():
    c = conf("acl clients transaction_initiator client\nacl internal transaction_initiator internal\n"
             "acl forms req_mime_type -i ^multipart/form-data\nacl ref referer_regex ^https?://intranet\\.\n")
    req = ch(request_headers=[(b"Content-Type", b"Multipart/Form-Data; boundary=x"),
                              (b"Referer", b"http://intranet.example/")])
    assert c.acls.get("clients").match(req) and not c.acls.get("internal").match(req)
    assert c.acls.get("forms").match(req) and c.acls.get("ref").match(req)


def test_localip_and_localport():
    c = conf("acl ip localip 127.0.0.2\nacl port localport 3128-3130\n")
    req = ch(local_ip="127.0.0.2", local_port=3129)
    assert c.acls.get("ip").match(req) and c.acls.get("port").match(req)
    assert not c.acls.get("port").match(ch(local_port=8080))


def test_unsupported_types_say_why_and_typos_get_a_suggestion():
    assert "Squid ACL type arp is not implemented by squidpy yet" in problems("acl x arp 00:11:22:33:44:55\n")[0]
    assert "unknown ACL type 'dstdomian' (did you mean 'dstdomain'?)" in problems("acl x dstdomian .a.com\n")[0]


def test_acl_options_are_read_as_squid_reads_them():
    assert "unsupported ACL option: -x" in problems("acl x src -x 10.0.0.1\n")[0]
    c = conf("acl d dstdomain -n -- .example.com\n")
    assert "-n" in c.acls.get("d").matcher.flags


def test_deny_info_redirects_keep_the_method_as_squid_does():
    c = conf("acl a src all\ndeny_info http://portal.example/ a\nacl b src 10.0.0.0/8\n"
             "deny_info 301:http://moved.example/ b\n")
    info = c.deny_info["a"]
    assert info.redirect_status("GET", "1.1") == 302 and info.redirect_status("HEAD", "1.1") == 302
    assert info.redirect_status("POST", "1.1") == 307 and info.redirect_status("CONNECT", "1.1") == 307
    assert info.redirect_status("POST", "1.0") == 302
    assert c.deny_info["b"].redirect_status("POST", "1.1") == 301


def test_user_regular_expressions_are_posix_too():
    c = conf("auth_param basic program /bin/true\nacl admins proxy_auth_regex -i ^adm[[:digit:]]\n"
             "acl perl ext_user_regex \\d\n")
    req = ch()
    req.auth, req.user = object(), "ADM7"
    assert c.acls.get("admins").match(req)
    req.ext_user = "7"
    assert not c.acls.get("perl").match(req)
    req.ext_user = "d"
    assert c.acls.get("perl").match(req)


def test_peername_matches_the_peer_being_connected_to_only():
    c = conf("acl up peername up Up2\nacl up_re peername_regex -i ^UP[0-9]*$\n")
    req = ch()
    assert not c.acls.get("up").match(req) and not c.acls.get("up_re").match(req)   # no peer: no match
    req.dst_peer_name = "up"
    assert c.acls.get("up").match(req) and c.acls.get("up_re").match(req)
    req.dst_peer_name = "UP"
    assert not c.acls.get("up").match(req) and c.acls.get("up_re").match(req)       # names are case-sensitive
    req.dst_peer_name = "Up2"
    assert c.acls.get("up").match(req) and c.acls.get("up_re").match(req)
