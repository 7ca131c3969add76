"""TLS and SslBump in squid.conf (squidpy.config.tls_directives), the TLS ACL types
(squidpy.acl.tls) and the ssl_bump step decisions (squidpy.tls.bump): pure, no sockets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from squidpy.acl.checklist import Checklist, Pending
from squidpy.config import loader, tls_directives
from squidpy.tls import bump
from squidpy.tls.ca import init_ca
from squidpy.tls.errors import CertError, parse_error_name
from squidpy.tls.mint import SIGN_SELF, SIGN_TRUSTED, SIGN_UNTRUSTED
from tests.tlscert import TestCA


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory):
    pem, _ = init_ca(str(tmp_path_factory.mktemp("ca")), "Config CA")
    return pem


def load(text: str):
    return loader.load("/etc/squidpy/tls.conf", text=text)


def errors_of(text: str) -> list[str]:
    with pytest.raises(loader.ConfigErrors) as e:
        load(text)
    return [str(err) for err in e.value.errors]


def connect(host: str = "www.example.com", port: int = 443, **facts) -> Checklist:
    ch = Checklist(method="CONNECT", url=f"{host}:{port}", scheme="authority", host=host, port=port, path="")
    for k, v in facts.items():
        setattr(ch, k, v)
    return ch


# ---------------------------------------------------------------- directives

def test_bump_port_and_rules(ca_pem):
    config = load(f"""
acl step1 at_step SslBump1
acl banks ssl::server_name .bank.example
http_port 3128 ssl-bump tls-cert={ca_pem} generate-host-certificates=on dynamic_cert_mem_cache_size=8MB
ssl_bump peek step1
ssl_bump splice banks
ssl_bump bump all
""")
    port = config.http_port[0]
    assert port.tls.ssl_bump and port.tls.certs == [(str(ca_pem), str(ca_pem))]
    assert port.tls.dynamic_cert_mem_cache_size == 8 << 20
    assert [r.action for r in config.ssl_bump.rules] == ["peek", "splice", "bump"]
    assert config.ssl_bump.rules[1].where == "/etc/squidpy/tls.conf:6"


def test_acls_and_helper_settings_are_accepted_today():
    config = load("""
