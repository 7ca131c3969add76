"""The PROXY protocol (versions 1 and 2) a load balancer puts before a client's bytes (pure).

``parse(buffer)`` reads the header at the start of what a connection sent, as
Squid 5.7's ProxyProtocol::Parse does (src/proxyp/Parser.cc):

* it returns ``None`` while the bytes so far are a prefix of a header (read
  more), a :class:`ProxyHeader` (with ``size``, the bytes it took) when one is
  complete, and raises :class:`ProxyHeaderError` as soon as the bytes cannot be
  one;
* version 1 is ``PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT\\r\\n`` or
  ``PROXY UNKNOWN ...\\r\\n``, at most 107 bytes with the CRLF; addresses are
  read as numbers only (no names), both of the declared family, ports at most
  65535; what follows the destination port is ignored, as Squid ignores it;
* version 2 is binary: a 12-byte signature, version 2, command LOCAL or PROXY,
  a family and transport, a 16-bit length and that many bytes: the addresses
  (the block must hold them) then type-length-value fields, each of which must
  fit.  LOCAL, and unspecified families or transports, carry no client address
  (the connection's own addresses stay).

Lengths are never trusted: every read is bounded by what arrived and by what
the header declared, so a header can cost at most 16 + 65535 bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from squidpy.acl.access import AccessList
from squidpy.acl.checklist import Checklist, Pending
from squidpy.ip import ip_address, numeric_ipv4

V1_MAGIC = b"PROXY"
V2_MAGIC = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107                        # the whole line, CRLF included
V1_MAX_INTERIOR = V1_MAX - len(V1_MAGIC) - 2
_IP_CHARS = frozenset(b".:0123456789abcdefABCDEF")
INT64_MAX = 2 ** 63 - 1

LOCAL = "LOCAL"
PROXY = "PROXY"
AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX = range(4)
T_UNSPEC, T_STREAM, T_DGRAM = range(3)


def sender_allowed(rules: AccessList, client_ip: str, client_port: int, local_ip: str, local_port: int,
                   port_name: str) -> bool:
    """proxy_protocol_access, once per connection, on the sender's own address (fast
    ACLs only: one that needs a lookup does not allow).  No rules: refused, as Squid's
    "PROXY client not permitted by default ACL"."""
    if not rules:
        return False
    ch = Checklist(src=client_ip, src_port=client_port, local_ip=local_ip, local_port=local_port,
                   port_name=port_name, method="", url="", host="", path="")
    try:
        return bool(rules.check(ch).allowed)
    except Pending:
        return False


class ProxyHeaderError(ValueError):
    """The bytes cannot be a PROXY protocol header: the connection must be closed."""


@dataclass(frozen=True)
class ProxyHeader:
    version: str                                # "1.0" or "2.0", as Squid names them
    command: str                                # PROXY or LOCAL
    source: tuple[str, int] | None              # the client, when the header carries it
    destination: tuple[str, int] | None         # the address the client connected to
    tlvs: tuple[tuple[int, bytes], ...] = ()
    size: int = 0                               # bytes the header took

    @property
    def forwarded(self) -> bool:
        """Squid's hasForwardedAddresses: the addresses replace the connection's."""
        return self.command == PROXY and self.source is not None


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None: more bytes are needed."""
    if data.startswith(V2_MAGIC):
        return _parse_v2(data, len(V2_MAGIC))
    if data.startswith(V1_MAGIC):
        return _parse_v1(data, len(V1_MAGIC))
    if len(data) >= len(V2_MAGIC):
        raise ProxyHeaderError("PROXY protocol error: invalid magic")
    return None             # Squid waits for 12 bytes before it judges the magic


