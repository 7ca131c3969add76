"""Squid's ``refresh_pattern``: how long an object without explicit freshness stays fresh.

    refresh_pattern [-i] REGEX MIN PERCENT MAX [OPTIONS]

MIN and MAX are minutes, PERCENT a share of the time since Last-Modified.
The first pattern matching the URL applies.  squidpy uses it as RFC 9111's
heuristic (section 4.2.2): ``lifetime = clip(PERCENT x (Date - Last-Modified),
MIN, MAX)``, and MIN when there is no Last-Modified; explicit max-age,
s-maxage or Expires always win unless ``override-expire`` says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from squidpy.cache.policy import RefreshRule

DEFAULT_PATTERNS = (
    "^ftp: 1440 20% 10080",
    r"-i (/cgi-bin/|\?) 0 0% 0",
    ". 0 20% 4320",
)

OPTIONS = {
    "override-expire", "override-lastmod", "reload-into-ims", "ignore-reload",
    "ignore-no-store", "ignore-private", "refresh-ims", "store-stale",
}


@dataclass(frozen=True)
class RefreshPattern:
    regex: re.Pattern
    rule: RefreshRule
    options: frozenset[str]
    text: str


def parse_refresh_pattern(args: list[str]) -> RefreshPattern:
    """One refresh_pattern line's arguments; raises ValueError."""
    args = list(args)
    flags = 0
    if args and args[0] == "-i":
        flags = re.IGNORECASE
        args.pop(0)
    if len(args) < 4:
        raise ValueError("expected: refresh_pattern [-i] REGEX MIN PERCENT MAX [options]")
    pattern, min_text, percent_text, max_text, *options = args
    try:
        regex = re.compile(pattern, flags)
    except re.error as e:
        raise ValueError(f"bad regular expression '{pattern}': {e}") from None
    try:
        minimum = float(min_text) * 60
        maximum = float(max_text) * 60
        percent = float(percent_text.rstrip("%")) / 100
    except ValueError:
        raise ValueError("MIN and MAX are minutes and PERCENT a number followed by %") from None
    if minimum < 0 or maximum < 0 or percent < 0:
        raise ValueError("MIN, PERCENT and MAX cannot be negative")
    chosen = set()
    for option in options:
        name = option.split("=", 1)[0]
        if name not in OPTIONS and name != "max-stale":
            raise ValueError(f"unknown refresh_pattern option '{option}'")
        chosen.add(name)
    rule = RefreshRule(minimum, percent, maximum,
                       override_expire="override-expire" in chosen,
                       override_lastmod="override-lastmod" in chosen)
    return RefreshPattern(regex, rule, frozenset(chosen), " ".join(args))


def pattern_for(patterns: list[RefreshPattern], url: str) -> RefreshPattern | None:
    for p in patterns:
        if p.regex.search(url):
            return p
    return None