acl banks ssl::server_name --client-requested .bank.example
acl old ssl_error ssl::certHasExpired
acl step at_step SslBump2
acl fp server_cert_fingerprint AB:CD:EF
acl users user_cert CN alice bob
acl issuers ca_cert O Example
http_access deny banks
http_access allow all
sslcrtd_program internal -s /var/lib/squidpy/ssl_db -M 8MB
sslcrtd_children 8 startup=2 idle=1
sslproxy_cert_sign_hash sha384
""")
    assert config.sslcrtd_program.internal and config.sslcrtd_program.directory == "/var/lib/squidpy/ssl_db"
    assert config.sslcrtd_program.size == 8 << 20
    assert config.sslcrtd_children.n_max == 8 and config.sslcrtd_children.startup == 2
    assert config.sslproxy_cert_sign_hash == "sha384"


def test_ssl_bump_checks():
    errors = errors_of("ssl_bump sometimes all\n")
    assert "unknown ssl_bump mode 'sometimes'" in errors[0]
    errors = errors_of("ssl_bump allow all\nssl_bump bump all\n")
    assert any("do not mix new client/server-first/none actions with deprecated allow/deny" in e for e in errors)
    assert "used before it is defined" in errors_of("ssl_bump bump nosuchacl\n")[0]


def test_old_allow_deny_lines_are_converted_as_squid_does():
    config = load("acl a src 10.0.0.0/8\nssl_bump allow a\n")
    assert [r.action for r in config.ssl_bump.rules] == ["client-first", "none"]
    assert any("auto-converting deprecated" in str(w) for w in config.warnings)
    config = load("acl a src 10.0.0.0/8\nssl_bump deny a\n")
    assert [r.action for r in config.ssl_bump.rules] == ["none", "client-first"]


def test_port_option_errors(ca_pem, tmp_path):
    assert "https_port requires a tls-cert=" in errors_of("https_port 3129\n")[0]
    assert "ssl-bump requires tls-cert=" in errors_of("http_port 3128 ssl-bump\n")[0]
    assert "unknown http_port option 'tls-nonsense=1'" not in " ".join(errors_of("http_port 3128 tls-nonsense=1 ssl-bump\n"))
    config = load(f"http_port 3128 tls-cert={ca_pem} generate-host-certificates=yes\n")
    assert any("generate-host-certificates takes =on or =off" in str(w) for w in config.warnings)
    assert "unknown http_port option 'colour=blue'" in errors_of("http_port 3128 colour=blue\n")[0]
    missing = tmp_path / "missing.pem"
    errors = errors_of(f"http_port 3128 ssl-bump tls-cert={missing}\n")
    assert errors[0] == f"/etc/squidpy/tls.conf:1: tls-cert={missing}: cannot read {missing}: No such file or directory"
    leaf, key = TestCA().issue(["leaf.test"])
    from tests.tlscert import write_pair
    cert_path, key_path = write_pair(tmp_path, "leaf", leaf, key)
    errors = errors_of(f"http_port 3128 ssl-bump tls-cert={cert_path} tls-key={key_path}\n")
    assert "not a CA certificate" in errors[0]


def test_https_port(ca_pem):
    config = load(f"https_port 127.0.0.1:3129 tls-cert={ca_pem} tls-cafile={ca_pem} name=secure\n")
    port = config.https_port[0]
    assert (port.host, port.port, port.name) == ("127.0.0.1", 3129, "secure")
    assert port.tls.certs and port.tls.cafiles == [str(ca_pem)] and not port.tls.ssl_bump


def test_outgoing_options(tmp_path, ca_pem):
    config = load(f"tls_outgoing_options cafile={ca_pem} min-version=1.2 options=NO_TICKET flags=DONT_VERIFY_DOMAIN\n"
                  "tls_outgoing_options cipher=HIGH\n")
    opts = config.tls_outgoing_options
    assert opts.cafiles == [str(ca_pem)] and opts.min_version == "1.2" and opts.cipher == "HIGH"
    assert opts.flags == {"DONT_VERIFY_DOMAIN"}
    assert "unknown TLS flag" in errors_of("tls_outgoing_options flags=SOMETIMES\n")[0]
    assert errors_of("tls_outgoing_options cafile=roots.pem\n")[0] == (
        "/etc/squidpy/tls.conf:1: tls_outgoing_options cafile=/etc/squidpy/roots.pem: cannot read CA certificates "
        "from it")
    assert load("").tls_outgoing_options.min_version == "1.0"


def test_cert_sign_and_adapt_syntax():
    config = load("""
