"""The PROXY protocol parser (squidpy.proxyp): Squid 5.7's verdicts, and no input can crash it."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squidpy.proxyp import (LOCAL, PROXY, V1_MAX, V2_MAGIC, ProxyHeader, ProxyHeaderError, encode_v1, encode_v2,
                            parse)
from tests.squidproc import free_port

REQUEST = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"


def v2(ver_cmd: int, fam: int, block: bytes) -> bytes:
    return V2_MAGIC + bytes([ver_cmd, fam]) + struct.pack("!H", len(block)) + block


# ------------------------------------------------------------ version 1

def test_v1_tcp4_and_what_follows_is_left():
    data = b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 3128\r\n" + REQUEST
    header = parse(data)
    assert header == ProxyHeader("1.0", PROXY, ("192.0.2.10", 56324), ("198.51.100.1", 3128), (), 47)
    assert data[header.size:] == REQUEST
    assert header.forwarded


def test_v1_tcp6_and_mapped_addresses():
    assert parse(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n").source == ("2001:db8::1", 1)
    # an IPv4-mapped address is IPv4, as Squid's Ip::Address sees it: TCP4 it is
    assert parse(b"PROXY TCP4 ::ffff:192.0.2.1 ::ffff:192.0.2.2 1 2\r\n").source == ("192.0.2.1", 1)
    with pytest.raises(ProxyHeaderError, match="families mismatch"):
        parse(b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n")


def test_v1_unknown_keeps_the_connections_addresses():
    header = parse(b"PROXY UNKNOWN whatever follows\r\n")
    assert header.source is None and not header.forwarded and header.size == 32


@pytest.mark.parametrize("line, message", [
    (b"PROXY\r\n", "malformed header"),
    (b"PROXYTCP4 1.1.1.1 2.2.2.2 1 2\r\n", "missing SP after the magic"),
    (b"PROXY TCP5 1.1.1.1 2.2.2.2 1 2\r\n", "invalid IP address family"),
    (b"PROXY UDP4 1.1.1.1 2.2.2.2 1 2\r\n", "invalid INET protocol"),
    (b"PROXY TCP4  1.1.1.1 2.2.2.2 1 2\r\n", "malformed IP address"),
    (b"PROXY TCP4 1.1.1.1x 2.2.2.2 1 2\r\n", "garbage after IP address"),
    (b"PROXY TCP4 example.com 2.2.2.2 1 2\r\n", "garbage after IP address"),     # 'e' is a hex digit
    (b"PROXY TCP4 www.example.com 2.2.2.2 1 2\r\n", "malformed IP address"),
    (b"PROXY TCP4 1.1.1.300 2.2.2.2 1 2\r\n", "invalid IP address"),
    (b"PROXY TCP4 1.1.1.1 2001:db8::2 1 2\r\n", "families mismatch"),
    (b"PROXY TCP4 1.1.1.1 2.2.2.2 -1 2\r\n", "malformed port"),
    (b"PROXY TCP4 1.1.1.1 2.2.2.2 1  2\r\n", "malformed port"),
    (b"PROXY TCP4 1.1.1.1 2.2.2.2 65536 2\r\n", "invalid port"),
    (b"PROXY TCP4 1.1.1.1 2.2.2.2 1 99999999999999999999\r\n", "malformed port"),
    (b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\rX", "malformed header"),
    (b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n", None),            # no CR yet: wait (a LF is interior)
])
def test_v1_refusals(line, message):
    if message is None:
        assert parse(line) is None
        return
    with pytest.raises(ProxyHeaderError, match=message):
        parse(line)


def test_v1_what_squid_lets_pass():
    # after the destination port, Squid reads no further
    assert parse(b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2 and more\r\n").destination == ("2.2.2.2", 2)
    # leading zeros, inet_aton forms
    assert parse(b"PROXY TCP4 127.1 10.0.0.1 0080 00000000000000000000003128\r\n").source == ("127.0.0.1", 80)


def test_v1_length_limit():
    line = b"PROXY UNKNOWN " + b"x" * (V1_MAX - 16) + b"\r\n"
    assert len(line) == V1_MAX and parse(line).size == V1_MAX
    with pytest.raises(ProxyHeaderError, match="malformed header"):
        parse(b"PROXY UNKNOWN " + b"x" * (V1_MAX - 15) + b"\r\n")
    with pytest.raises(ProxyHeaderError, match="malformed header"):
        parse(b"PROXY UNKNOWN " + b"x" * 500)


def test_partial_input_waits():
    full = b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 3128\r\n"
    for cut in range(len(full)):
        assert parse(full[:cut]) is None, cut
    whole = encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), ((0x20, b"\x01" * 40),))
    for cut in range(len(whole)):
        assert parse(whole[:cut]) is None, cut
    assert parse(whole).size == len(whole)


def test_anything_else_is_refused_once_twelve_bytes_are_in():
    assert parse(b"GET / HTTP/") is None
    with pytest.raises(ProxyHeaderError, match="invalid magic"):
        parse(REQUEST)
    with pytest.raises(ProxyHeaderError, match="invalid magic"):
        parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00")     # a TLS ClientHello


# ------------------------------------------------------------ version 2

def test_v2_ipv4_ipv6_and_tlvs():
    header = parse(encode_v2(("192.0.2.1", 40000), ("192.0.2.2", 3128), ((0x01, b"h2"), (0x05, b"uid"))) + REQUEST)
    assert header.version == "2.0" and header.command == PROXY and header.forwarded
    assert (header.source, header.destination, header.tlvs) == (
        ("192.0.2.1", 40000), ("192.0.2.2", 3128), ((0x01, b"h2"), (0x05, b"uid")))
    six = parse(encode_v2(("2001:db8::5", 1), ("2001:db8::6", 2)))
    assert six.source == ("2001:db8::5", 1)
    mapped = parse(encode_v2(("::ffff:10.1.1.1", 1), ("::1", 2)))
    assert mapped.source == ("10.1.1.1", 1)


def test_v2_local_and_unspecified_carry_no_client():
    local = parse(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), command=LOCAL))
    assert local.command == LOCAL and not local.forwarded
    assert not parse(encode_v2(None, None)).forwarded
    # a LOCAL header's TLVs are not read, so nothing in them is refused
    assert parse(v2(0x20, 0x11, bytes(12) + b"\x01\xff\xff")).command == LOCAL
    # an unspecified transport skips the address block whatever it holds
    assert not parse(v2(0x21, 0x10, b"junk")).forwarded


def test_v2_unix_addresses_become_squids_unset_address():
    header = parse(v2(0x21, 0x31, bytes(216)))
    assert header.source == ("::", 0)


@pytest.mark.parametrize("data, message", [
    (v2(0x11, 0x11, bytes(12)), "invalid version 1"),
    (v2(0x22, 0x11, bytes(12)), "invalid command 2"),
    (v2(0x21, 0x41, bytes(12)), "invalid address family 4"),
    (v2(0x21, 0x13, bytes(12)), "invalid transport protocol 3"),
    (v2(0x21, 0x11, bytes(11)), "too short for IPv4"),
    (v2(0x21, 0x21, bytes(35)), "too short for IPv6"),
    (v2(0x21, 0x31, bytes(100)), "too short for UNIX"),
    (v2(0x21, 0x11, bytes(12) + b"\x01\x00"), "truncated TLV"),
    (v2(0x21, 0x11, bytes(12) + b"\x01\x00\x05abc"), "longer than the header"),
])
def test_v2_refusals(data, message):
    with pytest.raises(ProxyHeaderError, match=message):
        parse(data)


def test_v2_an_early_verdict_on_version_and_family():
    with pytest.raises(ProxyHeaderError, match="invalid version"):
        parse(V2_MAGIC + b"\x31")
    with pytest.raises(ProxyHeaderError, match="invalid address family"):
        parse(V2_MAGIC + b"\x21\xf1")


def test_v2_largest_header():
    block = bytes(12) + b"\x20\xff\xf1" + bytes(0xfff1)
    data = v2(0x21, 0x11, block[:65535])
    with pytest.raises(ProxyHeaderError):
        parse(data)         # the last TLV does not fit in 65535 bytes
    ok = v2(0x21, 0x11, bytes(12) + b"\x20" + struct.pack("!H", 65535 - 15) + bytes(65535 - 15))
    assert parse(ok).size == 16 + 65535


# ------------------------------------------------------------ whatever comes

@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_no_bytes_crash_the_parser(data):
    try:
        header = parse(data)
    except ProxyHeaderError:
        return
    if header is not None:
        assert 0 < header.size <= len(data)


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from([V2_MAGIC, b"PROXY"]), st.binary(max_size=300))
def test_no_bytes_after_a_magic_crash_the_parser(magic, rest):
    data = magic + rest
    try:
        header = parse(data)
    except ProxyHeaderError:
        return
    if header is not None:
        assert 0 < header.size <= len(data)
        assert header.source is None or 0 <= header.source[1] <= 65535


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from([0x20, 0x21]), st.sampled_from([0x00, 0x11, 0x12, 0x21, 0x22, 0x31]),
       st.integers(0, 65535), st.binary(max_size=400))
def test_declared_lengths_are_never_trusted(cmd, fam, declared, body):
    data = V2_MAGIC + bytes([cmd, fam]) + struct.pack("!H", declared) + body
    try:
        header = parse(data)
    except ProxyHeaderError:
        return
    if declared > len(body):
        assert header is None           # waits for bytes that were promised, reads no further
    else:
        assert header.size == 16 + declared


@settings(max_examples=500, deadline=None)
@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 65535), st.integers(0, 65535),
       st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=50)), max_size=4))
def test_what_is_written_is_read_back(src, dst, sport, dport, tlvs):
    source, destination = (str(src), sport), (str(dst), dport)
    assert parse(encode_v1(source, destination)).source == source
    header = parse(encode_v2(source, destination, tuple(tlvs)))
    assert (header.source, header.destination, list(header.tlvs)) == (source, destination, tlvs)


# ------------------------------------------------------------ the same verdicts as Squid 5.7

SQUID_CASES = [
    b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 3128\r\n",
    b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n",
    b"PROXY TCP4 ::ffff:192.0.2.1 ::ffff:192.0.2.2 1 2\r\n",
    b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
    b"PROXY UNKNOWN whatever follows\r\n",
    b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2 and more\r\n",
    b"PROXY TCP4 127.1 10.0.0.1 0080 00000000000000000000003128\r\n",
    b"PROXY\r\n",
    b"PROXYTCP4 1.1.1.1 2.2.2.2 1 2\r\n",
    b"PROXY TCP5 1.1.1.1 2.2.2.2 1 2\r\n",
    b"PROXY TCP4 1.1.1.1x 2.2.2.2 1 2\r\n",
    b"PROXY TCP4 www.example.com 2.2.2.2 1 2\r\n",
    b"PROXY TCP4 1.1.1.300 2.2.2.2 1 2\r\n",
    b"PROXY TCP4 1.1.1.1 2001:db8::2 1 2\r\n",
    b"PROXY TCP4 1.1.1.1 2.2.2.2 65536 2\r\n",
    b"PROXY TCP4 1.1.1.1 2.2.2.2 1  2\r\n",
    b"PROXY UNKNOWN " + b"x" * (V1_MAX - 15) + b"\r\n",
    encode_v2(("192.0.2.1", 40000), ("192.0.2.2", 3128), ((0x01, b"h2"),)),
    encode_v2(("2001:db8::5", 1), ("2001:db8::6", 2)),
    encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), command=LOCAL),
    v2(0x21, 0x10, b"junk"),
    v2(0x21, 0x31, bytes(216)),
    v2(0x11, 0x11, bytes(12)),
    v2(0x22, 0x11, bytes(12)),
    v2(0x21, 0x13, bytes(12)),
    v2(0x21, 0x11, bytes(11)),
    v2(0x21, 0x11, bytes(12) + b"\x01\x00\x05abc"),
    REQUEST,
]


def squid_reads(port: int, header: bytes) -> bytes | None:
    """What Squid answers to a denied request after ``header``: None when it closed the
    connection without a word (it refused the header)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(header + b"GET http://blocked.test/ HTTP/1.1\r\nHost: blocked.test\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data or None


def test_squid_accepts_and_refuses_the_same_headers(make_squid):
    port = free_port()
    squid = make_squid(f"http_port 127.0.0.1:{port} require-proxy-header\n"
                       "proxy_protocol_access allow localhost\nhttp_access deny all\n")
    for header in SQUID_CASES:
        answer = squid_reads(port, header)
        try:
            ours = parse(header)
            refused = False
        except ProxyHeaderError:
            refused = True
        assert refused == (answer is None), (header, answer)
        if not refused:
            assert answer.startswith(b"HTTP/1.1 403 "), answer[:100]
            client = ours.source[0] if ours.forwarded else "127.0.0.1"
            assert squid.log_line(f" {client} TCP_DENIED/403 "), (header, client, squid.access_log.read_text())
            squid.access_log.write_text("")
