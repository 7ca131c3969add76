"""ACL types: each class knows how to read its values and match a checklist.

A type is registered under Squid's name in :data:`ACL_TYPES`.  ``needs``
names a fact that takes a lookup (the caller resolves it on
:class:`~squidpy.acl.checklist.Pending`); ``reply`` marks types that can only
be answered once a reply exists: used where there is none yet (``http_access``)
they do not match, as Squid says "assuming mismatch".

Values are added one at a time with the ``file:line`` they came from, so a
warning (a value another one already covers) can point at the exact line.
Squid 5.7's ACL types squidpy does not implement are in :data:`NOT_IMPLEMENTED`.
"""

from __future__ import annotations

import random as _random
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from squidpy.acl.addresses import AddressSet, parse_address_entry
from squidpy.acl.checklist import Checklist, Pending
from squidpy.acl.domains import DomainSet, normalize_host
from squidpy.config.posix_regex import PosixRegex, PosixRegexError
from squidpy.http.message import Fields, field_text
from squidpy.ip import ip_key

if TYPE_CHECKING:
    from squidpy.acl.access import Acl, AclTable

AclWarning = tuple[str | None, str]     # (file:line or None, message)
LineNote = tuple[str | None, str, bool]  # (file:line, message, is a warning)


class AclType:
    name = ""
    needs: str | None = None
    reply = False
    flags_allowed: frozenset[str] = frozenset()   # options accepted before the values
    regex_values = False                 # values are regular expressions (read as Squid reads them)
    example = ""                         # one value line, for docs and `squidpy check`
    table: AclTable | None = None        # the AclTable, for types whose values name ACLs

    def __init__(self, flags: frozenset[str] = frozenset()):
        self.flags = flags

    def begin_line(self, flags: frozenset[str]) -> None:
        """An ``acl`` line with these options is about to add values."""
        self.flags = self.flags | flags

    def add(self, value: str, where: str | None = None) -> None:
        raise NotImplementedError

    def note(self, where: str | None, message: str, warning: bool = True) -> None:
        """A warning (or an error) to report when the line ends."""
        self.__dict__.setdefault("_pending_notes", []).append((where, message, warning))

    def end_line(self) -> list[LineNote]:
        """The values of one line are in: errors and warnings about them."""
        notes: list[LineNote] = self.__dict__.pop("_pending_notes", [])
        return notes

    def finish(self) -> list[AclWarning]:
        """Called once every value is in; returns warnings."""
        return []

    def match(self, ch: Checklist) -> bool:
        raise NotImplementedError


# ---------------------------------------------------------------- addresses

# Squid's old spellings of "every address", accepted with its security notice
_ALL_SPELLINGS = ("0/0", "0.0.0.0/0", "0.0.0.0/0.0.0.0", "0.0.0.0-255.255.255.255", "0.0.0.0-0.0.0.0/0")


class _AddressAcl(AclType):
    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.addresses = AddressSet()

    def add(self, value: str, where: str | None = None) -> None:
        if value in _ALL_SPELLINGS:
            self.note(where, f"'{value}' needs to be replaced by the term 'all'; "
                             "as Squid does, squidpy uses 'all' (every IPv4 and IPv6 address)")
            value = "all"
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
    """``dst``: any resolved address of the origin (a DNS lookup for names; with
    ``-n`` only an address written in the URL)."""

    name = "dst"
    needs = "dst"
    flags_allowed = frozenset({"-n"})
    example = "203.0.113.0/24"

    def match(self, ch: Checklist) -> bool:
        if "-n" in self.flags and not ch.ip_literal:
            return False
        if ch.dst is None:
            raise Pending("dst")
        addresses = self.addresses
        return any(ip_key(a) in addresses for a in ch.dst)


# ---------------------------------------------------------------- domains

class _DomainAcl(AclType):
    flags_allowed = frozenset({"-n", "-i"})

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.domains = DomainSet()

    def add(self, value: str, where: str | None = None) -> None:
        self.domains.add(value, where)

    def finish(self) -> list[AclWarning]:
        return self.domains.finish()


