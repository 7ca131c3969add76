"""Unit tests: RFC 9111 (and RFC 5861, RFC 9110 conditionals and ranges) decisions."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from squidpy.cache import policy
from squidpy.cache.policy import RefreshRule
from squidpy.cache.refresh import DEFAULT_PATTERNS, parse_refresh_pattern, pattern_for

NOW = 1_800_000_000.0


def h(*pairs: tuple[str, str]):
    return [(k.encode(), v.encode()) for k, v in pairs]


def date(offset: float = 0) -> str:
    return formatdate(NOW + offset, usegmt=True)


# ------------------------------------------------------------ 5.2 Cache-Control parsing

def test_cache_control_parsing():
    cc = policy.cache_control(h(("Cache-Control", 'max-age=60, no-cache="Set-Cookie", Private'),
                                ("Cache-Control", "max-age=5, s-maxage = 30")))
    assert cc == {"max-age": "60", "no-cache": "Set-Cookie", "private": None, "s-maxage": "30"}


def test_delta_seconds_1_2_2():
    assert policy.delta_seconds("10") == 10
    assert policy.delta_seconds("99999999999") == 2 ** 31
    assert policy.delta_seconds("-1") is None and policy.delta_seconds("1.5") is None


# ------------------------------------------------------------ 3 storing

@pytest.mark.parametrize("method,status,req,resp,ok", [
    ("GET", 200, [], [("Cache-Control", "max-age=60")], True),
    ("POST", 200, [], [("Cache-Control", "max-age=60")], False),               # 3: method
    ("GET", 100, [], [], False),                                                 # 3: final responses only
    ("GET", 206, [], [("Cache-Control", "max-age=60")], False),                 # 3.3: partial
    ("GET", 200, [], [("Cache-Control", "no-store")], False),                   # 5.2.2.5
    ("GET", 200, [("Cache-Control", "no-store")], [("Cache-Control", "max-age=9")], False),   # 5.2.1.5
    ("GET", 200, [], [("Cache-Control", "private, max-age=60")], False),        # 5.2.2.7
    ("GET", 200, [("Authorization", "Basic x")], [("Cache-Control", "max-age=60")], False),   # 3.5
    ("GET", 200, [("Authorization", "Basic x")], [("Cache-Control", "public")], True),
    ("GET", 200, [("Authorization", "Basic x")], [("Cache-Control", "s-maxage=5")], True),
    ("GET", 200, [("Authorization", "Basic x")], [("Cache-Control", "must-revalidate")], True),
    ("GET", 200, [], [("Vary", "*"), ("Cache-Control", "max-age=60")], False),  # 4.1
    ("GET", 200, [], [], True),                                                  # heuristically cacheable
    ("GET", 302, [], [], False),                                                 # not heuristic, no freshness
    ("GET", 302, [], [("Cache-Control", "max-age=60")], True),
    ("GET", 299, [], [("Cache-Control", "must-understand, no-store")], False),   # 5.2.2.3
    ("GET", 200, [], [("Cache-Control", "must-understand, no-store")], True),
])
def test_storable_3(method, status, req, resp, ok):
    assert policy.is_storable(method, status, h(*req), h(*resp))[0] is ok


# ------------------------------------------------------------ 4.2 freshness

RULE = RefreshRule(minimum=0, percent=0.1, maximum=3600)


def test_s_maxage_wins_over_max_age_then_expires_4_2_1():
    headers = h(("Cache-Control", "max-age=100, s-maxage=50"), ("Expires", date(10)), ("Date", date()))
    assert policy.freshness_lifetime(200, headers, None, RULE) == (50.0, False)
    headers = h(("Cache-Control", "max-age=100"), ("Expires", date(10)), ("Date", date()))
    assert policy.freshness_lifetime(200, headers, None, RULE) == (100.0, False)
    headers = h(("Expires", date(10)), ("Date", date()))
    assert policy.freshness_lifetime(200, headers, None, RULE) == (10.0, False)


def test_invalid_expires_means_stale_5_3():
    headers = h(("Expires", "0"), ("Date", date()), ("Last-Modified", date(-10000)))
    assert policy.freshness_lifetime(200, headers, None, RULE) == (0.0, False)


def test_heuristic_from_last_modified_4_2_2():
    headers = h(("Date", date()), ("Last-Modified", date(-1000)))
    assert policy.freshness_lifetime(200, headers, None, RULE) == (100.0, True)
    big = h(("Date", date()), ("Last-Modified", date(-10 ** 7)))
    assert policy.freshness_lifetime(200, big, None, RULE) == (3600.0, True)      # capped by MAX
    assert policy.freshness_lifetime(302, headers, None, RULE) == (0.0, True)    # not heuristically cacheable


def test_heuristic_is_squids_not_raised_to_min():
    """src/refresh.cc refreshStaleness: with Last-Modified the LM-factor alone decides
    (below MAX); MIN only counts without Last-Modified, and never above MAX."""
    rule = RefreshRule(minimum=600, percent=0.1, maximum=3600)
    recent = h(("Date", date()), ("Last-Modified", date(-1000)))
    assert policy.freshness_lifetime(200, recent, None, rule) == (100.0, True)       # not 600
    assert policy.freshness_lifetime(200, h(("Date", date())), None, rule) == (600.0, True)
    small_max = RefreshRule(minimum=600, percent=0.1, maximum=300)
    assert policy.freshness_lifetime(200, h(("Date", date())), None, small_max) == (300.0, True)
    same = h(("Date", date()), ("Last-Modified", date()))                          # not before Date
    assert policy.freshness_lifetime(200, same, None, rule) == (600.0, True)
    # the time since Last-Modified is counted to when the reply was generated (Squid's timestamp)
    assert policy.freshness_lifetime(200, recent, None, rule, timestamp=NOW - 500) == (50.0, True)


def test_refresh_pattern_defaults_and_options():
    patterns = [parse_refresh_pattern(p.split()) for p in DEFAULT_PATTERNS]
    assert pattern_for(patterns, "http://x/cgi-bin/a").rule.maximum == 0
    assert pattern_for(patterns, "http://x/a?b=1").rule.maximum == 0
    rule = pattern_for(patterns, "http://x/a.png").rule
    assert (rule.minimum, rule.percent, rule.maximum) == (0, 0.2, 4320 * 60)
    p = parse_refresh_pattern("-i \\.jpg$ 60 50% 1440 override-expire".split())
    assert p.rule.override_expire and p.regex.search("http://x/A.JPG")
    every = parse_refresh_pattern(". 1 2% 3 override-expire override-lastmod reload-into-ims ignore-reload "
                                  "ignore-no-store ignore-private refresh-ims store-stale max-stale=30".split())
    r = every.rule
    assert (r.override_expire, r.override_lastmod, r.reload_into_ims, r.ignore_reload, r.ignore_no_store,
            r.ignore_private, r.refresh_ims, r.store_stale, r.max_stale) == (True,) * 8 + (30.0,)
    assert rule.max_stale == -1.0                           # a line without max-stale: the global max_stale
    assert policy.DEFAULT_RULE.max_stale == 0.0             # Squid's built-in rule
    huge = parse_refresh_pattern(". -5 20% 99999999".split()).rule
    assert (huge.minimum, huge.maximum) == (0.0, 525600 * 60.0)       # cropped as Squid crops
    said = []
    p = parse_refresh_pattern(". 0 20% 10 frobnicate ignore-no-cache".split(), said.append)
    assert p.options == frozenset()         # ignored, as Squid ignores them
    assert said == ["unknown refresh_pattern option 'frobnicate' is ignored, as Squid ignores it",
                    "UPGRADE: refresh_pattern option 'ignore-no-cache' is obsolete; remove it"]
    assert parse_refresh_pattern(r"[[:digit:]]\.jpg$ 0 20% 10".split()).regex.search("http://x/1.jpg")
    assert not parse_refresh_pattern(r"\d\.jpg$ 0 20% 10".split()).regex.search("http://x/1.jpg")


def test_age_4_2_3():
    headers = h(("Date", date(-10)), ("Age", "30"))
    # received at NOW (10 s after Date), request sent 2 s earlier, 5 s resident
    assert policy.current_age(headers, NOW - 2, NOW, NOW + 5) == 30 + 2 + 5
    assert policy.current_age(h(("Date", date(-100))), NOW, NOW, NOW) == 100


# ------------------------------------------------------------ 5.2.1 request directives

def test_pragma_no_cache_counts_only_without_cache_control_5_4():
    assert "no-cache" in policy.request_directives(h(("Pragma", "no-cache")))
    assert "no-cache" not in policy.request_directives(h(("Pragma", "no-cache"), ("Cache-Control", "max-stale")))


# ------------------------------------------------------------ 4.3 validation

def test_validators_4_3_1():
    stored = h(("ETag", '"v1"'), ("Last-Modified", date(-100)))
    assert policy.validation_headers(stored) == [(b"If-None-Match", b'"v1"'),
                                                 (b"If-Modified-Since", date(-100).encode())]
    assert policy.validation_headers(h(("Date", date()))) == []


def test_304_updates_stored_fields_3_2():
    stored = h(("ETag", '"v1"'), ("Cache-Control", "max-age=10"), ("Content-Length", "5"), ("X-A", "old"))
    fresh = h(("Cache-Control", "max-age=99"), ("Content-Length", "0"), ("X-A", "new"))
    out = dict(policy.freshen_headers(stored, fresh))
    assert out[b"Cache-Control"] == b"max-age=99" and out[b"X-A"] == b"new"
    assert out[b"Content-Length"] == b"5" and out[b"ETag"] == b'"v1"'


def test_client_conditionals_rfc9110_13():
    stored = h(("ETag", 'W/"v1"'), ("Last-Modified", date(-100)))
    assert policy.not_modified_for_client(h(("If-None-Match", '"v0", "v1"')), stored)
    assert not policy.not_modified_for_client(h(("If-None-Match", '"v2"')), stored)
    assert policy.not_modified_for_client(h(("If-None-Match", "*")), stored)
    assert policy.not_modified_for_client(h(("If-Modified-Since", date(-50))), stored)
    assert not policy.not_modified_for_client(h(("If-Modified-Since", date(-200))), stored)
    # If-None-Match takes precedence over If-Modified-Since (13.1.3)
    assert not policy.not_modified_for_client(h(("If-None-Match", '"v2"'), ("If-Modified-Since", date())), stored)


# ------------------------------------------------------------ 4.1 Vary

def test_vary_key_normalises_4_1():
    names = policy.vary_names(h(("Vary", "Accept-Encoding, accept-language"), ("Vary", "Accept-Encoding")))
    assert names == (b"accept-encoding", b"accept-language")
    a = policy.vary_key(names, h(("Accept-Encoding", "gzip,  br"), ("Accept-Language", "en")))
    b = policy.vary_key(names, h(("accept-encoding", "GZIP, br"), ("Accept-Language", "EN")))
    c = policy.vary_key(names, h(("Accept-Encoding", "identity")))
    assert a == b and a != c


# ------------------------------------------------------------ 4.4 invalidation

def test_invalidation_4_4():
    def same(u):
        return u if u.startswith("http://a/") else ("http://a" + u if u.startswith("/") else None)
    headers = h(("Location", "/new"), ("Content-Location", "http://other/x"))
    assert policy.invalidated_urls("POST", 201, "http://a/list", headers, same) == ["http://a/list", "http://a/new"]
    assert policy.invalidated_urls("POST", 500, "http://a/list", headers, same) == []
    assert policy.invalidated_urls("GET", 200, "http://a/list", headers, same) == []


# ------------------------------------------------------------ ranges (RFC 9110 14)

@pytest.mark.parametrize("header,expected", [
    ("bytes=0-4", [(0, 4)]), ("bytes=5-", [(5, 9)]), ("bytes=-3", [(7, 9)]), ("bytes=0-0,8-20", [(0, 0), (8, 9)]),
    ("bytes=20-30", []), ("bytes=5-2", None), ("items=0-1", None), ("bytes=x-1", None),
])
def test_ranges(header, expected):
    assert policy.parse_range(header.encode(), 10) == expected


def test_if_range_rfc9110_13_1_5():
    stored = h(("ETag", '"v1"'), ("Last-Modified", date(-100)))
    assert policy.if_range_allows(h(("If-Range", '"v1"')), stored)
    assert not policy.if_range_allows(h(("If-Range", '"v0"')), stored)
    assert not policy.if_range_allows(h(("If-Range", 'W/"v1"')), stored)     # weak tags never match
    assert policy.if_range_allows(h(("If-Range", date(-100))), stored)


def test_stored_fields_3_1():
    headers = h(("Connection", "close, X-Hop"), ("X-Hop", "1"), ("Transfer-Encoding", "chunked"), ("ETag", '"a"'))
    out = dict(policy.headers_to_store(headers, 42, b"Mon, 01 Jan 2026 00:00:00 GMT"))
    assert b"X-Hop" not in out and b"Transfer-Encoding" not in out and b"Connection" not in out
    assert out[b"Content-Length"] == b"42" and out[b"Date"] and out[b"ETag"] == b'"a"'


def test_304_updates_content_type_and_other_fields_3_2():
    stored = h(("Content-Type", "text/plain"), ("Content-Length", "5"), ("X-Version", "1"))
    fresh = h(("Content-Type", "text/plain;charset=utf-8"), ("X-Version", "2"),
              ("Connection", "x-hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"))
    out = dict(policy.freshen_headers(stored, fresh))
    assert out[b"Content-Type"] == b"text/plain;charset=utf-8" and out[b"X-Version"] == b"2"
    assert b"X-Hop" not in out and b"Keep-Alive" not in out and b"Connection" not in out


def test_cookies_are_never_stored_nor_served_from_the_cache():
    """Squid 5.7 never serves Set-Cookie from its cache; squidpy neither stores it nor
    Set-Cookie2, not from a 200 nor from a 304, and strips both from entries stored
    by an older version."""
    resp = h(("Cache-Control", "max-age=60"), ("Set-Cookie", "session=alice"), ("SET-COOKIE2", "s2=alice"),
             ("X-Other", "1"))
    stored = policy.headers_to_store(resp, 3, b"Mon, 01 Jan 2026 00:00:00 GMT")
    assert [k for k, _ in stored if b"cookie" in k.lower()] == []
    freshened = policy.freshen_headers(resp, h(("Set-Cookie", "session=bob"), ("ETag", '"x"')))
    assert [k for k, _ in freshened if b"cookie" in k.lower()] == []
    assert dict(freshened)[b"ETag"] == b'"x"'
    served = policy.fields_for_hit(resp + h(("Age", "7")))
    assert served == h(("Cache-Control", "max-age=60"), ("X-Other", "1"))


def test_qualified_no_cache_and_private_keep_only_the_named_fields_out():
    resp = h(("Cache-Control", 'max-age=60, no-cache="a, B"'), ("A", "1"), ("b", "2"), ("c", "3"))
    stored = dict(policy.headers_to_store(resp, 0, b"Mon, 01 Jan 2026 00:00:00 GMT"))
    assert b"A" not in stored and b"b" not in stored and stored[b"c"] == b"3"
    assert not policy.revalidate_always(resp, policy.cache_control(resp))       # 5.2.2.4 qualified
    assert policy.revalidate_always([], {"no-cache": None})
    priv = h(("Cache-Control", 'max-age=60, private="Set-Cookie"'), ("Set-Cookie", "s=1"))
    assert policy.is_storable("GET", 200, h(), priv)[0]                          # 5.2.2.7 qualified
    assert b"Set-Cookie" not in dict(policy.headers_to_store(priv, 0, b"x"))
    assert not policy.is_storable("GET", 200, h(), h(("Cache-Control", "max-age=60, private")))[0]


@pytest.mark.parametrize("value, valid", [
    ("Sun, 06 Nov 1994 08:49:37 GMT", True),          # IMF-fixdate
    ("sun, 06 nov 1994 08:49:37 gmt", True),          # case does not matter
    ("Sunday, 06-Nov-94 08:49:37 GMT", True),         # RFC 850
    ("Sun Nov  6 08:49:37 1994", True),               # asctime
    ("Sun, 06 Nov 1994 08:49:37 UTC", False),
    ("Sun, 06 Nov 94 08:49:37 GMT", False),           # two-digit year in a fixdate
    ("Sun 06 Nov 1994 08:49:37 GMT", False),          # no comma
    ("Sun, 06  Nov 1994 08:49:37 GMT", False),        # two spaces
    ("Sun, 06-Nov-1994 08:49:37 GMT", False),
    ("Sun, 06 Nov 1994 08.49.37 GMT", False),
    ("Sun, 06 Nov 1994 8:49:37 GMT", False),          # one-digit hour
    ("Sun, 31 Feb 1994 08:49:37 GMT", False),
    ("Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT", False),   # two lines
    ("0", False), ("", False),
])
def test_http_dates_rfc9110_5_6_7(value, valid):
    parsed = policy.parse_http_date(value.encode())
    assert (parsed == 784111777.0) if valid else parsed is None


def test_rfc850_two_digit_years_are_at_most_50_years_ahead():
    now = 1795369446.0                                                      # 2026
    assert time.gmtime(policy.parse_http_date(b"Monday, 01-Jan-70 00:00:00 GMT", now)).tm_year == 2070
    assert time.gmtime(policy.parse_http_date(b"Friday, 01-Jan-99 00:00:00 GMT", now)).tm_year == 1999


@pytest.mark.parametrize("lines, age", [
    (["7200"], 7200), (["7200, 0"], 7200), (["0, 7200"], 0), (["7200", "0"], 7200),
    (["7200;foo=bar"], 7200), (["abc"], None), (["-7200"], None), (["7200.0"], None),
    (["2147483649"], 2 ** 31),
])
def test_age_is_the_first_member_5_1(lines, age):
    assert policy.age_field([(b"Age", v.encode()) for v in lines]) == age


@pytest.mark.parametrize("vary", ["*", "*, *", ", *", "*, Foo", "Foo, *"])
def test_vary_star_anywhere_in_the_list_4_1(vary):
    assert not policy.is_storable("GET", 200, h(), h(("Cache-Control", "max-age=60"), ("Vary", vary)))[0]


def test_vary_key_normalisation_4_1():
    key = lambda *pairs: policy.vary_key((b"accept-language", b"foo"), h(*pairs))   # noqa: E731
    assert key(("Accept-Language", "en, de"), ("Foo", "1,2")) == key(("Accept-Language", "DE,en"), ("Foo", " 1,  2 "))
    assert key(("Foo", "1"), ("Foo", "2")) == key(("Foo", "1, 2"))
    assert key(("Foo", "1, 2")) != key(("Foo", "2, 1"))             # order matters outside Accept-*
    assert key(("Foo", "")) != key()                                # empty is not absent


def test_invalid_date_is_replaced_by_the_time_received_rfc9110_6_6_1():
    now = b"Mon, 01 Jan 2026 00:00:00 GMT"
    stored = policy.headers_to_store(h(("Date", "foo"), ("Expires", "Mon, 01 Jan 2026 00:00:10 GMT")), 0, now)
    assert dict(stored)[b"Date"] == now
    assert policy.freshness_lifetime(200, stored, None, None) == (10.0, False)


def test_head_reply_updates_a_stored_get_only_with_matching_validators_4_3_5():
    stored = h(("ETag", '"a"'), ("Last-Modified", date(-100)), ("Content-Length", "10"))
    assert policy.head_updates_stored(stored, 10, h(("ETag", '"a"'), ("Content-Length", "10")))
    assert policy.head_updates_stored(stored, 10, h(("Last-Modified", date(-100))))
    assert not policy.head_updates_stored(stored, 10, h(("ETag", '"b"')))
    assert not policy.head_updates_stored(stored, 10, h(("ETag", '"a"'), ("Content-Length", "11")))
    assert not policy.head_updates_stored(stored, 10, h(("Content-Length", "10")))     # no validator


def test_expiration_time_as_squid_records_it():
    """HttpReply::hdrExpirationTime: s-maxage or max-age from Date first, then Expires."""
    from email.utils import formatdate
    date = formatdate(NOW - 10, usegmt=True).encode()
    later = formatdate(NOW + 99, usegmt=True).encode()
    at = NOW
    assert policy.expiration_time([(b"Date", date), (b"Cache-Control", b"max-age=600")], at) == NOW - 10 + 600
    assert policy.expiration_time([(b"Date", date), (b"Cache-Control", b"max-age=600, s-maxage=60"),
                                   (b"Expires", later)], at) == NOW - 10 + 60
    assert policy.expiration_time([(b"Cache-Control", b"max-age=600")], at) == at     # no Date: now
    assert policy.expiration_time([(b"Date", date), (b"Expires", later)], at) == NOW + 99
    assert policy.expiration_time([(b"Expires", b"0")], at) == at                     # invalid: expired
    assert policy.expiration_time([(b"Date", date), (b"Cache-Control", b"public")], at) is None
