"""What `squidpy logs tail` and `report` select: times and record filters (pure).

Times are read the way admins write them: ``2026-11-23``, ``2026-11-23 08:00``,
``08:00`` (today), ``yesterday``, ``today``, ``monday`` (the last one), a number
of seconds since the epoch, or an age: ``15m``, ``2h``, ``7d``, ``1w`` ago.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Callable

from squidpy.ip import ip_address
from squidpy.log.parse import Record, domain_of, is_denied

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hour|hours|d|day|days|w|week|weeks)$")
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_when(text: str, now: float) -> float:
    """A point in time, as seconds since the epoch (local time for dates); raises ValueError."""
    text = text.strip().lower()
    local_now = dt.datetime.fromtimestamp(now)
    midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    m = _AGE.match(text)
    if m:
        return now - float(m.group(1)) * _AGE_SECONDS[m.group(2)[0]]
    if text == "now":
        return now
    if text == "today":
        return midnight.timestamp()
    if text == "yesterday":
        return (midnight - dt.timedelta(days=1)).timestamp()
    if text in _WEEKDAYS:
        back = (local_now.weekday() - _WEEKDAYS.index(text)) % 7
        return (midnight - dt.timedelta(days=back)).timestamp()
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return float(text)
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text):
        parts = [int(p) for p in text.split(":")] + [0]
        return midnight.replace(hour=parts[0], minute=parts[1], second=parts[2]).timestamp()
    try:
        return dt.datetime.fromisoformat(text.replace("t", " ")).timestamp()
    except ValueError:
        raise ValueError(f"'{text}' is not a time: use 2026-11-23, '2026-11-23 08:00', 08:00, "
                         "yesterday, monday, or an age like 2h or 7d") from None


@dataclass
class Selection:
    """The filters of one command line; every one given must match (values of one filter: any)."""

    denied: bool = False
    clients: list[IPv4Network | IPv6Network] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)  # "404" or "4xx"
    methods: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    since: float | None = None
    until: float | None = None
    grep: re.Pattern[str] | None = None

    @property
    def empty(self) -> bool:
        return not (self.denied or self.clients or self.users or self.domains or self.statuses or self.methods
                    or self.results or self.since is not None or self.until is not None or self.grep)

    def predicate(self) -> Callable[[Record], bool]:
        """One function testing a record against every filter given (cheapest first)."""
        tests: list[Callable[[Record], bool]] = []
        if self.since is not None:
            since = self.since
            tests.append(lambda r: r.time >= since)
        if self.until is not None:
            until = self.until
            tests.append(lambda r: r.time < until)
        if self.denied:
            tests.append(lambda r: is_denied(r.result))
        if self.methods:
            methods = {m.upper() for m in self.methods}
            tests.append(lambda r: r.method in methods)
        if self.statuses:
            exact = {int(s) for s in self.statuses if s.isdigit()}
            classes = {int(s[0]) for s in self.statuses if not s.isdigit()}
            tests.append(lambda r: r.status in exact or r.status // 100 in classes)
        if self.results:
            results = [r.upper() for r in self.results]
            tests.append(lambda r: r.result is not None and any(
                r.result == want or r.result.startswith(want + "_") for want in results))
        if self.users:
            users = set(self.users)
            tests.append(lambda r: r.user in users or _unpercent(r.user) in users)
        if self.domains:
            suffixes = [d.lower().lstrip(".") for d in self.domains]
            tests.append(lambda r: _in_domains(domain_of(r.url, r.method), suffixes))
        if self.clients:
            networks = self.clients
            cache: dict[str, bool] = {}

            def client_matches(r: Record) -> bool:
                hit = cache.get(r.client)
                if hit is None:
                    hit = cache[r.client] = _in_networks(r.client, networks)
                    if len(cache) > 100_000:
                        cache.clear()
                return hit
            tests.append(client_matches)
        if self.grep is not None:
            search = self.grep.search
            tests.append(lambda r: search(r.line) is not None)
        if not tests:
            return lambda r: True
        if len(tests) == 1:
            return tests[0]
        return lambda r: all(t(r) for t in tests)


def parse_status(text: str) -> str:
    """``404`` or a class like ``4xx``; raises ValueError."""
    text = text.lower()
    if re.fullmatch(r"[1-5]\d\d", text) or re.fullmatch(r"[1-5]xx", text):
        return text
    raise ValueError(f"'{text}' is not a status: use a code like 404 or a class like 4xx")


def parse_network(text: str) -> IPv4Network | IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"'{text}' is not an address or CIDR network (10.0.0.0/8, 2001:db8::/32)") from None


def _in_domains(domain: str, suffixes: list[str]) -> bool:
    return any(domain == s or domain.endswith("." + s) for s in suffixes)


def _in_networks(client: str, networks: list[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(client)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


def _unpercent(text: str | None) -> str | None:
    if text is None or "%" not in text:
        return text
    from urllib.parse import unquote
    return unquote(text)
