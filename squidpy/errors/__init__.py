"""Squid-style error pages: templates named ERR_*, filled with Squid's % codes.

A template is HTML with codes such as ``%U`` (the URL) or ``%i`` (the client
address); every value is HTML-escaped before it is put in.  Templates come
from ``error_directory`` when configured, else from the built-in set in
``squidpy/errors/templates``.  Rendering is pure: no sockets, one file read
per template and directory, cached.
"""

from __future__ import annotations

import html
import os
import time
import urllib.parse
from dataclasses import dataclass
from email.utils import formatdate

from squidpy import __version__

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

# The status each page is served with unless the caller says otherwise.
STATUS = {
    "ERR_ACCESS_DENIED": 403,
    "ERR_FORWARDING_DENIED": 403,
    "ERR_CACHE_ACCESS_DENIED": 407,
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
    "ERR_CONFLICT_HOST": 409,
}

REASONS = {
    200: "OK", 204: "No Content", 302: "Found", 304: "Not Modified",
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
    412: "Precondition Failed", 413: "Content Too Large", 414: "URI Too Long",
    417: "Expectation Failed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
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


class ErrorPages:
    """Loads templates once and renders them with a context."""

    def __init__(self, directory: str | None, visible_hostname: str, cache_mgr: str):
        self.directory = directory
        self.visible_hostname = visible_hostname
        self.cache_mgr = cache_mgr
        self._templates: dict[str, str] = {}
        self._stylesheet: str | None = None

    def template(self, name: str) -> str:
        text = self._templates.get(name)
        if text is None:
            text = self._read(name) or self._read("ERR_GENERIC") or "<p>%c</p>"
            self._templates[name] = text
        return text

    def _read(self, name: str) -> str | None:
        # names may come from configuration: no paths, no hidden files, no NUL
        if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            return None
        for directory in (self.directory, BUILTIN_DIR):
            if directory:
                try:
                    # an admin's template in another encoding must not break every error reply
                    with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                        return f.read()
                except OSError:
                    continue
        return None

    def template_exists(self, name: str) -> bool:
        return self._read(name) is not None

    def stylesheet(self) -> str:
        if self._stylesheet is None:
            self._stylesheet = self._read("errorpage.css") or ""
        return self._stylesheet

    def render(self, ctx: ErrorContext, now: float | None = None) -> bytes:
        """The HTML body of the page for ``ctx``, UTF-8 encoded."""
        return self._fill(self.template(ctx.name), ctx, now, _html).encode("utf-8")

    def render_url(self, template: str, ctx: ErrorContext, now: float | None = None) -> str:
        """A deny_info redirect URL with its % codes filled in, URL-encoded."""
        return self._fill(template, ctx, now, _url)

    def _fill(self, template: str, ctx: ErrorContext, now: float | None, escape) -> str:
        now = time.time() if now is None else now
        values = self._values(ctx, now)
        out = []
        i, n = 0, len(template)
        while i < n:
            j = template.find("%", i)
            if j < 0 or j + 1 >= n:
                out.append(template[i:])
                break
            out.append(template[i:j])
            out.append(self._code(template[j + 1], values, escape))
            i = j + 2
        return "".join(out)

    def _code(self, code: str, values: dict, escape) -> str:
        if code == "%":
            return "%"
        if code == "l":
            return self.stylesheet() if escape is _html else ""
        value = values.get(code)
        if value is None:
            if code in _EMPTY_WHEN_MISSING:
                return ""
            return escape("[unknown]") if code in _KNOWN else "%" + code
        return escape(str(value))

    def _values(self, ctx: ErrorContext, now: float) -> dict:
        return {
            "c": ctx.name,
            "D": ctx.detail,
            "E": ctx.errno_text,
            "h": self.visible_hostname,
            "H": ctx.host,
            "i": ctx.client_ip,
            "I": ctx.server_ip,
            "L": "",
            "M": ctx.method,
            "p": ctx.port,
            "P": ctx.protocol,
            "R": ctx.request_head,
            "s": f"squidpy/{__version__}",
            "t": time.strftime("%a, %d %b %Y %H:%M:%S %Z", time.localtime(now)),
            "T": formatdate(now, usegmt=True),
            "U": ctx.url,
            "u": ctx.url,
            "w": self.cache_mgr,
            "W": f"mailto:{self.cache_mgr}",
            "z": ctx.dns_error,
        }


def _html(value: str) -> str:
    return html.escape(value, quote=True)


def _url(value: str) -> str:
    return urllib.parse.quote(value, safe="")


_KNOWN = frozenset("cDEhHiIlLMpPRstTUuwWz")
_EMPTY_WHEN_MISSING = frozenset("DEzRL")   # details: print nothing when there are none
