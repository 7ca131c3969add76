"""IP addresses compared as addresses, the way Squid's ``Ip::Address`` sees them.

One place says what an address is, so that an ACL can never be sidestepped by
writing the same address another way:

* an IPv4-mapped IPv6 address (``::ffff:127.0.0.9``, ``::ffff:7f00:9``,
  ``0:0:0:0:0:ffff:7f00:0009``) *is* the IPv4 address: Squid stores every
  address as IPv6 and prints a mapped one as IPv4;
* a URL host in one of the numeric forms the C library's ``inet_aton`` reads
  (``2130706441``, ``0x7f.0.0.9``, ``127.9``, ``0177.0.0.9``) is that IPv4
  address, because Squid parses URL hosts with ``getaddrinfo(AI_NUMERICHOST)``.

Everything that takes an address (ACLs, URL hosts, client and local addresses,
log fields) goes through :func:`ip_address`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# labels inet_aton may read: decimal, octal (leading 0) or hex (0x) numbers
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")


@functools.lru_cache(maxsize=65536)
def ip_address(text: str) -> Address:
    """The address ``text`` names (brackets and a ``%zone`` allowed); IPv4-mapped
    IPv6 comes back as IPv4.  Raises ValueError for anything else.

    Cached: the same few client and origin addresses come back on every request.
    """
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ip_text(text: str) -> str:
    """The canonical text of an address (``::ffff:10.0.0.1`` -> ``10.0.0.1``);
    text that is not an address comes back unchanged."""
    if ":" not in text:
        return text     # IPv4 text is canonical or not an address (no leading zeros): as it came
    try:
        return str(ip_address(text))
    except ValueError:
        return text


def ip_key(text: str) -> tuple[int, int]:
    """``(version, integer)`` of an address, for interval lookups; raises ValueError."""
    ip = ip_address(text)
    return ip.version, int(ip)


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a lower-case URL host spells in ``inet_aton``'s numeric forms
    (one to four decimal, octal or hex parts), as Squid's URL parser reads it;
    None when the host is not such a number (a name, or digits out of range)."""
    if not _NUMERIC_HOST.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None
