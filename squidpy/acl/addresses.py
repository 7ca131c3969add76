"""IP address lists for ``src``, ``dst`` and ``localip``.

Entries are written as Squid accepts them: ``10.0.0.1``, ``10.0.0.0/8``,
``10.0.0.0/255.0.0.0``, ``10.0.0.1-10.0.0.9``, ``fc00::/7``, ``all``.
They become merged ``[low, high]`` integer intervals per IP version, so a
lookup is one binary search whatever the list length.
"""

from __future__ import annotations

import bisect
import ipaddress

from squidpy.ip import ip_address


# Squid's "ipv6": the unicast IPv6 Internet (global, unique-local and link-local)
_IPV6_UNICAST = ("1000::/4", "2000::/3", "4000::/2", "8000::/2", "c000::/3", "e000::/4", "fc00::/7", "fe80::/10")


def parse_address_entry(text: str) -> list[tuple[int, int, int]]:
    """One ACL value -> ``[(version, low, high)]``; raises ValueError.

    ``all`` is every address, ``ipv4`` every IPv4 address and ``ipv6`` the
    unicast IPv6 Internet, as in Squid.
    """
    if text == "all":
        return [(4, 0, 2 ** 32 - 1), (6, 0, 2 ** 128 - 1)]
    if text == "ipv4":
        return [(4, 0, 2 ** 32 - 1)]
    if text == "ipv6":
        nets = [ipaddress.ip_network(n) for n in _IPV6_UNICAST]
        return [(6, int(n.network_address), int(n.broadcast_address)) for n in nets]
    if "-" in text:
        first, _, rest = text.partition("-")
        hi_text, slash, mask = rest.partition("/")
        try:
            lo_ip, hi_ip = _ip(first), _ip(hi_text)
        except ValueError:
            raise ValueError(f"'{text}' is not an IP address or an address range") from None
        if lo_ip.version != hi_ip.version:
            raise ValueError(f"'{text}': the two ends of a range must be of one IP version")
        lo, hi = int(lo_ip), int(hi_ip)
        if slash:
            # Squid's 'a-b/mask': the range of networks; widen the top to its net's end
            net = _network(f"{hi_text}/{mask}", text)
            hi = int(net.broadcast_address)
        if lo > hi:
            raise ValueError(f"'{text}': the range starts after it ends")
        return [(lo_ip.version, lo, hi)]
    if "/" in text:
        net = _network(text, text)
        return [(net.version, int(net.network_address), int(net.broadcast_address))]
    ip = _ip(text)
    return [(ip.version, int(ip), int(ip))]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ip_address(text)
    except ValueError:
        raise ValueError(f"'{text}' is not an IP address") from None


_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def _network(spec: str, original: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        # strict=False: Squid masks host bits ('10.0.0.1/8' means 10.0.0.0/8)
        net = ipaddress.ip_network(spec, strict=False)
    except ValueError:
        raise ValueError(f"'{original}' is not a valid network (use ADDRESS/BITS or ADDRESS/NETMASK)") from None
    if (isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96
            and (ipv4 := net.network_address.ipv4_mapped) is not None):
        # '::ffff:10.0.0.0/104' is 10.0.0.0/8: mapped addresses are IPv4 (squidpy.ip)
        return ipaddress.ip_network((ipv4, net.prefixlen - 96))
    return net


class AddressSet:
    """Sorted, merged intervals per IP version; ``(version, int) in set``."""

    __slots__ = ("_lows", "_highs", "_pending", "_where")

    def __init__(self) -> None:
        self._lows: dict[int, list[int]] = {4: [], 6: []}
        self._highs: dict[int, list[int]] = {4: [], 6: []}
        self._pending: list[tuple[int, int, int]] = []
        self._where: dict[tuple[int, int, int], str | None] = {}

    def add(self, entries: list[tuple[int, int, int]], where: str | None = None) -> None:
        self._pending.extend(entries)
        for entry in entries:
            self._where.setdefault(entry, where)

    def finish(self) -> list[tuple[str | None, str]]:
        """Merge what was added; returns ``(where, warning)`` per value another covers."""
        warnings = []
        for version in (4, 6):
            spans = [(lo, hi) for v, lo, hi in self._pending if v == version]
            if not spans:
                continue
            spans.extend(zip(self._lows[version], self._highs[version]))
            spans.sort(key=lambda s: (s[0], -s[1]))
            lows: list[int] = []
            highs: list[int] = []
            for lo, hi in spans:
                if highs and hi <= highs[-1] and lo >= lows[-1]:
                    warnings.append((
                        self._where.get((version, lo, hi)),
                        f"{_fmt(version, lo, hi)} is already covered by {_fmt(version, lows[-1], highs[-1])}",
                    ))
                    continue
                if highs and lo <= highs[-1] + 1:
                    highs[-1] = hi
                else:
                    lows.append(lo)
                    highs.append(hi)
            self._lows[version], self._highs[version] = lows, highs
        self._pending = []
        self._where = {}
        return warnings

    def __contains__(self, key: tuple[int, int]) -> bool:
        version, value = key
        lows = self._lows[version]
        i = bisect.bisect_right(lows, value) - 1
        return i >= 0 and value <= self._highs[version][i]

    def __bool__(self) -> bool:
        return bool(self._lows[4] or self._lows[6])


def _fmt(version: int, lo: int, hi: int) -> str:
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    if lo == hi:
        return f"'{cls(lo)}'"
    return f"'{cls(lo)}-{cls(hi)}'"
