"""Value syntaxes of squid.conf: times, sizes, on/off, listening addresses.

Each parser takes the argument tokens of one directive and returns a Python
value or raises :class:`ValueError` with a message an admin can act on.
Times become seconds (float), sizes bytes (int).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

TIME_UNITS = {
    "millisecond": 0.001, "msec": 0.001, "ms": 0.001,
    "second": 1.0, "sec": 1.0, "s": 1.0,
    "minute": 60.0, "min": 60.0,
    "hour": 3600.0, "h": 3600.0,
    "day": 86400.0,
    "week": 7 * 86400.0,
    "fortnight": 14 * 86400.0,
    "month": 30 * 86400.0,
    "year": 365 * 86400.0,
    "decade": 3650 * 86400.0,
}

SIZE_UNITS = {
    "byte": 1, "b": 1,
    "kb": 1024, "k": 1024,
    "mb": 1024 ** 2, "m": 1024 ** 2,
    "gb": 1024 ** 3, "g": 1024 ** 3,
    "tb": 1024 ** 4,
}


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a {what}") from None
    if value < 0 or value != value or value in (float("inf"),):
        raise ValueError(f"'{text}' is not a valid {what}")
    return value


def _unit(word: str, table: dict[str, float]) -> float | None:
    w = word.lower()
    if w in table:
        return table[w]
    if w.endswith("s") and w[:-1] in table:
        return table[w[:-1]]
    return None


def parse_time(args: list[str], default_unit: str = "second") -> float:
    """``30 seconds``, ``2 minutes``, ``1.5 hours``, ``500 ms`` -> seconds.

    A bare number is taken in the directive's default unit, as Squid does.
    """
    if not args or len(args) > 2:
        raise ValueError("expected a time such as '30 seconds'")
    value = _number(args[0], "number")
    unit = args[1] if len(args) == 2 else default_unit
    factor = _unit(unit, TIME_UNITS)
    if factor is None:
        raise ValueError(f"unknown time unit '{unit}' (use seconds, minutes, hours, days ...)")
    return value * factor


def parse_size(args: list[str], default_unit: str = "byte") -> int:
    """``64 KB``, ``4 MB``, ``1 GB``, ``100 bytes`` -> bytes (units are powers of 1024)."""
    if not args or len(args) > 2:
        raise ValueError("expected a size such as '64 KB'")
    text, unit = args[0], (args[1] if len(args) == 2 else None)
    if unit is None:
        # '64KB' written without a blank
        i = len(text)
        while i and not text[i - 1].isdigit() and text[i - 1] != ".":
            i -= 1
        if i < len(text):
            text, unit = text[:i], text[i:]
        if not text:
            raise ValueError(f"'{args[0]}' is not a size such as '64 KB'")
    value = _number(text, "number")
    factor = _unit(unit or default_unit, SIZE_UNITS)
    if factor is None:
        raise ValueError(f"unknown size unit '{unit}' (use bytes, KB, MB or GB)")
    return int(value * factor)


def parse_onoff(args: list[str]) -> bool:
    if len(args) != 1 or args[0].lower() not in ("on", "off", "enable", "disable"):
        raise ValueError("expected 'on' or 'off'")
    return args[0].lower() in ("on", "enable")


def parse_int(args: list[str], minimum: int = 0, maximum: int | None = None) -> int:
    if len(args) != 1:
        raise ValueError("expected one number")
    try:
        value = int(args[0])
    except ValueError:
        raise ValueError(f"'{args[0]}' is not a whole number") from None
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
    options: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def interception(self) -> str | None:
        """``"intercept"``, ``"tproxy"``, or None for a forward-proxy port."""
        if INTERCEPT in self.options:
            return INTERCEPT
        if TPROXY in self.options:
            return TPROXY
        return None


HTTP_PORT_OPTIONS = {"name", "tcpkeepalive", "reuseport", INTERCEPT, TPROXY}
FLAG_OPTIONS = {INTERCEPT, TPROXY}      # written without =VALUE


def parse_http_port(args: list[str]) -> ListenAddress:
    """``3128``, ``127.0.0.1:3128``, ``[::1]:3128``, ``[::]:3128``, then options.

    ``intercept`` (``transparent`` is its older name, which Squid 5.7 takes silently)
    and ``tproxy`` make an interception port; each mode needs a port of its own,
    as in Squid."""
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
    for opt in opts:
        key, equals, value = opt.partition("=")
        if key == "transparent":
            key = INTERCEPT
        if key not in HTTP_PORT_OPTIONS:
            raise ValueError(f"unknown http_port option '{opt}'")
        if key in FLAG_OPTIONS and equals:
            raise ValueError(f"http_port option {key} takes no value ('{opt}')")
        if key == INTERCEPT and TPROXY in options:
            raise ValueError("Intercept mode requires its own interception port. It cannot be shared with "
                             "other modes (this port is already tproxy).")
        if key == TPROXY and INTERCEPT in options:
            raise ValueError("TPROXY option requires its own interception port. It cannot be shared with "
                             "other modes (this port is already intercept).")
        options[key] = value
    return ListenAddress(host, port, options.get("name") or spec, options)
