"""Request targets (RFC 9112 section 3.2): absolute-form, authority-form, origin-form.

A forward proxy is sent ``GET http://host:port/path HTTP/1.1`` and
``CONNECT host:port HTTP/1.1``.  :func:`parse_target` turns the target into
a :class:`Target` or raises :class:`BadTarget` with Squid's error page name.
Hosts are strict DNS names or IP literals: userinfo, empty hosts, stray
characters and bad ports are refused rather than guessed at.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Iterable

from squidpy.ip import ip_text, numeric_ipv4

DEFAULT_PORTS = {"http": 80, "https": 443, "cache_object": 3128}
MANAGER_SCHEME = "cache_object"     # squidclient's cache manager URLs: cache_object://HOST/ACTION[@PASSWORD]
INTERNAL_PREFIX = "/squid-internal-"
# httptools refuses '_' in a URL scheme: a request line's cache_object:// is read under a name
# it accepts and given its own back in the request head (a client writing the stand-in gets
# the same cache manager a cache_object:// URL does)
_MANAGER_IN_LINE = b" cache_object://"
_STAND_IN_IN_LINE = b" squidpycacheobject://"
_STAND_IN = "squidpycacheobject://"


def hide_manager_scheme(data: bytes) -> bytes:
    """Request bytes as httptools may read them (see _MANAGER_IN_LINE)."""
    if _MANAGER_IN_LINE in data:
        return data.replace(_MANAGER_IN_LINE, _STAND_IN_IN_LINE)
    return data


def restore_manager_scheme(url: str) -> str:
    """The request target as the client wrote it."""
    if url.startswith(_STAND_IN):
        return "cache_object://" + url[len(_STAND_IN):]
    return url

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")
_BAD_TARGET_CHAR = re.compile(r"[^\x21-\x7e]").search     # RFC 3986: no spaces, controls, 8-bit


class BadTarget(ValueError):
    def __init__(self, error: str, detail: str, status: int = 400):
        super().__init__(detail)
        self.error = error
        self.detail = detail
        self.status = status


class Target:
    """Where a request goes.  ``kind`` is 'absolute', 'authority', 'origin', or
    'internal': a request for the proxy itself (an origin-form request made into
    the proxy's own URL by :func:`internal_target`, an absolute URL naming the
    proxy, see :func:`addressed_to_proxy`, or a ``cache_object://`` URL)."""

    __slots__ = ("kind", "scheme", "host", "port", "path", "url", "ip_literal")

    def __init__(self, kind: str, scheme: str, host: str, port: int, path: str, ip_literal: bool):
        self.kind = kind
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
        self.ip_literal = ip_literal
        self.url = canonical_url(kind, scheme, host, port, path)

    @property
    def authority(self) -> str:
        """``host[:port]`` as sent in Host: the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS.get(self.scheme):
            return host
        return f"{host}:{self.port}"


def canonical_url(kind: str, scheme: str, host: str, port: int, path: str) -> str:
    """The URL as Squid logs it: lower-case host, no default port."""
    shown = f"[{host}]" if ":" in host else host
    if kind == "authority":
        return f"{shown}:{port}"
    if port != DEFAULT_PORTS.get(scheme):
        shown = f"{shown}:{port}"
    return f"{scheme}://{shown}{path}"


@functools.lru_cache(maxsize=4096)
def parse_host(text: str) -> tuple[str, bool]:
    """Validate a host; returns ``(host, is_ip_literal)``, canonical as Squid makes it:
    lower case, trailing dots removed, IPv6 unbracketed, and an address however
    written (``[::ffff:127.0.0.9]``, ``2130706441``, ``0x7f.0.0.9``) as its plain
    text (``127.0.0.9``, see :mod:`squidpy.ip`), so no ACL can be sidestepped by
    spelling one host another way.

    Cached: a browser asks the same hosts again and again.
    """
    if text.startswith("["):
        if not text.endswith("]"):
            raise BadTarget("ERR_INVALID_URL", f"malformed IPv6 address '{text}'")
        try:
            ipaddress.IPv6Address(text[1:-1])
            return ip_text(text), True
        except ValueError:
            raise BadTarget("ERR_INVALID_URL", f"malformed IPv6 address '{text}'") from None
    host = text.lower().rstrip(".")
    if not host:
        raise BadTarget("ERR_INVALID_URL", "the URL has no host")
    if len(host) > 255 or not _HOST_CHARS.issuperset(host):
        raise BadTarget("ERR_INVALID_URL", f"'{text}' is not a valid host name")
    address = numeric_ipv4(host)
    if address is not None:
        return str(address), True
    if host.replace(".", "").isdigit():
        raise BadTarget("ERR_INVALID_URL", f"'{text}' is not a valid IPv4 address")
    if host.startswith((".", "-")) or ".." in host:
        raise BadTarget("ERR_INVALID_URL", f"'{text}' is not a valid host name")
    return host, False


def split_authority(authority: str, default_port: int | None, userinfo: bool = False) -> tuple[str, int]:
    """``host[:port]`` -> (host text, port); refuses userinfo unless ``userinfo``
    (then it is dropped, as Squid drops it from cache_object URLs)."""
    if "@" in authority:
        if not userinfo:
            raise BadTarget("ERR_INVALID_URL", "user names and passwords in URLs are not accepted")
        authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise BadTarget("ERR_INVALID_URL", f"malformed IPv6 address in '{authority}'")
        host, rest = authority[:end + 1], authority[end + 1:]
        if rest and not rest.startswith(":"):
            raise BadTarget("ERR_INVALID_URL", f"malformed authority '{authority}'")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text = authority.partition(":")
        if not colon:
            port_text = None
    if port_text is None or port_text == "":
        if default_port is None:
            raise BadTarget("ERR_INVALID_URL", f"'{authority}' has no port")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadTarget("ERR_INVALID_URL", f"'{port_text}' is not a valid port")
    return host, int(port_text)


def internal_target(path: str, hostname: str, port: int) -> Target:
    """An origin-form request (``GET /proxy.pac``), which is addressed to the proxy
    itself, as Squid makes it: ``http://VISIBLE_HOSTNAME:PORT/path`` with the port of
    the first http_port; the Host header plays no part.  http_access sees these
    facts like any request's: ``dstdomain`` the proxy's name, ``dst`` the addresses
    that name resolves to, ``port`` its port, ``url_regex`` that URL."""
    try:
        host, literal = parse_host(hostname)
    except BadTarget:
        host, literal = hostname.lower(), False     # a visible_hostname that is no DNS name
    return Target("internal", "http", host, port, path, literal)


def with_domain(target: Target, domain: str | None) -> Target:
    """``append_domain``: a host name without a dot gets ``domain`` (Squid's
    urlAppendDomain); addresses and the proxy's own URLs are left alone."""
    if domain is None or target.ip_literal or "." in target.host or target.kind not in ("absolute", "authority"):
        return target
    host = target.host + domain
    if len(host) > 255:
        raise BadTarget("ERR_INVALID_URL", f"'{host[:64]}...' is too long a host name with append_domain")
    return Target(target.kind, target.scheme, host, target.port, target.path, False)


def addressed_to_proxy(target: Target, hostnames: tuple[str, ...], my_port: int,
                       local_ip: str, local_port: int,
                       addresses: Callable[[str], list[str] | None] | None = None) -> bool:
    """Is this absolute-form request for the proxy itself, to be answered here rather
    than forwarded to itself?  As Squid decides: a ``/squid-internal-...`` path on
    its own name (visible_hostname, or a hostname_aliases name) and the port of its
    first http_port.  And, a squidpy rule: any URL naming the very address and port
    the request arrived on (forwarding it could only come back here), by that address
    or by a name already known to have it (``addresses``: the DNS cache's answer, which
    hosts_file fills: ``http://localhost:3128/...`` sent to 127.0.0.1:3128)."""
    if target.kind != "absolute" or target.scheme != "http":
        return False
    if target.port == local_port:
        if target.host == local_ip:
            return True
        if addresses is not None and not target.ip_literal and local_ip in (addresses(target.host) or ()):
            return True
    return target.port == my_port and target.path.startswith(INTERNAL_PREFIX) and target.host in hostnames


def own_names(visible_hostname: str, aliases: Iterable[Iterable[str]]) -> tuple[str, ...]:
    """The names a URL may give this proxy by: visible_hostname and every hostname_aliases name."""
    return (visible_hostname.lower(), *(name for names in aliases for name in names))


def for_proxy(target: Target) -> Target:
    """The same URL, marked as a request for the proxy itself (kind 'internal')."""
    return Target("internal", target.scheme, target.host, target.port, target.path, target.ip_literal)


def parse_target(method: str, target: str) -> Target:
    """A request target as a :class:`Target` (shared: treat it as read-only)."""
    return _parse_target(method == "CONNECT", target)


@functools.lru_cache(maxsize=8192)
def _parse_target(connect: bool, target: str) -> Target:
    """Cached: browsers ask for the same URLs again and again."""
    method = "CONNECT" if connect else "GET"
    if _BAD_TARGET_CHAR(target):
        raise BadTarget("ERR_INVALID_URL", "the request target contains a space, a control or a non-ASCII character")
    if method == "CONNECT":
        host_text, port = split_authority(target, None)
        host, literal = parse_host(host_text)
        return Target("authority", "authority", host, port, "", literal)
    if target.startswith("/") or target == "*":
        return Target("origin", "", "", 0, target, False)
    scheme, sep, rest = target.partition("://")
    scheme = scheme.lower()
    if not sep or (scheme != MANAGER_SCHEME and (
            not scheme.isascii() or not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum())):
        raise BadTarget("ERR_INVALID_URL", f"'{target[:200]}' is not a URL")
    if "#" in rest:
        raise BadTarget("ERR_INVALID_URL", "a request target cannot carry a #fragment")
    cut = len(rest)
    for ch in "/?":
        i = rest.find(ch)
        if 0 <= i < cut:
            cut = i
    authority, path = rest[:cut], rest[cut:]
    if not path.startswith("/"):
        path = "/" + path
    if scheme not in DEFAULT_PORTS:
        raise BadTarget("ERR_UNSUP_REQ", f"the '{scheme}' protocol is not supported", status=501)
    manager = scheme == MANAGER_SCHEME
    host_text, port = split_authority(authority, DEFAULT_PORTS[scheme], userinfo=manager)
    host, literal = parse_host(host_text)
    # a cache manager URL is for the proxy itself, whatever host it names (as in Squid)
    return Target("internal" if manager else "absolute", scheme, host, port, path, literal)


def same_origin_resolver(url: str) -> Callable[[str], str | None]:
    """For invalidation (RFC 9111 4.4): resolve a Location against ``url``; None if
    it is on another origin."""
    base = urllib.parse.urlsplit(url)

    def resolve(value: str) -> str | None:
        try:
            target = urllib.parse.urlsplit(urllib.parse.urljoin(url, value))
        except ValueError:
            return None
        if (target.scheme, target.hostname, target.port) != (base.scheme, base.hostname, base.port):
            return None
        return urllib.parse.urlunsplit(target._replace(fragment=""))
    return resolve


_ESCAPE = re.compile(r"%(%|[0-9a-fA-F]{2})")


def _unescape_one(m: re.Match[str]) -> str:
    code = m.group(1)
    if code == "%":
        return "%"
    value = int(code, 16)
    return chr(value) if value else m.group(0)


def rfc1738_unescape(text: str) -> str:
    """The text ``url_regex`` and ``urlpath_regex`` are matched against, decoded as
    Squid's ``rfc1738_unescape`` decodes it: each ``%XY`` becomes that byte (read
    as Latin-1), ``%%`` becomes ``%``, ``%00`` and a ``%`` not followed by two hex
    digits stay as they are.  One pass: ``%2569`` is ``%69``, not ``i``.  So
    ``/cas%69no`` and ``/cas%49no`` are tested as ``/casino`` and ``/casIno``."""
    if "%" not in text:
        return text
    return _ESCAPE.sub(_unescape_one, text)
