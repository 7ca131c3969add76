"""Squid's ``refresh_pattern`` and its freshness check (src/refresh.cc), as pure code.

    refresh_pattern [-i] REGEX MIN PERCENT MAX [OPTIONS]

MIN and MAX are minutes, PERCENT a share of the time since Last-Modified.
The first pattern matching the URL applies; a URL no pattern matches (and
every URL of a configuration without refresh_pattern) gets Squid's built-in
rule, :data:`squidpy.cache.policy.DEFAULT_RULE`.

:func:`refresh_check` is Squid's refreshCheck: the stored reply's staleness
(refreshStaleness: its explicit expiry, else MAX, else the Last-Modified
factor, else MIN), then the reply's, the request's and the configuration's
say, in Squid's order, and the answer is one of Squid's reason codes
(``FRESH_EXPIRES``, ``STALE_RELOAD_INTO_IMS`` ...), with whether a failed
validation must pass the error on (Squid's failOnValidationError).
:func:`is_cachable` is refreshIsCachable, which decides at store time.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from squidpy.cache import policy
from squidpy.cache.policy import DEFAULT_RULE, RefreshRule
from squidpy.config.posix_regex import PosixRegex, PosixRegexError
from squidpy.config.values import squid_integer
from squidpy.http.message import Fields

if TYPE_CHECKING:
    from squidpy.config.loader import Config

DEFAULT_PATTERNS = (
    "^ftp: 1440 20% 10080",
    "^gopher: 1440 0% 1440",
    r"-i (/cgi-bin/|\?) 0 0% 0",
    ". 0 20% 4320",
)

OPTIONS = {
    "override-expire", "override-lastmod", "reload-into-ims", "ignore-reload",
    "ignore-no-store", "ignore-private", "refresh-ims", "store-stale",
}
YEAR_MINUTES = 60 * 24 * 365


@dataclass(frozen=True)
class RefreshPattern:
    regex: PosixRegex
    rule: RefreshRule
    options: frozenset[str]
    text: str


OBSOLETE_OPTIONS = {"ignore-no-cache", "ignore-must-revalidate", "ignore-auth"}


def parse_refresh_pattern(args: list[str], warn: Callable[[str], None] | None = None) -> RefreshPattern:
    """One refresh_pattern line's arguments; raises ValueError.

    The pattern is a POSIX extended regular expression as in Squid; MIN and MAX
    are cropped to [0, 1 year] as Squid crops them; an obsolete or unknown option
    is ignored with a warning, as Squid ignores it.
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
        minimum = min(max(squid_integer(min_text), 0), YEAR_MINUTES) * 60
        maximum = min(max(squid_integer(max_text), 0), YEAR_MINUTES) * 60
        percent = max(float(percent_text.rstrip("%")), 0.0) / 100
    except ValueError:
        raise ValueError("MIN and MAX are whole minutes and PERCENT a number followed by %") from None
    chosen = set()
    max_stale = -1
    for option in options:
        name, _, value = option.partition("=")
        if option in OBSOLETE_OPTIONS:
            if warn is not None:
                warn(f"UPGRADE: refresh_pattern option '{option}' is obsolete; remove it")
            continue
        if name == "max-stale":
            try:
                max_stale = squid_integer(value)
            except ValueError:
                raise ValueError(f"max-stale=N takes seconds: '{option}'") from None
        elif name not in OPTIONS:
            if warn is not None:
                warn(f"unknown refresh_pattern option '{option}' is ignored, as Squid ignores it")
            continue
        chosen.add(name)
    rule = RefreshRule(float(minimum), percent, float(maximum),
                       override_expire="override-expire" in chosen,
                       override_lastmod="override-lastmod" in chosen,
                       reload_into_ims="reload-into-ims" in chosen,
                       ignore_reload="ignore-reload" in chosen,
                       ignore_no_store="ignore-no-store" in chosen,
                       ignore_private="ignore-private" in chosen,
                       refresh_ims="refresh-ims" in chosen,
                       store_stale="store-stale" in chosen,
                       max_stale=float(max_stale))
    return RefreshPattern(regex, rule, frozenset(chosen), " ".join(args))


