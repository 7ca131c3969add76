"""Pages squidpy serves itself, besides the cache manager and /metrics (pure).

A browser (or a curious admin) that asks the proxy directly, in origin-form
(``GET / HTTP/1.1``), is not forwarded anywhere: ``/`` explains what this
is and how to use it, ``/proxy.pac`` and ``/wpad.dat`` give a proxy
auto-configuration file pointing at this proxy.  Everything else is 404.
Each is answered only after http_access allowed the request, which it sees
as Squid sees a request for its own URLs (``http.url.internal_target``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from squidpy import __version__
from squidpy.pac import CONTENT_TYPE as PAC_CONTENT_TYPE
from squidpy.pac import PacSettings
from squidpy.pac import render as render_pac


@dataclass
class Page:
    status: int
    content_type: bytes
    body: bytes


def _proxy_address(host_header: bytes | None, local_ip: str, local_port: int) -> str:
    """``host:port`` as the client reached us (the Host header), else our address."""
    if host_header:
        host = host_header.decode("latin-1").strip()
        if host and all(c.isalnum() or c in ".-:[]" for c in host):
            if ":" not in host.rsplit("]", 1)[-1]:
                host = f"{host}:{local_port}"
            return host
    shown = f"[{local_ip}]" if ":" in local_ip else local_ip
    return f"{shown}:{local_port}"


def page(path: str, host_header: bytes | None, local_ip: str, local_port: int, hostname: str,
         pac: PacSettings = PacSettings()) -> Page:
    """The page at ``path`` (its query ignored); ``host_header``: how the client named us."""
    path = path.split("?", 1)[0]
    proxy = _proxy_address(host_header, local_ip, local_port)
    if path in ("/proxy.pac", "/wpad.dat"):
        return Page(200, PAC_CONTENT_TYPE, render_pac(pac, proxy).encode("ascii"))
    if path == "/":
        p = html.escape(proxy)
        body = (
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>squidpy on {html.escape(hostname)}</title></head><body>\n"
            f"<h1>This is squidpy/{__version__}, a web proxy</h1>\n"
            f"<p>Browsers use it by setting their HTTP and HTTPS proxy to <code>{p}</code>, "
            f"or their automatic proxy configuration URL to <code>http://{p}/proxy.pac</code>.</p>\n"
            f"<p>From a shell: <code>export http_proxy=http://{p} https_proxy=http://{p}</code></p>\n"
            "</body></html>\n"
        )
        return Page(200, b"text/html;charset=utf-8", body.encode("utf-8"))
    return Page(404, b"text/plain;charset=utf-8", b"Not found: this is a proxy, not a web server.\n")


def url_contains(url: str, pattern: str) -> bool:
    """The ``objects`` filter: a plain substring, never a regular expression, so a
    client cannot make the proxy backtrack for seconds on a crafted pattern (the
    pages are answered on the reactor, which every client shares)."""
    return pattern in url
