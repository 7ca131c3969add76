"""Differential tests: the same squid.conf in Squid 5.7 and in squidpy, the same requests.

Every case below is a piece of squid.conf (ACLs and http_access rules) and
requests from several loopback client addresses (127.0.0.x).  Each request's
verdict (allow or deny) is taken from a live Squid 5.7, from a live squidpy,
and from `squidpy check` on the case's configuration; all three must agree and
match the verdict the case states.  A difference is a failure unless the case
names a difference docs/squid-compat.md documents as intended.

All cases run in one configuration: each case's rules are prefixed with an ACL
matching its `X-Case` request header, and its ACL names get a prefix, so the
cases cannot see each other.  Nothing is forwarded: every rule becomes a deny,
and the rules that allowed answer with a deny_info redirect to
http://allow.invalid/, so the status (302 or 403) is the verdict.  Names come
from a hosts file (Squid) and a loopback DNS server (squidpy); neither proxy
connects anywhere.  The table grows with every ACL type both support.
"""

from __future__ import annotations

import re
import time

import pytest

from squidpy.acl import tls as tls_acls
from squidpy.acl.types import ACL_TYPES
from squidpy.config import compat
from tests.dnsserver import DnsServer
from tests.proxyproc import ProxyProcess
from tests.squidproc import SquidProcess, free_port
from tests.verdicts import HOSTS, NAMES, Case, Req, check_verdict, combined, hosts_file, send, standalone

WEEKDAY = "MTWHFAS"     # time.localtime().tm_wday 0 (Monday) .. 6 (Sunday), as Squid's day letters


def today_letter(offset: int = 0) -> str:
    return WEEKDAY[(time.localtime().tm_wday + offset) % 7]


U = "http://www.example.test/"

