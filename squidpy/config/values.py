"""Value syntaxes of squid.conf: times, sizes, on/off, listening addresses.

Each parser takes the argument tokens of one directive and returns a Python
value or raises :class:`ValueError` with a message an admin can act on.
Times become seconds (float), sizes bytes (int).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from squidpy.tls.options import PortTls

# Squid's time units, matched as prefixes without regard to case ("minutes" is "minute")
TIME_UNITS = (
    ("millisecond", 0.001), ("second", 1.0), ("minute", 60.0), ("hour", 3600.0), ("day", 86400.0),
    ("week", 7 * 86400.0), ("fortnight", 14 * 86400.0), ("month", 30 * 86400.0),
    ("year", 8766 * 3600.0), ("decade", 87660 * 3600.0),
)
# squidpy's shorter spellings (Squid refuses them)
TIME_ABBREVIATIONS = {"ms": 0.001, "msec": 0.001, "s": 1.0, "sec": 1.0, "secs": 1.0, "min": 60.0,
                      "mins": 60.0, "h": 3600.0, "hr": 3600.0, "hrs": 3600.0}

# Squid's size units, matched as prefixes without regard to case ("KBytes" is "KB")
SIZE_UNITS = (("bytes", 1), ("KB", 1024), ("MB", 1024 ** 2), ("GB", 1024 ** 3))
# squidpy's other spellings (Squid refuses them)
SIZE_ABBREVIATIONS = {"byte": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "tb": 1024 ** 4}

_HEX_INT = re.compile(r"^[+-]?0[xX][0-9a-fA-F]+$")


def squid_number(text: str, what: str = "number") -> float:
    """A number as Squid's xatof (strtod) reads it: decimal, exponent, or 0x hex."""
    try:
        value = float.fromhex(text) if _HEX_INT.match(text) else float(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a {what}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"'{text}' is not a valid {what}")
    return value


def _prefix_unit(word: str, units: Iterable[tuple[str, float]], abbreviations: Mapping[str, float]) -> float | None:
    low = word.lower()
    for name, factor in units:
        if low.startswith(name.lower()):
            return factor
    return abbreviations.get(low)


def time_unit(word: str) -> float | None:
    return _prefix_unit(word, TIME_UNITS, TIME_ABBREVIATIONS)


def size_unit(word: str) -> float | None:
    return _prefix_unit(word, SIZE_UNITS, SIZE_ABBREVIATIONS)


def _default_unit(name: str, unit: Callable[[str], float | None]) -> float:
    """The factor of a directive's default unit, which the code names (never the admin)."""
    factor = unit(name)
    if factor is None:
        raise LookupError(f"no unit called {name!r}")
    return factor


def take_time(args: list[str], default_unit: str = "second",
              warn: Callable[[str], None] | None = None) -> tuple[float, list[str]]:
    """``30 seconds``, ``2 minutes``, ``1.5 hours`` -> (seconds, the words left).

    Squid requires a unit (except after 0); squidpy takes a bare number in the
    directive's unit and says so through ``warn``.
    """
    if not args:
        raise ValueError("expected a time such as '30 seconds'")
    value = squid_number(args[0])
    if value < 0:
        raise ValueError("a time cannot be negative")
    rest = args[1:]
    if rest and (unit := time_unit(rest[0])) is not None:
        factor, rest = unit, rest[1:]
    elif value == 0:
        factor = 1.0
    elif rest:
        raise ValueError(f"unknown time unit '{rest[0]}' (use seconds, minutes, hours, days ...)")
    else:
        factor = _default_unit(default_unit, time_unit)
        if warn is not None:
            warn(f"no time unit after {args[0]}: taken as {default_unit}s (Squid 5.7 refuses a time without a unit)")
    return value * factor, rest


