"""https:// origins through the running proxy: tls_outgoing_options (cafile, flags,
min-version), ERR_SECURE_CONNECT_FAIL with Squid's words and log lines, and
sslproxy_cert_error letting a chosen problem through."""

from __future__ import annotations

import re
import socket

import pytest

from tests.conftest import read_response
from tests.dnsserver import DnsServer

KINDS = ("good", "expired", "notyet", "wrongname", "selfsigned", "unknownca")


@pytest.fixture(scope="module")
def dns():
    server = DnsServer({f"{k}.test": ["127.0.0.1"] for k in KINDS}).start()
    yield server
    server.stop()


def policy(tls_origins, dns, extra: str = "") -> str:
    return (f"acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
            f"dns_nameservers 127.0.0.1:{dns.port}\ntls_outgoing_options cafile={tls_origins.cafile}\n{extra}")


def get(proxy, url: str):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
        host = url.split("/")[2]
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return read_response(s.makefile("rb"))


def test_good_origin_and_a_second_request_reuses_nothing_wrong(make_proxy, tls_origins, dns):
    proxy = make_proxy(policy(tls_origins, dns))
    url = f"https://good.test:{tls_origins.port('good')}/size/5"
    for _ in range(2):
        status, _, body = get(proxy, url)
        assert (status, body) == (200, b"xxxxx")
    line = proxy.log_line(f"GET {url}")
    assert " TCP_MISS/200 " in line and " HIER_DIRECT/127.0.0.1 " in line


@pytest.mark.parametrize("kind, code", [
    ("expired", "X509_V_ERR_CERT_HAS_EXPIRED+broken_cert"),
    ("notyet", "X509_V_ERR_CERT_NOT_YET_VALID+broken_cert"),
    ("wrongname", "SQUID_X509_V_ERR_DOMAIN_MISMATCH+broken_cert"),
    ("selfsigned", "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT+broken_cert"),
    ("unknownca", "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY+broken_cert"),
])
def test_bad_origins_get_err_secure_connect_fail(make_proxy, tls_origins, dns, kind, code):
    proxy = make_proxy(policy(tls_origins, dns))
    url = f"https://{kind}.test:{tls_origins.port(kind)}/echo?never-sent"
    status, headers, body = get(proxy, url)
    assert status == 503 and headers["x-squid-error"] == "ERR_SECURE_CONNECT_FAIL 0"
    text = body.decode()
    assert f"[No Error] (TLS code: {code})" in text
    assert tls_origins.origins[kind].count("/echo?never-sent") == 0     # nothing sent to an origin we do not trust
    line = proxy.log_line(f"GET {url}")
    assert re.search(r" TCP_MISS/503 \d+ GET \S+ - HIER_NONE/- text/html$", line), line


def test_sslproxy_cert_error_lets_an_expired_origin_through(make_proxy, tls_origins, dns):
    proxy = make_proxy(policy(tls_origins, dns, "sslproxy_cert_error allow ssl::certHasExpired\n"
                                                "sslproxy_cert_error deny all\n"))
    status, _, body = get(proxy, f"https://expired.test:{tls_origins.port('expired')}/size/3")
    assert (status, body) == (200, b"xxx")
    status, _, _ = get(proxy, f"https://selfsigned.test:{tls_origins.port('selfsigned')}/size/3")
    assert status == 503


def test_dont_verify_peer(make_proxy, tls_origins, dns):
    proxy = make_proxy(policy(tls_origins, dns, "tls_outgoing_options flags=DONT_VERIFY_PEER\n"))
    status, _, body = get(proxy, f"https://selfsigned.test:{tls_origins.port('selfsigned')}/size/3")
    assert (status, body) == (200, b"xxx")


def test_system_trust_store_by_default(make_proxy, tls_origins, dns):
    proxy = make_proxy(f"acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
                       f"dns_nameservers 127.0.0.1:{dns.port}\n")
    status, headers, body = get(proxy, f"https://good.test:{tls_origins.port('good')}/size/3")
    assert status == 503 and b"X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY" in body


def test_plain_http_origin_on_an_https_url(make_proxy, tls_origins, dns, origin):
    dns_names = DnsServer({"plain.test": ["127.0.0.1"]}).start()
    try:
        proxy = make_proxy(f"acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
                           f"dns_nameservers 127.0.0.1:{dns_names.port}\n")
        status, _, body = get(proxy, f"https://plain.test:{origin.port}/size/3")
        assert status == 503 and b"SQUID_TLS_ERR_CONNECT" in body
    finally:
        dns_names.stop()
