"""https_port: browsers and curl speaking TLS to squidpy itself (an https:// proxy), with
squidpy's certificate; client certificates asked for with tls-cafile=, read by the user_cert
and ca_cert ACLs and logged as the user (%un, as Squid's %us)."""

from __future__ import annotations

import subprocess

import pytest

from tests.tlscert import TestCA, write_pair


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("https-port")
    ca = TestCA("Proxy Root")
    proxy_cert, proxy_key = ca.issue(["127.0.0.1", "proxy.test"], organization="The Proxy")
    server = write_pair(d, "proxy", proxy_cert, proxy_key)
    clients = TestCA("Client-Root")
    alice = write_pair(d, "alice", *clients.issue(["alice"], organization="Staff", client=True))
    mallory = write_pair(d, "mallory", *TestCA("Other Root").issue(["mallory"], client=True))
    return {"dir": d, "root": ca.write(d / "proxy-root.pem"), "server": server,
            "client_root": clients.write(d / "client-root.pem"), "alice": alice, "mallory": mallory}


def https_proxy(make_proxy, certs, options: str = "", policy: str = "http_access allow local\n"):
    cert, key = certs["server"]
    proxy = make_proxy("acl local src 127.0.0.0/8\n" + policy + "http_access deny all\n"
                       f"https_port 127.0.0.1:0 tls-cert={cert} tls-key={key} {options}\n")
    assert proxy.https_ports, proxy.read_cache_log()
    return proxy, f"https://127.0.0.1:{proxy.https_ports[0]}"


def curl(proxy_url: str, target: str, certs, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-S", "-o", "-", "-w", "\n%{http_code}", "-m", "15", "--proxy", proxy_url,
                           "--proxy-cacert", str(certs["root"]), *args, target], capture_output=True, timeout=30)


def test_an_https_proxy(make_proxy, certs, origin):
    proxy, proxy_url = https_proxy(make_proxy, certs)
    r = curl(proxy_url, origin.url("/size/5"), certs)
    assert r.stdout == b"xxxxx\n200", r.stderr
    assert " TCP_MISS/200 " in proxy.log_line(f"GET {origin.url('/size/5')}")


def test_https_proxy_tunnels_too(make_proxy, certs, tls_origin):
    proxy, proxy_url = https_proxy(make_proxy, certs)
    target = f"https://localhost:{tls_origin.port}/size/3"
    r = curl(proxy_url, target, certs, "--cacert", tls_origin.cafile)
    assert r.stdout == b"xxx\n200", r.stderr
    assert " TCP_TUNNEL/200 " in proxy.log_line("CONNECT localhost")


def test_a_client_that_does_not_trust_us(make_proxy, certs, origin):
    proxy, proxy_url = https_proxy(make_proxy, certs)
    r = subprocess.run(["curl", "-s", "-m", "10", "--proxy", proxy_url, origin.url("/size/1?distrusted")],
                       capture_output=True, timeout=30)
    assert r.returncode != 0 and origin.count("/size/1?distrusted") == 0
    assert curl(proxy_url, origin.url("/size/2"), certs).stdout == b"xx\n200"      # and the port still serves


def test_client_certificates_required_with_tls_cafile(make_proxy, certs, origin, tmp_path):
    policy = "acl staff user_cert O Staff\nacl ours ca_cert CN Client-Root\nhttp_access allow local staff\n"
    policy += ("logformat tls %ssl::>cert_subject %ssl::>cert_issuer %tls::>negotiated_version %rp\n"
               f"access_log {tmp_path}/proxy0/access.log squid\naccess_log {tmp_path}/proxy0/tls.log tls\n")
    proxy, proxy_url = https_proxy(make_proxy, certs, f"tls-cafile={certs['client_root']}", policy)
    anonymous = curl(proxy_url, origin.url("/size/1"), certs)
    assert anonymous.returncode != 0                         # no certificate: no TLS
    alice_cert, alice_key = certs["alice"]
    r = curl(proxy_url, origin.url("/size/4"), certs, "--proxy-cert", str(alice_cert), "--proxy-key", str(alice_key))
    assert r.stdout == b"xxxx\n200", r.stderr
    line = proxy.log_line(f"GET {origin.url('/size/4')}")
    assert " alice " in line                                 # %un: the certificate's CN, as Squid's %us
    tls_line = (proxy.dir / "tls.log").read_text().splitlines()[-1]
    assert tls_line == "/O=Staff/CN=alice /O=squidpy tests/CN=Client-Root TLS/1.3 /size/4"
    mallory_cert, mallory_key = certs["mallory"]
    r = curl(proxy_url, origin.url("/size/6"), certs, "--proxy-cert", str(mallory_cert), "--proxy-key",
             str(mallory_key))
    assert r.returncode != 0                                 # signed by a CA the port does not accept


def test_conditional_client_certificates(make_proxy, certs, origin):
    policy = "acl staff user_cert O Staff\nhttp_access allow local staff\n"
    proxy, proxy_url = https_proxy(make_proxy, certs, f"tls-cafile={certs['client_root']} sslflags=CONDITIONAL_AUTH",
                                   policy)
    anonymous = curl(proxy_url, origin.url("/size/1"), certs)
    assert anonymous.stdout.endswith(b"403")                 # TLS without a certificate; the ACL says no
    alice_cert, alice_key = certs["alice"]
    r = curl(proxy_url, origin.url("/size/2"), certs, "--proxy-cert", str(alice_cert), "--proxy-key", str(alice_key))
    assert r.stdout == b"xx\n200"


def test_https_port_configuration_errors(make_proxy, certs, tmp_path):
    from tests.proxyproc import ProxyProcess
    cert, _ = certs["server"]
    other_key = write_pair(tmp_path, "other", *TestCA().issue(["x.test"]))[1]
    with pytest.raises(RuntimeError, match="does not|cannot use|not a"):
        ProxyProcess(tmp_path / "bad", f"http_access allow all\nhttps_port 127.0.0.1:0 tls-cert={cert} "
                                       f"tls-key={other_key}\n")
