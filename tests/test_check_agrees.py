"""``squidpy check`` and the running proxy give the same verdict on the same request.

Both build the request's facts with the same functions (http.url, acl.checklist) and
both perform the lookups an ACL waits for; this table runs each request through a
live proxy (on loopback, with a real origin and a loopback DNS server) and through
``squidpy check`` with the same configuration, and compares ALLOW/DENY.
"""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from squidpy.cli import main
from tests.conftest import read_response
from tests.dnsserver import DnsServer
from tests.proxyproc import ProxyProcess

NAMES = {"www.allowed.test": "127.0.0.1", "www.blocked.test": "127.0.0.1", "casino.test": "127.0.0.1"}

HEAD = "visible_hostname localhost\nacl local src 127.0.0.0/8\n"

ALL_REQUESTS = [
    ("GET", "/squid-internal-mgr/info"),
    ("GET", "/metrics"),
    ("GET", "http://127.0.0.1:PROXY/metrics"),
    ("GET", "/proxy.pac"),
    ("GET", "http://localhost:PROXY/squid-internal-mgr/info"),
    ("GET", "http://www.allowed.test:ORIGIN/size/1"),
    ("GET", "http://www.blocked.test:ORIGIN/size/1"),
    ("GET", "http://127.0.0.1:ORIGIN/size/1"),
    ("GET", "http://[::ffff:127.0.0.1]:ORIGIN/size/1"),
    ("GET", "http://127.0.0.1:ORIGIN/cas%69no"),
    ("GET", "http://127.0.0.1:ORIGIN/x?cas%49no"),
    ("GET", "http://127.0.0.1:ORIGIN/x?cas%2569no"),
    ("GET", "http://casino.test:ORIGIN/size/1"),
    ("GET", "http://[::ffff:127.0.0.9]:ORIGIN/size/1"),
    ("GET", "http://2130706441:ORIGIN/size/1"),
    ("GET", "http://127.0.0.8:ORIGIN/size/1"),
    ("GET", "http://[::ffff:7f00:7]:ORIGIN/size/1"),
    ("CONNECT", "127.0.0.1:ORIGIN"),
    ("CONNECT", "[::ffff:127.0.0.9]:ORIGIN"),
]

# Reverse lookups (dstdomain without -n on an address) are only ever made of 127.0.0.1,
# which /etc/hosts names for both the proxy and ``squidpy check``: no query leaves loopback.
CONFIGS = {
    # issue 10: a dstdomain rule before 'allow localhost manager'; the proxy's own name
    # is an address, so that rule needs a reverse lookup of it
    "manager-after-dstdomain": ("""
visible_hostname 127.0.0.1
acl local src 127.0.0.0/8
acl blocked dstdomain .blocked.test 127.0.0.9
http_access deny blocked
http_access allow local manager
http_access deny manager
http_access allow local
http_access deny all
""", [
        ("GET", "/squid-internal-mgr/info"),
        ("GET", "/proxy.pac"),
        ("GET", "http://127.0.0.1:PROXY/squid-internal-mgr/info"),
        ("GET", "http://www.allowed.test:ORIGIN/size/1"),
        ("GET", "http://www.blocked.test:ORIGIN/size/1"),
        ("GET", "http://127.0.0.1:ORIGIN/size/1"),
        ("GET", "http://[::ffff:127.0.0.9]:ORIGIN/size/1"),
        ("GET", "http://2130706441:ORIGIN/size/1"),
        ("CONNECT", "[::ffff:127.0.0.9]:ORIGIN"),
        ("CONNECT", "127.0.0.1:ORIGIN"),
    ]),
    # rules needing dst (DNS) before the manager rules, as in Squid's default policy
    "default-like": (HEAD + """
acl Safe_ports port 80 443 1025-65535
acl SSL_ports port 443
acl origin_port port ORIGIN
http_access deny !Safe_ports
http_access deny CONNECT !SSL_ports !origin_port
http_access allow local manager
http_access deny manager
http_access deny to_localhost !origin_port
http_access allow local
http_access deny all
""", ALL_REQUESTS),
    "url-escapes": (HEAD + """
acl casino url_regex -i casino
acl cpath urlpath_regex -i ^/cas.no
http_access deny casino
http_access deny cpath
http_access allow local
http_access deny all
""", ALL_REQUESTS),
    "addresses": (HEAD + """
acl blocked dstdomain -n 127.0.0.9 [::ffff:127.0.0.8]
acl blocked_dst dst 127.0.0.7
http_access deny blocked
http_access deny blocked_dst
http_access allow local
http_access deny all
""", ALL_REQUESTS),
}


@pytest.fixture(scope="module")
def dns():
    server = DnsServer({name: [address] for name, address in NAMES.items()}).start()
    yield server
    server.stop()


def proxy_verdict(proxy, method: str, target: str) -> bool:
    """True when the running proxy let the request through (anything but its 403)."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: localhost:{proxy.port}\r\nConnection: close\r\n\r\n".encode())
        status, headers, _ = read_response(s.makefile("rb"), "HEAD" if method == "CONNECT" else method)
    return not (status == 403 and headers.get("x-squid-error") == "ERR_ACCESS_DENIED 0")


def check_verdict(config_path, method: str, target: str, proxy_port: int) -> bool:
    args = ["check", "-f", str(config_path), target, "--method", method, "--local-port", str(proxy_port)]
    host = target.split("://", 1)[-1].split(":", 1)[0]
    if host in NAMES:
        args += ["--dst", NAMES[host]]          # the loopback DNS server's answer, given to check
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code == 0


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_check_and_the_proxy_agree(name, tmp_path, dns, origin):
    text, requests = CONFIGS[name]
    text = text.replace("ORIGIN", str(origin.port)) + f"dns_nameservers 127.0.0.1:{dns.port}\n"
    proxy = ProxyProcess(tmp_path / "p", text)
    try:
        verdicts = []
        for method, target in requests:
            target = target.replace("ORIGIN", str(origin.port)).replace("PROXY", str(proxy.port))
            live = proxy_verdict(proxy, method, target)
            offline = check_verdict(proxy.config_path, method, target, proxy.port)
            verdicts.append((method, target, live, offline))
        disagree = [v for v in verdicts if v[2] != v[3]]
        assert not disagree, f"{name}: (method, target, proxy, check) differ: {disagree}"
        assert {v[2] for v in verdicts} == {True, False}         # the table exercises both answers
    finally:
        proxy.stop()
