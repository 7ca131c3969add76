"""Squid-style error pages: templates named ERR_*, filled with Squid's % codes.

A template is HTML with codes such as ``%U`` (the URL) or ``%i`` (the client
address); every value is HTML-escaped before it is put in.  Which template, as
Squid 5.7 chooses it (errorpage.cc):

* with ``error_directory``: from there, else from the built-in set; no
  language is negotiated;
* without it, a page Squid knows (ERR_ACCESS_DENIED ...) is sent in the first
  language of the request's Accept-Language that has a translation (``*``
  stops the search): English is squidpy's own built-in set, other languages
  are the translations of Debian's squid-langpack, read where the package
  installs them (:data:`LANGPACK_DIR`) when it is installed; otherwise in
  ``error_default_language`` (translated likewise), else in English.  The
  reply says ``Vary: Accept-Language`` and its ``Content-Language``.

Rendering is pure: no sockets, one file read per template and language,
cached; only languages found in the language pack when the pages are set up
are ever looked for, so what clients send costs no file system access.
"""

from __future__ import annotations

import html
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING

from squidpy import __version__

if TYPE_CHECKING:
    from squidpy.http.message import Fields

Escape = Callable[[str], str]      # how a value is written into a page (HTML) or a URL

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
LANGPACK_DIR = "/usr/share/squid-langpack"      # Debian's squid-langpack: one directory per language

# Squid 5.7's own pages (src/error/forward.h): only these are negotiated
SQUID_PAGES = frozenset("""
    ERR_ACCESS_DENIED ERR_CACHE_ACCESS_DENIED ERR_CACHE_MGR_ACCESS_DENIED ERR_FORWARDING_DENIED ERR_NO_RELAY
    ERR_CANNOT_FORWARD ERR_READ_TIMEOUT ERR_LIFETIME_EXP ERR_READ_ERROR ERR_WRITE_ERROR ERR_CONNECT_FAIL
    ERR_SECURE_CONNECT_FAIL ERR_SOCKET_FAILURE ERR_DNS_FAIL ERR_URN_RESOLVE ERR_ONLY_IF_CACHED_MISS ERR_TOO_BIG
    ERR_INVALID_RESP ERR_UNSUP_HTTPVERSION ERR_INVALID_REQ ERR_UNSUP_REQ ERR_INVALID_URL ERR_ZERO_SIZE_OBJECT
    ERR_PRECONDITION_FAILED ERR_CONFLICT_HOST ERR_FTP_DISABLED ERR_FTP_UNAVAILABLE ERR_FTP_FAILURE
    ERR_FTP_PUT_ERROR ERR_FTP_NOT_FOUND ERR_FTP_FORBIDDEN ERR_FTP_PUT_CREATED ERR_FTP_PUT_MODIFIED ERR_ESI
    ERR_ICAP_FAILURE ERR_GATEWAY_FAILURE ERR_DIR_LISTING ERR_SQUID_SIGNATURE ERR_SHUTTING_DOWN
    ERR_PROTOCOL_UNKNOWN ERR_CLIENT_GONE ERR_SECURE_ACCEPT_FAIL ERR_REQUEST_START_TIMEOUT
    ERR_REQUEST_PARSE_TIMEOUT ERR_RELAY_REMOTE""".split())
MAX_REPORTED_LANGUAGES = 256    # error_log_languages: each missing language is reported once

# The status each page is served with unless the caller says otherwise.
STATUS = {
    "ERR_ACCESS_DENIED": 403,
    "ERR_FORWARDING_DENIED": 403,
    "ERR_CACHE_ACCESS_DENIED": 407,
    "ERR_CACHE_MGR_ACCESS_DENIED": 401,
    "ERR_INVALID_REQ": 400,
    "ERR_INVALID_URL": 400,
    "ERR_TOO_BIG": 413,
    "ERR_UNSUP_REQ": 501,
    "ERR_UNSUP_HTTPVERSION": 505,
    "ERR_CONNECT_FAIL": 503,
    "ERR_DNS_FAIL": 503,
    "ERR_CANNOT_FORWARD": 503,
    "ERR_SHUTTING_DOWN": 503,
    "ERR_READ_TIMEOUT": 504,
    "ERR_LIFETIME_EXP": 408,
    "ERR_ONLY_IF_CACHED_MISS": 504,
    "ERR_GATEWAY_FAILURE": 502,
    "ERR_READ_ERROR": 502,
    "ERR_WRITE_ERROR": 502,
    "ERR_INVALID_RESP": 502,
    "ERR_ZERO_SIZE_OBJECT": 502,
    "ERR_PRECONDITION_FAILED": 412,
    "ERR_SECURE_CONNECT_FAIL": 503,
    "ERR_CONFLICT_HOST": 409,
}


