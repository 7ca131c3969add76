"""Origin certificates checked as Squid checks them (squidpy.tls.verify), against real TLS
origins on loopback: good, expired, not yet valid, wrong name, self-signed, unknown CA;
and the names, errors and option syntax that go with it."""

from __future__ import annotations

import datetime
import select
import socket
import time

import pytest
from OpenSSL import SSL

from squidpy.tls import errors
from squidpy.tls.errors import TlsFailure, asn1_time_print, parse_error_name, x509_name_oneline
from squidpy.tls.names import certificate_matches_host, certificate_names, match_domain_name
from squidpy.tls.options import PortTls, TlsOptionError, TlsOptions, option_mask, outgoing_defaults
from squidpy.tls.verify import TlsSetupError, Verification, client_context
from tests.tlscert import TestCA


def options(*words: str, cafile: str | None = None) -> TlsOptions:
    opts = outgoing_defaults()
    warnings = []
    for w in words:
        opts.parse(w, warnings.append)
    if cafile:
        opts.cafiles.append(cafile)
    return opts


def handshake(port: int, host: str | None, opts: TlsOptions, bypass=None, alpn=None):
    """Connect with squidpy's client context; (Verification, failure or None, the connection)."""
    ctx = client_context(opts, alpn)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = SSL.Connection(ctx, sock)
    state = Verification(host, opts, bypass)
    state.attach(conn)
    conn.set_connect_state()
    deadline = time.monotonic() + 10
    while True:
        try:
            conn.do_handshake()
            return state, None, conn
        except (SSL.WantReadError, SSL.WantWriteError):
            if time.monotonic() > deadline:
                raise TimeoutError("TLS handshake did not end") from None
            select.select([sock], [], [], 0.5)
        except SSL.Error as e:
            sock.close()
            return state, state.failure(e), None


# ---------------------------------------------------------------- real origins

def test_good_origin(tls_origins):
    state, failure, conn = handshake(tls_origins.port("good"), "good.test", options(cafile=str(tls_origins.cafile)))
    assert failure is None and state.errors == []
    assert state.peer_cert == tls_origins.certs["good"]
    conn.close()


def test_good_origin_by_address(tls_origins):
    """squidpy accepts an IP address subjectAltName for a URL written with that address."""
    _, failure, conn = handshake(tls_origins.port("good"), "127.0.0.1", options(cafile=str(tls_origins.cafile)))
    assert failure is None
    conn.close()


def test_system_trust_store_by_default_does_not_know_the_test_root(tls_origins):
    _, failure, _ = handshake(tls_origins.port("good"), "good.test", options())
    assert failure.name == "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY"
    assert failure.detail() == ("SSL Certificate error: certificate issuer (CA) not known: "
                                "/O=squidpy tests/CN=squidpy test root")


def test_default_ca_off_trusts_only_cafile(tls_origins, tmp_path):
    _, failure, conn = handshake(tls_origins.port("good"), "good.test",
                                 options("default-ca=off", cafile=str(tls_origins.cafile)))
    assert failure is None
    conn.close()


@pytest.mark.parametrize("kind, name, detail_start", [
    ("expired", "X509_V_ERR_CERT_HAS_EXPIRED", "SSL Certificate expired on: "),
    ("notyet", "X509_V_ERR_CERT_NOT_YET_VALID", "SSL Certificate is not valid before: "),
    ("wrongname", "SQUID_X509_V_ERR_DOMAIN_MISMATCH",
     "Certificate does not match domainname: /O=Origin Ltd/CN=another.test"),
    ("selfsigned", "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT",
     "Self-signed SSL Certificate: /O=Origin Ltd/CN=selfsigned.test"),
    ("unknownca", "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
     "SSL Certificate error: certificate issuer (CA) not known: /O=squidpy tests/CN=an unknown root"),
])
def test_bad_origins_fail_with_squids_words(tls_origins, kind, name, detail_start):
    host = "wrongname.test" if kind == "wrongname" else tls_origins.names[kind]
    state, failure, _ = handshake(tls_origins.port(kind), host, options(cafile=str(tls_origins.cafile)))
    assert failure.name == name
    assert failure.detail().startswith(detail_start)
    assert failure.errno_text == "[No Error]"
    assert failure.peer_cert == tls_origins.certs[kind]
    if kind == "expired":
        assert failure.detail().endswith(asn1_time_print(tls_origins.certs[kind].not_valid_after_utc))


def test_dont_verify_peer_takes_anything(tls_origins):
    for kind in ("expired", "selfsigned", "unknownca", "wrongname"):
        state, failure, conn = handshake(tls_origins.port(kind), "x.test", options("flags=DONT_VERIFY_PEER"))
        assert failure is None and state.errors == []
        conn.close()


