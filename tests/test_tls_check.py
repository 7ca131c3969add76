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


# ---------------------------------------------------------------- with SslBump

def bump_config(tmp_path, rules: str) -> str:
    from squidpy.tls.ca import init_ca
    pem, _ = init_ca(str(tmp_path / "ca"))
    conf = tmp_path / "squidpy.conf"
    conf.write_text(CONFIG + "acl step1 at_step SslBump1\nacl banks ssl::server_name .bank.test\n"
                    f"http_port 3128 ssl-bump tls-cert={pem}\n" + rules)
    return str(conf)


def test_bumped_https_is_judged_on_its_path(tmp_path):
    conf = bump_config(tmp_path, "ssl_bump peek step1\nssl_bump splice banks\nssl_bump bump all\n")
    result = CliRunner().invoke(main, ["check", "-f", conf, "https://www.example.test/secret", "--dst", "127.0.0.1"])
    assert result.exit_code == 1, result.output
    assert "SslBump decrypts this connection" in result.output
    assert "SslBump1: peek" in result.output and "SslBump2: bump" in result.output
    assert "DENY  GET https://www.example.test/secret" in result.output
    spliced = CliRunner().invoke(main, ["check", "-f", conf, "https://www.bank.test/secret", "--dst", "127.0.0.1"])
    assert spliced.exit_code == 0 and "spliced at step 2" in spliced.output
    assert "The full URL https://www.bank.test/secret would be DENIED" in spliced.output


def test_a_refused_connect_is_shown_inside_tls(tmp_path):
    conf = bump_config(tmp_path, "")
    result = CliRunner().invoke(main, ["check", "-f", conf, "https://www.blocked.test/", "--dst", "127.0.0.1"])
    assert result.exit_code == 1 and "to show it inside TLS" in result.output


def test_parse_notes_url_rules_that_never_see_https(tmp_path):
    import subprocess
    import sys
    plain = tmp_path / "plain.conf"
    plain.write_text(CONFIG)
    out = subprocess.run([sys.executable, "-m", "squidpy", "parse", "-f", str(plain)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    assert f"{plain}:5: note: url_regex ACL 'secret' sees only host:port of HTTPS requests" in out.stderr
    # without a CA, a refused CONNECT cannot show its page: the browser shows its own error
    assert (f"{plain}:6: note: HTTPS requests this line denies (dstdomain ACL 'blocked') show the browser's own "
            "error (ERR_TUNNEL_CONNECTION_FAILED)") in out.stderr
    assert f"{plain}:5: note: HTTPS requests" not in out.stderr     # url_regex: its own note above
    bumping = bump_config(tmp_path, "ssl_bump peek step1\nssl_bump bump all\n")
    out = subprocess.run([sys.executable, "-m", "squidpy", "parse", "-f", bumping], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "note:" not in out.stderr


def test_requests_inside_a_bumped_connection_are_the_connects_user(tmp_path):
    """As Squid 5.7: the CONNECT is authenticated, the request inside inherits its user;
    a CONNECT let through without credentials leaves the requests inside nobody's, so
    authentication ACLs do not match there, and a denial they decide is a 403 (no 407
    inside TLS)."""
    from squidpy.tls.ca import init_ca
    pem, _ = init_ca(str(tmp_path / "ca"))
    conf = tmp_path / "squidpy.conf"

    def run(policy: str, *args: str):
        conf.write_text("auth_param basic program /bin/true\nacl users proxy_auth REQUIRED\n"
                        "acl alice proxy_auth alice\nacl step1 at_step SslBump1\n"
                        f"http_port 3128 ssl-bump tls-cert={pem}\nssl_bump peek step1\nssl_bump bump all\n" + policy)
        return CliRunner().invoke(main, ["check", "-f", str(conf), *args, "https://www.example.test/",
                                         "--dst", "127.0.0.1"])

    authenticated = "acl get method GET\nhttp_access deny !users\nhttp_access deny get !alice\nhttp_access allow all\n"
    alice = run(authenticated, "--user", "alice")
    assert alice.exit_code == 0 and "ALLOW  GET https://www.example.test/" in alice.output, alice.output
    bob = run(authenticated, "--user", "bob")
    assert bob.exit_code == 1, bob.output
    assert "answered with the ERR_CACHE_ACCESS_DENIED page (403)" in bob.output
    assert "407" not in bob.output

    unauthenticated = "http_access allow CONNECT\nhttp_access deny !users\nhttp_access allow all\n"
    inside = run(unauthenticated, "--user", "alice")
    assert inside.exit_code == 1, inside.output
    assert "ALLOW  CONNECT" in inside.output and "DENY  GET https://www.example.test/" in inside.output
    assert "decided by" in inside.output and "http_access deny !users" in inside.output
    assert "ERR_CACHE_ACCESS_DENIED page (403)" in inside.output
    refused = run("http_access deny !alice\nhttp_access allow all\n", "--user", "bob")
    assert refused.exit_code == 1 and "ERR_CACHE_ACCESS_DENIED page (407)" in refused.output
    assert "inside TLS" not in refused.output      # a challenge, never bumped to show a page
