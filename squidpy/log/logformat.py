"""Squid's ``logformat`` language: compile a format once, format entries fast.

A format is text with ``%`` codes, each written as Squid writes them::

    % [encoding] [-] [[0]width][.max] [{arg}] code [{arg}]

encoding is one of ``"`` ``[`` ``#`` ``'`` ``/``; ``-`` aligns left; a width
starting with ``0`` pads with zeros; ``.max`` truncates strings (and gives the
number of decimals of a duration).  A value that is missing prints ``-``.
Values a client controls are escaped even without an encoding, so no request
can forge a log line.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from squidpy.log.entry import LogEntry

# ---------------------------------------------------------------- encodings

_SAFE_URL = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    b"-_.!*'(),;/?:@&=+$%#"
)
_URL_ALL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _pct(text: str, keep: frozenset) -> str:
    data = text.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in data)


def _needs(keep: frozenset):
    """A regex finding the first character outside ``keep`` (fast path: none)."""
    allowed = "".join(re.escape(chr(b)) for b in sorted(keep))
    return re.compile(f"[^{allowed}]").search


_DEFAULT_UNSAFE = _needs(_SAFE_URL)
_URL_UNSAFE = _needs(_URL_ALL)


def encode_default(text: str) -> str:
    """No encoding asked: RFC 1738 unsafe and control characters %-encoded."""
    return _pct(text, _SAFE_URL) if _DEFAULT_UNSAFE(text) else text


def encode_url(text: str) -> str:
    """``#``: URL encoding of everything but unreserved characters."""
    return _pct(text, _URL_ALL) if _URL_UNSAFE(text) else text


