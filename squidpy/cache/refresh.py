"""Squid's ``refresh_pattern``: how long an object without explicit freshness stays fresh.

    refresh_pattern [-i] REGEX MIN PERCENT MAX [OPTIONS]

MIN and MAX are minutes, PERCENT a share of the time since Last-Modified.
The first pattern matching the URL applies.  squidpy uses it as RFC 9111's
heuristic (section 4.2.2): ``lifetime = clip(PERCENT x (Date - Last-Modified),
MIN, MAX)``, and MIN when there is no Last-Modified; explicit max-age,
s-maxage or Expires always win unless ``override-expire`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from squidpy.cache.policy import RefreshRule
from squidpy.config.posix_regex import PosixRegex, PosixRegexError
from squidpy.config.values import squid_integer

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
    regex: PosixRegex
    rule: RefreshRule
    options: frozenset[str]
    text: str


OBSOLETE_OPTIONS = {"ignore-no-cache", "ignore-must-revalidate", "ignore-auth"}


def parse_refresh_pattern(args: list[str], warn=None) -> RefreshPattern:
    """One refresh_pattern line's arguments; raises ValueError.

    The pattern is a POSIX extended regular expression as in Squid; an obsolete
    or unknown option is ignored with a warning, as Squid ignores it.
    """
    args = list(args)
    icase = False
    if args and args[0] in ("-i", "+i"):
        icase = args.pop(0) == "-i"
    if len(args) < 4:
        raise ValueError("expected: refresh_pattern [-i] REGEX MIN PERCENT MAX [options]")
    pattern, min_text, percent_text, max_text, *options = args
    try:
        regex = PosixRegex(pattern, icase)
    except PosixRegexError as e:
        raise ValueError(f"bad regular expression '{pattern}': {e}") from None
    if warn is not None:
        for note in regex.notes:
            warn(f"in '{pattern}': {note}")
    try:
        minimum = min(max(squid_integer(min_text), 0), 525600) * 60
        maximum = min(max(squid_integer(max_text), 0), 525600) * 60
        percent = max(float(percent_text.rstrip("%")), 0.0) / 100
    except ValueError:
        raise ValueError("MIN and MAX are whole minutes and PERCENT a number followed by %") from None
    chosen = set()
    for option in options:
        name = option.split("=", 1)[0]
        if option in OBSOLETE_OPTIONS:
            if warn is not None:
                warn(f"UPGRADE: refresh_pattern option '{option}' is obsolete; remove it")
            continue
        if name not in OPTIONS and name != "max-stale":
            if warn is not None:
                warn(f"unknown refresh_pattern option '{option}' is ignored, as Squid ignores it")
            continue
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
