"""End to end: ACLs through the real proxy — blocking sites for HTTP and HTTPS,
subnets, deny_info, reply ACLs, lookups, reloading a domain file."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import read_response
from tests.dnsserver import DnsServer
from tests.proxyproc import wait_for


def request(port, raw: bytes, source: str = "127.0.0.1"):
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    with s:
        s.sendall(raw)
        return read_response(s.makefile("rb"))


def get(port, url, source="127.0.0.1", extra=""):
    return request(port, f"GET {url} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode(), source)


@pytest.fixture
def dns():
    server = DnsServer({"www.facebook.com": ["127.0.0.1"], "intranet.test.example": ["127.0.0.1"]},
                       names={"127.0.0.2": "pc2.accounting.test.example", "127.0.0.3": "pc3.sales.test.example"}).start()
    yield server
    server.stop()


BLOCK = """
acl localnet src 127.0.0.0/8
acl social dstdomain "{domains}"
acl SSL_ports port 443
acl Safe_ports port 80 443 1025-65535
http_access deny !Safe_ports
http_access deny CONNECT !SSL_ports
http_access deny social
http_access allow localnet
http_access deny all
dns_nameservers 127.0.0.1:{dns}
"""


def test_facebook_blocked_for_http_and_https_without_any_lookup(make_proxy, dns, tmp_path):
    domains = tmp_path / "social.txt"
    domains.write_text("# social networks\n.facebook.com\n.fbcdn.net\n")
    proxy = make_proxy(BLOCK.format(domains=domains, dns=dns.port))
    status, headers, body = get(proxy.port, "http://www.facebook.com/")
    assert status == 403 and headers["x-squid-error"] == "ERR_ACCESS_DENIED 0"
    status, headers, _ = request(proxy.port, b"CONNECT www.facebook.com:443 HTTP/1.1\r\nHost: www.facebook.com:443\r\n\r\n")
    assert status == 403
    lines = proxy.log_lines(2)
    assert [l.split()[3] for l in lines[-2:]] == ["TCP_DENIED/403", "TCP_DENIED/403"]
    assert [l.split()[6] for l in lines[-2:]] == ["http://www.facebook.com/", "www.facebook.com:443"]
    assert all(l.split()[8] == "HIER_NONE/-" for l in lines[-2:])
    assert dns.queries == []          # denied before any DNS lookup or connection


def test_only_our_subnets(make_proxy, origin):
    proxy = make_proxy("acl ours src 127.0.0.1/32\nhttp_access allow ours\nhttp_access deny all\n",
                       listen="0.0.0.0:0")
    assert get(proxy.port, origin.url("/size/1"))[0] == 200
    assert get(proxy.port, origin.url("/size/1"), source="127.0.0.2")[0] == 403


def test_default_policy_refuses_clients_outside_localnet(make_proxy, origin):
    """etc/squidpy.conf's policy: 127.0.0.2 is neither localhost nor localnet."""
    from squidpy.config.loader import default_config_path
    policy = open(default_config_path()).read().replace("http_port 3128", "")
    proxy = make_proxy(policy)
    status, headers, _ = get(proxy.port, "http://example.com/", source="127.0.0.2")
    assert status == 403
    status, _, _ = get(proxy.port, origin.url("/size/1"))
    assert status == 403            # to_localhost: the proxy's own machine is off limits


def test_deny_info_page_redirect_and_reset(make_proxy, origin, tmp_path):
    pages = tmp_path / "errors"
    pages.mkdir()
    (pages / "ERR_SOCIAL").write_text("<html><body>Social networks are blocked here: %U</body></html>")
    proxy = make_proxy(f"""
error_directory {pages}
acl social dstdomain .facebook.com
acl games dstdomain .games.example
acl evil dstdomain .evil.example
acl localnet src 127.0.0.0/8
http_access deny social
http_access deny games
http_access deny evil
http_access allow localnet
deny_info ERR_SOCIAL social
deny_info http://intranet.example/blocked?url=%u&client=%i games
deny_info TCP_RESET evil
""")
    status, headers, body = get(proxy.port, "http://www.facebook.com/x")
    assert status == 403 and body == b"<html><body>Social networks are blocked here: http://www.facebook.com/x</body></html>"
    assert headers["x-squid-error"] == "ERR_SOCIAL 0"
    status, headers, _ = get(proxy.port, "http://www.games.example/play?level=2")
    assert status == 302
    assert headers["location"] == ("http://intranet.example/blocked?url=http%3A%2F%2Fwww.games.example%2Fplay%3Flevel%3D2"
                                   "&client=127.0.0.1")
    with pytest.raises((ConnectionResetError, EOFError)):
        get(proxy.port, "http://www.evil.example/")
    assert proxy.log_line("www.evil.example").split()[3] == "TCP_DENIED/000"


def test_deny_info_after_an_implicit_deny_uses_the_last_acl_evaluated(make_proxy):
    proxy = make_proxy("""
acl ours src 10.0.0.0/8
http_access allow ours
deny_info 307:http://portal.example/ ours
""")
    status, headers, _ = get(proxy.port, "http://example.com/")
    assert status == 307 and headers["location"] == "http://portal.example/"