def encode_quoted(text: str) -> str:
    """``"``: quote and backslash escaped, CR LF TAB as \\r \\n \\t, other controls \\xHH."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 32 or o == 127:
            out.append(f"\\x{o:02X}")
        else:
            out.append(ch)
    return "".join(out)


_SQUID_KEEP = frozenset(b for b in range(32, 127) if b not in b"%[]\\")
_SQUID_UNSAFE = _needs(_SQUID_KEEP)


def encode_squid(text: str) -> str:
    """``[``: %, brackets, backslash and bytes outside 32-126 %-encoded; space kept."""
    return _pct(text, _SQUID_KEEP) if _SQUID_UNSAFE(text) else text


def encode_shell(text: str) -> str:
    """``/``: quote and backslash escaped, CR and LF as \\r \\n, other controls \\xHH."""
    return encode_quoted(text).replace("\\t", "\t")


def encode_raw(text: str) -> str:
    """``'``: as is, except CR and LF, which would split the log line."""
    if "\r" in text or "\n" in text:
        return text.replace("\r", "%0D").replace("\n", "%0A")
    return text


ENCODINGS = {
    None: encode_default, '"': encode_quoted, "[": encode_squid,
    "#": encode_url, "/": encode_shell, "'": encode_raw,
}

# ---------------------------------------------------------------- codes

# kinds: "str" (trusted text), "text" (client-controlled text: encoded),
# "int", "ms" (a duration in seconds shown in milliseconds)


def _headers_text(headers, name: str | None) -> str | None:
    if name is None:
        if not headers:
            return None
        return "\r\n".join(f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in headers)
    key = name.lower().encode("latin-1")
    values = [v.decode("latin-1") for k, v in headers if k.lower() == key]
    return ", ".join(values) if values else None


def _usec(t: float) -> int:
    """Microseconds, as Squid's timevals hold them (so .001 s prints as 001, not 000)."""
    return int(round(t * 1e6))


def _local_time(e: LogEntry, arg):
    return time.strftime(arg or "%d/%b/%Y:%H:%M:%S %z", time.localtime(e.end))


def _gmt_time(e: LogEntry, arg):
    return time.strftime(arg or "%d/%b/%Y:%H:%M:%S %z", time.gmtime(e.end))


def _user(e: LogEntry, arg):
    return e.user


@dataclass(frozen=True)
class Code:
    kind: str
    get: Callable[[LogEntry, str | None], Any]


CODES: dict[str, Code] = {
    # time
    "ts": Code("int", lambda e, a: _usec(e.end) // 1_000_000),
    "tu": Code("int", lambda e, a: _usec(e.end) // 1000 % 1000),
    "tl": Code("str", _local_time),
    "tg": Code("str", _gmt_time),
    "tr": Code("ms", lambda e, a: (_usec(e.end) - _usec(e.start)) / 1e6),
    "dt": Code("ms", lambda e, a: e.dns_time),
    "<tt": Code("ms", lambda e, a: e.upstream_time),
    "tt": Code("ms", lambda e, a: (_usec(e.end) - _usec(e.start)) / 1e6),
    # client connection
    ">a": Code("str", lambda e, a: e.client_ip),
    ">A": Code("str", lambda e, a: e.client_ip),
    ">p": Code("int", lambda e, a: e.client_port),
    "la": Code("str", lambda e, a: e.local_ip),
    "lp": Code("int", lambda e, a: e.local_port),
    ">la": Code("str", lambda e, a: e.local_ip),
    ">lp": Code("int", lambda e, a: e.local_port),
    # server connection
    "<a": Code("str", lambda e, a: e.server_ip),
    "<A": Code("str", lambda e, a: e.server_ip),
    "<p": Code("int", lambda e, a: e.server_port),
    "<la": Code("str", lambda e, a: e.server_local_ip),
    "<lp": Code("int", lambda e, a: e.server_local_port),
    # squid's view
    "Ss": Code("str", lambda e, a: e.result),
    "Sh": Code("str", lambda e, a: e.hierarchy),
    "err_code": Code("str", lambda e, a: e.error),
    "err_detail": Code("text", lambda e, a: e.error_detail),
    "sn": Code("int", lambda e, a: e.sequence),
    # status and sizes
    ">Hs": Code("int", lambda e, a: e.status),
    "<Hs": Code("int", lambda e, a: e.upstream_status),
    "<st": Code("int", lambda e, a: e.bytes_sent),
    ">st": Code("int", lambda e, a: e.bytes_received),
    "st": Code("int", lambda e, a: e.bytes_sent + e.bytes_received),
    "<sh": Code("int", lambda e, a: e.reply_header_size),
    ">sh": Code("int", lambda e, a: e.request_header_size),
    # request
    "rm": Code("text", lambda e, a: e.method),
    "ru": Code("text", lambda e, a: e.url),
    ">ru": Code("text", lambda e, a: e.url),
    "rp": Code("text", lambda e, a: e.path),
    "rv": Code("str", lambda e, a: e.version),
    # users (no authentication yet: always '-')
    "un": Code("text", _user),
    "ul": Code("text", _user),
    "ue": Code("text", lambda e, a: None),
    "ui": Code("text", lambda e, a: None),
    "et": Code("text", lambda e, a: None),
    "ea": Code("text", lambda e, a: None),
    # headers
    ">h": Code("text", lambda e, a: _headers_text(e.request_headers, a)),
    "<h": Code("text", lambda e, a: _headers_text(e.reply_headers, a)),
    "mt": Code("text", lambda e, a: e.mime_type),
}

_CODE_NAMES = sorted(CODES, key=len, reverse=True)


@dataclass(frozen=True)
class Field:
    code: Code
    name: str
    arg: str | None
    encoding: str | None
    left: bool
    zero: bool
    width: int
    max: int | None

    def render(self, entry: LogEntry) -> str:
        """This field for one entry (the compiled format inlines the same steps)."""
        return _finish(self, _text(self, self.code.get(entry, self.arg)))


def _text(field: Field, value) -> str:
    kind = field.code.kind
    if value is None or value == "":
        return "-"
    if kind == "ms":
        return str(int(round(value * 1e6)) // 1000) if field.max is None else f"{value * 1000:.{field.max}f}"
    if kind == "int":
        return str(value)
    text = str(value)
    if kind == "text" or field.encoding is not None:
        text = ENCODINGS[field.encoding](text)
    return text if field.max is None else text[:field.max]


def _finish(field: Field, text: str) -> str:
    if field.width and len(text) < field.width:
        if field.left:
            return text.ljust(field.width)
        if field.zero and text != "-":
            return text.rjust(field.width, "0")
        return text.rjust(field.width)
    return text


class LogFormat:
    """A compiled format: ``format(entry)`` returns one line (no newline).

    The parts are turned into one generated function, so a line costs a few
    attribute reads and one join instead of a dispatch per field.
    """

    def __init__(self, spec: str, parts: list):
        self.spec = spec
        self.parts = parts
        self.format = _generate(parts)


def _generate(parts: list):
    namespace: dict[str, Any] = {"_text": _text, "_finish": _finish, "encode_default": encode_default}
    pieces = []
    for i, part in enumerate(parts):
        if part.__class__ is str:
            namespace[f"lit{i}"] = part
            pieces.append(f"lit{i}")
            continue
        namespace[f"get{i}"] = part.code.get
        namespace[f"arg{i}"] = part.arg
        namespace[f"field{i}"] = part
        value = f"get{i}(e, arg{i})"
        kind = part.code.kind
        if kind == "int" and part.max is None:
            # the common case, inlined: '-' for a missing number
            text = f'("-" if (v{i} := {value}) is None or v{i} == "" else str(v{i}))'
        elif kind == "str" and part.encoding is None and part.max is None:
            text = f'({value} or "-")'
        elif kind == "text" and part.encoding is None and part.max is None:
            text = f'(encode_default(v{i}) if (v{i} := {value}) else "-")'
        elif kind == "ms" and part.max is None:
            text = f'("-" if (v{i} := {value}) is None else str(int(round(v{i} * 1e6)) // 1000))'
        else:
            text = f"_text(field{i}, {value})"
        if part.width:
            text = f"_finish(field{i}, {text})"
        pieces.append(text)
    source = "def format(e):\n    return ''.join((" + ", ".join(pieces) + ",))\n"
    exec(compile(source, "<logformat>", "exec"), namespace)
    return namespace["format"]


def compile_format(spec: str) -> LogFormat:
    """Parse a logformat specification; raises ValueError naming the bad code."""
    parts: list = []
    literal: list[str] = []
    i, n = 0, len(spec)
    while i < n:
        c = spec[i]
        if c == "\\" and i + 1 < n and spec[i + 1] in "nt":
            literal.append("\n" if spec[i + 1] == "n" else "\t")
            i += 2
            continue
        if c != "%":
            literal.append(c)
            i += 1
            continue
        if i + 1 < n and spec[i + 1] == "%":
            literal.append("%")
            i += 2
            continue
        field, i = _parse_field(spec, i + 1)
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(field)
    if literal:
        parts.append("".join(literal))
    return LogFormat(spec, parts)


def _parse_field(spec: str, i: int) -> tuple[Field, int]:
    start = i - 1
    n = len(spec)
    encoding = None
    if i < n and spec[i] in "\"['#/":
        encoding = spec[i]
        i += 1
    left = False
    if i < n and spec[i] == "-":
        left = True
        i += 1
    zero = i < n and spec[i] == "0"
    j = i
    while j < n and spec[j].isdigit():
        j += 1
    width = int(spec[i:j]) if j > i else 0
    i = j
    max_width = None
    if i < n and spec[i] == ".":
        j = i + 1
        while j < n and spec[j].isdigit():
            j += 1
        if j == i + 1:
            raise ValueError(f"'{spec[start:j]}': a '.' must be followed by a maximum width")
        max_width = int(spec[i + 1:j])
        i = j
    arg = None
    if i < n and spec[i] == "{":
        end = spec.find("}", i)
        if end < 0:
            raise ValueError(f"'{spec[start:]}': missing '}}'")
        arg, i = spec[i + 1:end], end + 1
    for name in _CODE_NAMES:
        if spec.startswith(name, i):
            i += len(name)
            break
    else:
        raise ValueError(f"unknown format code at '{spec[start:start + 12]}'")
    if arg is None and i < n and spec[i] == "{":
        end = spec.find("}", i)
        if end < 0:
            raise ValueError(f"'{spec[start:]}': missing '}}'")
        arg, i = spec[i + 1:end], end + 1
    return Field(CODES[name], name, arg, encoding, left, zero, width, max_width), i


PREDEFINED_SPECS = {
    "squid": "%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt",
    "common": '%>a %[ui %[un [%tl] "%rm %ru HTTP/%rv" %>Hs %<st %Ss:%Sh',
    "combined": '%>a %[ui %[un [%tl] "%rm %ru HTTP/%rv" %>Hs %<st "%{Referer}>h" "%{User-Agent}>h" %Ss:%Sh',
    "referrer": "%ts.%03tu %>a %{Referer}>h %ru",
    "useragent": '%>a [%tl] "%{User-Agent}>h"',
}

PREDEFINED_FORMATS = {name: compile_format(spec) for name, spec in PREDEFINED_SPECS.items()}
