"""ACL types: each class knows how to read its values and match a checklist.

A type is registered under Squid's name in :data:`ACL_TYPES`.  ``needs``
names a fact that takes a lookup (the caller resolves it on
:class:`~squidpy.acl.checklist.Pending`); ``reply`` marks types that can only
be answered once a reply exists, and so are refused in ``http_access``.

Values are added one at a time with the ``file:line`` they came from, so a
warning (a value another one already covers) can point at the exact line.
"""

from __future__ import annotations

import re
import time

from squidpy.acl.addresses import AddressSet, parse_address_entry
from squidpy.acl.checklist import Checklist, Pending, ip_key
from squidpy.acl.domains import DomainSet, normalize_host
from squidpy.http.message import field_text

AclWarning = tuple[str | None, str]     # (file:line or None, message)


class AclType:
    name = ""
    needs: str | None = None
    reply = False
    flags_allowed: frozenset[str] = frozenset()
    example = ""                         # one value line, for docs and `squidpy check`

    def __init__(self, flags: frozenset[str] = frozenset()):
        self.flags = flags

    def begin_line(self, flags: frozenset[str]) -> None:
        """An ``acl`` line with these options is about to add values."""
        self.flags = self.flags | flags

    def add(self, value: str, where: str | None = None) -> None:
        raise NotImplementedError

    def finish(self) -> list[AclWarning]:
        """Called once every value is in; returns warnings."""
        return []

    def match(self, ch: Checklist) -> bool:
        raise NotImplementedError


# ---------------------------------------------------------------- addresses

class _AddressAcl(AclType):
    flags_allowed = frozenset({"-n"})

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.addresses = AddressSet()

    def add(self, value: str, where: str | None = None) -> None:
        self.addresses.add(parse_address_entry(value), where)

    def finish(self) -> list[AclWarning]:
        return self.addresses.finish()


class SrcAcl(_AddressAcl):
    """``src``: the client's address."""

    name = "src"
    example = "10.0.0.0/8 192.168.1.10 172.16.0.1-172.16.0.99 fd00::/8"

    def match(self, ch: Checklist) -> bool:
        return ch.src_key in self.addresses


class LocalIpAcl(_AddressAcl):
    """``localip``: the proxy address the client connected to."""

    name = "localip"
    example = "192.168.1.1"

    def match(self, ch: Checklist) -> bool:
        return ip_key(ch.local_ip) in self.addresses


class DstAcl(_AddressAcl):
    """``dst``: any resolved address of the origin (a DNS lookup for names)."""

    name = "dst"
    needs = "dst"
    example = "203.0.113.0/24"

    def match(self, ch: Checklist) -> bool:
        if ch.dst is None:
            raise Pending("dst")
        addresses = self.addresses
        return any(ip_key(a) in addresses for a in ch.dst)


# ---------------------------------------------------------------- domains

class _DomainAcl(AclType):
    flags_allowed = frozenset({"-n", "-i"})

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.domains = DomainSet()

    def add(self, value: str, where: str | None = None) -> None:
        self.domains.add(value, where)

    def finish(self) -> list[AclWarning]:
        return self.domains.finish()


class DstDomainAcl(_DomainAcl):
    """``dstdomain``: the URL host (or the CONNECT host).

    ``.example.com`` matches example.com and every name under it.  A URL
    written with an IP address is matched as text, then (unless ``-n``) by the
    name a reverse DNS lookup gives for it, as Squid does.
    """

    name = "dstdomain"
    example = ".facebook.com .fbcdn.net example.org"

    def match(self, ch: Checklist) -> bool:
        host = normalize_host(ch.host)
        if host in self.domains:
            return True
        if ch.ip_literal and "-n" not in self.flags:
            if ch.dst_name is None:
                raise Pending("dst_name")
            return bool(ch.dst_name) and normalize_host(ch.dst_name) in self.domains
        return False


class SrcDomainAcl(_DomainAcl):
    """``srcdomain``: the client's name, from a reverse DNS lookup of its address."""

    name = "srcdomain"
    needs = "src_name"
    example = ".accounting.example.lan"

    def match(self, ch: Checklist) -> bool:
        if ch.src_name is None:
            raise Pending("src_name")
        return bool(ch.src_name) and normalize_host(ch.src_name) in self.domains


