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

import functools
from collections.abc import Callable
from dataclasses import dataclass

from squidpy.config.values import INTERCEPT, TPROXY
from squidpy.http.url import BadTarget, Target, parse_host, parse_target
from squidpy.ip import ip_text

Known = Callable[[str], "list[str] | None"]
"""The addresses of a name if already known (the DNS cache), else None."""

__all__ = ["INTERCEPT", "TPROXY", "HostCheck", "addressed_to_proxy", "intercepted_request", "verify_forwarded", "check_addresses", "refuse_unverified", "to_original_destination", "security_alert", "verify_target"]

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


@dataclass(frozen=True, slots=True)
class HostCheck:
    """A verdict of Host verification: ``verified``; ``skipped`` (nothing to check: no
    Host header, or a forward-proxy request under host_verify_strict off); ``failed``,
    with Squid's two words for what did not match."""

    outcome: str
    mismatch: tuple[str, str] = ("", "")

    @property
    def verified(self) -> bool:
        return self.outcome == "verified"


VERIFIED = HostCheck("verified")
SKIPPED = HostCheck("skipped")
NOT_RESOLVING = HostCheck("failed", mismatch=("local IP", "any domain IP"))


def _split_host_port(host: str) -> tuple[str, str | None, int]:
    """Squid's reading of a Host value: (host, port text or None, port).  A port that
    is not a number from 1 to 65535 stays part of the host; ``host:`` has an empty port."""
    if ":" not in host:
        return host, None, 0
    if host.startswith("["):
        end = host.find("]")
        if end >= 0 and host[end + 1:end + 2] == ":":
            name, port_text = host[:end + 1], host[end + 2:]
        else:
            return host, None, 0
    else:
        name, _, port_text = host.rpartition(":")
    if port_text == "":
        return name, "", 0
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return host, None, 0
    return name, port_text, int(port_text)


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def intercepted_request(method: str, target: str, host_field: bytes | None, dst_ip: str, dst_port: int,
                        known: Known) -> tuple[Target, HostCheck | str]:
    """An intercepted request's URL and Host verification, in one pass.

    The URL, as Squid makes it on an interception port: a target in absolute or
    authority form is kept; an origin-form one becomes ``http://HOST/path`` from the
    Host header, or ``http://ORIGINAL-DESTINATION/path`` without one.  A Host that is
    not ``host[:port]`` is refused (ERR_INVALID_URL) rather than spliced into the URL.

    Verification, as Squid's hostHeaderVerify: a port in Host must be the port the
    client connected to, and the host must resolve to the address it connected to.
    ``known(name)``: the addresses of ``name`` if already known (the DNS cache), else
    None.  The verdict is a :class:`HostCheck`, or the name whose addresses decide (look
    it up, then :func:`check_addresses`).  Raises BadTarget."""
    found, verdict, name, literal = _read_request(method, target, host_field, dst_ip, dst_port)
    if verdict is not None:
        return found, verdict
    return found, _resolves(name, literal, dst_ip, known)


@functools.lru_cache(maxsize=8192)
def _read_request(method: str, target: str, host_field: bytes | None, dst_ip: str,
                  dst_port: int) -> tuple[Target, HostCheck | None, str, bool]:
    """What does not depend on DNS: (Target, verdict or None, name, is it an address).
    Cached: a client asks for the same URLs of the same hosts again and again."""
    host = host_field.decode("latin-1") if host_field else ""
    if method == "CONNECT" or not target.startswith("/"):
        found = parse_target(method, target)
        if found.kind == "origin":
            raise BadTarget("ERR_INVALID_URL", f"'{target}' names no host (an interception port has no pages of its own)")
        if not host:
            return found, SKIPPED, "", False
        name = host
        if ":" in name:
            name, port_text, port = _split_host_port(name)
            if port_text is not None and port != dst_port:
                return found, HostCheck("failed", mismatch=("intercepted port", port_text)), "", False
        try:
            canonical, literal = parse_host(name)
        except BadTarget:
            return found, NOT_RESOLVING, "", False      # it names nothing, so it resolves to nothing
        return found, None, canonical, literal
    if not host:
        shown = f"[{dst_ip}]" if ":" in dst_ip else dst_ip
        return parse_target(method, f"http://{shown}:{dst_port}{target}"), SKIPPED, "", False
    if not _NOT_IN_HOST.isdisjoint(host):
        raise BadTarget("ERR_INVALID_URL", f"the Host header '{host[:200]}' is not a host[:port]")
    found = parse_target(method, f"http://{host}{target}")
    # the URL's host is the Host's, already checked and canonical: only a port is left to compare
    if ":" in (host[host.find("]"):] if host[0] == "[" else host):
        port_text = host.rpartition(":")[2]
        if not port_text or found.port != dst_port:     # "host:" is port 0 to Squid
            return found, HostCheck("failed", mismatch=("intercepted port", port_text)), "", False
    return found, None, found.host, found.ip_literal


def _resolves(host: str, literal: bool, dst_ip: str, known: Known) -> HostCheck | str:
    if literal:
        return VERIFIED if host == dst_ip else check_addresses([host], dst_ip)
    addresses = known(host)
    if addresses is None:
        return host
    return check_addresses(addresses, dst_ip)


def verify_target(target: Target, dst_ip: str, dst_port: int, known: Known) -> HostCheck | str:
    """A request bumped after interception (its URL from Host or the SNI): its port must
    be the one the client connected to and its host must resolve to that address, as
    :func:`intercepted_request` verifies a plain one (a name: look it up first)."""
    if target.port != dst_port:
        return HostCheck("failed", mismatch=("intercepted port", str(target.port)))
    return _resolves(target.host, target.ip_literal, dst_ip, known)


def verify_forwarded(host_field: bytes | None, method: str, target: Target) -> HostCheck:
    """host_verify_strict for a forward-proxy request: the Host header must name the
    URL's host (same length, same name) and port (a missing port means the scheme's
    default, except for CONNECT); a request without Host is not checked."""
    if not host_field:
        return SKIPPED
    host_text = host_field.decode("latin-1")
    host, port_text, port = _split_host_port(host_text)
    url_host = target.host
    if len(_bare(host)) != len(url_host) or _bare(host).lower().rstrip(".") != url_host:
        return HostCheck("failed", mismatch=(host, url_host))
    if port_text is not None and port != target.port:
        return HostCheck("failed", mismatch=("URL port", port_text))
    default = {"http": 80, "https": 443}.get(target.scheme)
    if port_text is None and method != "CONNECT" and target.port != default:
        return HostCheck("failed", mismatch=("URL port", "default port"))
    return VERIFIED


def check_addresses(addresses: list[str], dst_ip: str) -> HostCheck:
    """After the lookup: verified when the Host's name resolves to the address the
    client connected to (a failed lookup resolves to nothing)."""
    if dst_ip in addresses:          # both canonical already (the DNS cache's and the socket's): the usual case
        return VERIFIED
    wanted = ip_text(dst_ip)
    if any(ip_text(a) == wanted for a in addresses):
        return VERIFIED
    return NOT_RESOLVING


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
