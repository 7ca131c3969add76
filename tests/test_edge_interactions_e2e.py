"""Where features merged separately meet, across real sockets: a PROXY protocol header in
front of TLS on an https_port, the client it names choosing a delay pool, and
tcp_outgoing_address on the connection to a cache_peer parent (a second squidpy, whose
access log shows the address the child connected from).  Transcripts of the same
decisions: tests/test_edge_interactions.py."""

from __future__ import annotations

import socket
import ssl

import pytest

from squidpy.proxyp import encode_v1
from tests.test_mgr_e2e import squidclient
from tests.tlscert import make_self_signed

LB_POLICY = """
acl lb src 127.0.0.0/8
proxy_protocol_access allow lb
acl office src 192.0.2.0/24
http_access allow localhost manager
http_access deny manager
http_access allow office
http_access deny all
"""


def read_all(s) -> bytes:
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (ConnectionResetError, socket.timeout, ssl.SSLError):
        pass
    return out


def through_tls(port: int, cafile, header: bytes, url: str) -> bytes:
    """A PROXY header in clear, then TLS to the https_port, a request inside it."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(header)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            host = url.split("/")[2]
            s.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return read_all(s)


def test_a_proxy_header_before_tls_on_an_https_port_names_the_client(make_proxy, origin, tmp_path):
    cert, key = make_self_signed(tmp_path, "127.0.0.1")
    proxy = make_proxy(LB_POLICY + "http_port 127.0.0.1:0\n"
                       f"https_port 127.0.0.1:0 tls-cert={cert} tls-key={key} require-proxy-header\n")
    port = proxy.https_ports[0]
    url = origin.url("/size/4?behind-lb-tls")
    answer = through_tls(port, cert, encode_v1(("192.0.2.77", 40001), ("10.9.9.9", 443)), url)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"xxxx"), answer[:200]
    line = proxy.log_line(url)
    assert line.split()[2] == "192.0.2.77" and "TCP_MISS/200" in line
    # the balancer's own address is not in "office": without the header's client, a 403
    outsider = origin.url("/size/4?outsider-tls")
    answer = through_tls(port, cert, encode_v1(("198.51.100.1", 5), ("10.9.9.9", 443)), outsider)
    assert answer.startswith(b"HTTP/1.1 403 ") and origin.count("/size/4?outsider-tls") == 0


def test_tls_without_the_proxy_header_is_refused_on_such_an_https_port(make_proxy, origin, tmp_path):
    cert, key = make_self_signed(tmp_path, "127.0.0.1")
    proxy = make_proxy(LB_POLICY + "http_port 127.0.0.1:0\n"
                       f"https_port 127.0.0.1:0 tls-cert={cert} tls-key={key} require-proxy-header\n")
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", proxy.https_ports[0]), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(f"GET {origin.url('/size/1?no-header')} HTTP/1.1\r\n\r\n".encode())
                answer = read_all(s)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            answer = b""
    assert answer == b"" and origin.count("/size/1?no-header") == 0


def test_the_client_a_proxy_header_names_picks_the_delay_pool_bucket(make_proxy, origin):
    """Class 2 pools keep one bucket per client (by its address's last octet): the
    bucket is the claimed client's, 77, not the balancer's."""
    proxy = make_proxy(LB_POLICY + "http_port 127.0.0.1:0 require-proxy-header\nhttp_port 127.0.0.1:0\n"
                       "delay_pools 1\ndelay_class 1 2\ndelay_parameters 1 none 1000000/1000000\n"
                       "delay_access 1 allow office\n")
    url = origin.url("/size/2000?delay-behind-lb")
    with socket.create_connection(("127.0.0.1", proxy.ports[0]), timeout=10) as s:
        host = url.split("/")[2]
        s.sendall(encode_v1(("192.0.2.77", 40001), ("10.9.9.9", 3128))
                  + f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"x" * 2000)
    status, page = squidclient(proxy.ports[1], "delay")
    assert status == 200 and "\tIndividual:\n\t\tMax: 1000000\n\t\tRestore: 1000000\n\t\tCurrent: 77:" in page, page


@pytest.mark.parametrize("acl", ["dst 127.0.0.1", "peername up"])
def test_tcp_outgoing_address_chooses_where_the_child_reaches_its_parent_from(make_proxy, origin, acl):
    parent = make_proxy("acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
                        "visible_hostname parent.test\n", name="parent")
    child = make_proxy("acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
                       f"cache_peer 127.0.0.1 parent {parent.port} 0 no-query name=up\nnever_direct allow all\n"
                       f"acl to_parent {acl}\ntcp_outgoing_address 127.0.0.9 to_parent\n"
                       "tcp_outgoing_address 127.0.0.8\n", name="child")
    url = origin.url(f"/size/3?outgoing-to-parent-{acl.split()[0]}")
    with socket.create_connection(("127.0.0.1", child.port), timeout=10) as s:
        host = url.split("/")[2]
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"xxx")
    assert " FIRSTUP_PARENT/127.0.0.1 " in child.log_line(url)
    assert parent.log_line(url).split()[2] == "127.0.0.9"      # the parent saw the chosen address
