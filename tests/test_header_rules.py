"""Unit tests: squid.conf's header rules (request_header_access/replace/add, reply_*),
httpd_suppress_version_string and follow_x_forwarded_for's walk, decided without sockets."""

from __future__ import annotations

import pytest

from squidpy.acl.checklist import Checklist
from squidpy.acl.indirect import IndirectClient, parse_address
from squidpy.config.loader import ConfigErrors, load
from squidpy.http.message import app_name, via_value
from squidpy.http.rules import SQUID_HEADERS, UNTOUCHABLE
from squidpy.log.entry import LogEntry

HEAD = (b"GET /a HTTP/1.1\r\nHost: o.test\r\nUser-Agent: ua/1\r\nCookie: c=1\r\nX-Secret: s\r\n"
        b"x-secret: s2\r\nReferer: http://r/\r\nContent-Length: 5\r\nVia: 1.1 proxy.test (squidpy)\r\n\r\n")


def conf(text: str):
    return load(text=text + "\nacl lan src 10.0.0.0/8\nhttp_access allow lan\n", path="/etc/squidpy/squid.conf")


def rules(text: str, direction: str = "request"):
    return getattr(conf(text), f"{direction}_header_access")


def ch(src: str = "10.0.0.7") -> Checklist:
    return Checklist(src=src, url="http://o.test/a", host="o.test", path="/a")


def fields(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    assert lines[-2:] == ["", ""], "the head still ends with a blank line"
    return [tuple(line.split(": ", 1)) for line in lines[1:-2]]


def names(head: bytes) -> list[str]:
    return [name for name, _ in fields(head)]


# ------------------------------------------------------------ which lines judge a field

LAN_FIRST = "acl lan src 10.0.0.0/8\n"


def test_nothing_configured_is_inactive_and_leaves_the_head_alone():
    r = conf("").request_header_access
    assert not r.active and not conf("").reply_header_access.active
    assert r.apply(HEAD, ch(), LogEntry()) == HEAD


def test_a_named_field_is_removed_when_its_lines_deny():
    r = rules(LAN_FIRST + "request_header_access User-Agent deny lan\n")
    assert r.active
    assert "User-Agent" not in names(r.apply(HEAD, ch(), LogEntry()))
    # not from lan: no line matches, so the answer is the opposite of the last line's (allow)
    assert "User-Agent" in names(r.apply(HEAD, ch("192.0.2.1"), LogEntry()))


def test_no_matching_line_means_the_opposite_of_the_last_one_as_squids_fast_check():
    """squid.conf promises 'left as is' but Squid 5.7 removes it: the implicit answer of an
    access list whose last line allows is deny."""
    r = rules(LAN_FIRST + "request_header_access Referer allow lan\n")
    assert "Referer" in names(r.apply(HEAD, ch(), LogEntry()))
    assert "Referer" not in names(r.apply(HEAD, ch("192.0.2.1"), LogEntry()))


def test_names_compare_without_case_but_all_and_other_are_written_so():
    r = rules("request_header_access x-SECRET deny all\n")
    assert "X-Secret" not in names(r.apply(HEAD, ch(), LogEntry()))
    assert "x-secret" not in names(r.apply(HEAD, ch(), LogEntry()))
    r = rules("request_header_access all deny all\n")      # a header called "all", not All
    assert names(r.apply(HEAD, ch(), LogEntry())) == names(HEAD)


def test_other_judges_only_fields_squid_does_not_know_by_name():
    r = rules("request_header_access Other deny all\n")
    kept = names(r.apply(HEAD, ch(), LogEntry()))
    assert kept == ["Host", "User-Agent", "Cookie", "Referer", "Content-Length", "Via"]
    assert b"x-secret" not in SQUID_HEADERS and b"cookie" in SQUID_HEADERS


def test_the_field_s_own_lines_come_before_other_and_all():
    r = rules("request_header_access X-Secret allow all\nrequest_header_access Other deny all\n"
              "request_header_access User-Agent allow all\nrequest_header_access All deny all\n")
    assert names(r.apply(HEAD, ch(), LogEntry())) == ["User-Agent", "X-Secret", "x-secret", "Content-Length"]


def test_squid_s_paranoid_set_keeps_only_what_it_lists_and_never_the_framing():
    r = rules("request_header_access Host allow all\nrequest_header_access User-Agent allow all\n"
              "request_header_access All deny all\n")
    assert names(r.apply(HEAD, ch(), LogEntry())) == ["Host", "User-Agent", "Content-Length"]


def test_framing_and_connection_fields_are_untouchable():
    head = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
            b"Upgrade: websocket\r\nServer: s\r\n\r\n")
    c = conf("reply_header_access Content-Length deny all\nreply_header_access Connection deny all\n"
             "reply_header_replace Transfer-Encoding identity\nreply_header_access All deny all\n")
    assert names(c.reply_header_access.apply(head, ch(), LogEntry())) == [
        "Content-Length", "Transfer-Encoding", "Connection", "Upgrade"]
    warnings = [w.message for w in c.warnings]
    assert sum("header rules never change it" in w for w in warnings) == 3, warnings
    assert UNTOUCHABLE == {b"content-length", b"transfer-encoding", b"connection", b"upgrade"}