CASES = [
    # ---- the six constructs of issue 12
    Case("comment-inside-continuation",
         "acl blocked dstdomain \\\n  .facebook.test \\\n#  .twitter.test \\\n  .youtube.test\n",
         ["deny blocked", "allow all"],
         [Req("http://www.youtube.test/", "deny"), Req("http://www.twitter.test/", "allow"),
          Req("http://www.facebook.test/", "deny")]),
    Case("continuation-joined-as-written", "acl blocked dstdomain .face\\\nbook.test\n",
         ["deny blocked", "allow all"],
         [Req("http://www.facebook.test/", "deny"), Req("http://face/", "allow")]),
    Case("acl-names-ignore-case", "acl LocalNet src 127.0.0.2\nacl localnet src 127.0.0.3\n",
         ["allow LOCALNET", "deny all"],
         [Req(U, "allow", client="127.0.0.2"), Req(U, "allow", client="127.0.0.3"),
          Req(U, "deny", client="127.0.0.4")]),
    Case("comments-in-value-files", 'acl exe urlpath_regex -i "{dir}/exe.txt"\n', ["deny exe", "allow all"],
         [Req(U + "setup.exe", "deny"), Req(U + "setup.MSI", "deny"), Req(U + "readme.txt", "allow")],
         files={"exe.txt": "# installers\n\\.exe$   # executables\n  \\.msi$\t# windows installer\n"}),
    Case("posix-classes", "acl digits urlpath_regex [[:digit:]]{4}\n", ["deny digits", "allow all"],
         [Req(U + "2024", "deny"), Req(U + "abcd", "allow")]),
    Case("perl-escapes-are-literals", "acl perl urlpath_regex \\d{4}\n", ["deny perl", "allow all"],
         [Req(U + "2024", "allow"), Req(U + "dddd", "deny")]),
    Case("regex-glibc-quirks", "acl upper urlpath_regex -i ^/[[:upper:]]+$\nacl escaped urlpath_regex -i \\ab\n"
                               "acl escaped_upper urlpath_regex -i /\\Ax\nacl notlazy urlpath_regex ^/ba+?c$\n",
         ["deny upper", "deny escaped", "deny escaped_upper", "deny notlazy", "allow all"],
         [Req(U + "abc", "deny"), Req(U + "x/ab", "allow"), Req(U + "1/ax", "deny"), Req(U + "bc", "deny"),
          Req(U + "2/b", "allow")]),
    # ---- the rest of the reader
    Case("blank-line-inside-continuation", "acl a src 127.0.0.2 \\\n\n  127.0.0.3\n", ["allow a", "deny all"],
         [Req(U, "allow", client="127.0.0.3"), Req(U, "deny", client="127.0.0.4")]),
    Case("latin1-comment", "# r\xe9seau du si\xe8ge\nacl a src 127.0.0.2\n", ["allow a", "deny all"],
         [Req(U, "allow", client="127.0.0.2"), Req(U, "deny")]),
    Case("if-else-endif", "if 0x10 = 16\nacl a src 127.0.0.2\nelse\nacl a src 127.0.0.3\nendif\n"
                          "if false\nacl a src 127.0.0.4\nendif\n",
         ["allow a", "deny all"],
         [Req(U, "allow", client="127.0.0.2"), Req(U, "deny", client="127.0.0.3"),
          Req(U, "deny", client="127.0.0.4")]),
    Case("include", "include {dir}/inc.conf\n", ["allow a", "deny all"],
         [Req(U, "allow", client="127.0.0.2"), Req(U, "deny", client="127.0.0.3")],
         files={"inc.conf": "acl a src 127.0.0.2\n"}),
    Case("quoted-values-and-parameters",
         'configuration_includes_quoted_values on\nacl d dstdomain parameters("{dir}/domains.txt") ".z.test"\n'
         "configuration_includes_quoted_values off\n",
         ["deny d", "allow all"],
         [Req("http://a.domains.test/", "deny"), Req("http://z.test/", "deny"), Req(U, "allow")],
         files={"domains.txt": ".domains.test # a comment\n"}),
    Case("quoted-word-names-a-file", "acl d dstdomain '{dir}/list.txt' .z.test\n", ["deny d", "allow all"],
         [Req("http://www.facebook.test/", "deny"), Req("http://z.test/", "allow"), Req(U, "allow")],
         files={"list.txt": ".facebook.test\n"}),
    Case("trailing-comment-words", "acl p port 8080 # alternative http\n", ["deny p", "allow all"],
         [Req("http://www.example.test:8080/", "deny"), Req(U, "allow")]),
    Case("all-and-zero-network", "acl z src 0/0\n", ["deny z", "allow all"], [Req(U, "deny", client="127.0.0.3")]),
    Case("acl-name-characters", "acl my.acl/1+x:y src 127.0.0.2\n", ["allow my.acl/1+x:y", "deny all"],
         [Req(U, "allow", client="127.0.0.2"), Req(U, "deny")]),
    Case("manager-proto-cache-object", "acl manager proto cache_object\n", ["deny manager", "allow all"],
         [Req("http://mgr.example.test/squid-internal-mgr/info", "deny"), Req(U, "allow")]),
    Case("myip-myport", "acl me myip 127.0.0.1\nacl mp myport {port}\n", ["deny me mp", "allow all"],
         [Req(U, "deny")]),
    Case("service-name-macro", "acl svc dstdomain ${service_name}.test\n", ["deny svc", "allow all"],
         [Req("http://squid.test/", "deny")], differs="service-name"),
    # ---- ACL types
    Case("src", "acl s src 127.0.0.2-127.0.0.3 127.0.0.8/30\n", ["allow s", "deny all"],
         [Req(U, "allow", client="127.0.0.3"), Req(U, "allow", client="127.0.0.9"),
          Req(U, "deny", client="127.0.0.4")]),
    Case("dst", "acl d dst 192.0.2.0/24\n", ["deny d", "allow all"],
         [Req(U, "deny"), Req("http://www.dst-out.test/", "allow"), Req("http://192.0.2.20/", "deny")]),
    Case("dst-no-lookup", "acl d dst -n 192.0.2.0/24\n", ["deny d", "allow all"],
         [Req(U, "allow"), Req("http://192.0.2.20/", "deny")]),
    Case("dstdomain", "acl d dstdomain .example.test www.facebook.test\n", ["deny d", "allow all"],
         [Req(U, "deny"), Req("http://example.test/", "deny"), Req("http://www.facebook.test/", "deny"),
          Req("http://facebook.test/", "allow"), Req("http://WWW.Example.Test/", "deny")]),
    Case("dstdomain-ip-literal-by-reverse-name", "acl d dstdomain .example.test\n", ["deny d", "allow all"],
         [Req("http://192.0.2.20/", "deny"), Req("http://198.51.100.99/", "allow")]),
    Case("dstdomain-trailing-dot", "acl d dstdomain .facebook.test\n", ["deny d", "allow all"],
         [Req("http://www.facebook.test./", "deny")]),
    Case("dstdomain-dot", "acl dot dstdomain .\n", ["deny dot", "allow all"],
         [Req("http://www.facebook.test./", "allow"), Req(U, "allow")]),
    Case("dstdomain-n", "acl d dstdomain -n .example.test\n", ["deny d", "allow all"],
         [Req("http://192.0.2.20/", "allow"), Req(U, "deny")]),
    Case("dstdomain-connect", "acl d dstdomain .facebook.test\n", ["deny d", "allow all"],
         [Req("www.facebook.test:443", "deny", method="CONNECT"), Req("www.example.test:443", "allow",
                                                                     method="CONNECT")]),
    Case("srcdomain", "acl s srcdomain .lan.test\n", ["allow s", "deny all"],
         [Req(U, "allow", client="127.0.0.2"), Req(U, "deny", client="127.0.0.3")]),
    Case("dstdom_regex", "acl d dstdom_regex -i (^|\\.)face[a-z]*\\.test$\n", ["deny d", "allow all"],
         [Req("http://www.FACEBOOK.test/", "deny"), Req(U, "allow")]),
    Case("srcdom_regex", "acl s srcdom_regex \\.guest\\.test$\n", ["deny s", "allow all"],
         [Req(U, "deny", client="127.0.0.3"), Req(U, "allow", client="127.0.0.2")]),
    Case("port", "acl Safe_ports port 80 443 1025-65535\nacl SSL_ports port 443\n",
         ["deny !Safe_ports", "deny CONNECT !SSL_ports", "allow all"],
         [Req(U, "allow"), Req("http://www.example.test:70/", "deny"), Req("http://www.example.test:8080/", "allow"),
          Req("www.example.test:443", "allow", method="CONNECT"),
          Req("www.example.test:8443", "deny", method="CONNECT")]),
    Case("method", "acl writes method POST PUT\n", ["deny writes", "allow all"],
         [Req(U, "deny", method="POST", headers={"Content-Length": "0"}), Req(U, "allow")]),
    Case("proto", "acl plain proto HTTP\n", ["allow plain", "deny all"],
         [Req(U, "allow"), Req("www.example.test:443", "deny", method="CONNECT")]),
    Case("url_regex", "acl u url_regex -i ^http://www\\.example\\.test/ads/\nacl u url_regex \\.mp3$\n",
         ["deny u", "allow all"],
         [Req("http://WWW.example.test/ads/x", "deny"), Req(U + "a.mp3", "deny"), Req(U + "a.MP3", "allow")]),
    Case("urlpath_regex", "acl p urlpath_regex ^/cgi-bin/ \\?\n", ["deny p", "allow all"],
         [Req(U + "cgi-bin/x", "deny"), Req(U + "x?y=1", "deny"), Req(U + "x", "allow")]),
    Case("browser", "acl b browser -i ^curl/ +i Wget\n", ["deny b", "allow all"],
         [Req(U, "deny", headers={"User-Agent": "CURL/8.0"}), Req(U, "deny", headers={"User-Agent": "Wget/1.2"}),
          Req(U, "allow", headers={"User-Agent": "wget/1.2"}), Req(U, "allow")]),
    Case("referer_regex", "acl r referer_regex ^https?://intranet\\.\n", ["allow r", "deny all"],
         [Req(U, "allow", headers={"Referer": "http://intranet.lan/"}), Req(U, "deny")]),
    Case("req_header", "acl h req_header X-Team -i ^(red|blue)$\n", ["deny h", "allow all"],
         [Req(U, "deny", headers={"X-Team": "Blue"}), Req(U, "allow", headers={"X-Team": "green"}), Req(U, "allow")]),
    Case("req_mime_type", "acl m req_mime_type -i ^multipart/form-data\n", ["deny m", "allow all"],
         [Req(U, "deny", method="POST", headers={"Content-Type": "multipart/form-data; boundary=x",
                                                  "Content-Length": "0"}),
          Req(U, "allow", method="POST", headers={"Content-Type": "text/plain", "Content-Length": "0"})]),
    Case("time", f"acl today time {today_letter()}\nacl tomorrow time {today_letter(1)}\n",
         ["deny tomorrow", "deny today", "allow all"], [Req(U, "deny")]),
    Case("time-other-day", f"acl tomorrow time {today_letter(1)}{today_letter(2)} 00:00-24:00\n",
         ["deny tomorrow", "allow all"], [Req(U, "allow")]),
    Case("maxconn", "acl hog maxconn 2\n", ["deny hog", "allow all"],
         [Req(U, "allow", client="127.0.0.5", extra_connections=1),
          Req(U, "deny", client="127.0.0.6", extra_connections=2)]),
    Case("localip", "acl here localip 127.0.0.1\nacl there localip 127.0.0.2\n", ["deny there", "allow here"],
         [Req(U, "allow")]),
    Case("localport", "acl p localport {port}\n", ["allow p", "deny all"], [Req(U, "allow")]),
    Case("myportname", "acl at_office myportname office\nacl elsewhere myportname other\n",
         ["deny elsewhere", "allow at_office", "deny all"], [Req(U, "allow")]),
    # Squid 5.7 knows a peer's name only for tcp_outgoing_address: in http_access it matches nothing
    Case("peername-outside-tcp_outgoing_address", "acl p peername up\nacl pr peername_regex .\n",
         ["deny p", "deny pr", "allow all"], [Req(U, "allow")]),
    Case("any-of", "acl a src 127.0.0.2\nacl b dstdomain .facebook.test\nacl e any-of a b\n", ["deny e", "allow all"],
         [Req(U, "deny", client="127.0.0.2"), Req("http://www.facebook.test/", "deny"), Req(U, "allow")]),
    Case("all-of", "acl a src 127.0.0.2\nacl b dstdomain .facebook.test\nacl e all-of a !b\nacl e all-of b\n",
         ["deny e", "allow all"],
         [Req(U, "deny", client="127.0.0.2"), Req("http://www.facebook.test/", "deny", client="127.0.0.3"),
          Req(U, "allow", client="127.0.0.3")]),
    Case("annotations-and-note", "acl mark annotate_transaction cat=video\nacl vid note cat video\n"
                                 "acl bob src 127.0.0.2\n",
         ["deny vid", "deny bob mark vid", "allow all"],
         [Req(U, "deny", client="127.0.0.2"), Req(U, "allow", client="127.0.0.3")]),
    Case("has", "acl req has request\nacl rep has response\n", ["deny rep", "deny !req", "allow all"],
         [Req(U, "allow")]),
    Case("random-always", "acl r random 1/1\n", ["deny r", "allow all"], [Req(U, "deny")]),
    Case("hier_code-before-forwarding", "acl none hier_code HIER_NONE\nacl direct hier_code HIER_DIRECT\n",
         ["deny direct", "deny none", "allow all"], [Req(U, "deny")]),
    Case("squid_error-before-any-error", "acl ok squid_error ERR_NONE\nacl bad squid_error ERR_CONNECT_FAIL\n",
         ["deny bad", "allow ok", "deny all"], [Req(U, "allow")]),
    Case("transaction_initiator", "acl c transaction_initiator client\nacl i transaction_initiator internal\n",
         ["deny i", "allow c", "deny all"], [Req(U, "allow")]),
    Case("reply-acls-never-match-in-http_access",
         "acl s http_status 200-599\nacl t rep_mime_type .\nacl h rep_header Server .\n",
         ["deny s", "deny t", "deny h", "deny !s", "allow all"], [Req(U, "deny")]),
    Case("connections_encrypted-and-tag", "acl tls connections_encrypted\nacl tagged tag vip\n",
         ["deny tls", "deny tagged", "allow all"], [Req(U, "allow")]),
    Case("manager-after-a-dstdomain-deny", "acl social dstdomain .facebook.test\n",
         ["deny social", "allow localhost manager", "deny manager", "allow all"],
         [Req("http://127.0.0.1:{port}/squid-internal-mgr/info", "allow"),
          Req("http://127.0.0.1:{port}/squid-internal-mgr/info", "deny", client="127.0.0.2"),
          Req("http://127.0.0.1:{port}/squid-internal-mgr/info", "allow", origin_form=True),
          Req("http://127.0.0.1:{port}/squid-internal-mgr/info", "deny", client="127.0.0.2", origin_form=True),
          Req("http://www.facebook.test/", "deny")]),
    Case("implicit-default-is-the-opposite-of-the-last-line", "acl a src 127.0.0.2\n", ["deny a"],
         [Req(U, "allow"), Req(U, "deny", client="127.0.0.2")]),
    # ---- the indirect client (follow_x_forwarded_for): only this case's requests carry X-Forwarded-For
    Case("follow-x-forwarded-for", "acl lb src 127.0.0.1 127.0.0.3\nacl inner src 10.20.0.0/16\n"
                                   "follow_x_forwarded_for allow lb\n",
         ["allow inner", "deny all"],
         [Req(U, "allow", headers={"X-Forwarded-For": "10.20.1.1"}),
          Req(U, "deny", client="127.0.0.2", headers={"X-Forwarded-For": "10.20.1.1"}),
          Req(U, "deny", headers={"X-Forwarded-For": "10.20.1.1, 192.0.2.1"}),
          Req(U, "allow", headers={"X-Forwarded-For": "10.20.1.1, 127.0.0.3"}),
          Req(U, "allow", headers={"X-Forwarded-For": "bogus, 10.20.1.1"}),
          Req(U, "deny", headers={"X-Forwarded-For": "10.20.1.1, bogus"}),
          Req(U, "allow", headers={"X-Forwarded-For": "10.20.1.1,,  "})]),
]