def pattern_for(patterns: list[RefreshPattern], url: str) -> RefreshPattern | None:
    for p in patterns:
        if p.regex.search(url):
            return p
    return None


def rule_for(patterns: list[RefreshPattern], url: str) -> RefreshRule:
    """The rule for ``url``: the first matching pattern's, else Squid's built-in one."""
    for p in patterns:
        if p.regex.search(url):
            return p.rule
    return DEFAULT_RULE


@dataclass(frozen=True)
class RefreshSettings:
    """The global directives refreshCheck reads (times in seconds)."""

    max_stale: float = 7 * 86400.0
    reload_into_ims: bool = False
    refresh_all_ims: bool = False
    minimum_expiry_time: float = 60.0
    # Squid's refresh_nocache_hack: some refresh_pattern has ignore-reload or
    # reload-into-ims (or reload_into_ims is on), so a client reload is looked up
    nocache_hack: bool = False

    @classmethod
    def from_config(cls, config: Config) -> "RefreshSettings":
        patterns = config.refresh_pattern
        return cls(max_stale=float(config.max_stale), reload_into_ims=config.reload_into_ims,
                   refresh_all_ims=config.refresh_all_ims,
                   minimum_expiry_time=float(config.minimum_expiry_time),
                   nocache_hack=config.reload_into_ims or any(
                       p.rule.ignore_reload or p.rule.reload_into_ims for p in patterns))


DEFAULT_SETTINGS = RefreshSettings()


class Reason(enum.IntEnum):
    """Squid's refresh reason codes (src/refresh.cc): fresh below 200, stale from 200."""

    FRESH_REQUEST_MAX_STALE_ALL = 100
    FRESH_REQUEST_MAX_STALE_VALUE = 101
    FRESH_EXPIRES = 102
    FRESH_LMFACTOR_RULE = 103
    FRESH_MIN_RULE = 104
    FRESH_OVERRIDE_EXPIRES = 105
    FRESH_OVERRIDE_LASTMOD = 106
    STALE_MUST_REVALIDATE = 200
    STALE_RELOAD_INTO_IMS = 201
    STALE_FORCED_RELOAD = 202
    STALE_EXCEEDS_REQUEST_MAX_AGE_VALUE = 203
    STALE_EXPIRES = 204
    STALE_MAX_RULE = 205
    STALE_LMFACTOR_RULE = 206
    STALE_MAX_STALE = 207
    STALE_DEFAULT = 299


# a reply stale by its lifetime alone (not by a directive or the request): the
# stale-while-revalidate window (RFC 5861 3) may serve it while it is refreshed
PLAIN_STALE = frozenset({Reason.STALE_EXPIRES, Reason.STALE_MAX_RULE, Reason.STALE_LMFACTOR_RULE,
                         Reason.STALE_DEFAULT})


