"""Squid's ``logformat`` language: compile a format once, format entries fast.

A format is text with ``%`` codes, each written as Squid writes them::

    % [encoding] [-] [[0]width] [.precision] [{arg}] code [{arg}]

* encoding: ``"`` quoted string, ``[`` Squid's MIME-blob encoding, ``#`` URL
  encoding, ``/`` shell-like, ``'`` raw.  Without one, a code inside a quoted
  part of the format (``"%rm %ru"``) is quoted and one inside ``[...]`` gets
  the ``[`` encoding, as in Squid; elsewhere values a client controls
  (URLs, methods, headers, user names) get Squid's "pass-through URL
  encoding" (unsafe and control characters %-encoded, ``%`` kept).
* ``-`` aligns left; a width starting with ``0`` zero-pads numbers.
* ``.precision`` truncates text; on durations it is the number of decimals
  of the milliseconds; on ``tu`` and ``tS`` the number of sub-second digits.
* A missing value prints a bare ``-`` (no padding), as Squid does.

Whatever the encoding, CR, LF and every other control character are
escaped, so no request can forge or split a log line (a squidpy guarantee:
Squid leaves some of them to its URL and header parsers).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from squidpy.ip import ip_text
from squidpy.http.message import Fields
from squidpy.log.entry import LogEntry

if TYPE_CHECKING:
    from cryptography import x509

# a % code's value for one entry and the code's parsed {argument}
Getter = Callable[[LogEntry, Any], Any]
# a header code's argument: (lower-case name, the list separator, the member or None)
HeaderArg = tuple[bytes, str, "str | None"]

# ---------------------------------------------------------------- encodings

_CONTROLS = frozenset(range(0, 32)) | {127}
# RFC 1738 "unsafe" characters, as Squid's rfc1738 escaping lists them
_RFC1738_UNSAFE = frozenset(b' <>"#{}|\\^~[]`\'')
_HIGH = frozenset(range(128, 256))

_PASS_ESCAPE = _CONTROLS | _RFC1738_UNSAFE | _HIGH          # pass-through: '%' kept
_URL_ESCAPE = _PASS_ESCAPE | {ord("%")}                     # '#': '%' escaped too
_BLOB_ESCAPE = _CONTROLS | _HIGH | frozenset(b"%[]\\")      # '[': outside 32..126, % [ ] \
_RAW_ESCAPE = _CONTROLS


def _finder(escape: frozenset[int]) -> Callable[[str], re.Match[str] | None]:
    """A regex search for the first character that needs escaping (the fast path is 'none').
    When every character from 128 up is escaped, the class is written as the characters
    that are not: the same matches, but a class reaching U+10FFFF takes 3 ms to compile
    (at every start) and searches slower."""
    if 255 in escape:
        kept = "".join(re.escape(chr(b)) for b in range(128) if b not in escape)
        return re.compile(f"[^{kept}]").search
    chars = "".join(re.escape(chr(b)) for b in sorted(escape) if b < 128)
    return re.compile(f"[{chars}]").search


def text_bytes(text: str) -> bytes:
    """The bytes a logged value stands for: squidpy keeps request bytes as latin-1 text;
    anything beyond (an admin's literal text) is UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _percent(text: str, escape: frozenset[int]) -> str:
    return "".join(f"%{b:02X}" if b in escape else chr(b) for b in text_bytes(text))


_NEEDS_PASS = _finder(_PASS_ESCAPE)
_NEEDS_URL = _finder(_URL_ESCAPE)
_NEEDS_BLOB = _finder(_BLOB_ESCAPE)
_NEEDS_RAW = _finder(_RAW_ESCAPE)
_NEEDS_QUOTE = re.compile(r'["\\\x00-\x1f\x7f]').search
_NEEDS_SHELL = re.compile(r'["\\ \x00-\x1f\x7f]').search
_BACKSLASHED = {'"': '\\"', "\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}


def encode_passthrough(text: str) -> str:
    """Squid's default for client-controlled values: RFC 1738 unsafe, control and
    non-ASCII characters %-encoded, ``%`` left as it is."""
    return _percent(text, _PASS_ESCAPE) if _NEEDS_PASS(text) else text


def encode_url(text: str) -> str:
    """``#``: URL encoding: like pass-through, and ``%`` itself encoded too."""
    return _percent(text, _URL_ESCAPE) if _NEEDS_URL(text) else text


def _backslash(text: str) -> str:
    out = []
    for ch in text:
        if ch in _BACKSLASHED:
            out.append(_BACKSLASHED[ch])
        elif ord(ch) < 32 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


def encode_quoted(text: str) -> str:
    """``"``: quote and backslash \\-escaped, CR LF TAB as \\r \\n \\t (other controls \\xHH)."""
    return _backslash(text) if _NEEDS_QUOTE(text) else text


def encode_blob(text: str) -> str:
    """``[``: %, brackets, backslash and bytes outside 32..126 %-encoded; SP kept."""
    return _percent(text, _BLOB_ESCAPE) if _NEEDS_BLOB(text) else text


def encode_shell(text: str) -> str:
    """``/``: like ``"``, and a value containing a space is put in double quotes."""
    if not _NEEDS_SHELL(text):
        return text
    escaped = _backslash(text)
    return f'"{escaped}"' if " " in text else escaped


def encode_raw(text: str) -> str:
    """``'``: as is, except control characters (%-encoded): a line stays one line."""
    return _percent(text, _RAW_ESCAPE) if _NEEDS_RAW(text) else text


ENCODINGS: dict[str | None, Callable[[str], str]] = {
    None: encode_passthrough, '"': encode_quoted, "[": encode_blob,
    "#": encode_url, "/": encode_shell, "'": encode_raw,
}

# ---------------------------------------------------------------- values


def _usec(t: float) -> int:
    """Microseconds, as Squid's timevals hold them (so .001 s prints as 001, not 000)."""
    return int(round(t * 1e6))


def _plain_ip(address: str | None) -> str | None:
    """IPv4-mapped IPv6 addresses are logged as IPv4, as Squid logs them."""
    return ip_text(address) if address and ":" in address else address


def _headers(headers: Fields | None, arg: HeaderArg | None) -> str | None:
    """``>h``/``<h``: all headers, one header (repeats joined by ", "), or a list member."""
    if not headers:
        return None
    if arg is None:
        return "".join(f"{k.decode('latin-1')}: {v.decode('latin-1')}\r\n" for k, v in headers)
    name, separator, member = arg
    values = [v.decode("latin-1") for k, v in headers if k.lower() == name]
    if not values:
        return None
    joined = ", ".join(values)
    if member is None:
        return joined
    # name[:[separator]member]: the value of the first "member=value" item
    for item in joined.split(separator):
        item = item.strip()
        if item.startswith(member) and item[len(member):len(member) + 1] == "=":
            return item[len(member) + 1:]
    return None


def _without_credentials(headers: Fields | None) -> Fields | None:
    """Request fields as logged: a Proxy-Authorization keeps its scheme, never the
    credentials (squidpy logs no password or token, whatever the format asks)."""
    if not headers or not any(k.lower() == b"proxy-authorization" for k, _ in headers):
        return headers
    return [(k, v.split(None, 1)[0] + b" [hidden]" if v.strip() else v) if k.lower() == b"proxy-authorization"
            else (k, v) for k, v in headers]


def _header_arg(arg: str | None) -> HeaderArg | None:
    """``Name``, ``Name:member`` or ``Name:;member`` (separator one of , ; :)."""
    if arg is None:
        return None
    name, colon, rest = arg.partition(":")
    if not name:
        raise ValueError("a header code needs a header name in {...}")
    key = name.strip().lower().encode("latin-1")
    if not colon:
        return key, ",", None
    separator = ","
    if rest[:1] in (",", ";", ":"):
        separator, rest = rest[0], rest[1:]
    return key, separator, rest


def _url_parts(url: str) -> tuple[str | None, str | None, int | None]:
    """(scheme, host, port) of a logged URL; CONNECT's host:port has no scheme."""
    scheme: str | None
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = None, url
    authority = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    if authority.startswith("["):
        host, _, port_text = authority[1:].partition("]")
        port_text = port_text[1:]
    else:
        host, _, port_text = authority.partition(":")
    port: int | None
    if port_text.isdigit():
        port = int(port_text)
    else:
        port = {"http": 80, "https": 443, "ftp": 21}.get(scheme or "")
    return scheme, host or None, port


def _forwarded(e: LogEntry) -> bool:
    return e.hierarchy != "HIER_NONE" and e.server_ip is not None


def _note(e: LogEntry, arg: tuple[str | None, str] | None) -> str | None:
    if arg is None or arg[0] is None:
        notes = [f"{k}: {v}" for k, v in e.notes]
        return (arg[1] if arg is not None else "\r\n").join(notes) if notes else None
    name, separator = arg
    values = [v for k, v in e.notes if k == name]
    return separator.join(values) if values else None


def _note_arg(arg: str | None) -> tuple[str | None, str] | None:
    if arg is None:
        return None
    name, colon, separator = arg.partition(":")
    return (name or None), (separator[:1] if colon and separator else ",")


def _time_arg(arg: str | None) -> str | None:
    return arg


@dataclass(frozen=True)
class Code:
    """One % code: how to read its value and what kind of value it is.

    kinds: "int"; "ms" (a duration in seconds, printed in milliseconds);
    "sec" (a time printed as seconds.fraction); "sub" (sub-second units of the
    log time); "str" (text squidpy made: written as is); "text" (text a
    client or an origin controls: pass-through encoded by default).
    """

    kind: str
    get: Getter
    parse_arg: Callable[[str | None], Any] = _time_arg
    expr: str | None = None     # the same value as Python source over ``e`` (and ``end_us``/``start_us``),
    #                             inlined by the compiled format: a log line is written per request


def _local_time(e: LogEntry, arg: str | None) -> str:
    return time.strftime(arg or "%d/%b/%Y:%H:%M:%S %z", time.localtime(e.end))


def _gmt_time(e: LogEntry, arg: str | None) -> str:
    # Squid's code prints GMT without a zone by default (its documentation says %z)
    return time.strftime(arg or "%d/%b/%Y:%H:%M:%S", time.gmtime(e.end))


def _client_url_part(index: int) -> Getter:
    return lambda e, a: None if e.url.startswith("error:") else _url_parts(e.url)[index]


def _server_url_part(index: int) -> Getter:
    return lambda e, a: _url_parts(e.url)[index] if _forwarded(e) else None


CODES: dict[str, Code] = {
    # time
    "ts": Code("int", lambda e, a: _usec(e.end) // 1_000_000, expr="end_us // 1_000_000"),
    "tu": Code("sub", lambda e, a: _usec(e.end) % 1_000_000, expr="end_us % 1_000_000"),
    "tl": Code("str", _local_time),
    "tg": Code("str", _gmt_time),
    "tS": Code("sec", lambda e, a: _usec(e.start)),
    "tr": Code("ms", lambda e, a: _usec(e.end) - _usec(e.start), expr="end_us - start_us"),
    "dt": Code("ms", lambda e, a: None if e.dns_time is None else _usec(e.dns_time)),
    "<pt": Code("ms", lambda e, a: None if e.upstream_time is None else _usec(e.upstream_time)),
    "<tt": Code("ms", lambda e, a: None if e.upstream_time is None else _usec(e.upstream_time)),
    # client connection
    ">a": Code("str", lambda e, a: _plain_ip(e.client_ip), expr="_plain_ip(e.client_ip)"),
    ">A": Code("str", lambda e, a: _plain_ip(e.client_ip)),    # no reverse DNS: the address, as Squid falls back to
    ">p": Code("int", lambda e, a: e.client_port),
    ">la": Code("str", lambda e, a: _plain_ip(e.local_ip)),
    ">lp": Code("int", lambda e, a: e.local_port),
    "la": Code("str", lambda e, a: _plain_ip(e.local_ip)),
    "lp": Code("int", lambda e, a: e.local_port),
    # server connection
    "<a": Code("str", lambda e, a: _plain_ip(e.server_ip), expr="_plain_ip(e.server_ip)"),
    "<A": Code("text", lambda e, a: _url_parts(e.url)[1] if _forwarded(e) else None),
    "<p": Code("int", lambda e, a: e.server_port),
    "<la": Code("str", lambda e, a: _plain_ip(e.server_local_ip)),
    "<lp": Code("int", lambda e, a: e.server_local_port),
    # what squidpy did
    "Ss": Code("str", lambda e, a: e.result, expr="e.result"),
    "Sh": Code("str", lambda e, a: e.hierarchy, expr="e.hierarchy"),
    "err_code": Code("str", lambda e, a: e.error),
    "err_detail": Code("text", lambda e, a: e.error_detail),
    "note": Code("text", _note, _note_arg),
    # users and external ACLs
    "un": Code("text", lambda e, a: e.user, expr="e.user_login or e.user_external or e.user_ssl or e.user_ident"),
    "ul": Code("text", lambda e, a: e.user_login),
    "ue": Code("text", lambda e, a: e.user_external),
    "ui": Code("text", lambda e, a: e.user_ident),
    "us": Code("text", lambda e, a: e.user_ssl),
    "et": Code("text", lambda e, a: e.tag),
    "ea": Code("text", lambda e, a: e.ext_log),
    # the request
    "rm": Code("text", lambda e, a: e.method, expr="e.method"),
    ">rm": Code("text", lambda e, a: e.method),
    "<rm": Code("text", lambda e, a: e.method if _forwarded(e) else None),
    "ru": Code("text", lambda e, a: e.url, expr="e.url"),
    ">ru": Code("text", lambda e, a: e.url),
    "<ru": Code("text", lambda e, a: e.url if _forwarded(e) else None),
    ">rs": Code("text", _client_url_part(0)),
    "<rs": Code("text", _server_url_part(0)),
    ">rd": Code("text", _client_url_part(1)),
    "<rd": Code("text", _server_url_part(1)),
    ">rP": Code("int", _client_url_part(2)),
    "<rP": Code("int", _server_url_part(2)),
    "rp": Code("text", lambda e, a: e.path),
    ">rp": Code("text", lambda e, a: e.path),
    "<rp": Code("text", lambda e, a: e.path if _forwarded(e) else None),
    "rv": Code("str", lambda e, a: e.version, expr="e.version"),
    ">rv": Code("str", lambda e, a: e.version),
    "<rv": Code("str", lambda e, a: "1.1" if _forwarded(e) else None),
    # headers: >ha is >h (squidpy adapts nothing)
    ">h": Code("text", lambda e, a: _headers(_without_credentials(e.request_headers), a), _header_arg),
    ">ha": Code("text", lambda e, a: _headers(_without_credentials(e.request_headers), a), _header_arg),
    "<h": Code("text", lambda e, a: _headers(e.reply_headers, a), _header_arg),
    # the reply
    ">Hs": Code("int", lambda e, a: e.status, expr="e.status"),
    "<Hs": Code("int", lambda e, a: e.upstream_status),
    "mt": Code("text", lambda e, a: e.mime_type, expr="e.mime_type"),
    # sizes
    "<st": Code("int", lambda e, a: e.bytes_sent, expr="e.reply_header_size + e.reply_body_size"),
    ">st": Code("int", lambda e, a: e.bytes_received),
    "st": Code("int", lambda e, a: e.bytes_sent + e.bytes_received),
    "<sh": Code("int", lambda e, a: e.reply_header_size),
    ">sh": Code("int", lambda e, a: e.request_header_size),
    # the per-log line number, filled by the writer
    "sn": Code("int", lambda e, a: None),
}


# ---------------------------------------------------------------- TLS (Squid's ssl:: and tls:: codes)

def _oneline(cert: x509.Certificate | None, part: str) -> str | None:
    if cert is None:
        return None
    from squidpy.tls.errors import x509_name_oneline
    return x509_name_oneline(cert.subject if part == "subject" else cert.issuer)


def _cert_pem(cert: x509.Certificate | None) -> str | None:
    if cert is None:
        return None
    from cryptography.hazmat.primitives.serialization import Encoding
    return cert.public_bytes(Encoding.PEM).decode("ascii")


def _cert_errors(e: LogEntry, separator: str | None) -> str | None:
    """Each problem let through, by name and depth, in the order found (Squid's form)."""
    if not e.cert_errors:
        return None
    return (separator or ":").join(f"{err.name}@depth={err.depth}" for err in e.cert_errors)


def _facts(side: str, field: str) -> Getter:
    return lambda e, a: getattr(getattr(e, side), field, None)


_TLS_CODES: dict[str, Code] = {
    "bump_mode": Code("str", lambda e, a: e.bump_mode),
    ">sni": Code("str", lambda e, a: e.sni),
    ">cert_subject": Code("str", lambda e, a: _oneline(e.client_cert, "subject")),
    ">cert_issuer": Code("str", lambda e, a: _oneline(e.client_cert, "issuer")),
    "<cert_subject": Code("str", lambda e, a: _oneline(e.server_cert, "subject")),
    "<cert_issuer": Code("str", lambda e, a: _oneline(e.server_cert, "issuer")),
    "<cert": Code("text", lambda e, a: _cert_pem(e.server_cert)),
    "<cert_errors": Code("str", _cert_errors),
    ">negotiated_version": Code("str", _facts("client_tls", "version")),
    "<negotiated_version": Code("str", _facts("server_tls", "version")),
    ">negotiated_cipher": Code("str", _facts("client_tls", "cipher")),
    "<negotiated_cipher": Code("str", _facts("server_tls", "cipher")),
    ">received_hello_version": Code("str", _facts("client_tls", "hello_version")),
    "<received_hello_version": Code("str", _facts("server_tls", "hello_version")),
    ">received_supported_version": Code("str", _facts("client_tls", "supported_version")),
    "<received_supported_version": Code("str", _facts("server_tls", "supported_version")),
}
for _name, _code in _TLS_CODES.items():
    CODES["ssl::" + _name] = CODES["tls::" + _name] = _code

# Squid's deprecated spellings, still accepted by Squid (with a warning)
ALIASES = {"Hs": ">Hs", "oa": "<la", ">v": "rv"}

# Squid codes squidpy knows but cannot fill: named in the error, not "unknown"
UNSUPPORTED = {
    ">eui": "squidpy does not see MAC addresses",
    ">qos": "squidpy does not set TOS marks", "<qos": "squidpy does not set TOS marks",
    ">nfmark": "squidpy does not set netfilter marks", "<nfmark": "squidpy does not set netfilter marks",
    ">handshake": "squidpy keeps no raw handshake", "credentials": "squidpy does not log credentials",
    "master_xaction": "not available", "<sH": "not available", "<sS": "not available",
    "<bs": "not available", "busy_time": "not available",
    "icap::": "squidpy has no ICAP client", "adapt::": "squidpy has no adaptation services",
    "ssl::": "not a TLS code Squid 5.7 has (docs/logs.md lists them)",
    "tls::": "not a TLS code Squid 5.7 has (docs/logs.md lists them)",
    "proxy_protocol::": "squidpy does not speak the PROXY protocol",
    "transport::": "not available",
    "tt": "Squid has no %tt: use %tr (response time), %<tt (time spent with the origin) "
          "or %<pt (origin response time)",
}

_NAMES = sorted([*CODES, *ALIASES, *UNSUPPORTED], key=len, reverse=True)

# ---------------------------------------------------------------- fields


@dataclass(frozen=True)
class Field:
    code: Code
    name: str
    arg: Any                    # the parsed {argument}
    encoding: str | None        # explicit, or from the quoted/bracketed context
    left: bool
    zero: bool
    width: int
    precision: int | None

    def render(self, entry: LogEntry, sn: int = 0) -> str:
        """This field for one entry (the compiled format inlines the same steps)."""
        value = sn if self.name == "sn" else self.code.get(entry, self.arg)
        return _render(self, value)


def _render(field: Field, value: Any) -> str:
    if value is None or value == "":
        return "-"                      # Squid: a bare dash, never padded
    kind = field.code.kind
    zero_width = field.width if field.zero else 0
    if kind == "int":
        text = f"{value:0{zero_width}d}"
    elif kind == "ms":
        text = _milliseconds(value, field.precision, zero_width)
    elif kind == "sec":
        digits = 3 if field.precision is None else field.precision
        text = _seconds(value, digits, zero_width)
    elif kind == "sub":
        digits = 3 if field.precision is None else min(field.precision, 6)
        text = f"{value // 10 ** (6 - digits):0{zero_width}d}"
    else:
        text = str(value)
        if kind == "text" or field.encoding is not None:
            text = ENCODINGS[field.encoding](text)
        if field.precision is not None:
            text = text[:field.precision]
    if field.width and len(text) < field.width:
        text = text.ljust(field.width) if field.left else text.rjust(field.width)
    return text


def _milliseconds(usec: int, precision: int | None, zero_width: int) -> str:
    """A duration in µs as Squid prints milliseconds: integer, or ms.fraction truncated."""
    ms, rest = divmod(usec, 1000)
    if precision is None:
        return f"{ms:0{zero_width}d}"
    fraction = f"{rest:03d}"[:precision].ljust(precision, "0")
    whole = f"{ms:0{max(zero_width - precision - 1, 0)}d}"
    return f"{whole}.{fraction}" if precision else whole


def _seconds(usec: int, digits: int, zero_width: int) -> str:
    sec, rest = divmod(usec, 1_000_000)
    fraction = f"{rest:06d}"[:digits].ljust(digits, "0")
    whole = f"{sec:0{max(zero_width - digits - 1, 0)}d}"
    return f"{whole}.{fraction}" if digits else whole


class LogFormat:
    """A compiled format: ``format(entry, sn=0)`` returns one line (no newline).

    The parts are turned into one generated function, so a line costs a few
    attribute reads and one join instead of a dispatch per field.
    """

    def __init__(self, spec: str, parts: list[str | Field]) -> None:
        self.spec = spec
        self.parts = parts
        self.format = _generate(parts)


def _fast_path(i: int, part: Field, value: str) -> str | None:
    """Generated code for the common cases, or None to call _render."""
    kind, width, enc = part.code.kind, part.width, part.encoding
    missing = f'"-" if (v{i} := {value}) is None'
    if part.left and width:
        return None
    if kind == "int":
        if part.zero and width:
            return f'({missing} else f"{{v{i}:0{width}d}}")'
        return f'({missing} else f"{{v{i}:>{width}d}}")' if width else f'({missing} else str(v{i}))'
    if kind in ("ms", "sub") and part.precision is None:
        pad = f"0{width}" if part.zero else f">{width}"
        return f'({missing} else f"{{v{i} // 1000:{pad}d}}")' if width else f'({missing} else str(v{i} // 1000))'
    if width or part.precision is not None:
        return None
    if kind == "str" and enc is None:
        return f'({value} or "-")'
    if kind in ("str", "text"):
        return f'(enc{i}(v{i}) if (v{i} := {value}) else "-")'
    return None


def _generate(parts: list[str | Field]) -> Callable[..., str]:
    namespace: dict[str, Any] = {"_render": _render, "_usec": _usec, "_plain_ip": _plain_ip}
    pieces = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            namespace[f"lit{i}"] = part
            pieces.append(f"lit{i}")
            continue
        namespace[f"get{i}"] = part.code.get
        namespace[f"arg{i}"] = part.arg
        namespace[f"field{i}"] = part
        namespace[f"enc{i}"] = ENCODINGS[part.encoding]
        if part.name == "sn":
            value = "sn"
        elif part.code.expr is not None and part.arg is None:
            value = f"({part.code.expr})"
        else:
            value = f"get{i}(e, arg{i})"
        pieces.append(_fast_path(i, part, value) or f"_render(field{i}, {value})")
    joined = ", ".join(pieces) + "," if pieces else ""
    body = "".join(pieces)
    prelude = ("    end_us = _usec(e.end)\n" if "end_us" in body else "") + (
        "    start_us = _usec(e.start)\n" if "start_us" in body else "")
    source = "def format(e, sn=0):\n" + prelude + "    return ''.join((" + joined + "))\n"
    exec(compile(source, "<logformat>", "exec"), namespace)
    generated: Callable[..., str] = namespace["format"]
    return generated


def compile_format(spec: str) -> LogFormat:
    """Parse a logformat specification; raises ValueError naming the bad code."""
    parts: list[str | Field] = []
    literal: list[str] = []
    context = None              # the encoding the surrounding "..." or [...] gives
    i, n = 0, len(spec)
    while i < n:
        c = spec[i]
        if c == "\\" and i + 1 < n and spec[i + 1] in "nt":
            literal.append("\n" if spec[i + 1] == "n" else "\t")
            i += 2
            continue
        if c != "%":
            if c == '"' and context in (None, '"'):
                context = None if context == '"' else '"'
            elif c == "[" and context is None:
                context = "["
            elif c == "]" and context == "[":
                context = None
            literal.append(c)
            i += 1
            continue
        if i + 1 < n and spec[i + 1] == "%":
            literal.append("%")
            i += 2
            continue
        field, i = _parse_field(spec, i + 1, context)
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(field)
    if literal:
        parts.append("".join(literal))
    return LogFormat(spec, parts)


def _parse_field(spec: str, i: int, context: str | None) -> tuple[Field, int]:
    start = i - 1
    n = len(spec)
    encoding = context
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
    precision = None
    if i < n and spec[i] == ".":
        j = i + 1
        while j < n and spec[j].isdigit():
            j += 1
        if j == i + 1:
            raise ValueError(f"'{spec[start:j]}': a '.' must be followed by a number")
        precision = int(spec[i + 1:j])
        i = j
    arg = None
    if i < n and spec[i] == "{":
        arg, i = _brace(spec, i, start)
    if spec.startswith("http::", i):
        i += len("http::")
    for name in _NAMES:
        if spec.startswith(name, i):
            i += len(name)
            break
    else:
        raise ValueError(f"unknown format code at '{spec[start:start + 12]}' (docs/logs.md lists the codes)")
    if name in ("ssl::", "tls::"):
        found = re.match(r"[<>]?\w*", spec[i:])
        word = found.group(0) if found else ""
        raise ValueError(f"'%{name}{word}' is {UNSUPPORTED[name]}")
    if name in UNSUPPORTED:
        raise ValueError(f"'%{name}' is not supported: {UNSUPPORTED[name]}")
    name = ALIASES.get(name, name)
    if arg is None and i < n and spec[i] == "{":
        arg, i = _brace(spec, i, start)
    code = CODES[name]
    try:
        parsed = code.parse_arg(arg)
    except ValueError as e:
        raise ValueError(f"'{spec[start:i]}': {e}") from None
    return Field(code, name, parsed, encoding, left, zero, width, precision), i


def _brace(spec: str, i: int, start: int) -> tuple[str, int]:
    end = spec.find("}", i)
    if end < 0:
        raise ValueError(f"'{spec[start:]}': missing '}}'")
    return spec[i + 1:end], end + 1


PREDEFINED_SPECS = {
    "squid": "%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt",
    "common": '%>a %[ui %[un [%tl] "%rm %ru HTTP/%rv" %>Hs %<st %Ss:%Sh',
    "combined": '%>a %[ui %[un [%tl] "%rm %ru HTTP/%rv" %>Hs %<st "%{Referer}>h" "%{User-Agent}>h" %Ss:%Sh',
    "referrer": "%ts.%03tu %>a %{Referer}>h %ru",
    "useragent": '%>a [%tl] "%{User-Agent}>h"',
}

PREDEFINED_FORMATS = {name: compile_format(spec) for name, spec in PREDEFINED_SPECS.items()}
