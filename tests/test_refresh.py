"""Squid's refreshCheck (src/refresh.cc) as squidpy's pure code: each refresh_pattern
option and global directive, by Squid's reason codes.  No clock: ages are given."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from squidpy.cache import policy
from squidpy.cache.policy import DEFAULT_RULE, RefreshRule
from squidpy.cache.refresh import (
    DEFAULT_SETTINGS,
    Reason,
    RefreshSettings,
    entry_facts,
    is_cachable,
    parse_refresh_pattern,
    refresh_check,
    rule_for,
)

NOW = 1_800_000_000.0
R = Reason


def h(*pairs: tuple[str, str]):
    return [(k.encode(), v.encode()) for k, v in pairs]


def date(offset: float = 0) -> str:
    return formatdate(NOW + offset, usegmt=True)


def facts(*pairs, rule: RefreshRule | None = None, status: int = 200, settings=DEFAULT_SETTINGS):
    """A reply generated and received at NOW (so its age later is the time since)."""
    rule = rule or RefreshRule(max_stale=-1.0)
    return entry_facts(status, h(("Date", date()), *pairs), rule, NOW, NOW, settings)


def check(f, age, req=None, ims=False, settings=DEFAULT_SETTINGS):
    return refresh_check(f, age, settings, req or {}, ims)


def rule(text: str) -> RefreshRule:
    return parse_refresh_pattern(text.split()).rule


# ------------------------------------------------------------ refreshStaleness

@pytest.mark.parametrize("pairs, age, reason", [
    ([("Cache-Control", "max-age=60")], 10, R.FRESH_EXPIRES),
    ([("Cache-Control", "max-age=60")], 70, R.STALE_EXPIRES),
    ([("Expires", date(60))], 70, R.STALE_EXPIRES),
    ([("Last-Modified", date(-10000))], 10, R.FRESH_LMFACTOR_RULE),     # 20% of 10000 s = 2000 s
    ([("Last-Modified", date(-10000))], 2500, R.STALE_LMFACTOR_RULE),
    ([], 10, R.STALE_DEFAULT),                                            # MIN 0, no Last-Modified
])
def test_staleness_by_expiry_lm_factor_and_min(pairs, age, reason):
    assert check(facts(*pairs, rule=rule(". 0 20% 4320")), age).reason is reason


def test_min_counts_only_without_last_modified():
    r = rule(". 10 20% 4320")                                             # MIN 600 s
    assert check(facts(rule=r), 500).reason is R.FRESH_MIN_RULE
    assert check(facts(rule=r), 700).reason is R.STALE_DEFAULT
    lm = facts(("Last-Modified", date(-1000)), rule=r)                   # LM-factor: 200 s, not raised to 600
    assert check(lm, 100).reason is R.FRESH_LMFACTOR_RULE
    assert check(lm, 300).reason is R.STALE_LMFACTOR_RULE
    assert lm.lifetime == 200.0 and lm.hit_lifetime == 200.0


def test_max_caps_the_heuristic():
    r = rule(". 0 100% 1")                                                # MAX 60 s
    assert check(facts(("Last-Modified", date(-10000)), rule=r), 61).reason is R.STALE_MAX_RULE


# ------------------------------------------------------------ override-expire, override-lastmod

def test_override_expire_keeps_it_fresh_while_younger_than_min():
    r = rule(". 10 20% 4320 override-expire")
    f = facts(("Cache-Control", "max-age=60"), rule=r)
    assert check(f, 30).reason is R.FRESH_EXPIRES
    assert check(f, 300).reason is R.FRESH_OVERRIDE_EXPIRES
    assert check(f, 700).reason is R.STALE_EXPIRES
    assert f.hit_lifetime == 600.0                                       # the shortcut knows it too
    assert check(facts(("Cache-Control", "max-age=60")), 300).reason is R.STALE_EXPIRES   # without it


def test_override_expire_yields_to_must_revalidate_and_max_stale():
    r = rule(". 10 20% 4320 override-expire")
    f = facts(("Cache-Control", "max-age=60, must-revalidate"), rule=r)
    assert check(f, 300) == (R.STALE_MUST_REVALIDATE, True, False, 240.0)
    assert f.hit_lifetime == 60.0
    capped = facts(("Cache-Control", "max-age=60"), rule=rule(". 10 20% 4320 override-expire max-stale=100"))
    assert check(capped, 150).reason is R.FRESH_OVERRIDE_EXPIRES
    assert check(capped, 300) == (R.STALE_MAX_STALE, True, False, 240.0)
    assert capped.hit_lifetime == 160.0


def test_override_lastmod_keeps_it_fresh_while_younger_than_min():
    r = rule(". 10 10% 4320 override-lastmod")
    f = facts(("Last-Modified", date(-1000)), rule=r)                    # LM-factor: 100 s
    assert check(f, 50).reason is R.FRESH_LMFACTOR_RULE
    assert check(f, 300).reason is R.FRESH_OVERRIDE_LASTMOD
    assert check(f, 700).reason is R.STALE_LMFACTOR_RULE
    assert f.hit_lifetime == 600.0


# ------------------------------------------------------------ the request's say

def test_client_reload_is_a_forced_reload_unless_a_pattern_says_otherwise():
    f = facts(("Cache-Control", "max-age=600"))
    assert check(f, 10, {"no-cache": None}) == (R.STALE_FORCED_RELOAD, False, True, 0.0)
    hack = RefreshSettings(nocache_hack=True)             # some pattern has ignore-reload / reload-into-ims
    assert check(f, 10, {"no-cache": None}, settings=hack).reload            # not this URL's pattern
    ignored = facts(("Cache-Control", "max-age=600"), rule=rule(". 0 20% 4320 ignore-reload"))
    assert check(ignored, 10, {"no-cache": None}, settings=hack).reason is R.FRESH_EXPIRES
    assert check(ignored, 10, {"max-age": "0"}, settings=hack).reason is R.FRESH_EXPIRES
    assert check(ignored, 10, {"max-age": "5"}, settings=hack).reason is R.STALE_EXCEEDS_REQUEST_MAX_AGE_VALUE
    ims = facts(("Cache-Control", "max-age=600"), rule=rule(". 0 20% 4320 reload-into-ims"))
    assert check(ims, 10, {"no-cache": None}, settings=hack) == (R.STALE_RELOAD_INTO_IMS, False, False, 0.0)
    everywhere = RefreshSettings(reload_into_ims=True, nocache_hack=True)   # reload_into_ims on
    assert check(f, 10, {"no-cache": None}, settings=everywhere).reason is R.STALE_RELOAD_INTO_IMS


def test_refresh_ims_and_refresh_all_ims():
    fresh = facts(("Cache-Control", "max-age=600"), rule=rule(". 0 20% 4320 refresh-ims"))
    assert check(fresh, 10, ims=True).reason is R.STALE_FORCED_RELOAD
    assert not check(fresh, 10, ims=True).reload                          # a revalidation, with validators
    assert check(fresh, 10).reason is R.FRESH_EXPIRES
    plain = facts(("Cache-Control", "max-age=600"))
    assert check(plain, 10, ims=True).reason is R.FRESH_EXPIRES
    assert check(plain, 10, ims=True, settings=RefreshSettings(refresh_all_ims=True)).reason \
        is R.STALE_FORCED_RELOAD


@pytest.mark.parametrize("req, age, reason", [
    ({"max-age": "5"}, 10, R.STALE_EXCEEDS_REQUEST_MAX_AGE_VALUE),       # RFC 9111 5.2.1.1
    ({"max-age": "0"}, 0, R.STALE_EXCEEDS_REQUEST_MAX_AGE_VALUE),        # max-age=0 always revalidates
    ({"max-age": "50"}, 10, R.FRESH_EXPIRES),
    ({"min-fresh": "55"}, 10, R.STALE_EXPIRES),                          # 5.2.1.3: age + min-fresh
    ({"max-stale": None}, 1000, R.FRESH_REQUEST_MAX_STALE_ALL),          # 5.2.1.2
    ({"max-stale": "100"}, 100, R.FRESH_REQUEST_MAX_STALE_VALUE),
    ({"max-stale": "10"}, 100, R.STALE_EXPIRES),
])
def test_request_directives(req, age, reason):
    assert check(facts(("Cache-Control", "max-age=60")), age, req).reason is reason


def test_immutable_ignores_the_client_max_age_rfc8246():
    f = facts(("Cache-Control", "max-age=60, immutable"))
    assert check(f, 10, {"max-age": "0"}).reason is R.FRESH_EXPIRES


@pytest.mark.parametrize("cc", ["must-revalidate", "proxy-revalidate", "s-maxage=60"])
def test_must_revalidate_and_kin_once_stale(cc):
    f = facts(("Cache-Control", f"max-age=60, {cc}"))
    assert check(f, 10).reason is R.FRESH_EXPIRES
    assert check(f, 100, {"max-stale": None}) == (R.STALE_MUST_REVALIDATE, True, False, 40.0)


@pytest.mark.parametrize("pairs", [[("Cache-Control", "max-age=60, no-cache")], [("Cache-Control", "private")],
                                   [("Pragma", "no-cache")]])
def test_revalidate_always(pairs):
    f = facts(*pairs)
    assert check(f, 1).reason is R.STALE_MUST_REVALIDATE and f.hit_lifetime < 0


# ------------------------------------------------------------ max_stale and stale-if-error

def test_max_stale_global_and_per_pattern():
    f = facts(("Cache-Control", "max-age=60"))
    week = DEFAULT_SETTINGS.max_stale
    assert check(f, 60 + week - 1) == (R.STALE_EXPIRES, False, False, week - 1)      # stale served on error
    assert check(f, 60 + week + 1).reason is R.STALE_MAX_STALE and check(f, 60 + week + 1).fail_on_error
    assert check(f, 200, settings=RefreshSettings(max_stale=100)).reason is R.STALE_MAX_STALE
    short = facts(("Cache-Control", "max-age=60"), rule=rule(". 0 20% 4320 max-stale=10"))
    assert check(short, 100).reason is R.STALE_MAX_STALE
    # Squid's built-in rule (no refresh_pattern matches) has max-stale=0: never stale on error
    builtin = facts(("Cache-Control", "max-age=60"), rule=DEFAULT_RULE)
    assert check(builtin, 61).reason is R.STALE_MAX_STALE


def test_stale_if_error_window_rfc5861_4():
    f = facts(("Cache-Control", "max-age=60, stale-if-error=100"))
    assert not check(f, 120).fail_on_error
    assert check(f, 200) == (R.STALE_EXPIRES, True, False, 140.0)


# ------------------------------------------------------------ refreshIsCachable, minimum_expiry_time

def test_minimum_expiry_time_and_store_stale():
    soon = facts(("Cache-Control", "max-age=30"))
    assert not is_cachable(soon, DEFAULT_SETTINGS, 0)              # stale within 60 s, and empty
    assert is_cachable(soon, DEFAULT_SETTINGS, 5)                  # stale, but may be revalidated
    assert is_cachable(soon, DEFAULT_SETTINGS, None)               # length unknown
    assert is_cachable(soon, RefreshSettings(minimum_expiry_time=10), 0)
    assert is_cachable(facts(("Cache-Control", "max-age=30"), rule=rule(". 0 20% 4320 store-stale")),
                       DEFAULT_SETTINGS, 0)
    # must-revalidate is not known to the store yet when Squid decides (src/http.cc)
    assert is_cachable(facts(("Cache-Control", "max-age=600, must-revalidate")), DEFAULT_SETTINGS, 0)


def test_ignore_no_store_and_ignore_private():
    no_store = h(("Cache-Control", "max-age=60, no-store"))
    assert not policy.is_storable("GET", 200, [], no_store)[0]
    assert policy.is_storable("GET", 200, [], no_store, ignore_no_store=True)[0]
    req = h(("Cache-Control", "no-store"))
    assert policy.is_storable("GET", 200, req, h(("Cache-Control", "max-age=60")), ignore_no_store=True)[0]
    private = h(("Cache-Control", "max-age=60, private"))
    assert not policy.is_storable("GET", 200, [], private)[0]
    assert policy.is_storable("GET", 200, [], private, ignore_private=True)[0]


def test_settings_from_config():
    from squidpy.config.loader import load
    config = load(text="refresh_pattern \\.png$ 0 20% 60 ignore-reload\nmax_stale 2 hours\n"
                       "minimum_expiry_time 5 seconds\nrefresh_all_ims on\n")
    s = RefreshSettings.from_config(config)
    assert (s.max_stale, s.minimum_expiry_time, s.refresh_all_ims, s.nocache_hack) == (7200.0, 5.0, True, True)
    assert rule_for(config.refresh_pattern, "http://x/a.png").ignore_reload
    assert rule_for(config.refresh_pattern, "http://x/a.gif") is DEFAULT_RULE
    assert not RefreshSettings.from_config(load(text="")).nocache_hack
    assert RefreshSettings.from_config(load(text="reload_into_ims on\n")).nocache_hack
