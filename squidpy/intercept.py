"""Interception (``http_port ... intercept`` and ``tproxy``): what squidpy decides, as pure functions.

A gateway redirects its clients' port-80 connections to the proxy.  The client
believes it talks to the origin, so it sends origin-form requests (``GET /path``
with ``Host:``).  This module turns such a request into the URL Squid makes of it
(Squid's prepareTransparentURL), verifies the Host header as Squid's
hostHeaderVerify does (CVE-2009-0801: a script must not reach, through the proxy,
a host other than the address the client connected to), and says where the
request goes and what the cache may do with it.  Reading the original destination
from the socket is the Twisted layer's job (squidpy/proxy/client_side.py); the
exchange (squidpy/exchange/exchange.py) asks these functions and carries out
their answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from squidpy.config.values import INTERCEPT, TPROXY
from squidpy.http.url import BadTarget, Target, parse_host, parse_target
from squidpy.ip import ip_text

__all__ = ["INTERCEPT", "TPROXY", "HostCheck", "addressed_to_proxy", "intercepted_target", "check_host",
           "check_addresses", "lookup_name", "refuse_unverified", "to_original_destination", "may_use_cache",
           "security_alert"]

_NOT_IN_HOST = frozenset("/?#@\\ \t")


def addressed_to_proxy(mode: str, socket_local: tuple[str, int], original: tuple[str, int],
                       listen_port: int) -> bool:
    """The client connected to the interception port itself instead of being
    redirected to it: forwarding its request to its "original destination" would
    bring it straight back here.  NAT (``intercept``): nothing was translated, the
    original destination is the socket's own address.  TPROXY: the socket's address
    always is the original destination, which is the proxy when its port is the
    one this port listens on."""
    if mode == INTERCEPT:
        return original == socket_local
    return original[1] == listen_port


def intercepted_target(method: str, target: str, host_field: bytes | None, dst_ip: str, dst_port: int) -> Target:
    """The request's URL, as Squid makes it on an interception port: a target in
    absolute or authority form is kept; an origin-form one becomes
    ``http://HOST/path`` from the Host header, or ``http://ORIGINAL-DESTINATION/path``
    without one.  A Host that is not ``host[:port]`` is refused (ERR_INVALID_URL)
    rather than spliced into the URL.  Raises BadTarget."""
    if method == "CONNECT" or not target.startswith("/"):
        found = parse_target(method, target)
        if found.kind == "origin":
            raise BadTarget("ERR_INVALID_URL", f"'{target}' names no host (an interception port has no pages of its own)")
        return found
    host = host_field.decode("latin-1") if host_field else ""
    if host:
        if not _NOT_IN_HOST.isdisjoint(host):
            raise BadTarget("ERR_INVALID_URL", f"the Host header '{host[:200]}' is not a host[:port]")
        return parse_target(method, f"http://{host}{target}")
    shown = f"[{dst_ip}]" if ":" in dst_ip else dst_ip
    return parse_target(method, f"http://{shown}:{dst_port}{target}")


@dataclass(frozen=True, slots=True)
class HostCheck:
    """Where Host verification stands: ``verified``; ``skipped`` (nothing to check:
    no Host header, or a forward-proxy request under host_verify_strict off);
    ``lookup`` (the addresses of ``name`` decide: :func:`check_addresses`);
    ``failed``, with Squid's two words for what did not match."""

    outcome: str
    name: str = ""
    mismatch: tuple[str, str] = ("", "")

    @property
    def verified(self) -> bool:
        return self.outcome == "verified"


VERIFIED = HostCheck("verified")
SKIPPED = HostCheck("skipped")


