"""Where an ``access_log`` line sends its lines: Squid's ``module:place`` syntax (pure).

    /var/log/squidpy/access.log        a file (Squid's stdio module)
    stdio:PATH  daemon:PATH            a file (squidpy writes daemon: like stdio)
    syslog[:FACILITY[.PRIORITY]]       the local syslog (default local4.info)
    udp://HOST:PORT  tcp://HOST:PORT   a remote collector ([IPv6]:PORT too)
    none                               nothing
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
PRIORITIES = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4, "warn": 4,
    "notice": 5, "info": 6, "debug": 7,
}


@dataclass(frozen=True)
class Destination:
    kind: str                   # "file", "syslog", "udp", "tcp" or "none"
    text: str                   # as written (paths made absolute)
    path: str | None = None
    host: str | None = None
    port: int | None = None
    facility: int = FACILITIES["local4"]
    priority: int = PRIORITIES["info"]

    @property
    def is_file(self) -> bool:
        return self.kind == "file"


def parse_destination(text: str, resolve: Callable[[str], str] = lambda path: path) -> Destination:
    """Parse one destination; ``resolve`` makes a relative path absolute.  Raises ValueError."""
    if text == "none":
        return Destination("none", text)
    if text.startswith(("udp://", "tcp://")):
        kind, _, place = text.partition("://")
        host, port = _host_port(place)
        return Destination(kind, text, host=host, port=port)
    if text == "syslog" or text.startswith("syslog:"):
        return _syslog(text)
    module, colon, place = text.partition(":")
    if colon and module in ("stdio", "daemon"):
        if not place:
            raise ValueError(f"'{text}': a file name must follow '{module}:'")
        path = resolve(place)
        return Destination("file", f"{module}:{path}", path=path)
    if colon and "/" not in module and module.isalnum():
        raise ValueError(f"unknown access_log module '{module}:' "
                         "(use a path, stdio:, daemon:, syslog:, udp://, tcp:// or none)")
    path = resolve(text)
    return Destination("file", path, path=path)


def _syslog(text: str) -> Destination:
    place = text.partition(":")[2]
    facility_name, _, priority_name = place.partition(".")
    facility = FACILITIES["local4"]
    priority = PRIORITIES["info"]
    if facility_name:
        if facility_name not in FACILITIES:
            raise ValueError(f"unknown syslog facility '{facility_name}' (one of {', '.join(FACILITIES)})")
        facility = FACILITIES[facility_name]
    if priority_name:
        if priority_name not in PRIORITIES:
            raise ValueError(f"unknown syslog priority '{priority_name}' (one of {', '.join(PRIORITIES)})")
        priority = PRIORITIES[priority_name]
    return Destination("syslog", text, facility=facility, priority=priority)


def _host_port(place: str) -> tuple[str, int]:
    place = place.rstrip("/")
    if place.startswith("["):
        host, bracket, rest = place[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"'{place}': expected [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, colon, port_text = place.rpartition(":")
        if not colon or ":" in host:
            raise ValueError(f"'{place}': expected HOST:PORT (write IPv6 addresses as [ADDRESS]:PORT)")
    if not host:
        raise ValueError(f"'{place}': the host is missing")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"'{port_text}' is not a port number (1-65535)")
    return host, int(port_text)