# ACL types the table covers; a type squidpy implements must be here or be listed as not comparable
COVERED = {"src", "dst", "dstdomain", "srcdomain", "dstdom_regex", "srcdom_regex", "port", "method", "proto",
           "url_regex", "urlpath_regex", "browser", "referer_regex", "req_header", "req_mime_type", "time",
           "maxconn", "localip", "localport", "myportname", "peername", "peername_regex", "any-of", "all-of", "annotate_transaction", "note",
           "has", "random", "hier_code", "squid_error", "transaction_initiator", "http_status", "rep_mime_type",
           "rep_header", "connections_encrypted", "tag"}
TLS_TYPES = tuple(cls.name for cls in (tls_acls.ServerNameAcl, tls_acls.ServerNameRegexAcl, tls_acls.SslErrorAcl,
                                        tls_acls.ServerCertFingerprintAcl, tls_acls.UserCertAcl, tls_acls.CaCertAcl,
                                        tls_acls.AtStepAcl))
HELPER_TYPES = ("proxy_auth", "proxy_auth_regex", "max_user_ip", "ext_user", "ext_user_regex", "external")
NOT_COMPARABLE = {
    "annotate_client": "needs two requests on one connection (tests/test_acl_types.py)",
    **{name: "needs helper programs: compared with Squid in tests/test_auth_vs_squid.py" for name in HELPER_TYPES},
    **{name: "needs TLS (SslBump steps, certificates): at_step runs against Squid in tests/test_bump_vs_squid.py, "
             "the others are unit-tested on Squid's matching rules (tests/test_tls_verify.py, test_tls_config.py)"
       for name in TLS_TYPES},
}