def match_destination(acl: AclType, test: Callable[[str], bool], ch: Checklist) -> bool:
    """Squid's destination-domain rule (dstdomain, dstdom_regex): the URL host, and
    for an address written in the URL (unless ``-n``) the name its reverse lookup
    gives, or ``none`` when there is none."""
    if test(normalize_host(ch.host)):
        return True
    if "-n" in acl.flags or not ch.ip_literal:
        return False
    if ch.dst_name is None:
        raise Pending("dst_name")
    return test(normalize_host(ch.dst_name) if ch.dst_name else "none")


class DstDomainAcl(_DomainAcl):
    """``dstdomain``: the URL host (or the CONNECT host).

    ``.example.com`` matches example.com and every name under it.  A URL
    written with an IP address is matched as text, then (unless ``-n``) by the
    name a reverse DNS lookup gives for it, as Squid does.
    """

    name = "dstdomain"
    example = ".facebook.com .fbcdn.net example.org"

    def match(self, ch: Checklist) -> bool:
        domains = self.domains
        return match_destination(self, domains.__contains__, ch)


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

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
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

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.limit: int | None = None

    def add(self, value: str, where: str | None = None) -> None:
        if self.limit is not None:
            self.note(where, "maxconn takes a single limit; as in Squid, the limit becomes 0")
            self.limit = 0
            return
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

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
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


PROTOCOLS = frozenset(("NONE", "HTTP", "FTP", "HTTPS", "COAP", "COAPS", "GOPHER", "WAIS", "CACHE_OBJECT",
                       "ICP", "HTCP", "URN", "WHOIS", "ICY", "TLS", "SSL", "AUTHORITY"))


class ProtoAcl(_WordAcl):
    """``proto``: the URL scheme (``HTTP``, ``HTTPS``); CONNECT requests are ``AUTHORITY``."""

    name = "proto"
    example = "HTTP HTTPS"

    def add(self, value: str, where: str | None = None) -> None:
        if value.upper() not in PROTOCOLS:
            self.note(where, f"unknown protocol '{value}' is ignored, as Squid ignores it")
            return
        super().add(value, where)

    def match(self, ch: Checklist) -> bool:
        return ch.scheme.upper() in self.words


class PeerNameAcl(_WordAcl):
    """``peername``: the ``name=`` of the cache_peer a connection goes to.  As in
    Squid 5.7 only tcp_outgoing_address knows it (FwdState sets it for that check
    alone): anywhere else it matches nothing."""

    name = "peername"
    upper = False
    example = "headoffice"

    def match(self, ch: Checklist) -> bool:
        return ch.dst_peer_name in self.words


class MyPortNameAcl(_WordAcl):
    """``myportname``: the ``name=`` of the http_port the client used (case matters)."""

    name = "myportname"
    upper = False
    example = "office"

    def match(self, ch: Checklist) -> bool:
        return ch.port_name in self.words


# ---------------------------------------------------------------- regular expressions

def remove_wildcards(pattern: str) -> tuple[str, str | None]:
    """Squid drops a leading ``^.*`` and ``.*`` (they change nothing in a search), saying so."""
    if pattern == ".*":
        return pattern, None
    t = pattern[3:] if pattern.startswith("^.*") else pattern
    while t.startswith(".*"):
        t = t[2:]
    if not t:
        return ".*", f"regular expression '{pattern}' has only wildcards and matches all strings; using '.*'"
    if t != pattern:
        return t, f"regular expression '{pattern}' has unnecessary wildcard(s); using '{t}'"
    return t, None


