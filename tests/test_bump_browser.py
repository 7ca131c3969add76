"""SslBump in a real browser: Chromium headless through a bumping squidpy.  With a profile whose
NSS database trusts squidpy's CA (exported by 'squidpy ca export'), a TLS page renders and a
denied host shows squidpy's deny page; with a profile that trusts only the origins' own root,
a spliced host renders (it kept its own certificate) and a bumped one does not."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.chromium import ChromiumProfile
from tests.dnsserver import DnsServer


@pytest.fixture(scope="module")
def dns():
    server = DnsServer({n: ["127.0.0.1"] for n in ("good.test", "blocked.test", "bank.test")}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bump_ca(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser-ca")
    squidpy = [sys.executable, "-m", "squidpy", "ca"]
    assert subprocess.run(squidpy + ["init", str(d / "ca"), "--name", "Browser Bump CA"], capture_output=True,
                          timeout=60).returncode == 0
    exported = subprocess.run(squidpy + ["export", str(d / "ca"), "--pem-only", "-o", str(d / "export.crt")],
                              capture_output=True, timeout=60)
    assert exported.returncode == 0
    return d / "ca" / "squidpy-ca.pem", d / "export.crt"


def proxy_config(bump_ca, dns, tls_origins, tmp_path, rules: str) -> str:
    return f"""
acl local src 127.0.0.0/8
acl blocked dstdomain blocked.test
http_access deny blocked
http_access allow local
http_access deny all
http_port 127.0.0.1:0 ssl-bump tls-cert={bump_ca[0]}
sslcrtd_program internal -s {tmp_path / 'ssl_db'} -M 4MB
dns_nameservers 127.0.0.1:{dns.port}
tls_outgoing_options cafile={tls_origins.cafile}
{rules}"""


def page(profile: ChromiumProfile, proxy, url: str) -> str:
    return profile.dump_dom(url, f"--proxy-server={proxy.url}")


def test_bumped_page_renders_and_denied_host_shows_our_page(make_proxy, bump_ca, dns, tls_origins, tmp_path):
    proxy = make_proxy(proxy_config(bump_ca, dns, tls_origins, tmp_path,
                                    "acl step1 at_step SslBump1\nssl_bump peek step1\nssl_bump bump all\n"))
    office = ChromiumProfile(tmp_path / "office")
    office.trust(bump_ca[1])
    port = tls_origins.port("good")
    dom = page(office, proxy, f"https://good.test:{port}/echo?probe=through-the-bump")
    assert "probe=through-the-bump" in dom
    assert proxy.log_line("GET https://good.test:")
    denied = page(office, proxy, f"https://blocked.test:{port}/anything")
    assert 'id="ERR_ACCESS_DENIED"' in denied and "blocked.test" in denied


def test_spliced_host_keeps_the_origins_certificate(make_proxy, bump_ca, dns, tls_origins, tmp_path):
    rules = ("acl step1 at_step SslBump1\nacl banks ssl::server_name good.test\n"
             "ssl_bump peek step1\nssl_bump splice banks\nssl_bump bump all\n")
    proxy = make_proxy(proxy_config(bump_ca, dns, tls_origins, tmp_path, rules))
    origins_only = ChromiumProfile(tmp_path / "origins-only")
    origins_only.trust(tls_origins.cafile, "origin root")
    port = tls_origins.port("good")
    spliced = page(origins_only, proxy, f"https://good.test:{port}/echo?probe=spliced")
    assert "probe=spliced" in spliced
    bumped = page(origins_only, proxy, f"https://bank.test:{port}/echo?probe=bumped")
    assert "probe=bumped" not in bumped               # minted by a CA this profile does not trust
    assert " TCP_TUNNEL/200 " in proxy.log_line("TCP_TUNNEL")