@dataclass
class ErrorContext:
    """What a page may show; a missing value prints as ``[unknown]`` like Squid,
    except the details (%D, %E, %z, %R), which print nothing."""

    name: str
    url: str | None = None
    method: str | None = None
    client_ip: str | None = None
    server_ip: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    detail: str | None = None       # %D: what went wrong, in words
    errno_text: str | None = None   # %E
    dns_error: str | None = None    # %z
    request_head: str | None = None  # %R
    accept_language: str | None = None   # the request's Accept-Language, for negotiation
    path: str | None = None         # the request's path and version and fields, for %W
    version: str | None = None
    request_headers: Fields | None = None
    user: str | None = None         # %a: the user name, when known
    auth_message: str | None = None  # %m: why the credentials were refused
    external_message: str | None = None  # %o: message= from an external ACL helper
    tls_code: str | None = None     # %x: the TLS error, as squidpy.tls.errors.TlsFailure.brief() names it


class ErrorPage:
    """A rendered page: its body, the fields that say its language, and the
    languages a client asked for that have no translation (error_log_languages)."""

    __slots__ = ("body", "fields", "missing")

    def __init__(self, body: bytes, fields: list[tuple[bytes, bytes]], missing: list[str]):
        self.body = body
        self.fields = fields
        self.missing = missing