def test_dont_verify_domain_still_checks_the_chain(tls_origins):
    cafile = str(tls_origins.cafile)
    _, failure, conn = handshake(tls_origins.port("wrongname"), "wrongname.test",
                                 options("flags=DONT_VERIFY_DOMAIN", cafile=cafile))
    assert failure is None
    conn.close()
    _, failure, _ = handshake(tls_origins.port("expired"), "expired.test",
                              options("flags=DONT_VERIFY_DOMAIN", cafile=cafile))
    assert failure.name == "X509_V_ERR_CERT_HAS_EXPIRED"


def test_bypass_lets_chosen_errors_through_and_records_them(tls_origins):
    """sslproxy_cert_error allow: the handshake goes on, the errors stay known (ssl_error ACLs)."""
    seen = []

    def allow_expired(error, peer):
        seen.append(error.name)
        return error.code in parse_error_name("ssl::certHasExpired")

    state, failure, conn = handshake(tls_origins.port("expired"), "expired.test",
                                     options(cafile=str(tls_origins.cafile)), allow_expired)
    assert failure is None and [e.name for e in state.errors] == ["X509_V_ERR_CERT_HAS_EXPIRED"]
    conn.close()
    state, failure, _ = handshake(tls_origins.port("selfsigned"), "selfsigned.test",
                                  options(cafile=str(tls_origins.cafile)), allow_expired)
    assert failure.name == "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT"


def test_bypassed_error_then_a_name_mismatch(tls_origins):
    """Two problems: the one allowed is recorded, the one that is not stops the handshake."""
    def allow_expired(error, peer):
        return error.code == errors.X509_V_ERR_CERT_HAS_EXPIRED

    state, failure, _ = handshake(tls_origins.port("expired"), "elsewhere.test",
                                  options(cafile=str(tls_origins.cafile)), allow_expired)
    assert failure.name == "SQUID_X509_V_ERR_DOMAIN_MISMATCH"
    assert [e.name for e in failure.errors] == ["X509_V_ERR_CERT_HAS_EXPIRED", "SQUID_X509_V_ERR_DOMAIN_MISMATCH"]


def test_min_version_above_the_origins(tmp_path):
    from tests.tlscert import write_pair
    from tests.tlsorigins import TlsOrigin
    import ssl
    ca = TestCA()
    cert, key = ca.issue(["old.test"])
    origin = TlsOrigin(*write_pair(tmp_path, "old", cert, key), max_version=ssl.TLSVersion.TLSv1_2).start()
    try:
        _, failure, _ = handshake(origin.port, "old.test", options("min-version=1.3", cafile=str(ca.write(tmp_path / "ca.pem"))))
        assert failure.name == "SQUID_TLS_ERR_CONNECT"
        assert failure.detail().startswith("Failed to establish a secure connection: ")
        assert "version" in failure.detail()
    finally:
        origin.stop()


def test_plain_http_origin_is_a_handshake_failure(origin):
    _, failure, _ = handshake(origin.port, "plain.test", options())
    assert failure.name == "SQUID_TLS_ERR_CONNECT" and failure.lib_error


def test_alpn_is_offered(tls_origins):
    _, failure, conn = handshake(tls_origins.port("good"), "good.test", options(cafile=str(tls_origins.cafile)),
                                 alpn=[b"http/1.1"])
    assert conn.get_alpn_proto_negotiated() == b"http/1.1"
    conn.close()


def test_setup_errors_name_the_file(tmp_path):
    with pytest.raises(TlsSetupError, match="cafile="):
        client_context(options(cafile=str(tmp_path / "missing.pem")))
    with pytest.raises(TlsSetupError, match="cipher="):
        client_context(options("cipher=NO-SUCH-CIPHER"))


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("host, domain, flags, expected", [
    ("example.com", "example.com", {}, True),
    ("EXAMPLE.com", "example.COM", {}, True),
    ("www.example.com", ".example.com", {}, True),
    ("example.com", ".example.com", {}, True),
    ("a.b.example.com", ".example.com", {}, True),
    ("badexample.com", ".example.com", {}, False),
    ("example.com", "www.example.com", {}, False),
    ("a.example.com", ".example.com", {"reject_subsub": True}, True),
    ("a.b.example.com", ".example.com", {"reject_subsub": True}, False),
    (".a.example.com", ".example.com", {"reject_subsub": True}, False),
    ("*.example.com", "www.example.com", {"honor_wildcards": True}, True),
    ("*.example.com", "a.b.example.com", {"honor_wildcards": True}, True),
    ("*.example.com", "example.com", {"honor_wildcards": True}, False),
    ("*.example.com", ".example.com", {"honor_wildcards": True}, True),
    ("*.example.com", "www.example.com", {}, False),
    ("", "example.com", {}, False),
])
def test_match_domain_name(host, domain, flags, expected):
    assert match_domain_name(host, domain, **flags) is expected