pytestmark = pytest.mark.slow          # the verdicts fixture asks Squid, squidpy and check everything


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """Every request of every case, asked of Squid, squidpy and `squidpy check`."""
    directory = tmp_path_factory.mktemp("differential")
    for case in CASES:
        for name, text in case.files.items():
            (directory / name).write_bytes(text.encode("latin-1"))
    dns = DnsServer({name.rstrip("."): [address] for name, address in HOSTS.items()}, names=NAMES).start()
    squid_port, squidpy_port = free_port(), free_port()
    squid = SquidProcess(directory / "squid", combined(CASES, directory, squid_port).replace(
        "acl allowmark", f"http_port 127.0.0.1:{squid_port} name=office\nacl allowmark", 1),
        hosts={**HOSTS, **{name: address for address, name in NAMES.items() if name != "localhost"}})
    proxy = ProxyProcess(directory / "squidpy", combined(CASES, directory, squidpy_port) +
                         f"dns_nameservers 127.0.0.1:{dns.port}\n" + hosts_file(directory),
                         listen=f"127.0.0.1:{squidpy_port} name=office")
    results = {}
    try:
        for number, case in enumerate(CASES, 1):
            case_file = directory / f"case{number}.conf"
            case_file.write_bytes(standalone(case, directory, squidpy_port).encode("latin-1"))
            for i, req in enumerate(case.requests):
                results[case.name, i] = (send(squid.port, number, req), send(proxy.port, number, req),
                                         check_verdict(case_file, squidpy_port, req))
    finally:
        proxy.stop()
        squid.stop()
        dns.stop()
    assert "Traceback" not in proxy.read_cache_log()
    return results


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_squid_squidpy_and_check_agree(verdicts, case):
    for i, req in enumerate(case.requests):
        squid, squidpy, check = verdicts[case.name, i]
        what = f"{req.method} {req.url} from {req.client}"
        if case.differs:
            assert case.differs in compat.INTENDED, f"{case.differs} is not documented in docs/squid-compat.md"
            assert squid == req.expect, f"Squid: {squid} for {what}"
            assert squidpy == check, f"squidpy {squidpy}, check {check} for {what}"
            continue
        assert (squid, squidpy, check) == (req.expect,) * 3, f"Squid/squidpy/check for {what}"