class ErrorPages:
    """Loads templates once and renders them with a context."""

    def __init__(self, directory: str | None, visible_hostname: str, cache_mgr: str,
                 default_language: str | None = None, appname: str = f"squidpy/{__version__}",
                 email_err_data: bool = True, html_text: str = "", langpack: str | None = LANGPACK_DIR):
        self.directory = directory
        self.visible_hostname = visible_hostname
        self.cache_mgr = cache_mgr
        self.default_language = default_language
        self.appname = appname
        self.email_err_data = email_err_data
        self.html_text = html_text
        self.langpack = langpack
        self._languages: dict[str, str] | None = None    # tag -> the language its directory holds
        self._templates: dict[tuple[str, str], str | None] = {}
        self._stylesheet: str | None = None
        self._reported: set[str] = set()

    # ------------------------------------------------------------ templates
    def template(self, name: str) -> str:
        """The template for ``name`` without negotiation: error_directory, else built in."""
        return self._own(name, self.directory)

    def _own(self, name: str, directory: str | None) -> str:
        for wanted in (name, "ERR_GENERIC"):
            for where in (directory, BUILTIN_DIR):
                text = self._file(where, wanted) if where else None
                if text is not None:
                    return text
        return "<p>%c</p>"

    def _file(self, directory: str, name: str) -> str | None:
        key = (directory, name)
        if key in self._templates:
            return self._templates[key]
        text = None
        # names may come from configuration: no paths, no hidden files, no NUL
        if name and not name.startswith(".") and not any(c in name for c in "/\\\0"):
            try:
                # an admin's template in another encoding must not break every error reply
                with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                text = None
        self._templates[key] = text
        return text

    def _read(self, name: str) -> str | None:
        for directory in (self.directory, BUILTIN_DIR):
            if directory:
                text = self._file(directory, name)
                if text is not None:
                    return text
        return None

    def template_exists(self, name: str) -> bool:
        return self._read(name) is not None

    # ------------------------------------------------------------ languages
    @property
    def languages(self) -> dict[str, str]:
        """The language pack's languages: tag -> the language its directory holds
        (``en-gb`` -> ``en``); empty without the pack.  Read once."""
        if self._languages is None:
            found: dict[str, str] = {}
            if self.langpack:
                try:
                    names = os.listdir(self.langpack)
                except OSError:
                    names = []
                for tag in names:
                    path = os.path.join(self.langpack, tag)
                    if tag != "templates" and tag == tag.lower() and os.path.isdir(path):
                        found[tag] = os.path.basename(os.path.realpath(path))
            self._languages = found
        return self._languages

    def is_english(self, tag: str) -> bool:
        return tag == "en" or self.languages.get(tag) == "en"

    def translation(self, tag: str, name: str) -> str | None:
        """``name`` in language ``tag``: squidpy's own page for English, else the
        language pack's, else None."""
        if self.is_english(tag):
            return self._own(name, None)
        if tag not in self.languages:
            return None
        assert self.langpack, "languages are only found in a language pack"
        return self._file(os.path.join(self.langpack, tag), name)

    def choose(self, name: str, accept_language: str | None) -> tuple[str, list[tuple[bytes, bytes]], list[str]]:
        """(template, the fields naming its language, languages asked for without a
        translation), as Squid 5.7 negotiates."""
        if self.directory:
            return self.template(name), [], []
        missing: list[str] = []
        if name in SQUID_PAGES and accept_language:
            for tag in accept_language_tags(accept_language):
                if tag == "*":
                    break
                text = self.translation(tag, name)
                if text is not None:
                    return text, _language_fields(tag), missing
                missing.append(tag)
        default = self.default_language
        if default and not self.is_english(default):
            text = self.translation(default, name)
            if text is not None:
                return text, _language_fields(default), missing
        english = default if default and self.is_english(default) else "en"
        return self._own(name, None), _language_fields(english), missing

    def not_reported(self, languages: list[str]) -> list[str]:
        """The languages among these not reported yet (each once, up to a bound)."""
        fresh = [tag for tag in languages if tag not in self._reported]
        if fresh and len(self._reported) < MAX_REPORTED_LANGUAGES:
            self._reported.update(fresh)
            return fresh
        return []

    def stylesheet(self) -> str:
        if self._stylesheet is None:
            self._stylesheet = self._read("errorpage.css") or ""
        return self._stylesheet

    def render(self, ctx: ErrorContext, now: float | None = None) -> bytes:
        """The HTML body of the page for ``ctx``, UTF-8 encoded."""
        return self.page(ctx, now).body

    def page(self, ctx: ErrorContext, now: float | None = None) -> ErrorPage:
        """The page for ``ctx`` in the language negotiated from ``ctx.accept_language``."""
        template, fields, missing = self.choose(ctx.name, ctx.accept_language)
        return ErrorPage(self._fill(template, ctx, now, _html).encode("utf-8"), fields, missing)

    def render_url(self, template: str, ctx: ErrorContext, now: float | None = None) -> str:
        """A deny_info redirect URL with its % codes filled in, URL-encoded."""
        return self._fill(template, ctx, now, _url)

    def _fill(self, template: str, ctx: ErrorContext, now: float | None, escape: Escape) -> str:
        when = time.time() if now is None else now
        values = self._values(ctx, when)
        out = []
        i, n = 0, len(template)
        while i < n:
            j = template.find("%", i)
            if j < 0 or j + 1 >= n:
                out.append(template[i:])
                break
            out.append(template[i:j])
            out.append(self._code(template[j + 1], values, escape, ctx, when))
            i = j + 2
        return "".join(out)

    def _code(self, code: str, values: dict[str, str | int | None], escape: Escape,
              ctx: ErrorContext, now: float) -> str:
        if code == "%":
            return "%"
        if code == "l":
            return self.stylesheet() if escape is _html else ""
        if code == "L":
            return self.html_text if escape is _html else ""
        if code == "W":
            if escape is not _html or not (self.email_err_data and self.cache_mgr):
                return ""
            return escape(self._mail_data(ctx, now))
        value = values.get(code)
        if value is None:
            if code == "x":
                return escape("[Unknown Error Code]") if escape is _html else ""
            if code in _EMPTY_WHEN_MISSING:
                return ""
            return escape("[unknown]") if code in _KNOWN else "%" + code
        return escape(str(value))

    def _values(self, ctx: ErrorContext, now: float) -> dict[str, str | int | None]:
        return {
            "a": ctx.user or "-",
            "c": ctx.name,
            "D": ctx.detail,
            "E": ctx.errno_text,
            "h": self.visible_hostname,
            "H": ctx.host,
            "i": ctx.client_ip,
            "I": ctx.server_ip,
            "m": ctx.auth_message,
            "M": ctx.method,
            "o": ctx.external_message,
            "p": ctx.port,
            "P": ctx.protocol,
            "R": ctx.request_head,
            "s": self.appname,
            "t": time.strftime("%a, %d %b %Y %H:%M:%S %Z", time.localtime(now)),
            "T": formatdate(now, usegmt=True),
            "U": ctx.url,
            "u": ctx.url,
            "w": self.cache_mgr,
            "x": ctx.tls_code,
            "z": ctx.dns_error,
        }


    def _mail_data(self, ctx: ErrorContext, now: float) -> str:
        """%W: what goes after ``mailto:%w`` (email_err_data): a subject and a body
        telling the administrator what happened, as Squid writes them; the request's
        credentials are left out."""
        body = [f"CacheHost: {self.visible_hostname}\r\n", f"ErrPage: {ctx.name}\r\n",
                f"Err: {ctx.errno_text or '[none]'}\r\n"]
        if ctx.dns_error:
            body.append(f"DNS ErrMsg: {ctx.dns_error}\r\n")
        body.append(f"TimeStamp: {formatdate(now, usegmt=True)}\r\n\r\n")
        body.append(f"ClientIP: {ctx.client_ip or '[unknown]'}\r\n")
        if ctx.server_ip and ctx.host:
            body.append(f"ServerIP: {ctx.host}\r\n")
        body.append("\r\nHTTP Request:\r\n")
        if ctx.method and ctx.path is not None:
            body.append(f"{ctx.method} {ctx.path} HTTP/{ctx.version or '1.1'}\n")
            for raw_name, value in ctx.request_headers or ():
                name = raw_name.decode("latin-1")
                shown = "********" if name.lower() in _SENSITIVE else value.decode("latin-1")
                body.append(f"{name}: {shown}\r\n")
        body.append("\r\n\r\n")
        return (f"?subject={rfc1738_escape_part('CacheErrorInfo - ' + ctx.name)}"
                f"&body={rfc1738_escape_part(''.join(body))}")


