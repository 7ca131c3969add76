"""ACL types: each class knows how to read its values and match a checklist.

A type is registered under Squid's name in :data:`ACL_TYPES`.  ``needs``
names a fact that takes a lookup (the caller resolves it on
:class:`~squidpy.acl.checklist.Pending`); ``reply`` marks types that can only
be answered once a reply exists, and so are refused in ``http_access``.
"""

from __future__ import annotations

import re

from squidpy.acl.addresses import AddressSet, parse_address_entry
from squidpy.acl.checklist import Checklist, Pending, ip_key
from squidpy.acl.domains import DomainSet, normalize_host


class AclType:
    name = ""
    needs: str | None = None
    reply = False
    flags_allowed = frozenset()

    def __init__(self, flags: frozenset[str] = frozenset()):
        self.flags = flags

    def begin_line(self, flags: frozenset[str]) -> None:
        """An ``acl`` line with these options is about to add values."""
        self.flags = self.flags | flags

    def add(self, value: str) -> None:
        raise NotImplementedError

    def finish(self) -> list[str]:
        """Called once every value is in; returns warnings."""
        return []

    def match(self, ch: Checklist) -> bool:
        raise NotImplementedError


class _AddressAcl(AclType):
    flags_allowed = frozenset({"-n"})

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.addresses = AddressSet()

    def add(self, value: str) -> None:
        self.addresses.add(parse_address_entry(value))

    def finish(self) -> list[str]:
        return self.addresses.finish()


class SrcAcl(_AddressAcl):
    """``src``: the client's address."""

    name = "src"

    def match(self, ch: Checklist) -> bool:
        return ch.src_key in self.addresses


class LocalIpAcl(_AddressAcl):
    """``localip``: the proxy address the client connected to."""

    name = "localip"

    def match(self, ch: Checklist) -> bool:
        return ip_key(ch.local_ip) in self.addresses


class DstAcl(_AddressAcl):
    """``dst``: any resolved address of the origin (needs DNS for names)."""

    name = "dst"
    needs = "dst"

    def match(self, ch: Checklist) -> bool:
        if ch.dst is None:
            raise Pending("dst")
        addresses = self.addresses
        return any(ip_key(a) in addresses for a in ch.dst)


class DstDomainAcl(AclType):
    """``dstdomain``: the URL host (or the CONNECT host) against a domain list."""

    name = "dstdomain"
    flags_allowed = frozenset({"-n", "-i"})

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.domains = DomainSet()

    def add(self, value: str) -> None:
        self.domains.add(value)

    def finish(self) -> list[str]:
        return self.domains.finish()

    def match(self, ch: Checklist) -> bool:
        return normalize_host(ch.host) in self.domains


class _PortAcl(AclType):
    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.ports: set[int] = set()
        self.ranges: list[tuple[int, int]] = []

    def add(self, value: str) -> None:
        lo_text, dash, hi_text = value.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if dash else lo
        except ValueError:
            raise ValueError(f"'{value}' is not a port or a port range") from None
        if not (0 <= lo <= hi <= 65535):
            raise ValueError(f"'{value}' is not a port range within 0-65535")
        if lo == hi:
            self.ports.add(lo)
        else:
            self.ranges.append((lo, hi))

    def _has(self, port: int) -> bool:
        if port in self.ports:
            return True
        for lo, hi in self.ranges:
            if lo <= port <= hi:
                return True
        return False


class PortAcl(_PortAcl):
    """``port``: the destination port of the URL or of CONNECT."""

    name = "port"

    def match(self, ch: Checklist) -> bool:
        return self._has(ch.port)


class LocalPortAcl(_PortAcl):
    """``localport``: the proxy port the client connected to."""

    name = "localport"

    def match(self, ch: Checklist) -> bool:
        return self._has(ch.local_port)


class _WordAcl(AclType):
    """A set of case-insensitive words (methods, protocols, port names)."""

    upper = True

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.words: set[str] = set()

    def add(self, value: str) -> None:
        self.words.add(value.upper() if self.upper else value)


class MethodAcl(_WordAcl):
    """``method``: the request method (``GET``, ``CONNECT`` ...)."""

    name = "method"

    def match(self, ch: Checklist) -> bool:
        return ch.method in self.words


class ProtoAcl(_WordAcl):
    """``proto``: the URL scheme (``HTTP``, ``HTTPS``; CONNECT is ``AUTHORITY``)."""

    name = "proto"

    def match(self, ch: Checklist) -> bool:
        return ch.scheme.upper() in self.words


class MyPortNameAcl(_WordAcl):
    """``myportname``: the ``name=`` of the http_port the client used."""

    name = "myportname"
    upper = False

    def match(self, ch: Checklist) -> bool:
        return ch.port_name in self.words


class _RegexAcl(AclType):
    """Values are regular expressions; ``-i``/``+i`` switch case-folding between them."""

    flags_allowed = frozenset({"-i", "+i"})

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.icase = "-i" in flags
        self.patterns: list[tuple[str, bool]] = []
        self.regex = None

    def begin_line(self, flags: frozenset[str]) -> None:
        self.icase = "-i" in flags

    def add(self, value: str) -> None:
        if value == "-i":
            self.icase = True
            return
        if value == "+i":
            self.icase = False
            return
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"bad regular expression '{value}': {e}") from None
        self.patterns.append((value, self.icase))

    def finish(self) -> list[str]:
        parts = [f"(?i:{p})" if icase else f"(?:{p})" for p, icase in self.patterns]
        self.regex = re.compile("|".join(parts)) if parts else None
        return []

    def search(self, text: str | None) -> bool:
        regex = self.regex
        return regex is not None and text is not None and regex.search(text) is not None


class UrlRegexAcl(_RegexAcl):
    """``url_regex``: the whole URL."""

    name = "url_regex"

    def match(self, ch: Checklist) -> bool:
        return self.search(ch.url)


class UrlPathRegexAcl(_RegexAcl):
    """``urlpath_regex``: the URL path with its query (no scheme or host)."""

    name = "urlpath_regex"

    def match(self, ch: Checklist) -> bool:
        return self.search(ch.path)


class DstDomRegexAcl(_RegexAcl):
    """``dstdom_regex``: the URL host."""

    name = "dstdom_regex"

    def match(self, ch: Checklist) -> bool:
        return self.search(normalize_host(ch.host))


ACL_TYPES: dict[str, type[AclType]] = {
    cls.name: cls
    for cls in (
        SrcAcl, DstAcl, LocalIpAcl, DstDomainAcl, PortAcl, LocalPortAcl,
        MethodAcl, ProtoAcl, MyPortNameAcl, UrlRegexAcl, UrlPathRegexAcl,
        DstDomRegexAcl,
    )
}
