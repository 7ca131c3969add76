"""ICP version 2 (RFC 2186) messages, to and from bytes, as Squid 5.7 writes and reads them.

Every message is a 20-byte header (opcode, version, total length, request
number, options, option data, sender address; numbers in network order)
followed by a payload: a query carries the requester's address (4 bytes,
zero from Squid) then the URL; every reply carries the URL.  URLs end with
a NUL byte.

:func:`decode` trusts nothing: the length field must equal the datagram's
length (Squid drops other datagrams), the version must be 2, a query must
hold its requester address, and the URL must end inside the message.  It
raises :class:`IcpError` for anything else, so a hostile datagram can only
be dropped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!BBHIIII")
HEADER_SIZE = HEADER.size           # 20
VERSION = 2
MAX_MESSAGE = 16384                 # Squid's UDP receive buffer

ICP_INVALID = 0
ICP_QUERY = 1
ICP_HIT = 2
ICP_MISS = 3
ICP_ERR = 4
ICP_SECHO = 10
ICP_DECHO = 11
ICP_MISS_NOFETCH = 21
ICP_DENIED = 22
ICP_HIT_OBJ = 23

OPCODE_NAMES = {
    ICP_INVALID: "ICP_INVALID", ICP_QUERY: "ICP_QUERY", ICP_HIT: "ICP_HIT", ICP_MISS: "ICP_MISS",
    ICP_ERR: "ICP_ERR", ICP_SECHO: "ICP_SECHO", ICP_DECHO: "ICP_DECHO",
    ICP_MISS_NOFETCH: "ICP_MISS_NOFETCH", ICP_DENIED: "ICP_DENIED", ICP_HIT_OBJ: "ICP_HIT_OBJ",
}
# the access log's result codes for the replies squidpy sends (Squid's icpLogFromICPCode)
LOG_CODES = {ICP_HIT: "UDP_HIT", ICP_MISS: "UDP_MISS", ICP_ERR: "UDP_INVALID",
             ICP_MISS_NOFETCH: "UDP_MISS_NOFETCH", ICP_DENIED: "UDP_DENIED"}

FLAG_HIT_OBJ = 0x80000000
FLAG_SRC_RTT = 0x40000000


class IcpError(ValueError):
    """A datagram that is not a well-formed ICPv2 message."""


@dataclass(frozen=True)
class IcpMessage:
    opcode: int
    reqnum: int
    url: str                    # Latin-1: every byte kept as it came
    flags: int = 0
    pad: int = 0                # "option data"
    sender: int = 0             # sender host address, as a number
    requester: int = 0          # queries only: the requester's address
    version: int = VERSION

    @property
    def name(self) -> str:
        return OPCODE_NAMES.get(self.opcode, f"ICP_OPCODE_{self.opcode}")


def encode(msg: IcpMessage) -> bytes:
    """The datagram for ``msg`` (Squid's icp_common_t::CreateMessage)."""
    url = msg.url.encode("latin-1")
    if b"\0" in url:
        raise IcpError("an ICP URL cannot contain a NUL byte")
    payload = (struct.pack("!I", msg.requester) if msg.opcode == ICP_QUERY else b"") + url + b"\0"
    length = HEADER_SIZE + len(payload)
    if length > MAX_MESSAGE:
        raise IcpError(f"an ICP message of {length} bytes is too long")
    return HEADER.pack(msg.opcode, msg.version, length, msg.reqnum, msg.flags, msg.pad, msg.sender) + payload


def decode(data: bytes) -> IcpMessage:
    """One datagram -> IcpMessage; raises IcpError."""
    if len(data) < HEADER_SIZE:
        raise IcpError(f"{len(data)} bytes is shorter than an ICP header")
    if len(data) > MAX_MESSAGE:
        raise IcpError(f"{len(data)} bytes is longer than an ICP message can be")
    opcode, version, length, reqnum, flags, pad, sender = HEADER.unpack_from(data)
    if length != len(data):
        raise IcpError(f"the length field says {length} bytes, the datagram has {len(data)}")
    if version != VERSION:
        raise IcpError(f"ICP version {version} is not spoken here (only 2)")
    start, requester = HEADER_SIZE, 0
    if opcode == ICP_QUERY:
        if len(data) < HEADER_SIZE + 4:
            raise IcpError("an ICP query without its requester address")
        (requester,) = struct.unpack_from("!I", data, HEADER_SIZE)
        start += 4
    end = data.find(b"\0", start)
    if end < 0:
        raise IcpError("the URL of an ICP message does not end with a NUL byte")
    return IcpMessage(opcode, reqnum, data[start:end].decode("latin-1"), flags, pad, sender, requester, version)


def reply_to(query: IcpMessage, opcode: int, url: str | None = None) -> IcpMessage:
    """The reply to ``query``: same request number and URL (Squid sends no flags
    and no option data without ICMP measurements)."""
    return IcpMessage(opcode, query.reqnum, query.url if url is None else url)