# ---------------------------------------------------------------- numbers

class _RangeAcl(AclType):
    """Numbers and ranges: ``80``, ``1025-65535``, ``500-`` (open-ended)."""

    low, high, what = 0, 65535, "port"

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.values: set[int] = set()
        self.ranges: list[tuple[int, int]] = []

    def add(self, value: str, where: str | None = None) -> None:
        lo_text, dash, hi_text = value.partition("-")
        try:
            lo = int(lo_text)
            hi = (int(hi_text) if hi_text else self.high) if dash else lo
        except ValueError:
            raise ValueError(f"'{value}' is not a {self.what} or a {self.what} range") from None
        if not (self.low <= lo <= hi <= self.high):
            raise ValueError(f"'{value}' is not a {self.what} range within {self.low}-{self.high}")
        if lo == hi:
            self.values.add(lo)
        else:
            self.ranges.append((lo, hi))

    def has(self, number: int | None) -> bool:
        if number is None:
            return False
        if number in self.values:
            return True
        for lo, hi in self.ranges:
            if lo <= number <= hi:
                return True
        return False


class PortAcl(_RangeAcl):
    """``port``: the destination port of the URL or of CONNECT."""

    name = "port"
    example = "80 443 1025-65535"

    def match(self, ch: Checklist) -> bool:
        return self.has(ch.port)


class LocalPortAcl(_RangeAcl):
    """``localport``: the proxy port the client connected to."""

    name = "localport"
    example = "3128"

    def match(self, ch: Checklist) -> bool:
        return self.has(ch.local_port)


class HttpStatusAcl(_RangeAcl):
    """``http_status``: the reply's status code (a reply ACL)."""

    name = "http_status"
    reply = True
    low, high, what = 100, 999, "status code"
    example = "200 301-303 500-"

    def match(self, ch: Checklist) -> bool:
        return self.has(ch.reply_status)


class MaxConnAcl(AclType):
    """``maxconn N``: the client address has more than N connections open."""

    name = "maxconn"
    example = "20"

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.limit: int | None = None

    def add(self, value: str, where: str | None = None) -> None:
        if self.limit is not None:
            raise ValueError("maxconn takes one number")
        try:
            self.limit = int(value)
        except ValueError:
            raise ValueError(f"'{value}' is not a number of connections") from None
        if self.limit < 0:
            raise ValueError(f"'{value}' is not a number of connections")

    def match(self, ch: Checklist) -> bool:
        return self.limit is not None and ch.client_connections > self.limit


# ---------------------------------------------------------------- words

class _WordAcl(AclType):
    """A set of words compared without regard to case (methods, protocols)."""

    upper = True

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.words: set[str] = set()

    def add(self, value: str, where: str | None = None) -> None:
        self.words.add(value.upper() if self.upper else value)


class MethodAcl(_WordAcl):
    """``method``: the request method (``GET``, ``CONNECT``, ``PURGE`` ...)."""

    name = "method"
    example = "POST PUT DELETE"

    def match(self, ch: Checklist) -> bool:
        return ch.method in self.words


class ProtoAcl(_WordAcl):
    """``proto``: the URL scheme (``HTTP``, ``HTTPS``); CONNECT requests are ``AUTHORITY``."""

    name = "proto"
    example = "HTTP HTTPS"

    def match(self, ch: Checklist) -> bool:
        return ch.scheme.upper() in self.words


class MyPortNameAcl(_WordAcl):
    """``myportname``: the ``name=`` of the http_port the client used (case matters)."""

    name = "myportname"
    upper = False
    example = "office"

    def match(self, ch: Checklist) -> bool:
        return ch.port_name in self.words


# ---------------------------------------------------------------- regular expressions

