"""The proxy auto-configuration file squidpy serves at /proxy.pac and /wpad.dat (pure).

Browsers run its ``FindProxyForURL(url, host)`` for every request.  What it
answers comes from the ``pac_*`` directives: which proxies (``pac_proxy``,
default the address the browser fetched the file from), which destinations
go direct (loopback always; plain host names unless
``pac_plain_hosts_direct off``; the domains and networks of ``pac_direct``),
and whether browsers may go direct when no proxy answers (``pac_fallback
direct``, the default) or must fail (``pac_fallback none``: fail closed, so a
proxy that is down cannot be a way around its blocklist).

The script uses only what every PAC engine has (``isPlainHostName``,
``dnsResolve``, ``isInNet``; ``isInNetEx`` where the browser has it, for IPv6
networks) and plain JavaScript.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squidpy import __version__

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

if TYPE_CHECKING:
    from squidpy.config.loader import Config

CONTENT_TYPE = b"application/x-ns-proxy-autoconfig"


@dataclass(frozen=True)
class PacSettings:
    proxies: tuple[str, ...] = ()            # HOST:PORT, in order; empty: the address the browser used
    domains: tuple[str, ...] = ()            # ".example.lan" (and subdomains) or "host.example.com"
    networks: tuple[Network, ...] = ()
    plain_hosts_direct: bool = True
    fallback: str = "direct"                 # "direct" or "none"

    @classmethod
    def from_config(cls, config: Config) -> "PacSettings":
        direct = [item for line in config.pac_direct for item in line]
        return cls(
            proxies=tuple(config.pac_proxy or ()),
            domains=tuple(d for d in direct if isinstance(d, str)),
            networks=tuple(n for n in direct if not isinstance(n, str)),
            plain_hosts_direct=config.pac_plain_hosts_direct,
            fallback=config.pac_fallback,
        )


def parse_direct(word: str) -> Network | str:
    """One ``pac_direct`` value: a network (10.0.0.0/8, fc00::/7, one address) or a domain
    (.example.lan: it and its subdomains; host.example.lan: that host).  Raises ValueError."""
    try:
        return ipaddress.ip_network(word, strict=False)
    except ValueError:
        pass
    name = word.lower()
    bare = name[1:] if name.startswith(".") else name
    labels = bare.split(".")
    if not bare or not all(label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label)
                            and label.isascii() for label in labels):
        raise ValueError(f"'{word}' is neither a network (10.0.0.0/8) nor a domain (.example.lan)")
    return name


def parse_proxy(word: str) -> str:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as the PAC file names a proxy.  Raises ValueError."""
    if word.startswith("["):
        host, bracket, rest = word[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"'{word}': an IPv6 proxy is written [ADDRESS]:PORT")
        ipaddress.IPv6Address(host)
        port = rest[1:]
    else:
        host, colon, port = word.rpartition(":")
        if not colon:
            raise ValueError(f"'{word}': expected HOST:PORT")
        if not host or not all(c.isalnum() or c in ".-" for c in host) or not host.isascii():
            raise ValueError(f"'{host}' is not a host name or IPv4 address")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{port}' is not a port number (1-65535)")
    return word.lower()


def _networks_js(networks: Iterable[Network]) -> list[str]:
    lines = []
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    if v4:
        tests = " ||\n            ".join(
            f"isInNet(ip, {json.dumps(str(n.network_address))}, {json.dumps(str(n.netmask))})" for n in v4)
        lines += [
            "    // pac_direct networks: the destination's address (names resolved by the browser)",
            "    var ip = /^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host) ? host : (host.indexOf(\":\") < 0 ? dnsResolve(host) : null);",
            "    if (ip && (" + tests + "))",
            "        return \"DIRECT\";",
        ]
    if v6:
        tests = " || ".join(f"isInNetEx(host, {json.dumps(str(n))})" for n in v6)
        lines += [
            "    // IPv6 networks: IPv6 addresses in URLs, where the browser has isInNetEx",
            "    if (host.indexOf(\":\") >= 0 && typeof isInNetEx === \"function\" && (" + tests + "))",
            "        return \"DIRECT\";",
        ]
    return lines


def render(settings: PacSettings, proxy_address: str) -> str:
    """The PAC file.  ``proxy_address`` (HOST:PORT the browser reached us at) is used when
    pac_proxy names none."""
    proxies = settings.proxies or (proxy_address,)
    answer = "; ".join(f"PROXY {p}" for p in proxies)
    if settings.fallback == "direct":
        answer += "; DIRECT"
    lines = [
        f"// Proxy auto-configuration from squidpy/{__version__} (the pac_* directives).",
        "// " + ("When no proxy answers, browsers go direct (pac_fallback direct)." if settings.fallback == "direct"
                 else "When no proxy answers, browsers fail: there is no way around the proxy (pac_fallback none)."),
        "function FindProxyForURL(url, host) {",
        "    host = host.toLowerCase();",
        "    if (host.charAt(0) === \"[\")",
        "        host = host.substring(1, host.length - 1);",
        "    // this machine, which a proxy could not reach for the browser",
        "    if (host === \"localhost\" || host === \"::1\" || /^127\\./.test(host))",
        "        return \"DIRECT\";",
    ]
    if settings.plain_hosts_direct:
        lines += [
            "    // names without a dot: the local network's own (pac_plain_hosts_direct on)",
            "    if (isPlainHostName(host))",
            "        return \"DIRECT\";",
        ]
    if settings.domains:
        lines += [
            "    // pac_direct domains: .example.lan is example.lan and every name under it",
            f"    var domains = {json.dumps(list(settings.domains))};",
            "    for (var i = 0; i < domains.length; i++) {",
            "        var d = domains[i];",
            "        if (d.charAt(0) === \".\" ? (host === d.substring(1) || host.substring(host.length - d.length) === d)",
            "                               : host === d)",
            "            return \"DIRECT\";",
            "    }",
        ]
    lines += _networks_js(settings.networks)
    lines += [f"    return {json.dumps(answer)};", "}", ""]
    return "\n".join(lines)
