"""Minted certificates in a real browser: Chromium headless, whose NSS database trusts the
CA made by 'squidpy ca init' and exported by 'squidpy ca export', loads a page from a TLS
origin that presents a certificate squidpy minted; it refuses the page when it does not
trust the CA, when the CA's name constraints exclude the site, and when the certificate
was signed untrusted (sslproxy_cert_sign signUntrusted), as Squid intends."""

from __future__ import annotations

import subprocess
import sys

import pytest

from squidpy.tls.ca import load_ca
from squidpy.tls.certcache import CertCache, Minter
from squidpy.tls.mint import SIGN_UNTRUSTED, CertProperties
from tests.chromium import ChromiumProfile
from tests.tlscert import TestCA, write_pair
from tests.tlsorigins import TlsOrigin


def squidpy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "squidpy", *args], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def bump_ca(tmp_path_factory):
    d = tmp_path_factory.mktemp("bumpca")
    assert squidpy("ca", "init", str(d / "ca"), "--name", "Browser Test CA").returncode == 0
    exported = squidpy("ca", "export", str(d / "ca"), "--pem-only")
    assert exported.returncode == 0
    (d / "exported.crt").write_bytes(exported.stdout)
    return d


def serve_minted(tmp_path, ca_dir, host: str, sign: str = "signTrusted", ca_file: str = "squidpy-ca.pem"):
    """A TLS origin presenting the certificate squidpy mints when bumping ``host``,
    mimicking the origin's real certificate."""
    real, _ = TestCA("Real Origin Root").issue([host], organization="The Real Site")
    minter = Minter(load_ca(str(ca_dir / ca_file)), CertCache(1 << 20, str(tmp_path / "ssl_db")))
    minted = minter.certificate(CertProperties(host, mimic=real, sign=sign))
    cert_path, key_path = write_pair(tmp_path, "minted", minted.cert, minted.key, minted.chain)
    return TlsOrigin(cert_path, key_path).start()


def page(profile: ChromiumProfile, origin, host: str) -> str:
    return profile.dump_dom(f"https://{host}:{origin.port}/echo?probe=X-Page",
                            f"--host-resolver-rules=MAP {host} 127.0.0.1")


def test_chromium_trusts_what_squidpy_mints_once_it_trusts_the_ca(bump_ca, tmp_path):
    origin = serve_minted(tmp_path, bump_ca / "ca", "shop.example.test")
    try:
        stranger = ChromiumProfile(tmp_path / "stranger")
        assert "X-Page" not in page(stranger, origin, "shop.example.test")
        assert origin.count() == 0                                   # it never sent the request
        office = ChromiumProfile(tmp_path / "office")
        office.trust(bump_ca / "exported.crt")
        assert "Browser Test CA" in office.trusted() or "squidpy" in office.trusted()
        dom = page(office, origin, "shop.example.test")
        assert "X-Page" in dom and origin.count("/echo?probe=X-Page") == 1
    finally:
        origin.stop()


def test_sign_untrusted_makes_chromium_warn(bump_ca, tmp_path):
    origin = serve_minted(tmp_path, bump_ca / "ca", "shady.example.test", sign=SIGN_UNTRUSTED)
    try:
        office = ChromiumProfile(tmp_path / "office")
        office.trust(bump_ca / "exported.crt")
        assert "X-Page" not in page(office, origin, "shady.example.test")
        assert origin.count() == 0
    finally:
        origin.stop()


def test_name_constraints_limit_the_ca(tmp_path):
    ca_dir = tmp_path / "ca"
    assert squidpy("ca", "init", str(ca_dir), "--permit", "allowed.test").returncode == 0
    office = ChromiumProfile(tmp_path / "office")
    office.trust(ca_dir / "squidpy-ca.crt")
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    inside = serve_minted(tmp_path / "in", ca_dir, "www.allowed.test")
    outside = serve_minted(tmp_path / "out", ca_dir, "www.elsewhere.test")
    try:
        assert "X-Page" in page(office, inside, "www.allowed.test")
        assert "X-Page" not in page(office, outside, "www.elsewhere.test") and outside.count() == 0
    finally:
        inside.stop()
        outside.stop()
