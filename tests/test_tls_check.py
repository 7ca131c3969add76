"""``squidpy check https://...`` tells the truth about HTTPS: without SslBump the proxy
sees only CONNECT host:port, so the verdict is the CONNECT's and the URL's own rules do not
count; checked offline and against a live proxy with curl and a TLS origin."""

from __future__ import annotations

import subprocess

from click.testing import CliRunner

from squidpy.cli import main
from tests.dnsserver import DnsServer

CONFIG = """
acl local src 127.0.0.0/8
acl secret url_regex -i secret
acl blocked dstdomain .blocked.test
http_access deny secret
http_access deny blocked
http_access allow local
http_access deny all
"""


def check(tmp_path, *args: str):
    conf = tmp_path / "squidpy.conf"
    if not conf.exists():
        conf.write_text(CONFIG)
    return CliRunner().invoke(main, ["check", "-f", str(conf), *args, "--dst", "127.0.0.1"])


def test_path_rules_do_not_apply_to_https(tmp_path):
    result = check(tmp_path, "https://www.example.test/secret/plans")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "ALLOW  CONNECT www.example.test:443 from 127.0.0.1"
    assert "URL and path rules do not apply here (the path /secret/plans is never seen)" in result.output
    assert "The full URL https://www.example.test/secret/plans would be DENIED by" in result.output
    assert ":5: http_access deny secret" in result.output


def test_host_rules_do(tmp_path):
    result = check(tmp_path, "https://www.blocked.test:8443/")
    assert result.exit_code == 1
    assert result.output.startswith("DENY  CONNECT www.blocked.test:8443 from 127.0.0.1")
    assert "a browser shows its own error for a refused CONNECT" in result.output
    assert "would be" not in result.output           # the URL's verdict is the same


def test_plain_http_is_unchanged(tmp_path):
    result = check(tmp_path, "http://www.example.test/secret")
    assert result.exit_code == 1 and "CONNECT" not in result.output


def test_check_agrees_with_curl_through_the_proxy(tmp_path, make_proxy, tls_origins):
    """curl fetches https://good.test/echo?secret=1 through the proxy despite the url_regex rule,
    and squidpy check says so."""
    dns = DnsServer({"good.test": ["127.0.0.1"]}).start()
    try:
        port = tls_origins.port("good")
        proxy = make_proxy(CONFIG + f"dns_nameservers 127.0.0.1:{dns.port}\n")
        url = f"https://good.test:{port}/echo?secret=1"
        fetched = subprocess.run(["curl", "-s", "-o", "-", "-w", "%{http_code}", "-x", proxy.url, "--cacert",
                                  str(tls_origins.cafile), url], capture_output=True, timeout=30)
        assert fetched.stdout.endswith(b"200"), fetched
        result = CliRunner().invoke(main, ["check", "-f", str(proxy.config_path), url, "--dst", "127.0.0.1"])
        assert result.exit_code == 0 and result.output.startswith("ALLOW  CONNECT good.test:")
        assert proxy.log_line(f"CONNECT good.test:{port}")
    finally:
        dns.stop()