class EntryFacts:
    """What the freshness check needs of a stored reply, computed once per
    configuration (:meth:`squidpy.cache.store.CachedReply.facts`).

    ``explicit``: the explicit lifetime (max-age, s-maxage, Expires - Date) or None;
    ``lm_lifetime``: the Last-Modified factor's lifetime or None; ``lifetime``: the
    age at which it turns stale; ``hit_lifetime``: below this age a request that
    asks nothing special is answered from the cache (the overrides included;
    negative when every hit must be revalidated).
    """

    __slots__ = ("cc", "initial_age", "rule", "explicit", "lm_lifetime", "lifetime", "always",
                 "stale_revalidate", "hit_lifetime")

    def __init__(self, status: int, headers: Fields, rule: RefreshRule, initial_age: float, timestamp: float,
                 max_stale: float):
        cc = policy.cache_control(headers)
        self.cc = cc
        self.initial_age = initial_age
        self.rule = rule
        self.explicit = explicit = policy.explicit_lifetime(headers, cc)
        if explicit is None and not (status in policy.HEURISTIC_STATUSES or "public" in cc):
            self.explicit = explicit = 0.0        # RFC 9111 4.2.2: no heuristic for this status
        self.lm_lifetime = lm = None if explicit is not None else policy.lastmod_lifetime(headers, rule, timestamp)
        self.always = policy.revalidate_always(headers, cc)
        self.stale_revalidate = policy.must_revalidate(cc)
        if explicit is not None:
            lifetime = explicit
        elif lm is not None:
            lifetime = min(lm, rule.maximum)
        else:
            lifetime = min(rule.minimum, rule.maximum)
        self.lifetime = lifetime
        hit = lifetime
        overridden = rule.override_expire if explicit is not None else (lm is not None and rule.override_lastmod)
        if overridden and not self.stale_revalidate and rule.minimum > lifetime:
            limit = rule.max_stale if rule.max_stale >= 0 else max_stale
            hit = rule.minimum if limit < 0 else min(rule.minimum, lifetime + limit)
            if explicit is None:
                hit = min(hit, rule.maximum)
        self.hit_lifetime = -1.0 if self.always else hit


def entry_facts(status: int, headers: Fields, rule: RefreshRule, request_time: float, response_time: float,
                settings: RefreshSettings = DEFAULT_SETTINGS) -> EntryFacts:
    """The facts of a reply received at ``response_time``; Squid's timestamp (when the
    reply was generated: its Date, corrected by Age) is when its age was zero."""
    initial = policy.initial_age(headers, request_time, response_time)
    return EntryFacts(status, headers, rule, initial, response_time - initial, settings.max_stale)


class Check(NamedTuple):
    reason: Reason
    fail_on_error: bool = False     # a failed validation passes the error on (no stale reply)
    reload: bool = False            # a client reload: fetch without validators (TCP_CLIENT_REFRESH_MISS)
    staleness: float = 0.0          # seconds past the lifetime (0 when fresh)


def _staleness(f: EntryFacts, age: float) -> float | None:
    """refreshStaleness: seconds past the lifetime, None while fresh."""
    if f.explicit is not None:
        return None if age < f.explicit else age - f.explicit
    rule = f.rule
    if age > rule.maximum:
        return age - rule.maximum
    if f.lm_lifetime is not None:
        return None if age < f.lm_lifetime else age - f.lm_lifetime
    return None if age < rule.minimum else age - rule.minimum


def _unrequested(f: EntryFacts, age: float, staleness: float | None, settings: RefreshSettings) -> Check:
    """The end of refreshCheck, where the request has no more say."""
    rule = f.rule
    if staleness is None:
        if f.explicit is not None:
            return Check(Reason.FRESH_EXPIRES)
        return Check(Reason.FRESH_LMFACTOR_RULE if f.lm_lifetime is not None else Reason.FRESH_MIN_RULE)
    limit = rule.max_stale if rule.max_stale >= 0 else settings.max_stale
    if limit >= 0 and staleness > limit:
        return Check(Reason.STALE_MAX_STALE, True, staleness=staleness)        # max_stale, max-stale=N
    if f.explicit is not None:
        if rule.override_expire and age < rule.minimum:
            return Check(Reason.FRESH_OVERRIDE_EXPIRES, staleness=staleness)
        return Check(Reason.STALE_EXPIRES, staleness=staleness)
    if age > rule.maximum:
        return Check(Reason.STALE_MAX_RULE, staleness=staleness)
    if f.lm_lifetime is not None:
        if rule.override_lastmod and age < rule.minimum:
            return Check(Reason.FRESH_OVERRIDE_LASTMOD, staleness=staleness)
        return Check(Reason.STALE_LMFACTOR_RULE, staleness=staleness)
    return Check(Reason.STALE_DEFAULT, staleness=staleness)