acl trusted_sites dstdomain .intranet.example
sslproxy_cert_sign signTrusted trusted_sites
sslproxy_cert_adapt setValidAfter ssl::certHasExpired
sslproxy_cert_adapt setCommonName{proxy.example} trusted_sites
sslproxy_cert_adapt setCommonName all
""")
    assert [r.algorithm for r in config.sslproxy_cert_sign] == ["signTrusted"]
    assert [(r.algorithm, r.parameter) for r in config.sslproxy_cert_adapt] == [
        ("setValidAfter", None), ("setCommonName", "proxy.example"), ("setCommonName", None)]
    assert "unknown cert signing algorithm" in errors_of("sslproxy_cert_sign signMaybe all\n")[0]
    assert "unknown cert adaptation algorithm" in errors_of("sslproxy_cert_adapt setColour all\n")[0]
    assert "longer than 64" in errors_of("sslproxy_cert_adapt setCommonName{" + "x" * 65 + "} all\n")[0]


def test_crtd_program_checks():
    assert "not a program squidpy can run" in errors_of("sslcrtd_program /nonexistent/certgen -s /tmp/db\n")[0]
    assert "'internal' takes -s DIRECTORY and -M SIZE" in errors_of("sslcrtd_program internal -x\n")[0]
    assert load("sslcrtd_children 33\n").sslcrtd_children.n_max == 32
    assert "cannot be less than 1" in errors_of("sslcrtd_children 0\n")[0]
    assert load("").sslcrtd_children.startup == 5
    config = load("sslcrtd_program /bin/cat -s /tmp/x -M 1MB\n")
    assert not config.sslcrtd_program.internal and config.sslcrtd_program.size == 1 << 20


def test_squidpy_parse_reports_file_and_line(tmp_path, ca_pem):
    squidpy = [sys.executable, "-m", "squidpy"]
    good = tmp_path / "good.conf"
    good.write_text(f"http_port 3128 ssl-bump tls-cert={ca_pem}\nssl_bump bump all\n")
    parsed = subprocess.run(squidpy + ["parse", "-f", str(good)], capture_output=True, text=True, timeout=60)
    assert parsed.returncode == 0 and f"{good}: OK" in parsed.stdout
    bad = tmp_path / "bad.conf"
    bad.write_text("ssl_bump sometimes all\n")
    parsed = subprocess.run(squidpy + ["parse", "-f", str(bad)], capture_output=True, text=True, timeout=60)
    assert parsed.returncode == 1 and f"{bad}:1: ssl_bump: unknown ssl_bump mode 'sometimes'" in parsed.stderr


# ---------------------------------------------------------------- ACL types

def acl(config_text: str, name: str = "x"):
    return load(config_text).acls.get(name)


def test_server_name_at_each_step():
    ca = TestCA()
    cert, _ = ca.issue(["real.example.net", "*.cdn.example.net"])
    x = acl("acl x ssl::server_name .example.com\n")
    assert x.match(connect("www.example.com"))                          # step 1: the CONNECT host
    assert not x.match(connect("www.example.org"))
    assert x.match(connect("10.1.1.1", sni="www.example.com"))          # step 2: SNI wins
    assert not x.match(connect("www.example.com", sni="other.test"))
    assert not x.match(connect("www.example.com", sni="www.example.com", server_cert=cert))   # step 3: certificate
    y = acl("acl x ssl::server_name img.cdn.example.net\n")
    assert y.match(connect("whatever", server_cert=cert))               # *.cdn.example.net covers img.cdn...
    z = acl("acl x ssl::server_name cdn.example.net\n")
    assert not z.match(connect("whatever", server_cert=cert))


def test_server_name_options():
    ca = TestCA()
    cert, _ = ca.issue(["real.example.net"])
    client = acl("acl x ssl::server_name --client-requested asked.test\n")
    assert client.match(connect("ip", sni="asked.test", server_cert=cert))
    server = acl("acl x ssl::server_name --server-provided real.example.net none\n")
    assert server.match(connect("ip", sni="asked.test", server_cert=cert))
    assert server.match(connect("asked.test"))                          # no certificate yet: "none"
    consensus = acl("acl x ssl::server_name --consensus real.example.net none\n")
    assert consensus.match(connect("ip", sni="real.example.net", server_cert=cert))
    assert consensus.match(connect("ip", sni="liar.test", server_cert=cert))      # disagreement: "none"
    consensus_strict = acl("acl x ssl::server_name --consensus real.example.net\n")
    assert not consensus_strict.match(connect("ip", sni="liar.test", server_cert=cert))
    assert "only one of" in errors_of("acl x ssl::server_name --consensus --client-requested a.test\n")[0]


def test_server_name_regex_and_plain_requests():
    x = acl("acl x ssl::server_name_regex -i \\.BANK\\.\n")
    assert x.match(connect("www.bank.example"))
    ch = Checklist(method="GET", url="http://www.bank.example/", host="www.bank.example", port=80, path="/")
    assert x.match(ch)                                                  # a plain request: the URL host


def test_ssl_error_and_predefined_shortcuts():
    x = acl("acl x ssl_error X509_V_ERR_CERT_HAS_EXPIRED ssl::certSelfSigned\n")
    expired = CertError(parse_error_name("X509_V_ERR_CERT_HAS_EXPIRED")[0])
    assert x.match(connect(ssl_errors=(expired,)))
    assert not x.match(connect()) and not x.match(connect(ssl_errors=()))
    table = load("").acls
    untrusted = CertError(parse_error_name("X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY")[0])
    assert table.get("ssl::certUntrusted").match(connect(ssl_errors=(untrusted,)))
    assert not table.get("ssl::certHasExpired").match(connect(ssl_errors=(untrusted,)))
    assert "unknown TLS error name" in errors_of("acl x ssl_error X509_V_ERR_WHATEVER\n")[0]


def test_fingerprint_and_client_certificates():
    from squidpy.acl.tls import sha1_fingerprint
    ca = TestCA("ClientRoot")
    cert, _ = ca.issue(["fp.test"], organization="ClientsInc")
    fp = sha1_fingerprint(cert)
    x = acl(f"acl x server_cert_fingerprint {fp}\n")
    assert x.match(connect(server_cert=cert)) and not x.match(connect())
    config = load(f"acl x server_cert_fingerprint {fp.lower()}\n")
    assert any("never matches" in str(w) for w in config.warnings)
    user = acl("acl x user_cert CN fp.test\n")
    assert user.match(connect(client_cert=cert)) and not user.match(connect())
    issuer = acl("acl x ca_cert CN ClientRoot\n")
    assert issuer.match(connect(client_cert=cert))
    dn = acl("acl x user_cert DN /O=ClientsInc/CN=fp.test\n")
    assert dn.match(connect(client_cert=cert))
    assert "one attribute on all its lines" in errors_of("acl x user_cert CN a\nacl x user_cert O b\n")[0]
    assert "unsupported ACL option: -s" in errors_of("acl x server_cert_fingerprint -sha1 AB:CD\n")[0]   # Squid 5.7 too
    assert "not a certificate attribute" in errors_of("acl x user_cert Colour a\n")[0]


def test_at_step():
    x = acl("acl x at_step SslBump2 sslbump3\n")
    assert not x.match(connect())
    assert x.match(connect(bump_step="SslBump2")) and x.match(connect(bump_step="SslBump3"))
    assert "unknown at_step step name" in errors_of("acl x at_step SslBump4\n")[0]


# ---------------------------------------------------------------- ssl_bump decisions

def rules(text: str) -> bump.SslBumpRules:
    return load(text).ssl_bump


STANDARD = """
acl step1 at_step SslBump1
acl step2 at_step SslBump2
acl banks ssl::server_name .bank.example
acl blocked ssl::server_name .blocked.example
"""


def test_no_rules_splice():
    d = bump.step1(bump.SslBumpRules(), connect())
    assert (d.action, d.next, d.rule) == ("splice", bump.TUNNEL, None)


def test_peek_then_splice_banks_and_bump_the_rest():
    r = rules(STANDARD + "ssl_bump peek step1\nssl_bump splice banks\nssl_bump bump all\n")
    d1 = bump.step1(r, connect("203.0.113.5"))
    assert (d1.action, d1.next) == ("peek", bump.READ_CLIENT_HELLO)
    bank = bump.step2(r, connect("203.0.113.5", sni="www.bank.example"))
    assert (bank.action, bank.next) == ("splice", bump.TUNNEL) and bank.rule.where.endswith(":7")
    other = bump.step2(r, connect("203.0.113.5", sni="news.example"))
    assert (other.action, other.next) == ("bump", bump.BUMP_SERVER_FIRST)


def test_step1_actions():
    for action, nxt in (("bump", bump.BUMP_CLIENT_FIRST), ("client-first", bump.BUMP_CLIENT_FIRST),
                        ("server-first", bump.BUMP_SERVER_FIRST), ("stare", bump.READ_CLIENT_HELLO),
                        ("terminate", bump.CLOSE), ("none", bump.TUNNEL), ("splice", bump.TUNNEL)):
        d = bump.step1(rules(f"ssl_bump {action} all\n"), connect())
        assert (d.action, d.next) == (action, nxt), action


def test_old_actions_are_skipped_after_step1():
    r = rules(STANDARD + "ssl_bump stare step1\nssl_bump server-first all\nssl_bump client-first all\n"
                         "ssl_bump bump all\n")
    d = bump.step2(r, connect(sni="a.test"))
    assert d.action == "bump" and d.rule.text == "ssl_bump bump all"


def test_peek_at_step2_allows_only_splice_or_terminate_at_step3():
    r = rules(STANDARD + "ssl_bump peek step1\nssl_bump peek step2\nssl_bump bump all\n")
    d2 = bump.step2(r, connect(sni="a.test"))
    assert (d2.action, d2.next) == ("peek", bump.PEEK_AT_SERVER)
    d3 = bump.step3(r, connect(sni="a.test", bump_step="SslBump3"), d2.action)
    assert (d3.action, d3.next, d3.rule) == ("splice", bump.TUNNEL, None)      # bump is impossible: default
    r2 = rules(STANDARD + "ssl_bump peek step1\nssl_bump peek step2\nssl_bump terminate blocked\nssl_bump splice all\n")
    d3 = bump.step3(r2, connect(sni="x.blocked.example"), "peek")
    assert (d3.action, d3.next) == ("terminate", bump.CLOSE)


def test_stare_at_step2_allows_only_bump_or_terminate_at_step3():
    r = rules(STANDARD + "ssl_bump stare step1\nssl_bump stare step2\nssl_bump splice all\n")
    d2 = bump.step2(r, connect(sni="a.test"))
    assert d2.next == bump.STARE_AT_SERVER
    d3 = bump.step3(r, connect(sni="a.test"), d2.action)
    assert (d3.action, d3.next, d3.rule) == ("bump", bump.BUMP_NOW, None)     # splice impossible: bump


def test_step3_decides_on_the_certificate():
    cert, _ = TestCA().issue(["www.bank.example"])
    r = rules(STANDARD + "ssl_bump stare step1\nssl_bump stare step2\nssl_bump terminate banks\nssl_bump bump all\n")
    d3 = bump.step3(r, connect("203.0.113.9", sni="innocent.test", server_cert=cert), "stare")
    assert d3.action == "terminate"          # the certificate says bank, whatever the SNI claimed


def test_at_step_sees_the_step_being_decided():
    r = rules(STANDARD + "ssl_bump splice step2\nssl_bump peek all\n")
    assert bump.step1(r, connect()).action == "peek"
    assert bump.step2(r, connect(sni="a.test")).action == "splice"


def test_slow_acls_ask_for_facts():
    r = rules("acl inside dst 10.0.0.0/8\nssl_bump splice inside\nssl_bump bump all\n")
    with pytest.raises(Pending):
        bump.step1(r, connect("intranet.example"))
    ch = connect("intranet.example")
    ch.dst = ["10.1.2.3"]
    assert bump.step1(r, ch).action == "splice"


def test_bump_to_deny():
    some = rules("ssl_bump splice all\n")
    none = bump.SslBumpRules()
    assert bump.bump_to_deny(True, some, True, False, 403)           # Squid: rules exist on a bumping port
    assert not bump.bump_to_deny(True, some, True, True, 407)        # never for a proxy-auth challenge
    assert bump.bump_to_deny(True, none, True, True, 403)            # squidpy: a CA is enough
    assert not bump.bump_to_deny(True, none, True, False, 403)       # ... unless turned off
    assert not bump.bump_to_deny(False, some, True, True, 403)       # not a bumping port


# ---------------------------------------------------------------- signing and adaptation decisions

def test_sign_algorithm_defaults_and_rules():
    config = load("acl inside dstdomain .intranet.example\nsslproxy_cert_sign signSelf inside\n")
    expired = CertError(parse_error_name("X509_V_ERR_CERT_HAS_EXPIRED")[0])
    untrusted = CertError(parse_error_name("X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY")[0])
    self_signed = CertError(parse_error_name("X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT")[0])
    sign = tls_directives.sign_algorithm
    assert sign(config, connect()) == SIGN_TRUSTED
    assert sign(config, connect(ssl_errors=(expired,))) == SIGN_TRUSTED
    assert sign(config, connect(ssl_errors=(untrusted,))) == SIGN_UNTRUSTED
    assert sign(config, connect(ssl_errors=(self_signed,))) == SIGN_SELF
    assert sign(config, connect("www.intranet.example", ssl_errors=(untrusted,))) == SIGN_SELF


def test_adaptations():
    config = load("""
acl inside dstdomain .intranet.example
sslproxy_cert_adapt setValidAfter ssl::certHasExpired
sslproxy_cert_adapt setCommonName{named.example} inside
sslproxy_cert_adapt setCommonName all
""")
    expired = CertError(parse_error_name("X509_V_ERR_CERT_HAS_EXPIRED")[0])
    assert tls_directives.adaptations(config, connect("a.intranet.example"), "a.intranet.example") == {
        "setCommonName": "named.example"}
    assert tls_directives.adaptations(config, connect("b.test", ssl_errors=(expired,)), "b.test") == {
        "setValidAfter": True, "setCommonName": "b.test"}