class _RegexAcl(AclType):
    """Values are regular expressions, compiled once into one; ``-i``/``+i``
    switch case-folding on and off for the values that follow."""

    flags_allowed = frozenset({"-i", "+i"})

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.icase = "-i" in flags
        self.patterns: list[tuple[str, bool]] = []
        self.regex = None

    def begin_line(self, flags: frozenset[str]) -> None:
        self.icase = "-i" in flags

    def add(self, value: str, where: str | None = None) -> None:
        if value in ("-i", "+i"):
            self.icase = value == "-i"
            return
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"bad regular expression '{value}': {e}") from None
        self.patterns.append((value, self.icase))

    def finish(self) -> list[AclWarning]:
        parts = [f"(?i:{p})" if icase else f"(?:{p})" for p, icase in self.patterns]
        self.regex = re.compile("|".join(parts)) if parts else None
        return []

    def search(self, text: str | None) -> bool:
        regex = self.regex
        return regex is not None and text is not None and regex.search(text) is not None


class UrlRegexAcl(_RegexAcl):
    """``url_regex``: the whole URL, normalised as Squid normalises it (lower-case
    scheme and host, no default port, percent-escapes decoded)."""

    name = "url_regex"
    example = r"-i \.mp3$ ^http://ads\."

    def match(self, ch: Checklist) -> bool:
        return self.search(ch.url_unescaped)


class ManagerAcl(UrlRegexAcl):
    """The predefined ``manager`` ACL: Squid 5's ``url_regex -i ^cache_object://
    +i ^[^:]+://[^/]+/squid-internal-mgr/``, and also squidpy's own ``/metrics``
    when it is asked of the proxy itself (never another site's /metrics), so one
    ``http_access allow localhost manager`` / ``deny manager`` pair guards both."""

    def match(self, ch: Checklist) -> bool:
        if ch.to_proxy and ch.path.partition("?")[0] == "/metrics":
            return True
        return self.search(ch.url_unescaped)


class UrlPathRegexAcl(_RegexAcl):
    """``urlpath_regex``: the URL path with its query (no scheme or host),
    percent-escapes decoded as Squid decodes them.  A CONNECT has no path and
    matches nothing, as in Squid."""

    name = "urlpath_regex"
    example = r"-i \.(exe|msi)$ ^/cgi-bin/"

    def match(self, ch: Checklist) -> bool:
        return bool(ch.path) and self.search(ch.path_unescaped)


class DstDomRegexAcl(_RegexAcl):
    """``dstdom_regex``: the URL host."""

    name = "dstdom_regex"
    example = r"-i (^|\.)ads?[0-9]*\."

    def match(self, ch: Checklist) -> bool:
        return self.search(normalize_host(ch.host))


class BrowserAcl(_RegexAcl):
    """``browser``: the User-Agent request header."""

    name = "browser"
    example = "-i ^curl/ Wget"

    def match(self, ch: Checklist) -> bool:
        return self.search(ch.request_header(b"user-agent"))


class RefererRegexAcl(_RegexAcl):
    """``referer_regex``: the Referer request header."""

    name = "referer_regex"
    example = r"-i ^https?://intranet\.example\.lan/"

    def match(self, ch: Checklist) -> bool:
        return self.search(ch.request_header(b"referer"))


class RepMimeTypeAcl(_RegexAcl):
    """``rep_mime_type``: the reply's Content-Type (a reply ACL)."""

    name = "rep_mime_type"
    reply = True
    example = "-i ^video/ ^application/x-bittorrent"

    def match(self, ch: Checklist) -> bool:
        return self.search(ch.reply_header(b"content-type"))


class _HeaderAcl(AclType):
    """``req_header NAME [-i] REGEX ...``: a regex against the values of one header.

    One ACL name may test several headers (one per line); any header's regex
    matching makes the ACL match.
    """

    flags_allowed = frozenset({"-i", "+i"})

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.by_header: dict[bytes, _RegexAcl] = {}
        self._current: _RegexAcl | None = None
        self._line_flags: frozenset[str] = frozenset()

    def begin_line(self, flags: frozenset[str]) -> None:
        self._current = None
        self._line_flags = flags

    def add(self, value: str, where: str | None = None) -> None:
        if self._current is None:
            if not value or not all(33 <= ord(c) < 127 and c != ":" for c in value):
                raise ValueError(f"'{value}' is not a header name")
            key = value.lower().encode("ascii")
            self._current = self.by_header.get(key)
            if self._current is None:
                self._current = self.by_header[key] = _RegexAcl(self._line_flags)
            self._current.begin_line(self._line_flags)
            return
        self._current.add(value, where)

    def finish(self) -> list[AclWarning]:
        for regex in self.by_header.values():
            regex.finish()
        return []

    def headers(self, ch: Checklist):
        raise NotImplementedError

    def match(self, ch: Checklist) -> bool:
        for name, regex in self.by_header.items():
            if regex.search(_header_value(self.headers(ch), name)):
                return True
        return False