def test_the_table_covers_every_acl_type_both_support():
    assert COVERED | set(NOT_COMPARABLE) == set(ACL_TYPES)
    used = {m for case in CASES for m in re.findall(r"^acl\s+\S+\s+(\S+)", case.acls, re.M)}
    assert COVERED - used == set(), "a covered type has no case"


def test_a_bare_size_means_bytes_in_both(tmp_path):
    """request_header_max_size 600 is 600 bytes (squidpy once read KB): a 1 KB head is refused by both."""
    config = ("request_header_max_size 600\nacl allowmark src all\n"
              "deny_info http://allow.invalid/ allowmark\nhttp_access deny allowmark\n")
    squid_port, squidpy_port = free_port(), free_port()
    squid = SquidProcess(tmp_path / "squid", f"http_port 127.0.0.1:{squid_port}\n" + config)
    proxy = ProxyProcess(tmp_path / "squidpy", config, listen=f"127.0.0.1:{squidpy_port}")
    small, big = Req(U, "allow"), Req(U, "deny", headers={"X-Filler": "x" * 1000})
    try:
        answers = [(send(p, 0, small), send(p, 0, big)) for p in (squid.port, proxy.port)]
    finally:
        proxy.stop()
        squid.stop()
    assert answers[0][0] == answers[1][0] == "allow"
    assert answers[0][1] == answers[1][1] != "allow", answers