def test_certificate_names_and_host_matching():
    ca = TestCA()
    cert, _ = ca.issue(["www.example.com", "*.cdn.example.com", "10.1.2.3"])
    assert certificate_names(cert) == ["www.example.com", "www.example.com", "*.cdn.example.com"]
    assert certificate_matches_host(cert, "www.example.com")
    assert certificate_matches_host(cert, "img.cdn.example.com")
    assert certificate_matches_host(cert, "cdn.example.com")            # Squid's quirk: *.x covers x
    assert not certificate_matches_host(cert, "a.img.cdn.example.com")
    assert not certificate_matches_host(cert, "example.com")
    assert certificate_matches_host(cert, "10.1.2.3")
    assert not certificate_matches_host(cert, "10.1.2.4")


# ---------------------------------------------------------------- errors

def test_error_names_numbers_and_shortcuts():
    assert parse_error_name("X509_V_ERR_CERT_HAS_EXPIRED") == (10,)
    assert parse_error_name("ssl::certHasExpired") == parse_error_name("certHasExpired") == (10,)
    assert parse_error_name("SQUID_ERR_SSL_HANDSHAKE") == (errors.SQUID_TLS_ERR_CONNECT,)
    assert parse_error_name("18") == (18,) and parse_error_name("0x12") == (18,)
    assert len(parse_error_name("ssl::certUntrusted")) == 6
    with pytest.raises(ValueError, match="unknown TLS error name"):
        parse_error_name("X509_V_ERR_NONSENSE")
    assert errors.error_name(errors.SQUID_X509_V_ERR_DOMAIN_MISMATCH) == "SQUID_X509_V_ERR_DOMAIN_MISMATCH"
    assert errors.error_name(12345) == "SSL_ERR=12345"
    assert errors.description(errors.CODES["X509_V_ERR_PATH_LOOP"]) == "Path loop"


def test_failure_detail_without_a_certificate():
    failure = TlsFailure(errors.SQUID_TLS_ERR_CONNECT, lib_error="SSL routines::wrong version number")
    assert failure.detail() == "Failed to establish a secure connection: SSL routines::wrong version number"
    assert failure.brief() == "SQUID_TLS_ERR_CONNECT"
    assert TlsFailure(errors.X509_V_ERR_CERT_HAS_EXPIRED).detail() == "SSL Certificate expired on: [Not available]"


def test_oneline_and_time_formats():
    ca = TestCA("Root & <Co>")
    assert x509_name_oneline(ca.cert.subject) == "/O=squidpy tests/CN=Root & <Co>"
    when = datetime.datetime(2030, 1, 5, 7, 8, 9, tzinfo=datetime.timezone.utc)
    assert asn1_time_print(when) == "Jan  5 07:08:09 2030 GMT"


# ---------------------------------------------------------------- option syntax

def test_outgoing_option_words():
    warnings = []
    opts = TlsOptions()
    for w in ("cert=/c.pem", "key=/k.pem", "cipher=HIGH:!aNULL", "options=NO_TLSv1_1,NO_TICKET", "min-version=1.2",
              "cafile=/a.pem", "cafile=/b.pem", "capath=/etc/ssl/certs", "flags=DONT_VERIFY_DOMAIN",
              "default-ca=off", "domain=peer.example", "no-npn"):
        opts.parse(w, warnings.append)
    assert warnings == []
    assert opts.certs == [("/c.pem", "/k.pem")] and opts.cafiles == ["/a.pem", "/b.pem"]
    assert opts.flags == {"DONT_VERIFY_DOMAIN"} and opts.default_ca is False and not opts.npn
    mask = opts.openssl_options()
    assert mask & SSL.OP_NO_TLSv1 and mask & SSL.OP_NO_TLSv1_1 and mask & SSL.OP_NO_TICKET
    assert not mask & SSL.OP_NO_TLSv1_2


