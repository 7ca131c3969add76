"""squid.conf's header rules: ``request_header_access``, ``request_header_replace``,
``request_header_add`` and their ``reply_`` twins, as Squid 5.7 applies them.

Squid applies them to the head it is about to send (``httpHdrMangleList``:
upstream requests in http.cc, client replies in client_side_reply.cc, 1xx
replies in Http1Server.cc), after it has written its own fields (Via,
X-Forwarded-For, Date, X-Cache ...):

* each field is judged by the first qualifying set of access lines: the lines
  naming the field; else, for a field Squid does not know by name, the
  ``Other`` lines; else the ``All`` lines.  The set is checked like any access
  list, so when no line matches, the answer is the opposite of the last line's
  (Squid's fastCheck, although squid.conf promises "left as is").  Allowed:
  the field stays.  Denied: it is replaced by that name's ``*_header_replace``
  value, or removed;
* then each ``*_header_add`` line whose ACLs all match appends its field; a
  quoted value is a logformat (``"%>a"``), an empty result is sent as ``-``.

Here they rewrite a head :mod:`squidpy.http.message` has already written.
The fields that frame the body and say what happens to the connection
(Content-Length, Transfer-Encoding, Connection, Upgrade) were decided first
(:func:`~squidpy.http.message.framing_of`) and are never removed, replaced or
added by a rule: that would let a configuration line desynchronise the
framing between squidpy and the next hop (docs/security.md).  Pure: no I/O;
a rule whose ACL needs a lookup does not match, as a fast check in Squid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from squidpy.acl.access import AccessList, AccessRule, AclTable, matches
from squidpy.acl.checklist import Checklist, Pending
from squidpy.log.logformat import LogFormat, compile_format, text_bytes

if TYPE_CHECKING:
    from squidpy.log.entry import LogEntry

Warn = Callable[[str], None]     # where a configuration warning goes

# The fields Squid 5.7 knows by name (src/http/RegisteredHeadersHash.gperf): ``Other``
# rules apply to every field not in this list.
SQUID_HEADERS = frozenset(name.lower().encode("ascii") for name in """
    Accept Accept-Charset Accept-Encoding Accept-Language Accept-Ranges Age Allow Alternate-Protocol
    Authentication-Info Authorization Cache-Control CDN-Loop Connection Content-Base Content-Disposition
    Content-Encoding Content-Language Content-Length Content-Location Content-MD5 Content-Range Content-Type
    Cookie Cookie2 Date ETag Expect Expires Forwarded From Host HTTP2-Settings If-Match If-Modified-Since
    If-None-Match If-Range If-Unmodified-Since Keep-Alive Key Last-Modified Link Location Max-Forwards
    Mime-Version Negotiate Origin Pragma Proxy-Authenticate Proxy-Authentication-Info Proxy-Authorization
    Proxy-Connection Proxy-support Public Range Referer Request-Range Retry-After Server Set-Cookie Set-Cookie2
    TE Title Trailer Transfer-Encoding Translate Unless-Modified-Since Upgrade User-Agent Vary Via Warning
    WWW-Authenticate X-Cache X-Cache-Lookup X-Forwarded-For X-Request-URI X-Squid-Error X-Accelerator-Vary
    X-Next-Services Surrogate-Capability Surrogate-Control Front-End-Https FTP-Command FTP-Arguments FTP-Pre
    FTP-Status FTP-Reason""".split())

# Written by squidpy from its framing and persistence decisions; no rule touches them.
UNTOUCHABLE = frozenset({b"content-length", b"transfer-encoding", b"connection", b"upgrade"})

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def field_name(name: str) -> bytes:
    """A header name from the configuration; raises ValueError unless it is an HTTP token."""
    raw = name.encode("latin-1", "replace")
    if not raw or not _TOKEN.issuperset(raw):
        raise ValueError(f"'{name}' is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)")
    return raw


def field_value(text: str) -> bytes:
    """A header value from the configuration (latin-1, else UTF-8); no line breaks."""
    if any(c in text for c in "\r\n\0"):
        raise ValueError("a header value cannot hold a line break or a NUL")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


class Mangler:
    """The rules for one header name (or ``Other``, or ``All``)."""

    __slots__ = ("access", "replacement")

    def __init__(self) -> None:
        self.access: AccessList | None = None
        self.replacement: bytes | None = None


class HeaderAdd:
    """One ``*_header_add`` line."""

    __slots__ = ("name", "value", "format", "rule", "where")

    def __init__(self, name: bytes, value: bytes | None, fmt: LogFormat | None, rule: AccessRule | None, where: str):
        self.name = name
        self.value = value          # a literal value, or None when ``format`` makes it
        self.format = fmt           # a compiled logformat (a quoted value)
        self.rule = rule
        self.where = where


class HeaderRules:
    """Every header rule for one direction (``request`` or ``reply``)."""

    __slots__ = ("direction", "known", "custom", "other", "all", "adds", "active")

    def __init__(self, direction: str = "request") -> None:
        self.direction = direction
        self.known: dict[bytes, Mangler] = {}     # fields Squid knows, by lower-case name
        self.custom: dict[bytes, Mangler] = {}    # any other name, compared without case
        self.other = Mangler()                    # "Other": fields Squid does not know
        self.all = Mangler()                      # "All": every field
        self.adds: list[HeaderAdd] = []
        self.active = False                       # anything configured (else: not even looked at)

    # ------------------------------------------------------------ configuration
    def track(self, name: str) -> Mangler:
        """The rules a configuration line naming ``name`` adds to (Squid's track():
        ``All`` and ``Other`` are written exactly so; other names in any case)."""
        if name == "All":
            return self.all
        key = field_name(name).lower()
        if key in SQUID_HEADERS:
            return self.known.setdefault(key, Mangler())
        if name == "Other":
            return self.other
        return self.custom.setdefault(key, Mangler())

    def add_access(self, args: list[str], acls: AclTable, where: str, text: str, warn: Warn | None = None) -> None:
        """``*_header_access NAME allow|deny [!]ACL ...``."""
        if not args:
            raise ValueError("missing header name")
        name = args[0]
        mangler = self.track(name)
        if mangler.access is None:
            mangler.access = AccessList(f"{self.direction}_header_access {name}", empty_allows=True)
        mangler.access.add_rule(args[1:], acls, where, text, allow_reply=self.direction == "reply", warn=warn)
        self._untouchable(name, warn)
        self.active = True

    def set_replacement(self, name: str, value: str, warn: Warn | None = None) -> None:
        """``*_header_replace NAME VALUE``: used when that name's access lines deny a field."""
        self.track(name).replacement = field_value(value)
        self._untouchable(name, warn)

    def add_field(self, name: str, value: str, quoted: bool, filter_args: list[str], acls: AclTable,
                  where: str, text: str, warn: Warn | None = None) -> None:
        """``*_header_add NAME VALUE [ACL ...]``; a quoted VALUE holds logformat codes."""
        raw_name = field_name(name)
        if raw_name.lower() in UNTOUCHABLE:
            if warn is not None:
                warn(f"{name} is written by squidpy from how the message is framed and kept; "
                     f"this line is ignored")
            return
        field_value(value)
        fmt = compile_format(value) if quoted else None
        rule = None
        if filter_args:
            holder = AccessList(f"{self.direction}_header_add")
            rule = holder.add_rule(["allow", *filter_args], acls, where, text,
                                   allow_reply=self.direction == "reply", warn=warn)
        self.adds.append(HeaderAdd(raw_name, None if quoted else field_value(value), fmt, rule, where))
        self.active = True

    @staticmethod
    def _untouchable(name: str, warn: Warn | None) -> None:
        if warn is not None and name.lower().encode("latin-1", "replace") in UNTOUCHABLE:
            warn(f"{name} is written by squidpy from how the message is framed and kept; "
                 "header rules never change it")

    # ------------------------------------------------------------ applying
    def find(self, name: bytes) -> Mangler | None:
        """The rules that judge a field called ``name`` (lower case), as Squid's find():
        its own lines, else Other's (for names Squid does not know), else All's.  A name
        Squid does not know with only a replacement configured is judged by nothing."""
        if name in SQUID_HEADERS:
            mangler = self.known.get(name)
            if mangler is not None and mangler.access is not None:
                return mangler
        else:
            mangler = self.custom.get(name)
            if mangler is not None:
                return mangler
            if self.other.access is not None:
                return self.other
        return self.all if self.all.access is not None else None

    def apply(self, head: bytes, checklist: Checklist, entry: LogEntry) -> bytes:
        """``head`` (a request or status line, fields, the blank line) with the rules
        applied.  ``checklist`` answers the ACLs; ``entry`` (the LogEntry) fills the
        % codes of added values."""
        lines = head.split(b"\r\n")
        out = [lines[0]]
        allowed: dict[int, bool] = {}
        for line in lines[1:-2]:
            name, _, _ = line.partition(b":")
            key = name.lower()
            if key in UNTOUCHABLE:
                out.append(line)
                continue
            mangler = self.find(key)
            if mangler is None or mangler.access is None:
                out.append(line)
                continue
            verdict = allowed.get(id(mangler))
            if verdict is None:
                try:
                    verdict = mangler.access.check(checklist).allowed
                except Pending:
                    verdict = False         # a fast check that cannot decide: not allowed, as in Squid
                allowed[id(mangler)] = verdict
            if verdict:
                out.append(line)
            elif mangler.replacement is not None:
                out.append(name + b": " + mangler.replacement)
        for add in self.adds:
            try:
                if not matches(add.rule, checklist):
                    continue
            except Pending:
                continue
            value = add.value if add.format is None else text_bytes(add.format.format(entry))
            out.append(add.name + b": " + (value or b"-"))
        out.append(b"")
        out.append(b"")
        return b"\r\n".join(out)