class _RegexAcl(AclType):
    """Values are POSIX extended regular expressions, compiled as Squid does: the
    patterns of one line become one expression per run of ``-i``/``+i`` (at most
    about 1 KB each), and each pattern alone when that expression does not compile.
    ``-i`` and ``+i`` switch case-folding for the values that follow; each line
    starts case-sensitive."""

    flags_allowed = frozenset({"-i", "+i"})
    regex_values = True

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.regexes: list[PosixRegex] = []
        self._line: list[tuple[str, str | None]] = []

    def begin_line(self, flags: frozenset[str]) -> None:
        super().begin_line(flags)
        self._line = []

    def add(self, value: str, where: str | None = None) -> None:
        self._line.append((value, where))

    def end_line(self) -> list[LineNote]:
        notes: list[LineNote] = []
        words: list[tuple[str, str | None]] = []
        for value, where in self._line:
            if value not in ("-i", "+i"):
                value, note = remove_wildcards(value)
                if note:
                    notes.append((where, note, True))
                if len(value) > 8191:
                    notes.append((where, "a regular expression longer than 8191 characters", False))
                    continue
            words.append((value, where))
        self._line = []
        compiled = _compile_optimised(words)
        if compiled is None:
            compiled = []
            icase = False
            for value, where in words:
                if value in ("-i", "+i"):
                    icase = value == "-i"
                    continue
                try:
                    compiled.append(PosixRegex(value, icase))
                except PosixRegexError as e:
                    notes.append((where, f"bad regular expression '{value}': {e}", False))
        self.regexes.extend(compiled)
        icase = False
        for value, where in words:
            if value in ("-i", "+i"):
                icase = value == "-i"
                continue
            try:
                for note in PosixRegex(value, icase).notes:
                    notes.append((where, f"in '{value}': {note}", True))
            except PosixRegexError:
                pass
        patterns = sum(1 for value, _ in words if value not in ("-i", "+i"))
        if patterns > 100:
            notes.append((words[0][1], "more than 100 regular expressions on one line; "
                          "dstdomain and other types without expressions are faster", True))
        return notes

    def search(self, text: str | None) -> bool:
        if text is None:
            return False
        for regex in self.regexes:
            if regex.search(text):
                return True
        return False


def _compile_optimised(words: list[tuple[str, str | None]]) -> list[PosixRegex] | None:
    """Squid's compileOptimisedREs: ``(a)|(b)|...`` per run of one case mode,
    or None when one of them does not compile (then each pattern goes alone)."""
    out: list[PosixRegex] = []
    pending: list[str] = []
    icase = False
    size = 0

    def flush() -> bool:
        if not pending:
            return not out          # Squid's quirk: an empty run after others fails the line
        try:
            out.append(PosixRegex("(" + ")|(".join(pending) + ")", icase))
        except PosixRegexError:
            return False
        return True

    for value, _ in words:
        if value in ("-i", "+i"):
            if (value == "-i") != icase:
                if not flush():
                    return None
                icase = value == "-i"
                pending, size = [], 0
            continue
        pending.append(value)
        size += len(value)
        if size > 1024:
            if not flush():
                return None
            pending, size = [], 0
    if not flush():
        return None
    return out


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
    """``dstdom_regex``: the URL host (and the reverse name of an address, as dstdomain)."""

    name = "dstdom_regex"
    flags_allowed = frozenset({"-i", "+i", "-n"})
    example = r"-i (^|\.)ads?[0-9]*\."

    def match(self, ch: Checklist) -> bool:
        return match_destination(self, self.search, ch)


class PeerNameRegexAcl(_RegexAcl):
    """``peername_regex``: ``peername`` by regular expression."""

    name = "peername_regex"
    example = "-i ^parent[0-9]+$"

    def match(self, ch: Checklist) -> bool:
        return ch.dst_peer_name is not None and self.search(ch.dst_peer_name)


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
    """``req_header NAME [-i] REGEX ...``: regular expressions on the value of one header.

    Every line of one ACL names the same header (case does not matter); test
    several headers with an any-of ACL, as Squid requires.
    """

    flags_allowed = frozenset({"-i", "+i"})
    regex_values = True

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.header: bytes | None = None
        self.regex = _RegexAcl()
        self._named = False

    def begin_line(self, flags: frozenset[str]) -> None:
        self._named = False
        self.regex.begin_line(flags)

    def add(self, value: str, where: str | None = None) -> None:
        if not self._named:
            self._named = True
            if not value or not all(33 <= ord(c) < 127 and c != ":" for c in value):
                raise ValueError(f"'{value}' is not a header name")
            key = value.lower().encode("ascii")
            if self.header is not None and key != self.header:
                raise ValueError(f"one ACL cannot match both the {self.header.decode()} and {value} headers; "
                                 "use an any-of ACL")
            self.header = key
            return
        self.regex.add(value, where)

    def end_line(self) -> list[LineNote]:
        return self.regex.end_line()

    def headers(self, ch: Checklist) -> Fields | None:
        raise NotImplementedError

    def match(self, ch: Checklist) -> bool:
        return self.header is not None and self.regex.search(_header_value(self.headers(ch), self.header))