def take_size(args: list[str], default_unit: str = "bytes",
              warn: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """``64 KB``, ``4 MB``, ``100 bytes`` -> (bytes, the words left); ``none`` and
    ``-1`` are -1.  A bare number is in the directive's default unit, as in Squid
    (which warns about it too)."""
    if not args:
        raise ValueError("expected a size such as '64 KB'")
    text, rest = args[0], args[1:]
    if text in ("none", "-1"):
        return -1, rest
    glued: float | None = None
    i = len(text)
    while i and not (text[i - 1].isdigit() or text[i - 1] == "."):
        i -= 1
    if 0 < i < len(text) and (glued := size_unit(text[i:])) is not None:     # '64KB', a squidpy extension
        text = text[:i]
    value = squid_number(text, "size such as '64 KB'")
    if value < 0:
        raise ValueError("a size cannot be negative (write none for no limit)")
    factor: float
    if glued is not None:
        factor = glued
    elif rest and (unit := size_unit(rest[0])) is not None:
        factor, rest = unit, rest[1:]
    elif value == 0:
        factor = 1
    elif rest:
        raise ValueError(f"unknown size unit '{rest[0]}' (use bytes, KB, MB or GB)")
    else:
        factor = _default_unit(default_unit, size_unit)
        if warn is not None:
            warn(f"no unit after {args[0]}: taken as {args[0]} {default_unit}, as Squid takes it")
    return int(value * factor), rest


def parse_time(args: list[str], default_unit: str = "second") -> float:
    """A time that is all of ``args`` -> seconds."""
    value, rest = take_time(args, default_unit)
    if rest:
        raise ValueError("expected a time such as '30 seconds'")
    return value


def parse_size(args: list[str], default_unit: str = "bytes") -> int:
    """A size that is all of ``args`` -> bytes (units are powers of 1024)."""
    value, rest = take_size(args, default_unit)
    if rest:
        raise ValueError("expected a size such as '64 KB'")
    return value


def parse_onoff(args: list[str]) -> bool:
    """``on`` or ``off`` (also ``enable``/``disable``, which Squid takes with a warning)."""
    if not args or args[0].lower() not in ("on", "off", "enable", "disable"):
        raise ValueError("expected 'on' or 'off'")
    return args[0].lower() in ("on", "enable")


def squid_integer(text: str) -> int:
    """An integer as Squid's GetInteger reads it: decimal, 0x hex or 0 octal."""
    m = re.fullmatch(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not m:
        raise ValueError(f"'{text}' is not a whole number")
    sign, digits = m.groups()
    if digits[:2].lower() == "0x":
        value = int(digits, 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    return -value if sign == "-" else value


def parse_int(args: list[str], minimum: int = 0, maximum: int | None = None) -> int:
    if not args:
        raise ValueError("expected one number")
    value = squid_integer(args[0])
    if value < minimum or (maximum is not None and value > maximum):
        top = "" if maximum is None else f" and {maximum}"
        raise ValueError(f"{value} is out of range (between {minimum}{top})")
    return value


def parse_port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    return port


def parse_ip(text: str) -> str:
    """Normalise an IPv4 or IPv6 address (IPv6 may be written in brackets)."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"'{text}' is not an IP address") from None


INTERCEPT = "intercept"      # NAT interception: the original destination from SO_ORIGINAL_DST
TPROXY = "tproxy"            # Linux TPROXY: the socket's own address is the original destination


@dataclass(frozen=True)
class ListenAddress:
    """One ``http_port``: where to listen and the options written after it."""

    host: str          # "" means every IPv4 and IPv6 address
    port: int
    name: str          # for myportname; Squid names a port by its spec
    options: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    tls: PortTls | None = field(default=None, compare=False, hash=False)
    where: str = field(default="", compare=False, hash=False)         # FILE:LINE of its line
    https: bool = field(default=False, compare=False, hash=False)     # an https_port: TLS from the start
    kind: str = "http"  # "metrics" for a metrics_port

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.kind, self.host, self.port)

    @property
    def require_proxy_header(self) -> bool:
        """Connections must start with a PROXY protocol header (from a load balancer)."""
        return "require-proxy-header" in self.options

    @property
    def interception(self) -> str | None:
        """``"intercept"``, ``"tproxy"``, or None for a forward-proxy port."""
        if INTERCEPT in self.options:
            return INTERCEPT
        if TPROXY in self.options:
            return TPROXY
        return None

# http_port options squidpy implements (reuseport is its own: share the port between processes)
HTTP_PORT_OPTIONS = {"name": "names the port for myportname ACLs (default: the port as written)",
                     "reuseport": "squidpy extension: several processes share the port (SO_REUSEPORT)",
                     "require-proxy-header": "connections start with a PROXY protocol header (version 1 or 2) "
                                             "whose client address stands for the connection's; see "
                                             "proxy_protocol_access",
                     INTERCEPT: "NAT interception (REDIRECT/DNAT): the original destination from the socket "
                                "(transparent is its older name); on an https_port with ssl-bump, port 443 "
                                "(SslBump by SNI); docs/intercept.md",
                     "transparent": "the older name of intercept",
                     TPROXY: "Linux TPROXY interception, origin connections from the client's address "
                             "(spoof_client_ip); docs/intercept.md"}
FLAG_OPTIONS = {INTERCEPT, TPROXY, "require-proxy-header"}      # written without =VALUE

# TLS options of http_port and https_port squidpy implements (squidpy.tls.options.PortTls)
TLS_PORT_OPTIONS = {
    "ssl-bump": "SslBump on this port: CONNECTs follow the ssl_bump rules (docs/https.md); on an intercepting "
                "https_port, every connection does",
    "sslBump": "the deprecated spelling of ssl-bump (with Squid's warning)",
    "generate-host-certificates": "=on (the default) mints a certificate per origin, signed by tls-cert=; "
                                  "=off serves tls-cert= itself",
    "dynamic_cert_mem_cache_size": "memory for minted certificates (default 4 MB); they are kept on disk too",
    "tls-cert": "the bumping CA (certificate and key may share the file), or an https_port's own certificate "
                "and chain",
    "cert": "the old spelling of tls-cert=",
    "tls-key": "the private key, when not in the tls-cert= file",
    "key": "the old spelling of tls-key=",
    "tls-cafile": "CAs whose client certificates an https_port accepts (asks for one)",
    "cafile": "the old spelling of tls-cafile= (with Squid's warning)",
    "tls-clientca": "the CAs named to clients when asking for a certificate",
    "clientca": "the old spelling of tls-clientca=",
    "tls-flags": "DELAYED_AUTH, CONDITIONAL_AUTH, DONT_VERIFY_PEER ... as Squid reads them",
    "sslflags": "the old spelling of tls-flags=",
    "tls-options": "OpenSSL options (NO_TLSv1, SINGLE_DH_USE ...), names or hex, as Squid reads them",
    "options": "the old spelling of tls-options=",
    "tls-min-version": "the lowest TLS version clients may use (1.0 to 1.3)",
    "version": "deprecated; turned into options as Squid does (with its warning)",
    "tls-cipher": "the OpenSSL cipher list offered to clients",
    "cipher": "the old spelling of tls-cipher=",
}

# Squid 5.7's other http_port options: (status, why), status as in the directive registry
HTTP_PORT_OTHERS = {
    "tcpkeepalive": ("ignored", "squidpy does not set TCP keepalive probes on client connections"),
    "disable-pmtu-discovery": ("ignored", "squidpy leaves path MTU discovery to the system"),
    "worker-queues": ("ignored", "squidpy's workers share a port with SO_REUSEPORT"),
    "ftp-track-dirs": ("ignored", "an ftp_port option; squidpy has no ftp_port"),
    "ipv4": ("refused", "listening on IPv4 only for a bare port"),
    "accel": ("refused", "reverse proxy (accelerator) mode"),
    "defaultsite": ("refused", "reverse proxy (accelerator) mode"),
    "vhost": ("refused", "reverse proxy (accelerator) mode"),
    "no-vhost": ("refused", "reverse proxy (accelerator) mode"),
    "vport": ("refused", "reverse proxy (accelerator) mode"),
    "protocol": ("refused", "reverse proxy (accelerator) mode"),
    "allow-direct": ("refused", "reverse proxy (accelerator) mode"),
    "act-as-origin": ("refused", "reverse proxy (accelerator) mode"),
    "ignore-cc": ("refused", "reverse proxy (accelerator) mode"),
    "connection-auth": ("refused", "connection-oriented authentication (NTLM, Negotiate) pinning"),
    "no-connection-auth": ("refused", "connection-oriented authentication (NTLM, Negotiate) pinning"),
    # TLS options squidpy reads but does not use on a port (a warning says so)
    **{key: ("ignored", "certificate revocation lists and CA directories are not checked for client "
                        "certificates (tls-cafile= is)") for key in ("capath", "crlfile", "tls-capath", "tls-crlfile")},
    **{key: ("ignored", "squidpy's ports use OpenSSL's built-in (EC)DHE groups") for key in ("dhparams", "tls-dh")},
    **{key: ("ignored", "a session ID context: squidpy's ports resume no sessions by ID")
       for key in ("sslcontext", "tls-context")},
    "tls-no-npn": ("ignored", "squidpy never offers NPN"),
    **{key: ("ignored", "client certificates are checked against tls-cafile=/tls-clientca= only")
       for key in ("tls-default-ca", "tls-no-default-ca")},
}


def http_port_option(option: str) -> str:
    """The name an http_port option is classified under (``cert=x`` is ``cert``)."""
    key = option.split("=", 1)[0]
    if key.startswith("generate-host-certificates"):
        return "generate-host-certificates"
    return key


def parse_http_port(args: list[str], warn: Callable[[str], None] | None = None,
                    resolve_path: Callable[[str], str] | None = None, https: bool = False,
                    where: str = "", kind: str = "http") -> ListenAddress:
    """``3128``, ``127.0.0.1:3128``, ``[::1]:3128``, ``[::]:3128``, then options: ``name=``,
    and the TLS ones (``ssl-bump``, ``tls-cert=`` ..., :class:`squidpy.tls.options.PortTls`);
    ``kind``: http, or metrics for a metrics_port."""
    from squidpy.tls.options import PortTls, TlsOptionError
    if not args:
        raise ValueError("expected [ADDRESS:]PORT")
    spec, opts = args[0], args[1:]
    if spec.startswith("["):
        end = spec.find("]:")
        if end < 0:
            raise ValueError(f"'{spec}': an IPv6 address is written [ADDRESS]:PORT")
        host, port_text = parse_ip(spec[1:end]), spec[end + 2:]
    elif ":" in spec:
        addr, _, port_text = spec.rpartition(":")
        host = parse_ip(addr) if addr not in ("", "*") else ""
        if addr and ":" in addr:
            raise ValueError(f"'{spec}': an IPv6 address is written [ADDRESS]:PORT")
    else:
        host, port_text = "", spec
    port = 0 if port_text == "0" else parse_port_number(port_text)
    options = {}
    tls = PortTls()
    warn = warn or (lambda message: None)
    directive = "https_port" if https else f"{kind}_port"
    try:
        for opt in opts:
            key = http_port_option(opt)
            if key == "transparent":
                key = opt = INTERCEPT           # its older name, which Squid 5.7 takes silently
            if key in HTTP_PORT_OPTIONS:
                key, eq, value = opt.partition("=")
                if key in FLAG_OPTIONS and eq:
                    raise ValueError(f"{key} takes no value")
                if key == INTERCEPT and TPROXY in options:
                    raise ValueError("Intercept mode requires its own interception port. It cannot be shared "
                                     "with other modes (this port is already tproxy).")
                if key == TPROXY and INTERCEPT in options:
                    raise ValueError("TPROXY option requires its own interception port. It cannot be shared "
                                     "with other modes (this port is already intercept).")
                options[key] = value
                continue
            if key in TLS_PORT_OPTIONS or (key.startswith("tls-") and key not in HTTP_PORT_OTHERS):
                tls.parse_port(opt, warn, resolve_path or (lambda p: p))     # unknown tls-*: Squid's warning
                continue
            status, why = HTTP_PORT_OTHERS.get(key) or (None, "")
            if status == "ignored":
                warn(f"{directive} option {opt} is ignored: {why}")
            elif status == "refused":
                raise ValueError(f"Squid {directive} option {key} is not implemented by squidpy yet ({why}; "
                                 "see docs/squid-compat.md)")
            else:
                known = [*HTTP_PORT_OPTIONS, *TLS_PORT_OPTIONS, *HTTP_PORT_OTHERS]
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(f"unknown {directive} option '{opt}'{hint}")
        interception = INTERCEPT if INTERCEPT in options else TPROXY if TPROXY in options else None
        if kind != "http" and interception is not None:
            raise ValueError(f"{directive}: interception (intercept, tproxy) is for http_port and https_port")
        if https or tls.has_tls:
            tls.check(https, warn, interception)
    except TlsOptionError as e:
        raise ValueError(str(e)) from None
    return ListenAddress(host, port, options.get("name") or spec, options,
                         tls if (https or tls.has_tls) else None, where, https, kind)