# ---------------------------------------------------------------- version 1
def _parse_v1(data: bytes, at: int) -> ProxyHeader | None:
    window = data[at:at + V1_MAX_INTERIOR + 2]
    cr = window.find(b"\r")
    interior_end = cr if 0 <= cr <= V1_MAX_INTERIOR else min(len(window), V1_MAX_INTERIOR)
    if interior_end == 0:
        if len(data) == at:
            return None
        raise ProxyHeaderError("PROXY/1.0 error: malformed header")
    after = at + interior_end
    if after == len(data):
        return None                                 # the CR has not come yet
    if data[after:after + 1] != b"\r":
        raise ProxyHeaderError("PROXY/1.0 error: malformed header")
    if after + 1 == len(data):
        return None
    if data[after + 1:after + 2] != b"\n":
        raise ProxyHeaderError("PROXY/1.0 error: malformed header")
    interior = data[at:after]
    size = after + 2
    if not interior.startswith(b" "):
        raise ProxyHeaderError("PROXY/1.0 error: missing SP after the magic sequence")
    rest = interior[1:]
    if rest.startswith(b"TCP"):
        source, destination = _v1_addresses(rest[3:])
        return ProxyHeader("1.0", PROXY, source, destination, (), size)
    if rest.startswith(b"UNKNOWN"):
        return ProxyHeader("1.0", PROXY, None, None, (), size)
    raise ProxyHeaderError("PROXY/1.0 error: invalid INET protocol or family")


def _v1_addresses(text: bytes) -> tuple[tuple[str, int], tuple[str, int]]:
    if not text[:1] or text[:1] not in b"46":
        raise ProxyHeaderError("PROXY/1.0 error: missing or invalid IP address family")
    family = text[:1].decode()
    if text[1:2] != b" ":
        raise ProxyHeaderError("PROXY/1.0 error: missing SP after the IP address family")
    at = 2
    src_ip, at = _v1_ip(text, at)
    dst_ip, at = _v1_ip(text, at)
    versions = {src_ip.version, dst_ip.version}
    actual = "4" if versions == {4} else "6" if versions == {6} else "mix"
    if actual != family:
        raise ProxyHeaderError("PROXY/1.0 error: declared and/or actual IP address families mismatch")
    src_port, at = _v1_port(text, at, True)
    dst_port, at = _v1_port(text, at, False)
    return (str(src_ip), src_port), (str(dst_ip), dst_port)


def _v1_ip(text: bytes, at: int) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    end = at
    while end < len(text) and text[end] in _IP_CHARS:
        end += 1
    if end == at:
        raise ProxyHeaderError("PROXY/1.0 error: malformed IP address")
    if text[end:end + 1] != b" ":
        raise ProxyHeaderError("PROXY/1.0 error: garbage after IP address")
    word = text[at:end].decode("ascii")
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    address = numeric_ipv4(word.lower()) if ":" not in word else None
    if address is None:
        try:
            address = ip_address(word)
        except ValueError:
            raise ProxyHeaderError("PROXY/1.0 error: invalid IP address") from None
    return address, end + 1


def _v1_port(text: bytes, at: int, space_after: bool) -> tuple[int, int]:
    end = at
    while end < len(text) and 0x30 <= text[end] <= 0x39:
        end += 1
    if end == at:
        raise ProxyHeaderError("PROXY/1.0 error: malformed port")
    port = int(text[at:end])
    if port > INT64_MAX:
        raise ProxyHeaderError("PROXY/1.0 error: malformed port")
    if space_after:
        if text[end:end + 1] != b" ":
            raise ProxyHeaderError("PROXY/1.0 error: garbage after port")
        next_at = end + 1
    else:
        next_at = end
    if port > 65535:
        raise ProxyHeaderError("PROXY/1.0 error: invalid port")
    return port, next_at