def _split_host_port(host: str) -> tuple[str, str | None, int]:
    """Squid's reading of a Host value: (host, port text or None, port).  A port that
    is not a number from 1 to 65535 stays part of the host; ``host:`` has an empty port."""
    if host.startswith("["):
        end = host.find("]")
        if end >= 0 and host[end + 1:end + 2] == ":":
            name, port_text = host[:end + 1], host[end + 2:]
        else:
            return host, None, 0
    else:
        name, colon, port_text = host.rpartition(":")
        if not colon:
            return host, None, 0
    if port_text == "":
        return name, "", 0
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return host, None, 0
    return name, port_text, int(port_text)


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def check_host(host_field: bytes | None, intercepted: bool, strict: bool, method: str, target: Target,
               dst_port: int) -> HostCheck:
    """Squid's hostHeaderVerify for one request (not for the proxy's own pages).

    Intercepted: a port in Host must be the port the client connected to, and the
    host must resolve to the address it connected to (``lookup``).  Forward proxy:
    nothing is checked unless host_verify_strict is on; then the Host header must
    name the URL's host (same length, same name) and port (a missing port means
    the scheme's default, except for CONNECT)."""
    if not host_field:
        return SKIPPED
    host_text = host_field.decode("latin-1")
    host, port_text, port = _split_host_port(host_text)
    if intercepted:
        if port_text is not None and port != dst_port:
            return HostCheck("failed", mismatch=("intercepted port", port_text))
        return HostCheck("lookup", name=host)
    if not strict:
        return SKIPPED
    url_host = target.host
    if len(_bare(host)) != len(url_host) or _bare(host).lower().rstrip(".") != url_host:
        return HostCheck("failed", mismatch=(host, url_host))
    if port_text is not None and port != target.port:
        return HostCheck("failed", mismatch=("URL port", port_text))
    default = {"http": 80, "https": 443}.get(target.scheme)
    if port_text is None and method != "CONNECT" and target.port != default:
        return HostCheck("failed", mismatch=("URL port", "default port"))
    return VERIFIED


def lookup_name(name: str) -> tuple[str, bool] | None:
    """The Host's name as looked up: (canonical host, whether it is an address
    already); None when it cannot name anything (it then resolves to nothing)."""
    try:
        return parse_host(name)
    except BadTarget:
        return None


def check_addresses(addresses: list[str], dst_ip: str) -> HostCheck:
    """After the lookup: verified when the Host's name resolves to the address the
    client connected to (a failed lookup resolves to nothing)."""
    wanted = ip_text(dst_ip)
    if any(ip_text(a) == wanted for a in addresses):
        return VERIFIED
    return HostCheck("failed", mismatch=("local IP", "any domain IP"))


def refuse_unverified(strict: bool, method: str) -> bool:
    """A failed verification is answered 409 (ERR_CONFLICT_HOST) under
    host_verify_strict, and always for CONNECT; otherwise the request goes on,
    to the original destination only and past the cache."""
    return strict or method == "CONNECT"


def to_original_destination(intercepted: bool, passthru: bool, verified: bool) -> bool:
    """An intercepted request goes to the address the client connected to
    (ORIGINAL_DST) under client_dst_passthru, and always when its Host was not
    verified; otherwise by DNS like any request."""
    return intercepted and (passthru or not verified)


def may_use_cache(verified: bool) -> bool:
    """An intercepted request whose Host was not verified neither stores its reply
    nor is answered from the cache: the reply came from an address the Host's name
    does not have, and a stored copy of that name's pages must not reach a script
    that the same-origin check would have kept from them.  (Squid 5.7 does not store
    such replies either, but still answers such requests from its cache.)"""
    return verified


def security_alert(mismatch: tuple[str, str], local: tuple[str, int], remote: tuple[str, int],
                   user_agent: bytes | None, url: str) -> list[str]:
    """The cache_log lines Squid writes when it refuses a forged Host."""
    def where(ip: str, port: int) -> str:
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    lines = [f"SECURITY ALERT: Host header forgery detected on local={where(*local)} remote={where(*remote)} "
             f"({mismatch[0]} does not match {mismatch[1]})"]
    if user_agent:
        lines.append(f"SECURITY ALERT: By user agent: {user_agent.decode('latin-1')}")
    lines.append(f"SECURITY ALERT: on URL: {url}")
    return lines
