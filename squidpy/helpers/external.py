"""``external_acl_type``: its options, its request format and its result cache,
as Squid 5.7 reads them (src/external_acl.cc).

``external_acl_type NAME [ttl=N negative_ttl=N grace=N cache=N children-max=N
children-startup=N children-idle=N concurrency=N queue-size=N protocol=2.5
ipv4 ipv6] FORMAT... /path/to/helper [args]``.  FORMAT is one or more %
codes: Squid's old names (``%LOGIN %SRC %DST %URI %METHOD %PORT %PATH %PROTO
%MYADDR %MYPORT %EXT_USER %EXT_TAG %ACL %DATA %>{Header} %<{Header}``) and
logformat codes (``%ul %un %>a %>p %la %lp %ru %>rd %>rp %>rP %>rm %>rs
%>ha{H} %>h{H} %<h{H} %note{K} %ue %et``).  Each value is URL-escaped
(``protocol=2.5``: shell-quoted), missing values are ``-``, and the ACL's own
arguments follow (``%DATA`` places them elsewhere).  Results are kept for
``ttl`` (``OK``) or ``negative_ttl`` (``ERR``); within the last ``grace``
percent of an entry's life the cached answer is used while a fresh one is
fetched.  Pure: the clock is a parameter.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from squidpy.acl.checklist import Checklist, authenticated_user
from squidpy.helpers.protocol import BH, ERR, OK, ChildConfig, escape

# old name -> logformat code
_LEGACY = {
    "LOGIN": "ul", "EXT_USER": "ue", "IDENT": "ui", "SRC": ">a", "SRCPORT": ">p", "URI": "ru",
    "DST": ">rd", "PROTO": ">rs", "PORT": ">rP", "PATH": ">rp", "METHOD": ">rm", "MYADDR": "la",
    "MYPORT": "lp", "EXT_TAG": "et", "ACL": "ACL", "DATA": "DATA", "EXT_LOG": "ea",
}
_CODES = frozenset({"ul", "un", "ue", ">a", ">p", "la", "lp", "ru", ">ru", ">rd", ">rp", ">rP", ">rm", ">rs",
                    ">ha", ">h", "<h", "note", "et", "ACL", "DATA", "ea"})
_TOKEN = re.compile(r"^%(?P<code>[<>]?[A-Za-z_]+)(?:\{(?P<arg>[^}]*)\})?$")
_OLD_HEADER = re.compile(r"^%(?P<dir>[<>])\{(?P<arg>[^}]*)\}$")


@dataclass(frozen=True)
class FormatToken:
    code: str
    arg: str | None = None


@dataclass
class ExternalAclType:
    name: str
    tokens: list[FormatToken]
    program: list[str]
    ttl: int = 3600
    negative_ttl: int = 3600
    grace: int = 1
    cache_size: int = 256 * 1024
    children: ChildConfig = field(default_factory=lambda: ChildConfig.parse(["5"]))
    shell_quote: bool = False          # protocol=2.5
    where: str = ""

    @property
    def require_auth(self) -> bool:
        """%LOGIN (%ul) makes the request authenticate first, and makes this an
        authentication ACL (a denial by it challenges)."""
        return any(t.code == "ul" for t in self.tokens)

    def quote(self, value: str) -> str:
        if self.shell_quote:
            return shell_quote(value)
        return escape(value)

    def request_line(self, ch: Checklist, acl_name: str, acl_args: list[str]) -> str:
        """The line sent to the helper for this request (may raise Pending for
        credentials not yet checked, or AuthRequired when there are none)."""
        data = " ".join(self.quote(a) for a in acl_args)
        words = []
        for token in self.tokens:
            if token.code == "DATA":
                if data:
                    words.append(data)
                continue
            if token.code == "%":
                words.append("%")
                continue
            if token.code == "ACL":
                words.append(self.quote(acl_name))
                continue
            value = _value(token, ch)
            words.append(self.quote(value) if value else "-")
        return " ".join(words)


class NoLogin(Exception):
    """%ul inside a bumped connection whose CONNECT was not authenticated: Squid asks no
    helper and the external ACL does not match."""


def shell_quote(value: str) -> str:
    """Squid's strwordquote (protocol=2.5): quotes around values with spaces,
    backslash before quotes and backslashes, \\n and \\r written out."""
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{out}"' if " " in value else out


def _value(token: FormatToken, ch: Checklist) -> str:
    code = token.code
    if code == "ul":
        user = authenticated_user(ch)
        if user is None:            # a bumped connection whose CONNECT was not authenticated
            raise NoLogin()
        return user
    if code == "un":
        return ch.user or ch.ext_user or ""
    if code == "ue":
        return ch.ext_user or ""
    if code == ">a":
        return ch.src
    if code == ">p":
        return str(ch.src_port)
    if code == "la":
        return ch.local_ip
    if code == "lp":
        return str(ch.local_port)
    if code in ("ru", ">ru"):
        return ch.url
    if code == ">rd":
        return ch.host
    if code == ">rp":
        return ch.path
    if code == ">rP":
        return str(ch.port)
    if code == ">rm":
        return ch.method
    if code == ">rs":
        return ch.scheme.upper()
    if code in (">ha", ">h"):
        return _header(ch.request_header, token.arg)
    if code == "<h":
        return _header(ch.reply_header, token.arg) if ch.reply_headers is not None else ""
    if code == "note":
        return ",".join(v for k, v in ch.notes if k == token.arg)
    if code == "et":
        return ch.tag or ""
    if code == "ea":
        return ",".join(v for k, v in ch.notes if k == "log")
    return ""


def _header(get: Callable[[bytes], str | None], arg: str | None) -> str:
    """``Name`` the whole header; ``Name:member`` (or ``Name:;member``) one list member."""
    if not arg:
        return ""
    name, colon, member = arg.partition(":")
    value = get(name.encode("latin-1", "replace"))
    if value is None:
        return ""
    if not colon:
        return value
    separator = ","
    if member and member[0] in ",;|" and len(member) > 1:
        separator, member = member[0], member[1:]
    for item in value.split(separator):
        key, eq, val = item.strip().partition("=")
        if key == member:
            return val if eq else key
    return ""


def parse_token(word: str, warn: Callable[[str], None]) -> FormatToken:
    if word == "%%":                    # a percent sign, as in Squid's formats
        return FormatToken("%")
    m = _OLD_HEADER.match(word)
    if m:
        new = ("%>ha{" if m.group("dir") == ">" else "%<h{") + m.group("arg") + "}"
        warn(f"external_acl_type format {word} is deprecated. Use {new}")
        return FormatToken(">ha" if m.group("dir") == ">" else "<h", m.group("arg"))
    m = _TOKEN.match(word)
    if not m:
        raise ValueError(f"unknown format code {word}")
    code, arg = m.group("code"), m.group("arg")
    code = _LEGACY.get(code, code)
    if code not in _CODES:
        raise ValueError(f"unsupported format code {word}")
    if code in (">ha", ">h", "<h", "note") and not arg:
        raise ValueError(f"{word} needs {{name}}")
    return FormatToken(code, arg)


def parse_external_acl_type(args: list[str], where: str, warn: Callable[[str], None]) -> ExternalAclType:
    if len(args) < 2:
        raise ValueError("expected: external_acl_type NAME [options] FORMAT... /path/to/helper [args]")
    name = args[0]
    ttl, negative_ttl, grace, cache = 3600, None, 1, 256 * 1024
    n_max, startup, idle, concurrency, queue_size = 5, 0, 1, 0, None
    shell = False
    i = 1
    while i < len(args) and not args[i].startswith("%"):
        word = args[i]
        key, eq, value = word.partition("=")
        if word in ("ipv4", "ipv6"):
            pass                    # the helper's pipes are local: nothing to choose
        elif word == "protocol=2.5":
            shell = True
        elif word in ("protocol=3.0", "quote=url"):
            warn(f"external_acl_type option {word} is deprecated. Remove this from your config.")
            shell = False
        elif word == "quote=shell":
            warn("external_acl_type option quote=shell is deprecated. Use protocol=2.5 if still needed.")
            shell = True
        elif eq and key in ("ttl", "negative_ttl", "grace", "cache", "children", "children-max",
                            "children-startup", "children-idle", "concurrency", "queue-size"):
            number = _atoi(value)
            if key == "ttl":
                ttl = number
            elif key == "negative_ttl":
                negative_ttl = number
            elif key == "grace":
                grace = number
            elif key == "cache":
                cache = number
            elif key in ("children", "children-max"):
                if key == "children":
                    warn("external_acl_type option children=N has been deprecated in favor of "
                         "children-max=N and children-startup=N")
                n_max = number
            elif key == "children-startup":
                startup = number
            elif key == "children-idle":
                idle = number
            elif key == "concurrency":
                concurrency = number
            elif key == "queue-size":
                queue_size = number
        else:
            break
        i += 1
    tokens = []
    while i < len(args) and args[i].startswith("%"):
        tokens.append(parse_token(args[i], warn))
        i += 1
    if not tokens:
        raise ValueError(f"external_acl_type {name}: at least one format code is needed")
    if not any(t.code == "DATA" for t in tokens):
        tokens.append(FormatToken("DATA"))
    if i >= len(args):
        raise ValueError(f"external_acl_type {name}: no helper program")
    if n_max < 1:
        raise ValueError("the maximum number of processes cannot be less than 1")
    children = ChildConfig(n_max, min(startup, n_max), max(1, min(idle, n_max)), concurrency,
                           2 * n_max if queue_size is None else queue_size)
    return ExternalAclType(name, tokens, [str(a) for a in args[i:]], ttl,
                           ttl if negative_ttl is None else negative_ttl, grace, cache, children, shell, where)


def _atoi(text: str) -> int:
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


# ---------------------------------------------------------------- the result cache


@dataclass
class CachedResult:
    result: str
    notes: list[tuple[str, str]]
    date: float


FRESH = "fresh"
GRACE = "grace"        # use it, and refresh it in the background
MISSING = "missing"


class ExternalCache:
    """Answers by request line, bounded by ``cache=`` entries (least recently used go)."""

    def __init__(self, acl_type: ExternalAclType):
        self.type = acl_type
        self.entries: "OrderedDict[str, CachedResult]" = OrderedDict()

    def lookup(self, line: str, now: float) -> tuple[str, CachedResult | None]:
        entry = self.entries.get(line)
        if entry is None:
            return MISSING, None
        ttl = self.type.ttl if entry.result == OK else self.type.negative_ttl
        age = now - entry.date
        if age >= ttl:
            del self.entries[line]
            return MISSING, None
        self.entries.move_to_end(line)
        if self.type.grace and entry.result == OK and age >= ttl * (100 - self.type.grace) / 100:
            return GRACE, entry
        return FRESH, entry

    def store(self, line: str, result: str, notes: list[tuple[str, str]], now: float) -> None:
        """Remember OK and ERR (a broken or timed-out helper's answer is not kept)."""
        if result not in (OK, ERR) or self.type.cache_size <= 0:
            return
        ttl = self.type.ttl if result == OK else self.type.negative_ttl
        if ttl <= 0:
            return
        self.entries[line] = CachedResult(result, list(notes), now)
        self.entries.move_to_end(line)
        while len(self.entries) > self.type.cache_size:
            self.entries.popitem(last=False)


def apply_reply(ch: Checklist, result: str, notes: list[tuple[str, str]]) -> bool:
    """What an answer gives the transaction (user=, tag=, message=, log=, other
    keys as annotations) and whether the ACL matches."""
    for key, value in notes:
        if key == "user":
            ch.ext_user = value
        elif key == "tag":
            if ch.tag is None:
                ch.tag = value
        elif key == "password":
            continue                       # never kept: it would reach logs
        else:
            ch.notes.append((key, value))
    return result == OK


__all__ = ["BH", "ExternalAclType", "ExternalCache", "apply_reply", "parse_external_acl_type"]
