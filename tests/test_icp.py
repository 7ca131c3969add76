"""ICP (RFC 2186) messages: squidpy.peers.icp against its own rules and against Squid 5.7's wire."""

from __future__ import annotations

import http.client
import socket
import struct
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squidpy.peers import icp
from squidpy.peers.icp import IcpError, IcpMessage, decode, encode, reply_to
from tests.origin import Origin
from tests.proxyproc import wait_for
from tests.squidproc import SquidProcess, free_port


def test_a_query_and_its_reply_round_trip():
    query = IcpMessage(icp.ICP_QUERY, 77, "http://www.example.com/a?b=c", requester=0x7F000001)
    data = encode(query)
    assert data[:4] == bytes([1, 2]) + struct.pack("!H", len(data))
    assert data.endswith(b"http://www.example.com/a?b=c\0") and data[20:24] == b"\x7f\x00\x00\x01"
    assert decode(data) == query
    hit = reply_to(query, icp.ICP_HIT)
    assert decode(encode(hit)) == IcpMessage(icp.ICP_HIT, 77, "http://www.example.com/a?b=c")
    assert hit.name == "ICP_HIT" and IcpMessage(99, 1, "").name == "ICP_OPCODE_99"


@pytest.mark.parametrize("data, message", [
    (b"\x01\x02\x00\x14" + bytes(15), "shorter than an ICP header"),
    (b"\x03\x02\x00\x30" + bytes(16) + b"http://x/\0", "length field says 48"),
    (b"\x03\x03\x00\x1e" + bytes(16) + b"http://x/\0", "version 3"),
    (b"\x01\x02\x00\x16" + bytes(16) + b"\0\0", "without its requester"),
    (b"\x03\x02\x00\x1d" + bytes(16) + b"http://x/", "does not end with a NUL"),
    (b"\x03\x02\xff\xff" + bytes(65531), "longer than an ICP message"),
])
def test_malformed_datagrams_are_refused(data, message):
    with pytest.raises(IcpError, match=message):
        decode(data)


def test_what_cannot_be_sent():
    with pytest.raises(IcpError, match="NUL"):
        encode(IcpMessage(icp.ICP_QUERY, 1, "http://x/\0y"))
    with pytest.raises(IcpError, match="too long"):
        encode(IcpMessage(icp.ICP_QUERY, 1, "http://x/" + "a" * 17000))


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=200))
def test_no_datagram_crashes_the_decoder(data):
    try:
        msg = decode(data)
    except IcpError:
        return
    assert msg.version == 2 and len(data) == struct.unpack("!H", data[2:4])[0]
    assert decode(encode(msg)) == msg


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(icp.OPCODE_NAMES)), st.integers(0, 2**32 - 1),
       st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=300),
       st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_every_message_reads_back(opcode, reqnum, url, flags, pad):
    msg = IcpMessage(opcode, reqnum, url, flags, pad)
    assert decode(encode(msg)) == msg


# ------------------------------------------------------------ against Squid 5.7

