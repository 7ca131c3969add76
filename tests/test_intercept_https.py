"""HTTPS interception end to end, on the kernel's real paths (tests/netns.py): the gateway's
nftables rules redirect the client's port 443 to ``https_port 3130 intercept ssl-bump``, and
plain ``curl https://NAME/`` in the client namespace (no proxy settings) reaches a TLS origin
on 198.51.100.2:443.  SslBump peeks at the ClientHello for the SNI, then splices (the client
sees the origin's own certificate), terminates (a denied ssl::server_name: reset) or bumps
(the client trusts the proxy's CA: decrypted requests with https:// URLs, cached).  The last
test runs Squid 5.7 (built with OpenSSL) as the same gateway and compares the access logs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from squidpy.tls.ca import init_ca
from tests import netns
from tests.conftest import assert_no_tracebacks
from tests.dnsserver import DnsServer
from tests.test_intercept_recipes import recipes
from tests.netns import CLIENT4, GATEWAY_CLIENT4, ORIGIN4
from tests.proxyproc import ProxyProcess, wait_for
from tests.squidproc import SQUID_OPENSSL, SquidProcess
from tests.tlscert import TestCA, write_pair
from tests.tlsorigins import TlsOrigin

HTTPS_PORT, TPROXY_PORT = 3130, 3132
CERTGEN = "/opt/squid-openssl/usr/lib/squid/security_file_certgen"
NO_PROXY_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
NOWHERE = "198.51.100.9"            # a name that does not resolve to where the client connects
NAMES = {"origin.test": ORIGIN4, "blocked.test": ORIGIN4, "bumped.test": ORIGIN4, "denied.test": ORIGIN4,
         "late.test": ORIGIN4, "elsewhere.test": NOWHERE}
POLICY = """
http_port {http}
https_port {port} intercept ssl-bump tls-cert={ca}
tls_outgoing_options cafile={root}
acl step1 at_step SslBump1
acl blocked ssl::server_name blocked.test
acl bumped ssl::server_name bumped.test
acl step2 at_step SslBump2
acl late ssl::server_name late.test
ssl_bump peek step1
ssl_bump terminate blocked
ssl_bump bump bumped
ssl_bump peek step2 late
ssl_bump splice all
acl clients src 192.0.2.0/24 2001:db8:1::/64
acl denied dstdomain -n denied.test
http_access deny denied
http_access allow clients
http_access deny all
strip_query_terms off
"""


class Net:
    def __init__(self, topo, origin, root: Path, ca_pem: Path, ca_crt: Path, root_ca: Path):
        self.topo, self.origin = topo, origin
        self.root, self.ca_pem, self.ca_crt, self.root_ca = root, ca_pem, ca_crt, root_ca

    def curl(self, name: str, path: str, *options: str) -> tuple[int, bytes, str]:
        """curl https://NAME/PATH in the client namespace, no proxy: (status, body, stderr);
        the name resolves to the origin's address, as the client's DNS would say."""
        done = subprocess.run(
            [*self.topo.client.exec_prefix(), "curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}",
             "--resolve", f"{name}:443:{ORIGIN4}", *options, f"https://{name}{path}"],
            capture_output=True, timeout=30, env=NO_PROXY_ENV)
        body, _, status = done.stdout.rpartition(b"\n")
        return int(status or 0), body, done.stderr.decode(errors="replace")


@pytest.fixture(scope="module")
def net():
    why = netns.unavailable()
    if why:
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="intercept-https-"))
    os.chmod(root, 0o755)          # Squid, as 'proxy', reads the CA and the test root there
    pem, crt = init_ca(str(root / "ca"), "Intercept CA")
    os.chmod(root / "ca", 0o755)
    os.chmod(pem, 0o644)
    test_ca = TestCA()
    root_ca = test_ca.write(root / "root.pem")
    os.chmod(root_ca, 0o644)
    cert, key = test_ca.issue(["origin.test", "blocked.test", "bumped.test", "denied.test", "late.test", "elsewhere.test",
                               ORIGIN4])
    cert_path, key_path = write_pair(root, "origin", cert, key)
    topo = netns.Topology.create()
    try:
        with topo.origin.entered():
            origin = TlsOrigin(cert_path, key_path, host=ORIGIN4, port=443)
        origin.start()
        yield Net(topo, origin, root, Path(pem), Path(crt), Path(root_ca))
        origin.stop()
    finally:
        topo.destroy()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway(net, tmp_path_factory):
    with net.topo.gateway.entered():
        dns = DnsServer({name: [address] for name, address in NAMES.items()}).start()
    proxy = ProxyProcess(tmp_path_factory.mktemp("gateway"),
                         POLICY.format(http=3128, port=HTTPS_PORT, ca=net.ca_pem, root=net.root_ca)
                         + f"https_port {TPROXY_PORT} tproxy ssl-bump tls-cert={net.ca_pem}\n"
                         + f"dns_nameservers 127.0.0.1:{dns.port}\ncache_mem 16 MB\n",
                         prefix=net.topo.gateway.exec_prefix())
    net.topo.intercept(https_port=HTTPS_PORT)
    yield proxy
    proxy.stop()
    dns.stop()
    assert_no_tracebacks(proxy)


def lines_for(proxy, needle: str, count: int = 1) -> list[str]:
    def found():
        lines = [line for line in proxy.access_log.read_text().splitlines() if needle in line]
        return lines if len(lines) >= count else None
    return wait_for(found, 5) or []


def fields(line: str) -> tuple:
    """client, result/status, method, URL, hierarchy/server."""
    parts = line.split()
    return (parts[2], parts[3], parts[5], parts[6], parts[8])


def test_splice_by_sni_shows_the_origins_own_certificate(net, gateway):
    """The client trusts only the origins' CA: the handshake succeeds only with the origin's
    own certificate, so nothing was decrypted; the log names the SNI."""
    status, body, err = net.curl("origin.test", "/obj/spliced", "--cacert", str(net.root_ca))
    assert (status, body) == (200, b"spliced served 1\n"), err
    connect, tunnel = lines_for(gateway, "CONNECT ", 2)[-2:]
    assert fields(connect) == (CLIENT4, "NONE_NONE/000", "CONNECT", f"{ORIGIN4}:443", "HIER_NONE/-")
    assert fields(tunnel) == (CLIENT4, "TCP_TUNNEL/200", "CONNECT", "origin.test:443", f"ORIGINAL_DST/{ORIGIN4}")


def test_a_denied_server_name_is_reset(net, gateway):
    before = net.origin.count()
    status, body, err = net.curl("blocked.test", "/obj/blocked", "--cacert", str(net.root_ca))
    assert status == 0 and body == b"" and ("SSL_ERROR_SYSCALL" in err or "reset" in err), err
    assert net.origin.count() == before
    tunnels = gateway.access_log.read_text().count("TCP_TUNNEL/")
    assert net.curl("origin.test", "/obj/after-block", "--cacert", str(net.root_ca))[0] == 200
    lines_for(gateway, "TCP_TUNNEL/", tunnels + 1)     # the tunnel's line comes once it has closed
    log = gateway.access_log.read_text().splitlines()
    assert fields(log[-3]) == (CLIENT4, "NONE_NONE/000", "CONNECT", f"{ORIGIN4}:443", "HIER_NONE/-")
    assert "blocked.test" not in "\n".join(log)


def test_a_dstdomain_denied_sni_is_not_spliced(net, gateway):
    """Squid's second CONNECT, named after the SNI, goes through http_access: denied by
    dstdomain, the client is reset, nothing reaches the origin."""
    before = net.origin.count()
    status, body, err = net.curl("denied.test", "/obj/denied", "--cacert", str(net.root_ca))
    assert status == 0 and body == b"", err
    assert net.origin.count() == before
    connect, denied = lines_for(gateway, "CONNECT ", 2)[-2:]
    assert fields(connect) == (CLIENT4, "NONE_NONE/000", "CONNECT", f"{ORIGIN4}:443", "HIER_NONE/-")
    assert fields(denied) == (CLIENT4, "TCP_DENIED/403", "CONNECT", "denied.test:443", "HIER_NONE/-")


def test_an_sni_resolving_elsewhere_is_not_spliced(net, gateway):
    before = net.origin.count()
    status, body, err = net.curl("elsewhere.test", "/obj/elsewhere", "--cacert", str(net.root_ca))
    assert status == 0 and body == b"", err
    assert net.origin.count() == before
    [refused] = lines_for(gateway, "CONNECT elsewhere.test:443")
    assert fields(refused) == (CLIENT4, "NONE_NONE/409", "CONNECT", "elsewhere.test:443", "HIER_NONE/-")
    assert wait_for(lambda: "SECURITY ALERT: on URL: elsewhere.test:443" in gateway.cache_log.read_text(), 5)


def test_a_splice_after_peeking_at_the_server_is_logged_under_the_address(net, gateway):
    status, body, err = net.curl("late.test", "/obj/late", "--cacert", str(net.root_ca))
    assert (status, body) == (200, b"late served 1\n"), err
    tunnel = lines_for(gateway, f"CONNECT {ORIGIN4}:443 - ORIGINAL_DST")[-1]
    assert fields(tunnel) == (CLIENT4, "TCP_TUNNEL/200", "CONNECT", f"{ORIGIN4}:443", f"ORIGINAL_DST/{ORIGIN4}")


def test_bump_decrypts_caches_and_logs_https_urls(net, gateway):
    path = "/obj/bumped?cc=max-age=600"
    first = net.curl("bumped.test", path, "--cacert", str(net.ca_crt))
    second = net.curl("bumped.test", path, "--cacert", str(net.ca_crt))
    assert first[:2] == second[:2] == (200, b"bumped served 1\n"), (first, second)
    assert net.origin.count(path) == 1
    miss, hit = lines_for(gateway, "GET https://bumped.test/", 2)
    assert fields(miss) == (CLIENT4, "TCP_MISS/200", "GET", f"https://bumped.test{path}", f"ORIGINAL_DST/{ORIGIN4}")
    assert fields(hit) == (CLIENT4, "TCP_MEM_HIT/200", "GET", f"https://bumped.test{path}", "HIER_NONE/-")
    connects = [line for line in lines_for(gateway, f"CONNECT {ORIGIN4}:443 - ORIGINAL_DST", 2)
                if " TCP_TUNNEL/" not in line]       # a splice after peeking at the server is logged so too
    assert len(connects) >= 2 and all(" NONE_NONE/000 0 " in line for line in connects)
    # the client saw a certificate the proxy minted for the name: it trusts nothing else here
    assert net.curl("bumped.test", path, "--cacert", str(net.root_ca))[0] == 0


def test_a_tls_connection_to_the_intercepting_port_itself_is_reset(net, gateway):
    with net.topo.client.connect(GATEWAY_CLIENT4, HTTPS_PORT) as s:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError, socket.timeout, OSError)):
            with context.wrap_socket(s, server_hostname="origin.test") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n")
                assert tls.recv(100) == b""
                raise ConnectionError("closed without an answer")
    [line] = lines_for(gateway, f"CONNECT {GATEWAY_CLIENT4}:{HTTPS_PORT}")
    assert " TCP_DENIED/000 0 " in line and "HIER_NONE/-" in line


def test_tproxy_splices_and_bumps_with_the_clients_address(net, gateway):
    net.topo.intercept(https_port=TPROXY_PORT, mode="tproxy")
    try:
        status, body, err = net.curl("origin.test", "/echo/tp-splice", "--cacert", str(net.root_ca))
        assert status == 200 and json.loads(body)["peer"] == CLIENT4, err
        status, body, err = net.curl("bumped.test", "/echo/tp-bump", "--cacert", str(net.ca_crt))
        assert status == 200 and json.loads(body)["peer"] == CLIENT4, err
        [line] = lines_for(gateway, "GET https://bumped.test/echo/tp-bump")
        assert fields(line) == (CLIENT4, "TCP_MISS/200", "GET", "https://bumped.test/echo/tp-bump",
                                f"ORIGINAL_DST/{ORIGIN4}")
    finally:
        net.topo.intercept(https_port=HTTPS_PORT)


@pytest.mark.parametrize("recipe", ["nft-redirect-443", "iptables-redirect-443"])
def test_the_port_443_recipes_of_the_docs(net, gateway, recipe):
    """docs/intercept.md's port-443 rules, as written (the clients' interface renamed)."""
    if recipe.startswith("iptables") and shutil.which("iptables") is None:
        pytest.skip("iptables is not installed (.ci/run installs it)")
    kind, text = recipes()[recipe]
    text = text.replace('"lan0"', '"g0"').replace(" lan0 ", " g0 ")
    g = net.topo.gateway
    try:
        g.run("nft", "flush", "ruleset")
        g.run("nft", "-f", "-", input=text) if kind == "nft" else g.run("sh", "-e", "-c", text)
        status, body, err = net.curl("origin.test", f"/obj/{recipe}", "--cacert", str(net.root_ca))
        assert (status, body) == (200, f"{recipe} served 1\n".encode()), err
        assert fields(lines_for(gateway, "CONNECT origin.test:443")[-1])[1] == "TCP_TUNNEL/200"
    finally:
        g.run("nft", "flush", "ruleset")
        net.topo.intercept(https_port=HTTPS_PORT)


# ---------------------------------------------------------------- Squid 5.7 side by side
SEQUENCE = [("origin.test", "/obj/s1", "root"), ("blocked.test", "/obj/b1", "root"),
            ("bumped.test", "/obj/u1?cc=max-age=600", "ca"), ("bumped.test", "/obj/u1?cc=max-age=600", "ca"),
            ("denied.test", "/obj/d1", "root"), ("elsewhere.test", "/obj/e1", "root"), ("late.test", "/obj/l1", "root")]
# after writing its 403/409 into the client's TLS stream Squid reads the client's next bytes as
# a request and logs the connection's end as one more (squidpy resets at once: docs/intercept.md)
NOT_A_REQUEST = "error:transaction-end-before-headers"


def _same(row: tuple) -> tuple:
    """Squid 5.7 logs a spliced tunnel /200 or /500 depending on which side closed first
    (docs/https.md, Faults); squidpy logs /200."""
    return row[:1] + (("TCP_TUNNEL",) if row[1].startswith("TCP_TUNNEL/") else row[1:2]) + row[2:]


def _drive(net) -> None:
    for name, path, trust in SEQUENCE:
        net.curl(name, path, "--cacert", str(net.root_ca if trust == "root" else net.ca_crt))
        time.sleep(0.2)         # one connection after the other, in the logs too


def test_squidpy_logs_what_squid_logs(net, tmp_path):
    if not os.path.exists(SQUID_OPENSSL):
        pytest.skip(".ci/run unpacks Debian's squid-openssl into /opt/squid-openssl")
    db = net.root / "ssl_db"
    subprocess.run([CERTGEN, "-c", "-s", str(db), "-M", "4MB"], check=True, capture_output=True, timeout=30)
    subprocess.run(["chown", "-R", "proxy:proxy", str(db)], check=False)
    squid = SquidProcess(net.root / "squid", POLICY.format(http=3138, port=HTTPS_PORT + 1, ca=net.ca_pem, root=net.root_ca)
                         + f"sslcrtd_program {CERTGEN} -s {db} -M 4MB\n", hosts=NAMES,
                         prefix=net.topo.gateway.exec_prefix(), start=False, binary=SQUID_OPENSSL)
    squid.start()
    try:
        net.topo.intercept(https_port=HTTPS_PORT + 1)
        _drive(net)
        expected = [_same(fields(line)) for line in wait_for(lambda: squid.log_lines(14, timeout=0.2), 10)
                    if NOT_A_REQUEST not in line]
    finally:
        squid.stop()
    with net.topo.gateway.entered():
        dns = DnsServer({name: [address] for name, address in NAMES.items()}).start()
    ours = ProxyProcess(tmp_path / "squidpy", POLICY.format(http=3138, port=HTTPS_PORT + 1, ca=net.ca_pem, root=net.root_ca)
                        + f"dns_nameservers 127.0.0.1:{dns.port}\n", prefix=net.topo.gateway.exec_prefix())
    try:
        net.topo.intercept(https_port=HTTPS_PORT + 1)
        _drive(net)
        got = [_same(fields(line)) for line in ours.log_lines(len(expected), timeout=10)]
    finally:
        ours.stop()
        dns.stop()
        assert_no_tracebacks(ours)
    assert len(expected) == 12
    assert got == expected