_header_value = field_text


class ReqHeaderAcl(_HeaderAcl):
    """``req_header``: a request header's value (``req_header X-Forwarded-For -i ^10\\.``)."""

    name = "req_header"
    example = "Accept-Language -i ^fr"

    def headers(self, ch: Checklist) -> Fields | None:
        return ch.request_headers


class RepHeaderAcl(_HeaderAcl):
    """``rep_header``: a reply header's value (a reply ACL)."""

    name = "rep_header"
    reply = True
    example = "Server -i ^nginx"

    def headers(self, ch: Checklist) -> Fields | None:
        return ch.reply_headers


# ---------------------------------------------------------------- time

DAY_LETTERS = {"S": 6, "M": 0, "T": 1, "W": 2, "H": 3, "F": 4, "A": 5}   # time.struct_tm weekday
_TIME_RANGE = re.compile(r"^\s*([+-]?\d+):\s*([+-]?\d+)-\s*([+-]?\d+):\s*([+-]?\d+)")
ALL_WEEK = frozenset(range(7))


class TimeAcl(AclType):
    """``time [SMTWHFA] [HH:MM-HH:MM] ...``: the local day of week and time of day.

    S Sunday, M Monday, T Tuesday, W Wednesday, H Thursday, F Friday,
    A Saturday, D every weekday (M to F), ``-`` nothing.  As in Squid, each
    time range takes the days written since the previous range (every day if
    none), the end minute is included (``08:00-17:30`` matches at 17:30), and
    days written after the last range get the whole day.  Any window matching
    makes the ACL match.
    """

    name = "time"
    example = "MTWHF 08:00-17:30"

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.windows: list[tuple[frozenset[int], int, int]] = []
        self._days: set[int] = set()
        self._notes: list[LineNote] = []

    def begin_line(self, flags: frozenset[str]) -> None:
        self._days = set()

    def add(self, value: str, where: str | None = None) -> None:
        if not "0" <= value[:1] <= "9":
            for c in value:
                if c in DAY_LETTERS:
                    self._days.add(DAY_LETTERS[c])
                elif c == "D":
                    self._days |= {0, 1, 2, 3, 4}
                elif c != "-":
                    self._notes.append((where, f"'{c}' is not a day letter (SMTWHFAD) and is ignored, "
                                               "as Squid ignores it", True))
            return
        m = _TIME_RANGE.match(value)
        if not m:
            raise ValueError(f"'{value}' is not a time range HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        if not (0 <= h1 < 24 and (0 <= h2 < 24 or (h2 == 24 and m2 == 0)) and 0 <= m1 < 60 and 0 <= m2 < 60):
            raise ValueError(f"'{value}' is not a valid time range")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start > end:
            raise ValueError(f"'{value}': the start is after the end (write a range over midnight as two lines)")
        self.windows.append((frozenset(self._days) or ALL_WEEK, start, end))
        self._days = set()

    def end_line(self) -> list[LineNote]:
        if self._days:
            self.windows.append((frozenset(self._days), 0, 24 * 60))
            self._days = set()
        notes, self._notes = self._notes, []
        return notes

    def match(self, ch: Checklist) -> bool:
        now = time.localtime(ch.timestamp())
        minute = now.tm_hour * 60 + now.tm_min
        for days, start, end in self.windows:
            if now.tm_wday in days and start <= minute <= end:
                return True
        return False


# ---------------------------------------------------------------- names and annotations

class _NamesAcl(AclType):
    """``any-of`` / ``all-of``: values are other ACL names, each may be negated with ``!``."""

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.lines: list[list[tuple[bool, Acl]]] = []

    def begin_line(self, flags: frozenset[str]) -> None:
        self.lines.append([])

    def add(self, value: str, where: str | None = None) -> None:
        negated = value.startswith("!")
        name = value[1:] if negated else value
        acl = self.table.get(name) if self.table is not None else None
        if acl is None:
            raise ValueError(f"ACL '{name}' is used before it is defined")
        self.lines[-1].append((negated, acl))

    @staticmethod
    def _true(ch: Checklist, negated: bool, acl: Acl) -> bool:
        return acl.match(ch) != negated


class AnyOfAcl(_NamesAcl):
    """``any-of``: matches when one of the named ACLs matches (lines add names)."""

    name = "any-of"
    example = "office_hours intranet"

    def match(self, ch: Checklist) -> bool:
        return any(self._true(ch, n, a) for line in self.lines for n, a in line)


class AllOfAcl(_NamesAcl):
    """``all-of``: matches when every ACL of one of its lines matches."""

    name = "all-of"
    example = "localnet office_hours"

    def match(self, ch: Checklist) -> bool:
        return any(all(self._true(ch, n, a) for n, a in line) for line in self.lines if line)


class _AnnotationAcl(AclType):
    """Shared by ``note`` and ``annotate_*``: the ``-m[=DELIMITERS]`` option."""

    flags_allowed = frozenset({"-m"})

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.delimiters = ""

    def begin_line(self, flags: frozenset[str]) -> None:
        for flag in flags:
            if flag.startswith("-m"):
                self.delimiters = flag[3:] if flag.startswith("-m=") else ","


def _split(value: str, delimiters: str) -> list[str]:
    if not delimiters:
        return [value]
    return [part for part in re.split("[" + re.escape(delimiters) + "]", value) if part]


class NoteAcl(_AnnotationAcl):
    """``note [-m[=DELIMS]] NAME [VALUE ...]``: the transaction has that annotation
    (with one of the values); with -m, annotation values are lists split on DELIMS
    (default ",")."""

    name = "note"
    example = "color green"

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.note_name: str | None = None
        self.values: set[str] = set()
        self._named = False

    def begin_line(self, flags: frozenset[str]) -> None:
        super().begin_line(flags)
        self._named = False

    def add(self, value: str, where: str | None = None) -> None:
        if not self._named:
            self._named = True
            if self.note_name is not None and value != self.note_name:
                raise ValueError(f"one note ACL cannot test both the '{self.note_name}' and '{value}' "
                                 "annotations (Squid 5.7 would silently test only the last)")
            self.note_name = value
            return
        self.values.add(value)

    def match(self, ch: Checklist) -> bool:
        for key, value in ch.notes:
            if key != self.note_name:
                continue
            if not self.values:
                return True
            if any(v in self.values for v in _split(value, self.delimiters)):
                return True
        return False


_ANNOTATION = re.compile(r"^([^=]+?)(\+?)=(.*)$", re.S)


class _AnnotateAcl(_AnnotationAcl):
    """``KEY=VALUE`` (replace) or ``KEY+=VALUE`` (append) pairs added when the ACL
    is evaluated; it always matches."""

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.pairs: list[tuple[str, str, bool]] = []

    def add(self, value: str, where: str | None = None) -> None:
        m = _ANNOTATION.match(value)
        if not m:
            raise ValueError(f"'{value}' is not an annotation KEY=VALUE or KEY+=VALUE")
        self.pairs.append((m.group(1), m.group(3), bool(m.group(2))))

    def annotate(self, notes: list[tuple[str, str]]) -> None:
        for key, value, append in self.pairs:
            values = _split(value, self.delimiters)
            if not append:
                notes[:] = [(k, v) for k, v in notes if k != key]
            for v in values:
                if (key, v) not in notes:
                    notes.append((key, v))


class AnnotateTransactionAcl(_AnnotateAcl):
    """``annotate_transaction KEY=VALUE``: annotates the transaction (for note ACLs and %note)."""

    name = "annotate_transaction"
    example = "category=streaming"

    def match(self, ch: Checklist) -> bool:
        self.annotate(ch.notes)
        return True


class AnnotateClientAcl(_AnnotateAcl):
    """``annotate_client KEY=VALUE``: annotates the client connection, and so every
    later transaction on it, as well as this one."""

    name = "annotate_client"
    example = "vip=yes"

    def match(self, ch: Checklist) -> bool:
        conn = ch.connection
        if conn is None:
            return False
        if conn.notes is None:
            conn.notes = []
        self.annotate(conn.notes)
        self.annotate(ch.notes)
        return True


# ---------------------------------------------------------------- facts about the transaction

class HasAcl(AclType):
    """``has request|response|ALE``: the transaction already has that part."""

    name = "has"
    example = "response"

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.parts: set[str] = set()
        self._count = 0

    def begin_line(self, flags: frozenset[str]) -> None:
        self._count = 0

    def add(self, value: str, where: str | None = None) -> None:
        self._count += 1
        if self._count > 1:
            raise ValueError("a has ACL line names one component")
        if value not in ("request", "response", "ALE"):
            raise ValueError(f"'{value}' is not a component (request, response or ALE)")
        self.parts.add(value)

    def match(self, ch: Checklist) -> bool:
        return ("request" in self.parts or "ALE" in self.parts
                or ("response" in self.parts and ch.reply_status is not None))


class RandomAcl(AclType):
    """``random 0.25 | 1/4 | 1:3``: matches that share of the times it is evaluated."""

    name = "random"
    example = "1/10"
    rng = _random.Random()

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.probability = 0.0

    def add(self, value: str, where: str | None = None) -> None:
        m = re.match(r"^([0-9]+)([:/])([0-9]+)", value)
        if m:
            a, b = int(m.group(1)), int(m.group(3))
            if a <= 0 or b <= 0 or (m.group(2) == "/" and a > b):
                raise ValueError(f"'{value}' is not a valid random share")
            self.probability = a / (a + b) if m.group(2) == ":" else a / b
        elif fraction := re.match(r"^0\.[0-9]+", value):
            self.probability = float(fraction.group(0))
        else:
            raise ValueError(f"'{value}' is not a random share (0.N, A/B or A:B)")

    def finish(self) -> list[AclWarning]:
        if self.probability == 0.0:
            raise ValueError("a random ACL needs a share above 0")
        return []

    def match(self, ch: Checklist) -> bool:
        return self.probability > (ch.random() if ch.random is not None else self.rng.random())


HIER_CODES = frozenset((
    "HIER_NONE", "HIER_DIRECT", "SIBLING_HIT", "PARENT_HIT", "DEFAULT_PARENT", "SINGLE_PARENT",
    "FIRSTUP_PARENT", "FIRST_PARENT_MISS", "CLOSEST_PARENT_MISS", "CLOSEST_PARENT", "CLOSEST_DIRECT",
    "NO_DIRECT_FAIL", "SOURCE_FASTEST", "ROUNDROBIN_PARENT", "CD_PARENT_HIT", "CD_SIBLING_HIT", "CARP",
    "ANY_OLD_PARENT", "USERHASH_PARENT", "SOURCEHASH_PARENT", "PINNED", "ORIGINAL_DST", "STANDBY_POOL",
))


class _KnownNamesAcl(AclType):
    """An ACL of names from a fixed list Squid knows, matching one fact of the checklist."""

    KNOWN: frozenset[str] = frozenset()
    FACT = ""                       # the Checklist attribute compared
    UNKNOWN = "'{}' is not known"   # the complaint about a name not in KNOWN

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.names: set[str] = set()

    def add(self, value: str, where: str | None = None) -> None:
        if value not in self.KNOWN:
            raise ValueError(self.UNKNOWN.format(value))
        self.names.add(value)

    def match(self, ch: Checklist) -> bool:
        return getattr(ch, self.FACT) in self.names


class HierCodeAcl(_KnownNamesAcl):
    """``hier_code HIER_DIRECT ...``: how the reply was obtained (the %Sh of the log).
    Before forwarding (http_access) it is HIER_NONE."""

    name = "hier_code"
    example = "HIER_DIRECT"
    KNOWN = HIER_CODES
    FACT = "hier_code"
    UNKNOWN = "no such hier_code '{}'"


SQUID_ERRORS = frozenset((
    "ERR_NONE", "ERR_ACCESS_DENIED", "ERR_CACHE_ACCESS_DENIED", "ERR_CACHE_MGR_ACCESS_DENIED",
    "ERR_FORWARDING_DENIED", "ERR_NO_RELAY", "ERR_CANNOT_FORWARD", "ERR_READ_TIMEOUT", "ERR_LIFETIME_EXP",
    "ERR_READ_ERROR", "ERR_WRITE_ERROR", "ERR_CONNECT_FAIL", "ERR_SECURE_CONNECT_FAIL", "ERR_SOCKET_FAILURE",
    "ERR_DNS_FAIL", "ERR_URN_RESOLVE", "ERR_ONLY_IF_CACHED_MISS", "ERR_TOO_BIG", "ERR_INVALID_RESP",
    "ERR_UNSUP_HTTPVERSION", "ERR_INVALID_REQ", "ERR_UNSUP_REQ", "ERR_INVALID_URL", "ERR_ZERO_SIZE_OBJECT",
    "ERR_PRECONDITION_FAILED", "ERR_CONFLICT_HOST", "ERR_FTP_DISABLED", "ERR_FTP_UNAVAILABLE",
    "ERR_FTP_FAILURE", "ERR_FTP_PUT_ERROR", "ERR_FTP_NOT_FOUND", "ERR_FTP_FORBIDDEN", "ERR_FTP_PUT_CREATED",
    "ERR_FTP_PUT_MODIFIED", "ERR_ESI", "ERR_ICAP_FAILURE", "ERR_GATEWAY_FAILURE", "ERR_DIR_LISTING",
    "ERR_SQUID_SIGNATURE", "ERR_SHUTTING_DOWN", "ERR_PROTOCOL_UNKNOWN", "TCP_RESET", "ERR_CLIENT_GONE",
    "ERR_SECURE_ACCEPT_FAIL", "ERR_REQUEST_START_TIMEOUT", "ERR_REQUEST_PARSE_TIMEOUT", "ERR_RELAY_REMOTE",
    "MGR_INDEX",
))


class SquidErrorAcl(_KnownNamesAcl):
    """``squid_error ERR_... ...``: the error the transaction ended with (ERR_NONE while
    there is none, so in http_access only ERR_NONE can match)."""

    name = "squid_error"
    example = "ERR_CONNECT_FAIL ERR_DNS_FAIL"
    KNOWN = SQUID_ERRORS
    FACT = "squid_error"
    UNKNOWN = "'{}' is not a Squid error name"


INITIATORS = {
    "client", "peer-pool", "certificate-fetching", "esi", "cache-digest", "server", "htcp", "icp",
    "icmp", "asn", "ipc", "adaptation", "icon", "peer-mcast",
}


class TransactionInitiatorAcl(AclType):
    """``transaction_initiator client|internal|all|...``: who started the transaction.
    Every transaction squidpy checks is started by a client."""

    name = "transaction_initiator"
    example = "client"

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.initiators: set[str] = set()

    def add(self, value: str, where: str | None = None) -> None:
        if value == "all":
            self.initiators |= INITIATORS
        elif value == "internal":
            self.initiators |= INITIATORS - {"client"}
        elif value in INITIATORS:
            self.initiators.add(value)
        else:
            raise ValueError(f"'{value}' is not a transaction initiator")

    def match(self, ch: Checklist) -> bool:
        return ch.initiator in self.initiators


class ReqMimeTypeAcl(_RegexAcl):
    """``req_mime_type``: the request's Content-Type."""

    name = "req_mime_type"
    example = "-i ^multipart/form-data"

    def match(self, ch: Checklist) -> bool:
        return self.search(ch.request_header(b"content-type"))


class SrcDomRegexAcl(_RegexAcl):
    """``srcdom_regex``: the client's name (reverse DNS of its address)."""

    name = "srcdom_regex"
    needs = "src_name"
    example = r"-i \.guest\.example\.lan$"

    def match(self, ch: Checklist) -> bool:
        if ch.src_name is None:
            raise Pending("src_name")
        return bool(ch.src_name) and self.search(ch.src_name)


class ConnectionsEncryptedAcl(AclType):
    """``connections_encrypted``: every connection of the transaction is TLS, as Squid
    judges it: the request came over TLS (an https_port, or inside a bumped
    connection) and the reply, once there is one, from an https:// origin."""

    name = "connections_encrypted"
    example = ""

    def add(self, value: str, where: str | None = None) -> None:
        raise ValueError("connections_encrypted takes no value")

    def match(self, ch: Checklist) -> bool:
        return ch.client_encrypted and (ch.reply_status is None or ch.scheme == "https")


class TagAcl(AclType):
    """``tag``: the tag an external ACL helper gave the transaction (squidpy has no
    external ACL helpers, so none is ever set)."""

    name = "tag"
    example = "vip"

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.tags: set[str] = set()

    def add(self, value: str, where: str | None = None) -> None:
        self.tags.add(value)

    def match(self, ch: Checklist) -> bool:
        return ch.tag is not None and ch.tag in self.tags


class _Unusable(AclType):
    """Stands for an ACL whose line was refused, so lines naming it do not add
    'used before it is defined' errors; a configuration holding one never loads."""

    def add(self, value: str, where: str | None = None) -> None:
        pass

    def match(self, ch: Checklist) -> bool:
        raise RuntimeError(f"ACL type {self.name} cannot be evaluated")


ACL_TYPES: dict[str, type[AclType]] = {
    cls.name: cls
    for cls in (
        SrcAcl, DstAcl, LocalIpAcl, DstDomainAcl, SrcDomainAcl, DstDomRegexAcl, SrcDomRegexAcl, UrlRegexAcl,
        UrlPathRegexAcl, PortAcl, LocalPortAcl, MyPortNameAcl, PeerNameAcl, PeerNameRegexAcl, ProtoAcl, MethodAcl, BrowserAcl,
        RefererRegexAcl, ReqHeaderAcl, RepHeaderAcl, ReqMimeTypeAcl, RepMimeTypeAcl, HttpStatusAcl, TimeAcl,
        MaxConnAcl, AnyOfAcl, AllOfAcl, NoteAcl, AnnotateTransactionAcl, AnnotateClientAcl, HasAcl,
        RandomAcl, HierCodeAcl, SquidErrorAcl, TransactionInitiatorAcl, ConnectionsEncryptedAcl, TagAcl,
    )
}

# Squid 5.7's other ACL types, refused with the reason.
NOT_IMPLEMENTED: dict[str, str] = {
    "src_as": "AS numbers (whois lookups)", "dst_as": "AS numbers (whois lookups)",
    "urllogin": "the login part of URLs",
    "ident": "ident lookups", "ident_regex": "ident lookups",
    "client_connection_mark": "netfilter connection marks", "arp": "MAC addresses", "eui64": "EUI-64 addresses",
    "adaptation_service": "ICAP and eCAP", "snmp_community": "SNMP",
}

# Squid's old names for ACL types, with its upgrade note.
RENAMED = {
    "myip": ("localip", "ACL type 'myip' has been renamed to 'localip' and matches the IP the client connected to"),
    "myport": ("localport", "ACL type 'myport' has been renamed to 'localport' and matches the port "
                            "the client connected to"),
    "clientside_mark": ("client_connection_mark", "ACL type 'clientside_mark' has been renamed to "
                                                  "'client_connection_mark'"),
}

def _register_helper_types() -> None:
    """ACL types answered with a helper's help (squidpy/acl/auth_types.py)."""
    from squidpy.acl.auth_types import AUTH_ACL_TYPES
    ACL_TYPES.update(AUTH_ACL_TYPES)


_register_helper_types()