# ------------------------------------------------------------ replacements

def test_a_denied_field_gets_its_replacement():
    r = rules("request_header_access User-Agent deny all\n"
              "request_header_replace User-Agent Nutscrape/1.0 (CP/M; 8-bit)\n")
    assert ("User-Agent", "Nutscrape/1.0 (CP/M; 8-bit)") in fields(r.apply(HEAD, ch(), LogEntry()))


def test_header_replace_is_squid_s_old_name():
    r = rules("request_header_access User-Agent deny all\nheader_replace User-Agent old/1\n")
    assert ("User-Agent", "old/1") in fields(r.apply(HEAD, ch(), LogEntry()))


def test_a_replacement_applies_only_through_its_own_name_s_lines():
    r = rules("request_header_replace User-Agent x/1\nrequest_header_access All deny all\n")
    assert "User-Agent" not in names(r.apply(HEAD, ch(), LogEntry()))
    r = rules("request_header_replace All gone\nrequest_header_access All deny all\n")
    assert [v for n, v in fields(r.apply(HEAD, ch(), LogEntry())) if n == "Cookie"] == ["gone"]


def test_an_unknown_name_with_only_a_replacement_escapes_all_lines_as_in_squid():
    r = rules("request_header_replace X-Secret hidden\nrequest_header_access All deny all\n")
    assert names(r.apply(HEAD, ch(), LogEntry())) == ["X-Secret", "x-secret", "Content-Length"]


def test_a_quoted_replacement_is_unquoted_only_with_quoted_values_on():
    plain = rules('request_header_access Referer deny all\nrequest_header_replace Referer "x y"\n')
    assert ("Referer", '"x y"') in fields(plain.apply(HEAD, ch(), LogEntry()))
    quoted = rules('configuration_includes_quoted_values on\nrequest_header_access Referer deny all\n'
                   'request_header_replace Referer "x y"\nconfiguration_includes_quoted_values off\n')
    assert ("Referer", "x y") in fields(quoted.apply(HEAD, ch(), LogEntry()))


# ------------------------------------------------------------ added fields

def test_added_fields_come_last_beside_existing_ones():
    r = rules(LAN_FIRST + 'request_header_add X-Secret added\nrequest_header_add X-Who "%>a on %rm" lan\n'
              "request_header_access X-Secret deny all\n")
    e = LogEntry()
    e.client_ip, e.method = "10.0.0.7", "GET"
    out = fields(r.apply(HEAD, ch(), e))
    assert out[-2:] == [("X-Secret", "added"), ("X-Who", "10.0.0.7 on GET")]   # added after judging
    assert ("X-Who", "10.0.0.7 on GET") not in fields(r.apply(HEAD, ch("192.0.2.1"), e))


def test_an_empty_added_value_is_sent_as_a_dash_and_codes_are_escaped():
    r = rules('request_header_add X-User "%un"\nrequest_header_add X-Agent "%{User-Agent}>h"\n')
    e = LogEntry()
    e.request_headers = [(b"User-Agent", b"evil\r\nInjected: 1")]
    out = r.apply(HEAD, ch(), e)
    assert ("X-User", "-") in fields(out)
    assert b"\r\nInjected" not in out


def test_an_unquoted_value_is_sent_as_written():
    r = rules("request_header_add X-Lit %>a\n")
    assert ("X-Lit", "%>a") in fields(r.apply(HEAD, ch(), LogEntry()))


def test_adding_a_framing_field_is_ignored_with_a_warning():
    c = conf("request_header_add Content-Length 0\nreply_header_add Connection close\n")
    assert not c.request_header_access.active and not c.reply_header_access.active
    assert len([w for w in c.warnings if "this line is ignored" in w.message]) == 2


def test_a_rule_needing_a_lookup_does_not_match_as_a_fast_check():
    r = rules("acl far srcdomain .example\nrequest_header_access Cookie allow far\n"
              "request_header_add X-Far yes far\n")
    out = r.apply(HEAD, ch(), LogEntry())
    assert "Cookie" not in names(out) and "X-Far" not in names(out)


