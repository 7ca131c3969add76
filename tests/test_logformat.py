"""Unit tests: the logformat compiler, every % code and modifier, with Squid's semantics."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squidpy.log.entry import LogEntry
from squidpy.log.logformat import ENCODINGS, PREDEFINED_FORMATS, compile_format


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def entry(**kw) -> LogEntry:
    e = LogEntry(1795369446.152)
    e.end = 1795369446.165
    e.client_ip, e.client_port = "10.0.0.7", 54321
    e.local_ip, e.local_port = "127.0.0.1", 3128
    e.result, e.status, e.hierarchy = "TCP_MISS", 200, "HIER_DIRECT"
    e.server_ip, e.server_port = "93.184.216.34", 80
    e.server_local_ip, e.server_local_port = "192.0.2.1", 40000
    e.method, e.url, e.path, e.version = "GET", "http://example.com/index.html", "/index.html", "1.1"
    e.request_headers = [(b"Host", b"example.com"), (b"User-Agent", b"curl/8 (x)"),
                         (b"Cookie", b"a=1; sid=xyz"), (b"Accept", b"text/html"), (b"Accept", b"*/*")]
    e.request_header_size = 80
    e.reply_headers = [(b"Content-Type", b"text/html; charset=utf-8"), (b"Cache-Control", b"max-age=60, public")]
    e.reply_header_size, e.reply_body_size = 426, 1024
    e.mime_type = "text/html"
    e.upstream_status, e.upstream_time = 200, 0.0071
    for k, v in kw.items():
        setattr(e, k, v)
    return e


def fmt(spec: str, e: LogEntry | None = None, sn: int = 0) -> str:
    return compile_format(spec).format(e or entry(), sn)


# ------------------------------------------------------------ predefined formats

def test_squid_native_format_to_the_letter():
    assert fmt(PREDEFINED_FORMATS["squid"].spec) == PREDEFINED_FORMATS["squid"].format(entry())
    assert PREDEFINED_FORMATS["squid"].format(entry()) == (
        "1795369446.165     13 10.0.0.7 TCP_MISS/200 1450 GET http://example.com/index.html - "
        "HIER_DIRECT/93.184.216.34 text/html")


def test_denied_line_has_dashes_for_what_is_unknown():
    e = entry(result="TCP_DENIED", status=403, hierarchy="HIER_NONE", server_ip=None, url="http://www.facebook.com/",
              start=1795369447.001, end=1795369447.001)
    assert PREDEFINED_FORMATS["squid"].format(e) == (
        "1795369447.001      0 10.0.0.7 TCP_DENIED/403 1450 GET http://www.facebook.com/ - HIER_NONE/- text/html")


def test_aborted_before_any_reply_logs_status_000():
    e = entry(status=0, result="NONE_NONE_ABORTED", reply_header_size=0, reply_body_size=0)
    assert " NONE_NONE_ABORTED/000 0 " in PREDEFINED_FORMATS["squid"].format(e)


def test_common_combined_referrer_useragent():
    e = entry(user_login="alice", request_headers=[(b"Referer", b"http://r.example/"), (b"User-Agent", b'Moz "5"')])
    assert PREDEFINED_FORMATS["common"].format(e) == (
        '10.0.0.7 - alice [22/Nov/2026:17:44:06 +0000] "GET http://example.com/index.html HTTP/1.1" 200 1450 '
        "TCP_MISS:HIER_DIRECT")
    assert PREDEFINED_FORMATS["combined"].format(e) == (
        '10.0.0.7 - alice [22/Nov/2026:17:44:06 +0000] "GET http://example.com/index.html HTTP/1.1" 200 1450 '
        '"http://r.example/" "Moz \\"5\\"" TCP_MISS:HIER_DIRECT')
    assert PREDEFINED_FORMATS["referrer"].format(e) == "1795369446.165 10.0.0.7 http://r.example/ http://example.com/index.html"
    assert PREDEFINED_FORMATS["useragent"].format(e) == '10.0.0.7 [22/Nov/2026:17:44:06 +0000] "Moz \\"5\\""'


# ------------------------------------------------------------ every code

@pytest.mark.parametrize("spec,expected", [
    # time
    ("%ts", "1795369446"), ("%tu", "165"), ("%03tu", "165"), ("%.6tu", "165000"), ("%.1tu", "1"),
    ("%tl", "22/Nov/2026:17:44:06 +0000"), ("%{%Y-%m-%d %H:%M}tl", "2026-11-22 17:44"),
    ("%tg", "22/Nov/2026:17:44:06"), ("%{%H:%M:%S}tg", "17:44:06"),
    ("%tS", "1795369446.152"), ("%.6tS", "1795369446.152000"), ("%.0tS", "1795369446"),
    ("%tr", "13"), ("%dt", "-"), ("%<pt", "7"), ("%<tt", "7"), ("%.3<tt", "7.100"),
    # client connection
    ("%>a", "10.0.0.7"), ("%>A", "10.0.0.7"), ("%>p", "54321"),
    ("%>la", "127.0.0.1"), ("%>lp", "3128"), ("%la", "127.0.0.1"), ("%lp", "3128"),
    # server connection
    ("%<a", "93.184.216.34"), ("%<A", "example.com"), ("%<p", "80"), ("%<la", "192.0.2.1"), ("%<lp", "40000"),
    # squidpy's view
    ("%Ss", "TCP_MISS"), ("%Sh", "HIER_DIRECT"), ("%err_code", "-"), ("%err_detail", "-"), ("%note", "-"),
    # users and external ACLs: nothing known
    ("%un", "-"), ("%ul", "-"), ("%ue", "-"), ("%ui", "-"), ("%us", "-"), ("%et", "-"), ("%ea", "-"),
    # the request
    ("%rm", "GET"), ("%>rm", "GET"), ("%<rm", "GET"),
    ("%ru", "http://example.com/index.html"), ("%>ru", "http://example.com/index.html"),
    ("%<ru", "http://example.com/index.html"),
    ("%>rs", "http"), ("%<rs", "http"), ("%>rd", "example.com"), ("%<rd", "example.com"),
    ("%>rP", "80"), ("%<rP", "80"), ("%rp", "/index.html"), ("%>rp", "/index.html"), ("%<rp", "/index.html"),
    ("%rv", "1.1"), ("%>rv", "1.1"), ("%<rv", "1.1"),
    # headers
    ("%{User-Agent}>h", "curl/8%20(x)"), ("%>h{user-agent}", "curl/8%20(x)"), ("%{X-None}>h", "-"),
    ("%{Cookie}>h", "a=1;%20sid=xyz"), ("%{Accept}>h", "text/html,%20*/*"), ("%{Cookie:;sid}>h", "xyz"), ("%{Cookie:;none}>h", "-"),
    ("%{Cache-Control:max-age}<h", "60"), ("%{Content-Type}<h", "text/html;%20charset=utf-8"),
    ("%{Host}>ha", "example.com"),
    # the reply and sizes
    ("%>Hs", "200"), ("%<Hs", "200"), ("%mt", "text/html"),
    ("%<st", "1450"), ("%>st", "80"), ("%st", "1530"), ("%<sh", "426"), ("%>sh", "80"),
    # literal percent, Squid's deprecated spellings, the http:: namespace
    ("%%", "%"), ("100%%", "100%"), ("%Hs", "200"), ("%oa", "192.0.2.1"), ("%>v", "1.1"), ("%http::>a", "10.0.0.7"),
])
def test_code(spec, expected):
    assert fmt(spec) == expected


def test_all_headers_are_one_encoded_field():
    assert fmt("%>h", entry(request_headers=[(b"Host", b"a"), (b"X", b"1 2")])) == "Host:%20a%0D%0AX:%201%202%0D%0A"
    assert fmt("[%>h]", entry(request_headers=[(b"Host", b"a"), (b"X", b"1 2")])) == "[Host: a%0D%0AX: 1 2%0D%0A]"
    assert fmt("%<h", entry(reply_headers=())) == "-"


def test_time_codes_when_known():
    e = entry(dns_time=0.0125, upstream_time=None, client_ip="::ffff:10.0.0.9")
    assert fmt("%dt %.2dt %<tt %>a", e) == "12 12.50 - 10.0.0.9"


def test_not_forwarded_has_no_server_side_values():
    e = entry(hierarchy="HIER_NONE", server_ip=None, server_port=None)
    assert fmt("%<a %<A %<p %<rm %<ru %<rs %<rd %<rP %<rp %<rv") == (
        "93.184.216.34 example.com 80 GET http://example.com/index.html http example.com 80 /index.html 1.1")
    assert fmt("%<a %<A %<p %<rm %<ru %<rs %<rd %<rP %<rp %<rv", e) == "- - - - - - - - - -"


def test_url_parts_of_connect_ipv6_and_explicit_ports():
    assert fmt("%>rs %>rd %>rP", entry(url="example.com:443", method="CONNECT")) == "- example.com 443"
    assert fmt("%>rs %>rd %>rP", entry(url="http://[2001:db8::1]:8080/x")) == "http 2001:db8::1 8080"
    assert fmt("%>rs %>rd %>rP", entry(url="https://u:p@example.org/")) == "https example.org 443"
    assert fmt("%>rd %>rP %ru", entry(url="error:invalid-request")) == "- - error:invalid-request"


def test_user_name_sources_in_squid_order():
    assert fmt("%un", entry(user_ident="ident")) == "ident"
    assert fmt("%un", entry(user_ident="ident", user_ssl="cert")) == "cert"
    assert fmt("%un", entry(user_ident="ident", user_external="ext")) == "ext"
    assert fmt("%un %ul %ue %ui %us", entry(user_login="login", user_external="ext", user_ident="i", user_ssl="s")) == (
        "login login ext i s")
    assert fmt("%et %ea", entry(tag="vip", ext_log="group=staff")) == "vip group=staff"


def test_notes():
    e = entry(notes=[("category", "news"), ("category", "sports"), ("risk", "low")])
    assert fmt("%{category}note", e) == "news,sports"
    assert fmt("%{category:;}note", e) == "news;sports"
    assert fmt("%note", e) == "category:%20news%0D%0Acategory:%20sports%0D%0Arisk:%20low"


def test_sequence_number_comes_from_the_writer():
    assert fmt("%sn", sn=7) == "7"
    assert fmt("%05sn", sn=7) == "00007"


def test_errors():
    assert fmt("%err_code %err_detail", entry(error="ERR_CONNECT_FAIL", error_detail="(111) Connection refused")) == (
        "ERR_CONNECT_FAIL (111)%20Connection%20refused")


# ------------------------------------------------------------ modifiers

@pytest.mark.parametrize("spec,expected", [
    ("%6tr", "    13"), ("%-6tr|", "13    |"), ("%06tr", "000013"), ("%-06tr|", "000013|"),
    ("%.3tr", "13.000"), ("%.1tr", "13.0"), ("%09.3tr", "00013.000"), ("%10.3tr", "    13.000"),
    ("%03>Hs", "200"), ("%05>Hs", "00200"), ("%8>Hs", "     200"), ("%-8>Hs|", "200     |"),
    ("%.2>Hs", "200"),                                   # no maximum width on numbers
    ("%.4ru", "http"), ("%12.4ru|", "        http|"), ("%-12.4ru|", "http        |"),
    ("%012Ss", "    TCP_MISS"),                          # zero-padding is for numbers only
    ("%6<Hs", "   200"), ("%6err_code|", "-|"),          # a missing value is a bare dash
])
def test_modifiers(spec, expected):
    assert fmt(spec) == expected


def test_argument_before_or_after_the_code_but_not_both():
    assert fmt("%{Host}>h") == fmt("%>h{Host}") == "example.com"
    assert fmt("%{Host}>h{User-Agent}") == "example.com{User-Agent}"   # Squid leaves the second one as text


def test_context_quoting_follows_squid():
    e = entry(url='http://x/a"b c')
    assert fmt('"%ru"', e) == '"http://x/a\\"b c"'          # inside "...": quoted-string encoding
    assert fmt("[%ru]", e) == '[http://x/a"b c]'             # inside [...]: Squid's [ encoding
    assert fmt('"x" %ru', e) == '"x" http://x/a%22b%20c'     # after the closing quote: default again
    assert fmt("%'ru", e) == 'http://x/a"b c'
    assert fmt('"%#ru"', e) == '"http://x/a%22b%20c"'        # an explicit encoding wins


NASTY = 'a b"c\\d%e[f]\r\n\tg\x01\u00e9'       # \u00e9: the byte 0xE9, as squidpy keeps request bytes


@pytest.mark.parametrize("encoding,expected", [
    (None, "a%20b%22c%5Cd%e%5Bf%5D%0D%0A%09g%01%E9"),
    ("#", "a%20b%22c%5Cd%25e%5Bf%5D%0D%0A%09g%01%E9"),
    ('"', 'a b\\"c\\\\d%e[f]\\r\\n\\tg\\x01\u00e9'),
    ("[", 'a b"c%5Cd%25e%5Bf%5D%0D%0A%09g%01%E9'),
    ("/", '"a b\\"c\\\\d%e[f]\\r\\n\\tg\\x01\u00e9"'),
    ("'", 'a b"c\\d%e[f]%0D%0A%09g%01\u00e9'),
])
def test_each_encoding(encoding, expected):
    assert ENCODINGS[encoding](NASTY) == expected
    header = entry(request_headers=[(b"X", NASTY.encode("latin-1"))])
    assert fmt(f"%{encoding or ''}{{X}}>h", header) == expected


def test_shell_encoding_quotes_only_values_with_spaces():
    assert ENCODINGS["/"]("plain") == "plain"
    assert ENCODINGS["/"]('say "hi"') == '"say \\"hi\\""'


CLIENT_CODES = ["rm", ">rm", "ru", ">ru", "rp", ">rp", ">rd", "{X}>h", ">h", "un", "ul", "ue", "et", "ea", "err_detail",
                "mt", "{X}<h"]


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1), st.sampled_from(["", '"', "[", "#", "/", "'"]), st.sampled_from(CLIENT_CODES))
def test_no_client_value_can_split_or_forge_a_line(value, encoding, code):
    raw = value.encode("utf-8", "surrogatepass").decode("latin-1")
    e = entry(method=value, url=value, path=value, user_login=value, user_external=value, tag=value, ext_log=value,
              error_detail=value, mime_type=value, request_headers=[(b"X", raw.encode("latin-1"))],
              reply_headers=[(b"X", raw.encode("latin-1"))])
    line = fmt(f"%{encoding}{code}", e)
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in line), (code, encoding, line)


def test_forged_request_line_stays_on_one_line_in_every_predefined_format():
    e = entry(url="http://x/a\r\n1795369446.165 0 6.6.6.6 TCP_HIT/200", method="GET\n",
              request_headers=[(b"User-Agent", b"x\r\nevil"), (b"Referer", b"\n")])
    for name, f in PREDEFINED_FORMATS.items():
        line = f.format(e)
        assert "\n" not in line and "\r" not in line, name


# ------------------------------------------------------------ errors

@pytest.mark.parametrize("spec,message", [
    ("%ts %zz", "unknown format code"),
    ("%tt", "Squid has no %tt: use %tr"),
    ("%>eui", "not supported"),
    ("%icap::tt", "no ICAP"),
    ("%ssl::>foo", "'%ssl::>foo' is not a TLS code Squid 5.7 has"),
    ("%.tr", "must be followed by a number"),
    ("%{Host>h", "missing '}'"),
    ("%{:x}>h", "needs a header name"),
])
def test_bad_formats_are_explained(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("%", "%")):
        compile_format(spec)


def test_generated_formatter_matches_field_by_field_rendering():
    e = entry(dns_time=0.5, notes=[("a", "b")])
    specs = [*PREDEFINED_SPECS_LIST(), "%-12.3ru|%06tr|%8>Hs|%.3dt|%{Cookie:;sid}>h|%/ru|%010>st|%-6Ss|%.6tS|%sn"]
    for spec in specs:
        f = compile_format(spec)
        assert f.format(e, 3) == "".join(p if isinstance(p, str) else p.render(e, 3) for p in f.parts), spec


def PREDEFINED_SPECS_LIST():
    return [f.spec for f in PREDEFINED_FORMATS.values()]


# ------------------------------------------------------------ TLS (ssl:: and tls::)

def _tls_entry():
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from squidpy.tls.errors import SQUID_X509_V_ERR_DOMAIN_MISMATCH, CertError
    from squidpy.tls.session import TlsFacts

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Ltd"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some CA\nforged line")]))
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return entry(url="https://www.example.com/index.html", bump_mode="bump", sni="www.example.com",
                 server_cert=cert, client_cert=cert,
                 cert_errors=(CertError(10, cert, 0), CertError(SQUID_X509_V_ERR_DOMAIN_MISMATCH, cert, 0)),
                 client_tls=TlsFacts("TLS/1.3", "TLS_AES_256_GCM_SHA384", "TLS/1.0", "TLS/1.3"),
                 server_tls=TlsFacts("TLS/1.2", "ECDHE-RSA-AES128-GCM-SHA256", "TLS/1.2", "TLS/1.2"))


def test_tls_codes_in_squids_words():
    e = _tls_entry()
    assert fmt("%ssl::bump_mode %ssl::>sni", e) == "bump www.example.com"
    assert fmt("%ssl::<cert_subject", e) == "/O=Example Ltd/CN=www.example.com"
    # OpenSSL's one-line form escapes what is not printable: a certificate cannot split a line
    assert fmt("%ssl::<cert_issuer", e) == "/CN=Some CA\\x0Aforged line"
    assert fmt("%ssl::<cert_errors", e) == "X509_V_ERR_CERT_HAS_EXPIRED@depth=0:SQUID_X509_V_ERR_DOMAIN_MISMATCH@depth=0"
    assert fmt("%{;}ssl::<cert_errors", e).count(";") == 1
    assert fmt("%ssl::>negotiated_version %ssl::<negotiated_version %tls::>negotiated_cipher", e) == \
        "TLS/1.3 TLS/1.2 TLS_AES_256_GCM_SHA384"
    assert fmt("%ssl::>received_hello_version %ssl::>received_supported_version "
               "%ssl::<received_hello_version %ssl::<received_supported_version", e) == "TLS/1.0 TLS/1.3 TLS/1.2 TLS/1.2"
    assert fmt("%ssl::>cert_subject", e) == "/O=Example Ltd/CN=www.example.com"
    pem = fmt("%'ssl::<cert", e)
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and "\n" not in pem    # even raw, one line


def test_tls_codes_are_dashes_without_tls():
    codes = ["bump_mode", ">sni", ">cert_subject", ">cert_issuer", "<cert_subject", "<cert_issuer", "<cert",
             "<cert_errors", ">negotiated_version", "<negotiated_version", ">negotiated_cipher",
             "<negotiated_cipher", ">received_hello_version", "<received_hello_version",
             ">received_supported_version", "<received_supported_version"]
    assert fmt(" ".join(f"%ssl::{c}" for c in codes)) == " ".join("-" for _ in codes)


def test_inlined_codes_read_what_their_getters_read():
    """A code the compiled format inlines (``Code.expr``) prints what its getter gives,
    with values present, missing and IPv4-mapped, bare and with modifiers."""
    from squidpy.log.logformat import CODES
    inlined = [name for name, code in CODES.items() if code.expr is not None]
    assert {"ts", "tu", "tr", ">a", "Ss", "<st", "ru"} <= set(inlined)
    cases = [entry(), entry(client_ip="::ffff:10.1.2.3", server_ip=None, mime_type=None, status=0),
             entry(method="GET", url="http://h/a b\x01", user_login="bob smith", hierarchy="NONE")]
    for name in inlined:
        for spec in (f"%{name}", f"%6{name}", f"%-9{name}", f"%0{5}{name}", f"%[{name}", f"%#{name}"):
            if name in ("ts", "tu", "tr") and spec[1] in "[#":
                continue
            fmt = compile_format(spec)
            for e in cases:
                assert fmt.format(e) == "".join(p if isinstance(p, str) else p.render(e) for p in fmt.parts), \
                    (spec, e.__dict__)


def test_each_escaping_finds_exactly_the_characters_it_escapes():
    """The searches that spare clean values the escaping (written as the complement of what
    stays when everything from 128 up is escaped) find every character the escaping changes,
    and no other (text beyond latin-1 is escaped as its UTF-8 bytes, all of them >= 128)."""
    from squidpy.log import logformat as lf
    samples = [*range(0x800), 0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF]
    for finder, escape in ((lf._NEEDS_PASS, lf._PASS_ESCAPE), (lf._NEEDS_URL, lf._URL_ESCAPE),
                           (lf._NEEDS_BLOB, lf._BLOB_ESCAPE), (lf._NEEDS_RAW, lf._RAW_ESCAPE)):
        for code in samples:
            escaped = code in escape or (code > 255 and 255 in escape)
            assert bool(finder("ab" + chr(code))) == escaped, (escape, code)