def test_option_mask_adds_removes_and_takes_hex():
    assert option_mask("NO_TICKET") == SSL.OP_NO_TICKET
    assert option_mask("ALL:-NO_TICKET") == SSL.OP_ALL & ~SSL.OP_NO_TICKET
    assert option_mask("!NO_TICKET,+NO_TLSv1") == SSL.OP_NO_TLSv1
    assert option_mask("0x4000") == 0x4000
    warnings = []
    assert option_mask("NO_SUCH_THING:NO_TICKET", warnings.append) == SSL.OP_NO_TICKET
    assert warnings == ["unknown TLS option 'NO_SUCH_THING'; ignored"]
    with pytest.raises(TlsOptionError):
        option_mask("NO_TICKET NO_TLSv1")


def test_unknown_words_warn_and_bad_flags_refuse():
    warnings = []
    opts = TlsOptions()
    opts.parse("colour=blue", warnings.append)
    opts.parse("min-version=2.0", warnings.append)
    assert warnings == ["unknown TLS option 'colour=blue'; ignored",
                        "unknown TLS minimum version '2.0' (1.0, 1.1, 1.2 or 1.3); ignored"]
    with pytest.raises(TlsOptionError, match="unknown TLS flag 'DONT_VERIFY_PEERS'"):
        opts.parse("flags=DONT_VERIFY_PEERS", warnings.append)
    with pytest.raises(TlsOptionError, match="before key="):
        TlsOptions().parse("key=/k.pem", warnings.append)
    with pytest.raises(TlsOptionError, match="CONDITIONAL_AUTH"):
        TlsOptions().parse("flags=CONDITIONAL_AUTH:DONT_VERIFY_PEER", warnings.append)


def test_disable_clears_everything():
    opts = options("cafile=/a.pem", "disable")
    assert opts.disabled and opts.cafiles == []


def test_port_words():
    warnings = []
    port = PortTls()
    for w in ("ssl-bump", "tls-cert=/ca.pem", "tls-key=/ca.key", "generate-host-certificates=off",
              "dynamic_cert_mem_cache_size=16MB", "tls-min-version=1.2", "sslflags=NO_SESSION_REUSE",
              "tls-dh=prime256v1:/dh.pem", "cafile=/old.pem", "tls-cafile=/new.pem", "clientca=/clients.pem",
              "tls-default-ca=on"):
        assert port.parse_port(w, warnings.append)
    assert not port.parse_port("name=office", warnings.append)
    assert port.ssl_bump and port.certs == [("/ca.pem", "/ca.key")] and not port.generate_host_certificates
    assert port.dynamic_cert_mem_cache_size == 16 << 20 and port.min_version == "1.2"
    assert port.flags == {"NO_SESSION_REUSE"} and port.dh == "prime256v1:/dh.pem"
    assert port.cafiles == ["/old.pem", "/new.pem"] and port.clientca == "/clients.pem" and port.default_ca
    assert warnings == ["UPGRADE WARNING: cafile= is deprecated; use tls-cafile= instead"]
    port.parse_port("generate-host-certificates=maybe", warnings.append)
    assert "generate-host-certificates takes =on or =off" in warnings[-1]


def test_port_checks():
    warnings = []
    with pytest.raises(TlsOptionError, match="tls-cert="):
        PortTls().check(https=True, warn=warnings.append)
    bump = PortTls(ssl_bump=True)
    with pytest.raises(TlsOptionError, match="ssl-bump requires tls-cert"):
        bump.check(https=False, warn=warnings.append)
    plain = PortTls(certs=[("/c", "/c")])
    plain.check(https=False, warn=warnings.append)
    assert warnings == ["tls-cert= on an http_port without ssl-bump is not used"]


# ---------------------------------------------------------------- the page

def test_secure_connect_fail_page_shows_squids_words(tls_origins):
    from squidpy.errors import STATUS, ErrorContext, ErrorPages
    _, failure, _ = handshake(tls_origins.port("expired"), "expired.test", options(cafile=str(tls_origins.cafile)))
    pages = ErrorPages(None, "proxy.test", "admin@example.test")
    body = pages.render(ErrorContext("ERR_SECURE_CONNECT_FAIL", url="https://expired.test/", host="expired.test",
                                     server_ip="127.0.0.1", detail=failure.detail(), errno_text=failure.errno_text,
                                     tls_code=failure.brief())).decode()
    assert STATUS["ERR_SECURE_CONNECT_FAIL"] == 503
    assert "[No Error] (TLS code: X509_V_ERR_CERT_HAS_EXPIRED+broken_cert)" in body
    assert "SSL Certificate expired on: " in body and 'id="ERR_SECURE_CONNECT_FAIL"' in body
    without = pages.render(ErrorContext("ERR_SECURE_CONNECT_FAIL", url="https://x.test/")).decode()
    assert "TLS code: [Unknown Error Code]" in without