def udp_socket() -> socket.socket:
    """A UDP socket on 127.0.0.2: Squid ignores ICP from its own address (whatever the
    port), so on one machine its peers must use another loopback address."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    s.settimeout(5)
    return s


def ask_squid(s: socket.socket, port: int, message: bytes) -> IcpMessage | None:
    s.sendto(message, ("127.0.0.1", port))
    try:
        data, _ = s.recvfrom(65536)
    except socket.timeout:
        return None
    return decode(data)


def start_squid(make_squid, extra: str) -> tuple[SquidProcess, int]:
    icp_port = free_port()
    squid = make_squid(f"icp_port {icp_port}\nudp_incoming_address 127.0.0.1\n"
                                    "acl peers src 127.0.0.2\nhttp_access allow localhost\n"
                                    f"http_access deny all\n{extra}")
    return squid, icp_port


def test_squid_answers_our_queries(make_squid):
    origin = Origin().start()
    squid, icp_port = start_squid(make_squid, "icp_access allow peers\nicp_access deny all\n")
    s = udp_socket()
    try:
        url = origin.url("/obj/icp-hit?cc=max-age%3D600")
        miss = ask_squid(s, icp_port, encode(IcpMessage(icp.ICP_QUERY, 4242, url)))
        assert (miss.opcode, miss.reqnum, miss.url) == (icp.ICP_MISS, 4242, url)
        conn = http.client.HTTPConnection("127.0.0.1", squid.port, timeout=10)
        conn.request("GET", url)
        assert conn.getresponse().read() and squid.log_line(url)
        hit = ask_squid(s, icp_port, encode(IcpMessage(icp.ICP_QUERY, 4243, url)))
        assert (hit.opcode, hit.reqnum, hit.url) == (icp.ICP_HIT, 4243, url)
        # a datagram whose length field lies gets no answer at all
        bad = bytearray(encode(IcpMessage(icp.ICP_QUERY, 4244, url)))
        bad[2:4] = struct.pack("!H", len(bad) + 3)
        s.settimeout(0.5)
        assert ask_squid(s, icp_port, bytes(bad)) is None
        # and our replies are what Squid logs as UDP_HIT / UDP_MISS
        log = squid.access_log.read_text()
        assert "UDP_MISS/000" in log and "UDP_HIT/000" in log and "ICP_QUERY" in log
    finally:
        s.close()
        squid.terminate()       # make_squid waits for it to stop
        origin.stop()


def test_squid_denies_without_icp_access(make_squid):
    squid, icp_port = start_squid(make_squid, "")
    s = udp_socket()
    try:
        denied = ask_squid(s, icp_port, encode(IcpMessage(icp.ICP_QUERY, 7, "http://www.example.com/")))
        assert (denied.opcode, denied.reqnum) == (icp.ICP_DENIED, 7)
    finally:
        s.close()
        squid.terminate()       # make_squid waits for it to stop


class FakeSibling:
    """An ICP sibling on a UDP port: records Squid's queries and answers each with ``opcode``."""

    def __init__(self, opcode: int):
        self.sock = udp_socket()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.opcode = opcode
        self.queries: list[IcpMessage] = []
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            query = decode(data)
            self.queries.append(query)
            self.sock.sendto(encode(reply_to(query, self.opcode)), sender)

    def stop(self):
        self._stop.set()
        self.sock.close()


@pytest.mark.parametrize("opcode, code", [(icp.ICP_HIT, "SIBLING_HIT"), (icp.ICP_MISS, "HIER_DIRECT")])
def test_squid_reads_our_replies(make_squid, opcode, code):
    """Squid queries our sibling port; our encoded HIT makes it fetch from the sibling,
    our MISS makes it go direct."""
    sibling_http = Origin("127.0.0.2").start()
    origin = Origin().start()
    sibling = FakeSibling(opcode)
    squid, _ = start_squid(make_squid, f"cache_peer 127.0.0.2 sibling {sibling_http.port} {sibling.port} "
                                      "no-digest name=sib\nicp_query_timeout 3000\n")
    try:
        # a new URL each time ('cache deny' would keep siblings out, as would a revalidation)
        urls = (origin.url(f"/size/10?n={i}") for i in range(1000))
        def served_with_query() -> bool:
            url = next(urls)
            conn = http.client.HTTPConnection("127.0.0.1", squid.port, timeout=10)
            try:
                conn.request("GET", url)
                conn.getresponse().read()
            except OSError:         # refused or reset while the loaded machine starts Squid: not yet
                return False
            finally:
                conn.close()
            return bool(sibling.queries) and sibling.queries[-1].url == url

        assert wait_for(served_with_query, timeout=15), squid.read_cache_log()
        query = sibling.queries[-1]
        assert (query.opcode, query.version) == (icp.ICP_QUERY, 2) and query.url.startswith(origin.url("/size/10?n="))
        server = "127.0.0.2" if opcode == icp.ICP_HIT else "127.0.0.1"
        assert wait_for(lambda: f"{code}/{server}" in squid.access_log.read_text(), timeout=5), \
            squid.access_log.read_text()
        assert (sibling_http.count() if opcode == icp.ICP_HIT else origin.count()) >= 1
    finally:
        sibling.stop()
        squid.terminate()       # make_squid waits for it to stop
        origin.stop()
        sibling_http.stop()
