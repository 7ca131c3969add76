"""squidpy's icp_port: answering other proxies, querying its siblings, and hostile datagrams."""

from __future__ import annotations

import os
import socket
import struct

from squidpy.peers import icp
from squidpy.peers.icp import IcpMessage, decode, encode
from tests.conftest import LOCAL_POLICY
from tests.proxyproc import wait_for
from tests.squidproc import free_port, get_through


def icp_proxy(make_proxy, extra: str = "", name: str = "icp"):
    port = free_port()
    proxy = make_proxy(LOCAL_POLICY + f"visible_hostname {name}.test\nicp_port {port}\n"
                       f"udp_incoming_address 127.0.0.1\n{extra}", name=name)
    assert wait_for(lambda: "Accepting ICP messages" in proxy.read_cache_log())
    return proxy, port


def ask(port: int, message: bytes, source: str = "127.0.0.2", timeout: float = 3.0) -> IcpMessage | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(message, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(65536)
        except socket.timeout:
            return None
    return decode(data)


def test_hits_misses_denials_and_errors(make_proxy, origin):
    proxy, port = icp_proxy(make_proxy, "acl siblings src 127.0.0.2\nicp_access allow siblings\n")
    fresh = origin.url("/obj/fresh?cc=max-age%3D600")
    stale = origin.url("/obj/stale?cc=max-age%3D0&lm=3600")
    for url in (fresh, stale):
        assert get_through(proxy.port, url)[0] == 200
    query = lambda n, url: encode(IcpMessage(icp.ICP_QUERY, n, url))  # noqa: E731
    assert ask(port, query(1, fresh)) == IcpMessage(icp.ICP_HIT, 1, fresh)
    assert ask(port, query(2, stale)).opcode == icp.ICP_MISS            # stale: icp_hit_stale is off
    assert ask(port, query(3, origin.url("/obj/never"))).opcode == icp.ICP_MISS
    assert ask(port, query(4, "not a url")).opcode == icp.ICP_ERR
    assert ask(port, query(5, fresh), source="127.0.0.3").opcode == icp.ICP_DENIED
    line = proxy.log_line("UDP_HIT/000").split()
    assert (line[2], line[5], line[6], line[8]) == ("127.0.0.2", "ICP_QUERY", fresh, "HIER_NONE/-")
    assert proxy.log_line("UDP_DENIED/000") and proxy.log_line("UDP_INVALID/000")


def test_icp_hit_stale(make_proxy, origin):
    proxy, port = icp_proxy(make_proxy, "icp_access allow all\nicp_hit_stale on\n")
    stale = origin.url("/obj/stale2?cc=max-age%3D0&lm=3600")
    assert get_through(proxy.port, stale)[0] == 200
    assert ask(port, encode(IcpMessage(icp.ICP_QUERY, 9, stale))).opcode == icp.ICP_HIT


def test_without_icp_access_every_query_is_denied(make_proxy):
    _, port = icp_proxy(make_proxy)
    assert ask(port, encode(IcpMessage(icp.ICP_QUERY, 1, "http://x.test/"))).opcode == icp.ICP_DENIED


def test_hostile_datagrams_get_no_answer_and_break_nothing(make_proxy, origin):
    proxy, port = icp_proxy(make_proxy, "icp_access allow all\n")
    good = encode(IcpMessage(icp.ICP_QUERY, 1, "http://x.test/"))
    lying = bytearray(good)
    lying[2:4] = struct.pack("!H", len(good) + 10)
    hostile = [b"", b"\x01", bytes(lying), good[:-1], b"\x01\x03" + good[2:], os.urandom(200),
               b"\x01\x02\xff\xff" + os.urandom(100)]
    for data in hostile:
        if data:
            assert ask(port, data, timeout=0.3) is None
    assert ask(port, good).opcode == icp.ICP_MISS
    assert get_through(proxy.port, origin.url("/size/2?alive"))[0] == 200


def test_two_squidpy_siblings(make_proxy, origin):
    """B has the object; A asks B over ICP (ports on different loopback addresses) and
    fetches B's hit; a URL B does not have goes direct."""
    b_icp = free_port()
    b = make_proxy(LOCAL_POLICY + f"visible_hostname b.test\nicp_port {b_icp}\nudp_incoming_address 127.0.0.1\n"
                   "icp_access allow all\n", name="b")
    a = make_proxy(LOCAL_POLICY + f"visible_hostname a.test\nicp_port {free_port()}\nudp_incoming_address 127.0.0.2\n"
                   f"icp_query_timeout 2000\ncache_peer 127.0.0.1 sibling {b.port} {b_icp}\n", name="a")
    assert wait_for(lambda: "Accepting ICP messages" in a.read_cache_log() + b.read_cache_log()
                    and a.read_cache_log().count("Accepting ICP") == 1 and "Accepting ICP" in b.read_cache_log())
    url = origin.url("/obj/shared?cc=max-age%3D600")
    assert get_through(b.port, url)[2] == b"shared served 1\n"
    assert get_through(a.port, url)[2] == b"shared served 1\n"
    assert a.log_line(f" {url} - SIBLING_HIT/127.0.0.1")
    assert origin.count("/obj/shared?cc=max-age%3D600") == 1
    other = origin.url("/obj/own?cc=max-age%3D600")
    assert get_through(a.port, other)[2] == b"own served 1\n"
    assert a.log_line(f" {other} - HIER_DIRECT/127.0.0.1")
