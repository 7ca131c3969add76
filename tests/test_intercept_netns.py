"""Interception end to end, on the kernel's real paths: a client, a gateway and an origin in
network namespaces (tests/netns.py).  The gateway's nftables rules send the client's port 80
to squidpy (``redirect`` to an ``intercept`` port, ``tproxy`` to a ``tproxy`` port); curl in the
client namespace fetches http://ORIGIN/ with no proxy settings at all."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests import netns
from tests.conftest import assert_no_tracebacks
from tests.dnsserver import DnsServer
from tests.netns import CLIENT4, CLIENT6, GATEWAY_CLIENT4, GATEWAY_ORIGIN4, ORIGIN4, ORIGIN6, OTHER4
from tests.origin import Origin
from tests.proxyproc import ProxyProcess, wait_for

INTERCEPT_PORT, TPROXY_PORT, STRICT_PORT = 3129, 3130, 3131
NO_PROXY_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}   # curl as a plain client
NAMES = {"origin.test": [ORIGIN4], "blocked.test": [ORIGIN4], "other.test": [OTHER4], "origin6.test": [ORIGIN6]}
CONFIG = f"""
http_port 3128
http_port {INTERCEPT_PORT} intercept
http_port {TPROXY_PORT} tproxy
acl clients src 192.0.2.0/24 2001:db8:1::/64
acl blocked dstdomain blocked.test
acl unspoofed urlpath_regex ^/echo/unspoofed
spoof_client_ip deny unspoofed
http_access deny blocked
http_access allow clients
http_access deny all
cache_mem 16 MB
visible_hostname gateway.test
"""


class Net:
    def __init__(self, topo, origins, dns):
        self.topo = topo
        self.origins = origins
        self.dns = dns

    def curl(self, url: str, *options: str, six: bool = False) -> tuple[int, bytes]:
        """curl in the client namespace, with no proxy: (status, body)."""
        done = subprocess.run(
            [*self.topo.client.exec_prefix(), "curl", "-sS", "-m", "10",
             "-o", "-", "-w", "\n%{http_code}", *(["-6"] if six else []), *options, url],
            capture_output=True, timeout=30, env=NO_PROXY_ENV)
        body, _, status = done.stdout.rpartition(b"\n")
        return int(status or 0), body


@pytest.fixture(scope="module")
def net():
    why = netns.unavailable()
    if why:
        pytest.skip(why)
    topo = netns.Topology.create()
    try:
        with topo.origin.entered():
            origins = {"v4": Origin(ORIGIN4, 80), "other": Origin(OTHER4, 80), "v6": Origin(ORIGIN6, 80)}
        with topo.gateway.entered():
            dns = DnsServer(NAMES).start()
        for origin in origins.values():
            origin.start()
        yield Net(topo, origins, dns)
        for origin in origins.values():
            origin.stop()
        dns.stop()
    finally:
        topo.destroy()


def _proxy(net, directory, config):
    proxy = ProxyProcess(directory, config + f"dns_nameservers 127.0.0.1:{net.dns.port}\n",
                         prefix=net.topo.gateway.exec_prefix())
    return proxy


@pytest.fixture(scope="module")
def gateway(net, tmp_path_factory):
    """squidpy on the gateway: a forward port, an intercept port and a tproxy port."""
    proxy = _proxy(net, tmp_path_factory.mktemp("gateway"), CONFIG)
    yield proxy
    proxy.stop()
    assert_no_tracebacks(proxy)


@pytest.fixture
def redirected(net, gateway):
    net.topo.intercept(INTERCEPT_PORT)
    return gateway


@pytest.fixture
def tproxied(net, gateway):
    net.topo.intercept(TPROXY_PORT, mode="tproxy")
    return gateway


def line_for(proxy, needle: str, count: int = 1) -> list[str]:
    """The access log lines containing ``needle``, once there are ``count`` of them."""
    def found():
        lines = [line for line in proxy.access_log.read_text().splitlines() if needle in line]
        return lines if len(lines) >= count else None
    return wait_for(found, 5) or []


# ---------------------------------------------------------------- REDIRECT to an intercept port
def test_plain_curl_is_intercepted_logged_and_cached(net, redirected):
    url = f"http://{ORIGIN4}/obj/plain?cc=max-age=600&size=3000"
    first, second = net.curl(url), net.curl(url)
    assert first[0] == second[0] == 200
    assert len(first[1]) == 3000 and first[1] == second[1] and first[1].startswith(b"plain served 1")
    assert net.origins["v4"].count("/obj/plain?cc=max-age=600&size=3000") == 1
    miss, hit = line_for(redirected, "/obj/plain?", 2)
    assert f" {CLIENT4} TCP_MISS/200 " in miss and f"GET {url} - ORIGINAL_DST/{ORIGIN4} text/plain" in miss
    assert f" {CLIENT4} TCP_MEM_HIT/200 " in hit and "HIER_NONE/-" in hit


def test_the_url_carries_the_host_header(net, redirected):
    status, body = net.curl("http://origin.test/obj/named?cc=max-age=600", "--resolve", f"origin.test:80:{ORIGIN4}")
    assert status == 200 and body == b"named served 1\n"
    [line] = line_for(redirected, "/obj/named")
    assert f"GET http://origin.test/obj/named?cc=max-age=600 - ORIGINAL_DST/{ORIGIN4}" in line


def test_origin_sees_the_gateway_and_the_forwarding_headers(net, redirected):
    status, body = net.curl(f"http://{ORIGIN4}/echo/nat")
    doc = json.loads(body)
    assert status == 200 and doc["peer"] == GATEWAY_ORIGIN4
    headers = dict(doc["headers"])
    assert headers["Host"] == ORIGIN4 and headers["X-Forwarded-For"] == CLIENT4
    assert "gateway.test" in headers["Via"]


def test_dstdomain_deny_gives_the_deny_page(net, redirected):
    before = net.origins["v4"].count()
    status, body = net.curl("http://blocked.test/obj/deny", "--resolve", f"blocked.test:80:{ORIGIN4}")
    assert status == 403 and b"ERR_ACCESS_DENIED" in body and b"http://blocked.test/obj/deny" in body
    assert net.origins["v4"].count() == before
    [line] = line_for(redirected, "/obj/deny")
    assert f" {CLIENT4} TCP_DENIED/403 " in line and "GET http://blocked.test/obj/deny - HIER_NONE/-" in line


def test_forged_host_does_not_poison_the_cache(net, redirected):
    """A client connects to ORIGIN but names other.test: it reaches ORIGIN (where it
    connected), never other.test, and nothing it gets is stored for other.test."""
    path = "/obj/forged?cc=max-age=600"
    for _ in range(2):
        status, body = net.curl(f"http://{ORIGIN4}{path}", "-H", "Host: other.test")
        assert status == 200 and body.startswith(b"forged served ")
    assert net.origins["v4"].count(path) == 2 and net.origins["other"].count(path) == 0
    forged = line_for(redirected, "http://other.test/obj/forged", 2)
    assert all(f"TCP_MISS/200" in line and f"ORIGINAL_DST/{ORIGIN4}" in line for line in forged)
    # the real other.test is asked, and its own reply is the one cached
    status, body = net.curl(f"http://other.test{path}", "--resolve", f"other.test:80:{OTHER4}")
    assert status == 200 and body == b"forged served 1\n"
    assert net.origins["other"].count(path) == 1
    status, again = net.curl(f"http://other.test{path}", "--resolve", f"other.test:80:{OTHER4}")
    assert again == body and net.origins["other"].count(path) == 1
    assert "TCP_MEM_HIT/200" in line_for(redirected, "http://other.test/obj/forged", 4)[-1]
    # and a forger is not served the real site's stored copy either: it still reaches ORIGIN
    status, body = net.curl(f"http://{ORIGIN4}{path}", "-H", "Host: other.test")
    assert body == b"forged served 3\n" and net.origins["v4"].count(path) == 3


def test_ipv6_is_intercepted_too(net, redirected):
    url = f"http://[{ORIGIN6}]/obj/six?cc=max-age=600"
    assert net.curl(url, six=True) == (200, b"six served 1\n")
    assert net.curl(url, six=True) == (200, b"six served 1\n")
    assert net.origins["v6"].count("/obj/six?cc=max-age=600") == 1
    miss, hit = line_for(redirected, "/obj/six", 2)
    assert f" {CLIENT6} TCP_MISS/200 " in miss and f"ORIGINAL_DST/{ORIGIN6}" in miss
    assert f" {CLIENT6} TCP_MEM_HIT/200 " in hit
    status, body = net.curl("http://origin6.test/obj/six6", "--resolve", f"origin6.test:80:[{ORIGIN6}]", six=True)
    assert status == 200
    [line] = line_for(redirected, "/obj/six6")
    assert "GET http://origin6.test/obj/six6 - ORIGINAL_DST/2001:db8:2::2" in line


def test_a_request_to_the_intercept_port_itself_is_refused_without_a_loop(net, redirected):
    with net.topo.client.connect(GATEWAY_CLIENT4, INTERCEPT_PORT) as s:
        s.sendall(b"GET /obj/loop HTTP/1.1\r\nHost: 192.0.2.1:3129\r\nConnection: close\r\n\r\n")
        reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 403 Forbidden") and b"ERR_ACCESS_DENIED" in reply
    assert net.curl(f"http://{ORIGIN4}/obj/after-loop")[0] == 200
    assert line_for(redirected, "/obj/after-loop")        # logged in order: anything the loop made is in
    [line] = line_for(redirected, "/obj/loop")            # one line: the proxy did not call itself
    assert "TCP_DENIED/403" in line and "GET http://192.0.2.1:3129/obj/loop - HIER_NONE/-" in line


def test_no_original_destination_closes_the_connection(net, gateway):
    """Without connection tracking (notrack) the kernel has no original destination:
    as Squid, an ERROR in cache.log and the connection closed unanswered."""
    net.topo.intercept(INTERCEPT_PORT, extra=(
        "chain raw { type filter hook prerouting priority raw; policy accept;\n"
        f"ip daddr {GATEWAY_CLIENT4} tcp dport {INTERCEPT_PORT} notrack\n}}\n"
        "chain rawout { type filter hook output priority raw; policy accept;\n"
        f"ip saddr {GATEWAY_CLIENT4} tcp sport {INTERCEPT_PORT} notrack\n}}"))
    try:            # the proxy resets the connection at once: maybe before connect() returns
        with net.topo.client.connect(GATEWAY_CLIENT4, INTERCEPT_PORT) as s:
            s.sendall(b"GET /obj/untracked HTTP/1.1\r\nHost: origin.test\r\n\r\n")
            reply = _read_all(s)
    except (ConnectionResetError, BrokenPipeError):
        reply = b""
    assert reply == b""
    assert wait_for(lambda: "ERROR: NAT/TPROXY lookup failed to locate original IPs on local=192.0.2.1:3129 "
                            f"remote={CLIENT4}:" in gateway.read_cache_log(), 5)
    net.topo.intercept(INTERCEPT_PORT)
    assert net.curl(f"http://{ORIGIN4}/obj/tracked")[0] == 200
    assert line_for(gateway, "/obj/tracked")              # logged in order: the refused one never was
    assert "untracked" not in gateway.access_log.read_text()


def test_the_forward_port_still_serves_explicit_clients(net, redirected):
    status, body = net.curl("http://origin.test/obj/explicit", "-x", f"http://{GATEWAY_CLIENT4}:3128")
    assert status == 200 and body == b"explicit served 1\n"
    [line] = line_for(redirected, "/obj/explicit")
    assert "HIER_DIRECT/198.51.100.2" in line


# ---------------------------------------------------------------- TPROXY
def test_tproxy_keeps_the_clients_address_to_the_origin(net, tproxied):
    status, body = net.curl(f"http://{ORIGIN4}/echo/tproxy")
    assert status == 200 and json.loads(body)["peer"] == CLIENT4
    [line] = line_for(tproxied, "/echo/tproxy")
    assert f" {CLIENT4} TCP_MISS/200 " in line and f"GET http://{ORIGIN4}/echo/tproxy - ORIGINAL_DST/{ORIGIN4}" in line
    status, body = net.curl(f"http://[{ORIGIN6}]/echo/tproxy6", six=True)
    assert status == 200 and json.loads(body)["peer"] == CLIENT6


def test_spoof_client_ip_deny_connects_from_the_gateway(net, tproxied):
    status, body = net.curl(f"http://{ORIGIN4}/echo/unspoofed")
    assert status == 200 and json.loads(body)["peer"] == GATEWAY_ORIGIN4


def test_tproxy_hits_and_forged_hosts(net, tproxied):
    url = f"http://{ORIGIN4}/obj/tp?cc=max-age=600"
    assert net.curl(url) == net.curl(url) == (200, b"tp served 1\n")
    assert net.origins["v4"].count("/obj/tp?cc=max-age=600") == 1
    status, body = net.curl(f"http://{ORIGIN4}/obj/tpforged?cc=max-age=600", "-H", "Host: other.test")
    status, body = net.curl(f"http://{ORIGIN4}/obj/tpforged?cc=max-age=600", "-H", "Host: other.test")
    assert body == b"tpforged served 2\n" and net.origins["other"].count("/obj/tpforged?cc=max-age=600") == 0


# ---------------------------------------------------------------- host_verify_strict
@pytest.fixture(scope="module")
def strict(net, tmp_path_factory):
    config = CONFIG.replace("http_port 3128\n", "http_port 3138\n").replace(
        f"http_port {INTERCEPT_PORT} intercept\nhttp_port {TPROXY_PORT} tproxy", f"http_port {STRICT_PORT} intercept")
    proxy = _proxy(net, tmp_path_factory.mktemp("strict"), config + "host_verify_strict on\n")
    net.topo.intercept(STRICT_PORT)
    yield proxy
    proxy.stop()
    assert_no_tracebacks(proxy)


def test_strict_verification_refuses_a_forged_host(net, strict):
    net.topo.intercept(STRICT_PORT)
    status, body = net.curl(f"http://{ORIGIN4}/obj/strict", "-H", "Host: other.test", "-A", "forger/1")
    assert status == 409 and b"ERR_CONFLICT_HOST" in body
    assert net.origins["v4"].count("/obj/strict") == 0 and net.origins["other"].count("/obj/strict") == 0
    [line] = line_for(strict, "/obj/strict")
    assert f" {CLIENT4} NONE_NONE/409 " in line and "GET http://other.test/obj/strict - HIER_NONE/-" in line
    alerts = wait_for(lambda: [l for l in strict.read_cache_log().splitlines() if "SECURITY ALERT" in l], 5)
    assert f"Host header forgery detected on local={ORIGIN4}:80 remote={CLIENT4}:" in alerts[0]
    assert alerts[0].endswith("(local IP does not match any domain IP)")
    assert alerts[1].endswith("SECURITY ALERT: By user agent: forger/1")
    assert alerts[2].endswith("SECURITY ALERT: on URL: http://other.test/obj/strict")
    assert net.curl(f"http://{ORIGIN4}/obj/honest", "-H", "Host: origin.test") == (200, b"honest served 1\n")



# ---------------------------------------------------------------- a parent behind the interception port
PARENTED_PORT, PARENT_PORT = 3132, 3140


@pytest.fixture(scope="module")
def parented(net, tmp_path_factory):
    """An interception gateway whose misses go to a parent (another squidpy on the
    gateway's loopback), as Squid 5.7 sends intercepted requests through peer selection."""
    parent = _proxy(net, tmp_path_factory.mktemp("parent"), "http_port 127.0.0.1:3140\nvisible_hostname parent.test\n"
                    "acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n")
    config = CONFIG.replace("http_port 3128\n", "http_port 3139\n").replace(
        f"http_port {INTERCEPT_PORT} intercept\nhttp_port {TPROXY_PORT} tproxy", f"http_port {PARENTED_PORT} intercept")
    child = _proxy(net, tmp_path_factory.mktemp("child"),
                   config + f"cache_peer 127.0.0.1 parent {PARENT_PORT} 0 no-query name=up\n")
    yield parent, child
    for proxy in (child, parent):
        proxy.stop()
        assert_no_tracebacks(proxy)


def test_an_intercepted_request_goes_to_the_parent_and_a_forged_one_does_not(net, parented):
    parent, child = parented
    net.topo.intercept(PARENTED_PORT)
    status, body = net.curl("http://origin.test/obj/via-parent", "--resolve", f"origin.test:80:{ORIGIN4}")
    assert (status, body) == (200, b"via-parent served 1\n")
    [line] = line_for(child, "/obj/via-parent")
    assert f" {CLIENT4} TCP_MISS/200 " in line and "GET http://origin.test/obj/via-parent - FIRSTUP_PARENT/127.0.0.1" in line
    [line] = line_for(parent, "/obj/via-parent")
    assert " 127.0.0.1 TCP_MISS/200 " in line and f"HIER_DIRECT/{ORIGIN4}" in line
    # a Host that does not resolve to where the client connected: there, never to the parent
    status, body = net.curl(f"http://{ORIGIN4}/obj/forged-parent", "-H", "Host: other.test")
    assert (status, body) == (200, b"forged-parent served 1\n")
    [line] = line_for(child, "/obj/forged-parent")
    assert f"GET http://other.test/obj/forged-parent - ORIGINAL_DST/{ORIGIN4}" in line
    assert "forged-parent" not in parent.access_log.read_text()
    assert net.origins["other"].count("/obj/forged-parent") == 0


def _read_all(sock, limit: int = 1 << 20) -> bytes:
    out = b""
    deadline = time.monotonic() + 10
    while len(out) < limit and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out