def test_http_reply_access_with_reply_acls(make_proxy, origin):
    proxy = make_proxy("""
acl localnet src 127.0.0.0/8
acl video rep_mime_type -i ^video/
acl errors http_status 500-599
http_access allow localnet
http_reply_access deny video
http_reply_access deny errors
""")
    assert get(proxy.port, origin.url("/headers?Content-Type=text/plain"))[0] == 200
    status, headers, _ = get(proxy.port, origin.url("/headers?Content-Type=video/mp4"))
    assert status == 403 and headers["x-squid-error"] == "ERR_ACCESS_DENIED 0"
    assert get(proxy.port, origin.url("/status/503"))[0] == 403
    assert "TCP_DENIED_REPLY/403" in proxy.log_line("video") or "TCP_DENIED_REPLY/403" in proxy.log_line("headers")


def test_srcdomain_by_reverse_lookup(make_proxy, dns, origin):
    proxy = make_proxy(f"""
dns_nameservers 127.0.0.1:{dns.port}
acl accounting srcdomain .accounting.test.example
http_access allow accounting
http_access deny all
""", listen="0.0.0.0:0")
    assert get(proxy.port, origin.url("/size/1"), source="127.0.0.2")[0] == 200
    assert get(proxy.port, origin.url("/size/1"), source="127.0.0.3")[0] == 403


def test_dstdomain_of_an_ip_literal_url_by_reverse_lookup(make_proxy, dns, origin):
    proxy = make_proxy(f"""
dns_nameservers 127.0.0.1:{dns.port}
acl blocked dstdomain .accounting.test.example
acl blocked_n dstdomain -n .sales.test.example
acl localnet src 127.0.0.0/8
http_access deny blocked
http_access deny blocked_n
http_access allow localnet
""")
    assert get(proxy.port, "http://127.0.0.2:9/")[0] == 403        # PTR: pc2.accounting.test.example
    status, _, _ = get(proxy.port, f"http://127.0.0.3:{origin.port}/size/1")
    assert status != 403                                             # -n: no lookup, no match


def test_method_port_and_url_rules(make_proxy, origin):
    proxy = make_proxy(f"""
acl localnet src 127.0.0.0/8
acl writes method POST PUT DELETE
acl exe urlpath_regex -i \\.exe$
acl curl browser ^curl/
acl origin_port port {origin.port}
acl maxed maxconn 1
http_access deny writes
http_access deny exe
http_access deny curl
http_access deny maxed
http_access allow localnet origin_port
http_access deny all
""")
    assert get(proxy.port, origin.url("/size/1"))[0] == 200
    assert request(proxy.port, f"POST {origin.url('/echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())[0] == 403
    assert get(proxy.port, origin.url("/setup.EXE"))[0] == 403
    assert get(proxy.port, origin.url("/size/1"), extra="User-Agent: curl/8.0\r\n")[0] == 403
    assert get(proxy.port, "http://127.0.0.1:9/")[0] == 403            # not the origin's port
    held = socket.create_connection(("127.0.0.1", proxy.port))
    try:
        assert get(proxy.port, origin.url("/size/1"))[0] == 403        # two connections > maxconn 1
    finally:
        held.close()


def test_myportname_and_localport(make_proxy, origin):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        second = probe.getsockname()[1]
    proxy = make_proxy(f"""
http_port 127.0.0.1:0 name=staff
http_port 127.0.0.1:{second} name=guests
acl staff myportname staff
acl guest_port localport {second}
http_access deny guest_port
http_access allow staff
""")
    assert wait_for(lambda: len(proxy._ports_from_log() or []) == 2, 5)
    staff_port = [p for p in proxy._ports_from_log() if p != second][0]
    assert get(staff_port, origin.url("/size/1"))[0] == 200
    assert get(second, origin.url("/size/1"))[0] == 403


def test_changed_domain_file_applies_on_reconfigure_without_dropping_connections(make_proxy, origin, tmp_path):
    domains = tmp_path / "blocked.txt"
    domains.write_text(".nothing.example\n")
    proxy = make_proxy(f"""
acl localnet src 127.0.0.0/8
acl blocked dstdomain "{domains}"
http_access deny blocked
http_access allow localnet
""")
    live = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    f = live.makefile("rb")
    live.sendall(f"GET http://localhost:{origin.port}/size/2 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert read_response(f)[0] == 200
    domains.write_text(".nothing.example\nlocalhost\n")
    out = subprocess.run([sys.executable, "-m", "squidpy", "signal", "reconfigure", "-f", str(proxy.config_path)],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0
    assert wait_for(lambda: "Reconfigured" in proxy.read_cache_log(), 10)
    live.sendall(f"GET http://localhost:{origin.port}/size/2 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert read_response(f)[0] == 403          # same connection, new list
    live.close()


def test_squidpy_check_command(tmp_path):
    conf = tmp_path / "squidpy.conf"
    conf.write_text("acl localnet src 10.0.0.0/8\nacl social dstdomain .facebook.com\n"
                    "http_access deny social\nhttp_access allow localnet\nhttp_access deny all\n")

    def check(*args):
        return subprocess.run([sys.executable, "-m", "squidpy", "check", "-f", str(conf), *args],
                              capture_output=True, text=True, timeout=30)

    out = check("http://www.facebook.com/", "--client", "10.1.2.3")
    assert out.returncode == 1
    assert f"decided by {conf}:3: http_access deny social" in out.stdout
    out = check("http://example.com/", "--client", "10.1.2.3")
    assert out.returncode == 0 and f"{conf}:4: http_access allow localnet" in out.stdout
    out = check("www.facebook.com:443", "--method", "CONNECT", "--client", "10.1.2.3")
    assert out.returncode == 1
    out = check("http://example.com/", "--client", "192.168.1.1", "-v")
    assert out.returncode == 1 and "lines tried:" in out.stdout and "localnet (src): no" in out.stdout