def refresh_check(f: EntryFacts, age: float, settings: RefreshSettings, req_cc: policy.Directives,
                  ims: bool = False) -> Check:
    """Squid's refreshCheck for a request (``req_cc``: its Cache-Control, with Pragma
    folded in as RFC 9111 5.4 says; ``ims``: it has a valid If-Modified-Since)."""
    rule = f.rule
    min_fresh = policy.delta_seconds(req_cc.get("min-fresh")) if req_cc else None
    if min_fresh is not None:
        age += min_fresh                                                       # RFC 9111 5.2.1.3
    staleness = _staleness(f, age)
    fail = False
    stale_if_error = policy.delta_seconds(f.cc.get("stale-if-error"))
    if stale_if_error is not None and staleness is not None and stale_if_error < staleness:
        fail = True                                                            # RFC 5861 4: its window is over
    if f.always or (staleness is not None and f.stale_revalidate):
        # RFC 9111 5.2.2.2, 5.2.2.4, 5.2.2.8, 5.2.2.10 (and Squid's reading of private, Pragma)
        return Check(Reason.STALE_MUST_REVALIDATE, True, staleness=staleness or 0.0)
    if ims and (rule.refresh_ims or settings.refresh_all_ims):
        return Check(Reason.STALE_FORCED_RELOAD, fail, staleness=staleness or 0.0)   # refresh-ims
    if req_cc:
        if "no-cache" in req_cc:                                               # RFC 9111 5.2.1.4
            if not settings.nocache_hack:
                return Check(Reason.STALE_FORCED_RELOAD, fail, reload=True)
            if not rule.ignore_reload:
                if rule.reload_into_ims or settings.reload_into_ims:
                    return Check(Reason.STALE_RELOAD_INTO_IMS, fail, staleness=staleness or 0.0)
                return Check(Reason.STALE_FORCED_RELOAD, fail, reload=True)
        max_age = policy.delta_seconds(req_cc.get("max-age"))
        if max_age is not None and "immutable" not in f.cc and not (rule.ignore_reload and max_age == 0):
            if age > max_age or max_age == 0:                                  # RFC 9111 5.2.1.1; RFC 8246
                return Check(Reason.STALE_EXCEEDS_REQUEST_MAX_AGE_VALUE, fail, staleness=staleness or 0.0)
        if "max-stale" in req_cc and staleness is not None:                    # RFC 9111 5.2.1.2
            value = req_cc["max-stale"]
            if value is None:
                return Check(Reason.FRESH_REQUEST_MAX_STALE_ALL, staleness=staleness)
            limit = policy.delta_seconds(value)
            if limit is not None and staleness < limit:
                return Check(Reason.FRESH_REQUEST_MAX_STALE_VALUE, staleness=staleness)
    check = _unrequested(f, age, staleness, settings)
    return check._replace(fail_on_error=True) if fail and not check.fail_on_error else check


def is_cachable(f: EntryFacts, settings: RefreshSettings, content_length: int | None) -> bool:
    """Squid's refreshIsCachable, for a reply about to be stored with a status Squid
    refresh-checks (:data:`REFRESH_CHECKED_STATUSES`): fresh for minimum_expiry_time
    more, or else not known to be empty (a stale reply can still be revalidated; an
    empty one is not worth it).  ``store-stale`` stores it anyway."""
    if f.rule.store_stale:
        return True
    age = f.initial_age + settings.minimum_expiry_time
    if _unrequested(f, age, _staleness(f, age), settings).reason < Reason.STALE_MUST_REVALIDATE:
        return True
    return content_length != 0


# src/http.cc reusableReply: the statuses whose storing refreshIsCachable decides
REFRESH_CHECKED_STATUSES = frozenset({200, 203, 300, 301, 308, 410})