_header_value = field_text


class ReqHeaderAcl(_HeaderAcl):
    """``req_header``: a request header's value (``req_header X-Forwarded-For -i ^10\\.``)."""

    name = "req_header"
    example = "Accept-Language -i ^fr"

    def headers(self, ch: Checklist):
        return ch.request_headers


class RepHeaderAcl(_HeaderAcl):
    """``rep_header``: a reply header's value (a reply ACL)."""

    name = "rep_header"
    reply = True
    example = "Server -i ^nginx"

    def headers(self, ch: Checklist):
        return ch.reply_headers


# ---------------------------------------------------------------- time

DAY_LETTERS = {"S": 6, "M": 0, "T": 1, "W": 2, "H": 3, "F": 4, "A": 5}   # time.struct_tm weekday
_TIME_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class TimeAcl(AclType):
    """``time [SMTWHFA] [HH:MM-HH:MM]``: the local day of week and time of day.

    S Sunday, M Monday, T Tuesday, W Wednesday, H Thursday, F Friday,
    A Saturday, D every weekday (M to F).  Each line is one window; any
    window matching makes the ACL match.  Without days: every day; without
    hours: the whole day.
    """

    name = "time"
    example = "MTWHF 08:00-17:30"

    def __init__(self, flags=frozenset()):
        super().__init__(flags)
        self.windows: list[tuple[frozenset[int], int, int]] = []
        self._days: set[int] | None = None
        self._span = (0, 24 * 60)
        self._open = False

    def begin_line(self, flags: frozenset[str]) -> None:
        self._close_line()

    def add(self, value: str, where: str | None = None) -> None:
        self._open = True
        m = _TIME_RANGE.match(value)
        if m:
            h1, m1, h2, m2 = (int(x) for x in m.groups())
            if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
                raise ValueError(f"'{value}' is not a valid time range")
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if start >= end:
                raise ValueError(f"'{value}': the start must be before the end "
                                 "(write a range over midnight as two lines)")
            self._span = (start, end)
            return
        letters = set(value.upper())
        if not letters <= set(DAY_LETTERS) | {"D"}:
            raise ValueError(f"'{value}' is neither days (SMTWHFA, D) nor a time range HH:MM-HH:MM")
        days = {DAY_LETTERS[c] for c in letters if c != "D"}
        if "D" in letters:
            days |= {0, 1, 2, 3, 4}
        self._days = (self._days or set()) | days

    def _close_line(self) -> None:
        if self._open:
            days = frozenset(range(7)) if self._days is None else frozenset(self._days)
            self.windows.append((days, *self._span))
        self._days, self._span, self._open = None, (0, 24 * 60), False

    def finish(self) -> list[AclWarning]:
        self._close_line()
        return []

    def match(self, ch: Checklist) -> bool:
        now = time.localtime(ch.timestamp())
        minute = now.tm_hour * 60 + now.tm_min
        for days, start, end in self.windows:
            if now.tm_wday in days and start <= minute < end:
                return True
        return False


ACL_TYPES: dict[str, type[AclType]] = {
    cls.name: cls
    for cls in (
        SrcAcl, DstAcl, LocalIpAcl, DstDomainAcl, SrcDomainAcl, DstDomRegexAcl, UrlRegexAcl,
        UrlPathRegexAcl, PortAcl, LocalPortAcl, MyPortNameAcl, ProtoAcl, MethodAcl, BrowserAcl,
        RefererRegexAcl, ReqHeaderAcl, RepHeaderAcl, RepMimeTypeAcl, HttpStatusAcl, TimeAcl,
        MaxConnAcl,
    )
}


def _register_helper_types() -> None:
    """ACL types answered with a helper's help (squidpy/acl/auth_types.py)."""
    from squidpy.acl.auth_types import AUTH_ACL_TYPES
    ACL_TYPES.update(AUTH_ACL_TYPES)


_register_helper_types()
