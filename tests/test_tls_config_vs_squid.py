"""squid.conf's TLS and SslBump lines accepted and refused as Squid 5.7 (built with OpenSSL)
accepts and refuses them: each snippet goes through 'squid -k parse' and squidpy's loader
(which reads every line Squid reads, even those the proxy does not serve yet)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from squidpy.config import loader
from squidpy.tls.ca import init_ca
from tests.squidproc import SQUID_OPENSSL

LONG_CN = "x" * 65

SNIPPETS = {
    # accepted by both
    "peek-splice-bump": (True, "acl s at_step SslBump1\nacl b ssl::server_name .bank.test\n"
                               "ssl_bump peek s\nssl_bump splice b\nssl_bump bump all\n"),
    "old-actions": (True, "ssl_bump server-first all\nssl_bump client-first all\nssl_bump none all\n"),
    "allow-deny": (True, "acl a src 10.0.0.0/8\nssl_bump allow a\nssl_bump deny all\n"),
    "cert-error": (True, "sslproxy_cert_error allow ssl::certHasExpired\nsslproxy_cert_error deny all\n"),
    "cert-sign": (True, "sslproxy_cert_sign signUntrusted ssl::certUntrusted\nsslproxy_cert_sign signTrusted all\n"),
    "cert-adapt": (True, "sslproxy_cert_adapt setValidAfter all\nsslproxy_cert_adapt setCommonName{a.test} all\n"),
    "outgoing": (True, "tls_outgoing_options min-version=1.2 options=NO_TICKET,NO_TLSv1 flags=DONT_VERIFY_DOMAIN\n"),
    "outgoing-unknown-word": (True, "tls_outgoing_options colour=blue\n"),
    "acl-types": (True, "acl a ssl::server_name --consensus a.test\nacl b ssl::server_name_regex -i bank\n"
                        "acl c ssl_error ssl::certSelfSigned 18\nacl d server_cert_fingerprint AB:CD\n"
                        "acl e user_cert CN alice\nacl f ca_cert O Corp\nacl g at_step sslbump2\n"),
    "children-capped": (True, "sslcrtd_children 33\n"),
    "sign-hash": (True, "sslproxy_cert_sign_hash sha384\n"),
    # refused by both
    "unknown-mode": (False, "ssl_bump sometimes all\n"),
    "mixed-styles": (False, "ssl_bump allow all\nssl_bump bump all\n"),
    "long-cn": (False, f"sslproxy_cert_adapt setCommonName{{{LONG_CN}}} all\n"),
    "unknown-adapt": (False, "sslproxy_cert_adapt setColour all\n"),
    "unknown-sign": (False, "sslproxy_cert_sign signMaybe all\n"),
    "unknown-flag": (False, "tls_outgoing_options flags=SOMETIMES\n"),
    "two-options": (False, "acl x ssl::server_name --consensus --client-requested a.test\n"),
    "bad-step": (False, "acl x at_step SslBump4\n"),
    "bad-error": (False, "acl x ssl_error X509_V_ERR_NONSENSE\n"),
    "undefined-acl": (False, "ssl_bump bump nosuchacl\n"),
    "odd-generate": (True, "http_port 3129 ssl-bump tls-cert=CA generate-host-certificates=maybe\n"),
    "fingerprint-option": (False, "acl d server_cert_fingerprint -sha1 AB:CD\n"),
}


@pytest.fixture(scope="module")
def workdir():
    """Under /tmp and readable by all: run as root, Squid drops to the 'proxy' user."""
    d = Path(tempfile.mkdtemp(prefix="squid-tlsconf-"))
    os.chmod(d, 0o755)
    pem, _ = init_ca(str(d / "ca"))
    os.chmod(d / "ca", 0o755)
    os.chmod(pem, 0o644)
    yield d, pem
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_accepted_and_refused_as_squid_does(name, workdir):
    assert os.path.exists(SQUID_OPENSSL), ".ci/run unpacks Debian's squid-openssl into /opt/squid-openssl"
    d, pem = workdir
    expected, snippet = SNIPPETS[name]
    text = f"http_port 3128 ssl-bump tls-cert={pem}\n" + snippet.replace("tls-cert=CA", f"tls-cert={pem}")
    conf = d / f"{name}.conf"
    conf.write_text(text)
    squid = subprocess.run([SQUID_OPENSSL, "-k", "parse", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    try:
        loader.load(str(conf))
        ours = True
    except loader.ConfigErrors:
        ours = False
    assert (squid.returncode == 0, ours) == (expected, expected), squid.stderr[-500:]