# ---------------------------------------------------------------- version 2
def _parse_v2(data: bytes, at: int) -> ProxyHeader | None:
    if len(data) < at + 1:
        return None
    version_command = data[at]
    version, command = version_command >> 4, version_command & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"PROXY/2.0 error: invalid version {version}")
    if command > 1:
        raise ProxyHeaderError(f"PROXY/2.0 error: invalid command {command}")
    if len(data) < at + 2:
        return None
    family, transport = data[at + 1] >> 4, data[at + 1] & 0x0F
    if family > AF_UNIX:
        raise ProxyHeaderError(f"PROXY/2.0 error: invalid address family {family}")
    if transport > T_DGRAM:
        raise ProxyHeaderError(f"PROXY/2.0 error: invalid transport protocol {transport}")
    if len(data) < at + 4:
        return None
    (length,) = struct.unpack_from("!H", data, at + 2)
    start = at + 4
    end = start + length
    if len(data) < end:
        return None
    block = data[start:end]
    cmd = PROXY if command == 1 else LOCAL
    if transport == T_UNSPEC or family == AF_UNSPEC:
        return ProxyHeader("2.0", cmd, None, None, (), end)
    source, destination, used = _v2_addresses(family, block)
    tlvs = _v2_tlvs(block[used:]) if cmd == PROXY else ()
    return ProxyHeader("2.0", cmd, source, destination, tlvs, end)


_V4 = struct.Struct("!4s4sHH")
_V6 = struct.Struct("!16s16sHH")
UNIX_BLOCK = 216


def _v2_addresses(family: int, block: bytes) -> tuple[tuple[str, int], tuple[str, int], int]:
    if family == AF_INET:
        if len(block) < _V4.size:
            raise ProxyHeaderError("PROXY/2.0 error: the address block is too short for IPv4 addresses")
        src, dst, sport, dport = _V4.unpack_from(block)
        return ((str(ipaddress.IPv4Address(src)), sport), (str(ipaddress.IPv4Address(dst)), dport), _V4.size)
    if family == AF_INET6:
        if len(block) < _V6.size:
            raise ProxyHeaderError("PROXY/2.0 error: the address block is too short for IPv6 addresses")
        src, dst, sport, dport = _V6.unpack_from(block)
        return ((str(ip_address(str(ipaddress.IPv6Address(src)))), sport),
                (str(ip_address(str(ipaddress.IPv6Address(dst)))), dport), _V6.size)
    if len(block) < UNIX_BLOCK:
        raise ProxyHeaderError("PROXY/2.0 error: the address block is too short for UNIX addresses")
    # Squid skips UNIX socket addresses and takes the unset address (::) as the client's
    return ("::", 0), ("::", 0), UNIX_BLOCK


def _v2_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    at = 0
    while at < len(data):
        if at + 3 > len(data):
            raise ProxyHeaderError("PROXY/2.0 error: a truncated TLV")
        kind = data[at]
        (length,) = struct.unpack_from("!H", data, at + 1)
        if at + 3 + length > len(data):
            raise ProxyHeaderError("PROXY/2.0 error: a TLV longer than the header")
        tlvs.append((kind, data[at + 3:at + 3 + length]))
        at += 3 + length
    return tuple(tlvs)


def encode_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A version 1 header (``PROXY UNKNOWN`` without addresses)."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None,
              tlvs: tuple[tuple[int, bytes], ...] = (), command: str = PROXY) -> bytes:
    """A version 2 header over TCP (LOCAL, or PROXY without addresses: family UNSPEC)."""
    cmd = 0x21 if command == PROXY else 0x20
    if source is None or destination is None:
        body = b"".join(bytes([k]) + struct.pack("!H", len(v)) + v for k, v in tlvs)
        return V2_MAGIC + bytes([cmd, 0x00]) + struct.pack("!H", len(body)) + body
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version == 4:
        fam, block = 0x11, _V4.pack(src.packed, dst.packed, source[1], destination[1])
    else:
        fam, block = 0x21, _V6.pack(src.packed, dst.packed, source[1], destination[1])
    block += b"".join(bytes([k]) + struct.pack("!H", len(v)) + v for k, v in tlvs)
    return V2_MAGIC + bytes([cmd, fam]) + struct.pack("!H", len(block)) + block