def test_reply_rules_see_the_reply():
    r = rules("acl ok http_status 200\nreply_header_access Server deny ok\nreply_header_add X-Ok yes ok\n", "reply")
    head = b"HTTP/1.1 200 OK\r\nServer: s\r\n\r\n"
    c = ch()
    c.reply_status, c.reply_headers = 200, [(b"Server", b"s")]
    assert names(r.apply(head, c, LogEntry())) == ["X-Ok"]
    c.reply_status = 404
    assert names(r.apply(head, c, LogEntry())) == ["Server"]


@pytest.mark.parametrize("line, message", [
    ("request_header_access Bad:Name deny all", "is not a header name"),
    ("request_header_access", "missing header name"),
    ("request_header_access X allow nosuchacl", "ACL 'nosuchacl' is used before it is defined"),
    ("request_header_access X maybe all", "needs 'allow' or 'deny' first"),
    ("request_header_replace User-Agent", "expected: request_header_replace NAME VALUE"),
    ('request_header_add X-A "a\\nb"', "line break"),
    ("request_header_add X-A", "expected: request_header_add NAME VALUE"),
    ('request_header_add X-A "%{nosuchcode"', "request_header_add"),
    ("reply_header_add X(y) v", "is not a header name"),
])
def test_bad_lines_name_file_and_line(line, message):
    with pytest.raises(ConfigErrors) as e:
        conf(line + "\n")
    text = str(e.value)
    assert "/etc/squidpy/squid.conf:1:" in text and message in text, text


# ------------------------------------------------------------ httpd_suppress_version_string

def test_suppressing_the_version_keeps_the_name():
    assert app_name(False).startswith("squidpy/") and app_name(True) == "squidpy"
    assert via_value("1.1", "p", app_name(True)) == b"1.1 p (squidpy)"
    assert conf("").httpd_suppress_version_string is False
    assert conf("httpd_suppress_version_string on\n").httpd_suppress_version_string is True


# ------------------------------------------------------------ follow_x_forwarded_for's walk

@pytest.mark.parametrize("text, address", [
    ("10.1.2.3", "10.1.2.3"), ("::1", "::1"), ("::ffff:10.0.0.1", "10.0.0.1"), ("127.1", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"), ("[::1]", None), ("unknown", None), ("", None), ("10.0.0.1:80", None),
])
def test_forwarded_addresses_are_read_as_squid_reads_them(text, address):
    assert parse_address(text) == address


def walk(text: str, direct: str, values: list[bytes]) -> tuple[str, list[str]]:
    c = conf(text)
    check = Checklist(src=direct)
    tested = []

    def move(address):
        tested.append(address)
        check.set_src(address)
    w = IndirectClient(direct, values)
    w.run(c.follow_x_forwarded_for, check, move)
    return w.address, tested


TRUST = "acl proxies src 127.0.0.1 192.0.2.5 192.0.2.6\nfollow_x_forwarded_for allow proxies\n"


def test_the_walk_goes_back_while_the_tested_address_is_trusted():
    assert walk(TRUST, "127.0.0.1", [b"10.1.1.1, 192.0.2.5"]) == ("10.1.1.1", ["192.0.2.5", "10.1.1.1"])
    assert walk(TRUST, "127.0.0.1", [b"10.1.1.1, 198.51.100.1"]) == ("198.51.100.1", ["198.51.100.1"])
    assert walk(TRUST, "198.51.100.9", [b"10.1.1.1"]) == ("198.51.100.9", [])   # the client itself untrusted


def test_the_walk_reads_every_field_from_the_last_value_and_stops_at_garbage():
    assert walk(TRUST, "127.0.0.1", [b"10.9.9.9", b"192.0.2.6 ,, 192.0.2.5, "])[0] == "10.9.9.9"
    assert walk(TRUST, "127.0.0.1", [b"10.9.9.9, unknown, 192.0.2.5"]) == ("192.0.2.5", ["192.0.2.5"])
    assert walk(TRUST, "127.0.0.1", [b" , "]) == ("127.0.0.1", [])


def test_deny_lines_stop_the_walk_and_no_line_trusts_nobody():
    c = TRUST.replace("follow_x_forwarded_for allow proxies", "follow_x_forwarded_for deny all")
    assert walk(c, "127.0.0.1", [b"10.1.1.1"]) == ("127.0.0.1", [])
    assert not conf("").follow_x_forwarded_for.rules


def test_indirect_client_options_have_squids_defaults():
    c = conf("")
    assert (c.acl_uses_indirect_client, c.log_uses_indirect_client, c.delay_pool_uses_indirect_client) == (
        True, True, True)