_SENSITIVE = frozenset({"authorization", "proxy-authorization", "cookie"})
_RFC1738_KEPT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789$-_.+!*(),")


def rfc1738_escape_part(text: str) -> str:
    """Squid's rfc1738_escape_part: every byte but letters, digits and $-_.+!*(), %-escaped."""
    data = text.encode("utf-8", "replace")
    return "".join(chr(b) if b in _RFC1738_KEPT else f"%{b:02X}" for b in data)


def accept_language_tags(value: str) -> Iterator[str]:
    """The language tags of an Accept-Language value, in order, as Squid reads them
    (strHdrAcptLangGetItem): lower case, ``_`` read as ``-``, parameters (q=)
    ignored; a tag with anything but letters, ``-`` and ``*`` is skipped."""
    for item in value.split(","):
        tag = item.strip(" \t\r\n\v\f").split(";", 1)[0]
        tag = tag.split(None, 1)[0] if tag.strip() else ""
        tag = tag[:255].translate(_ASCII_LOWER).replace("_", "-")
        if tag and all(c == "-" or c == "*" or "a" <= c <= "z" for c in tag):
            yield tag


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _language_fields(language: str) -> list[tuple[bytes, bytes]]:
    return [(b"Vary", b"Accept-Language"), (b"Content-Language", language.encode("ascii", "replace"))]


def _html(value: str) -> str:
    return html.escape(value, quote=True)


def _url(value: str) -> str:
    return urllib.parse.quote(value, safe="")


_KNOWN = frozenset("acDEhHiIlLmMopPRstTUuwWxz")
_EMPTY_WHEN_MISSING = frozenset("DEzRLmo")   # details: print nothing when there are none
