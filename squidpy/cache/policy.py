"""HTTP caching decisions (RFC 9111, RFC 5861, RFC 9110 conditionals and ranges).

Pure functions over plain data: no clock, no store, no sockets.  Each cites
the section that decides it.  squidpy is a *shared* cache, so every rule is
the shared-cache variant (``s-maxage`` counts, ``private`` is never stored).
Headers are ``[(name bytes, value bytes)]`` lists as everywhere in squidpy.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from squidpy.http.message import HOP_BY_HOP, Fields, field, field_values


_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_TIME = r"(\d\d):(\d\d):(\d\d)"
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_IMF_FIXDATE = re.compile(r"(?:mon|tue|wed|thu|fri|sat|sun), (\d\d) " + _MONTH + r" (\d{4}) " + _TIME + " gmt")
_RFC850_DATE = re.compile(r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday), (\d\d)-"
                          + _MONTH + r"-(\d\d) " + _TIME + " gmt")
_ASCTIME_DATE = re.compile(r"(?:mon|tue|wed|thu|fri|sat|sun) " + _MONTH + r" ( \d|\d\d) " + _TIME + r" (\d{4})")


def parse_http_date(value: bytes | None, now: float | None = None) -> float | None:
    """RFC 9110 5.6.7: an IMF-fixdate, or one of the two obsolete forms, exactly
    (case aside); anything else is invalid (None), which for Expires means
    "already expired" (RFC 9111 5.3) and for a condition means "ignore it"."""
    if not value:
        return None
    text = value.decode("latin-1").strip().lower()
    if m := _IMF_FIXDATE.fullmatch(text):
        day, month, year, hh, mm, ss = m.groups()
    elif m := _ASCTIME_DATE.fullmatch(text):
        month, day, hh, mm, ss, year = m.groups()
    elif m := _RFC850_DATE.fullmatch(text):
        day, month, yy, hh, mm, ss = m.groups()
        # a two-digit year more than 50 years ahead is in the past century
        this_year = time.gmtime(now).tm_year
        year = this_year // 100 * 100 + int(yy)
        if year > this_year + 50:
            year -= 100
    else:
        return None
    y, mo, d, h, mi, sec = int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss)
    if not (y >= 1 and 1 <= d <= calendar.monthrange(y, mo)[1] and h <= 23 and mi <= 59 and sec <= 60):
        return None
    return float(calendar.timegm((y, mo, d, h, mi, sec)))


# Cache-Control directives by lower-case name: the value, or None for a directive without one
Directives = dict[str, "str | None"]

_DIRECTIVE = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^,]*))?\s*(?:,|$)')


def cache_control(headers: Fields) -> dict[str, str | None]:
    """RFC 9111 5.2: directives by lower-case name; the first occurrence wins.

    A directive's argument is unquoted; ``None`` when it has none.
    """
    out: dict[str, str | None] = {}
    for raw in field_values(headers, b"cache-control"):
        text = raw.decode("latin-1")
        pos = 0
        while pos < len(text):
            m = _DIRECTIVE.match(text, pos)
            if m is None or m.end() == pos:
                comma = text.find(",", pos)
                if comma < 0:
                    break
                pos = comma + 1
                continue
            name, value = m.group(1).lower(), m.group(2)
            if value is not None:
                value = value.strip()
                if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
            out.setdefault(name, value)
            pos = m.end()
    return out


def delta_seconds(value: str | None) -> int | None:
    """RFC 9111 1.2.2: a non-negative integer; larger than 2**31 means 2**31; else None."""
    if value is None or not value.isdigit():
        return None
    return min(int(value), 2 ** 31)


# ---------------------------------------------------------------- storing (section 3)

# RFC 9110 15.1: status codes that are heuristically cacheable.
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
# The codes this cache understands (for must-understand, RFC 9111 5.2.2.3).
UNDERSTOOD_STATUSES = frozenset({200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501})


def is_storable(method: str, status: int, request_headers: Fields, response_headers: Fields,
                req_cc: Directives | None = None, resp_cc: Directives | None = None,
                ignore_no_store: bool = False, ignore_private: bool = False) -> tuple[bool, str]:
    """RFC 9111 3: may a shared cache store this response?  Returns (yes, why not).

    ``ignore_no_store``, ``ignore_private``: the refresh_pattern options of those
    names, with which Squid stores despite the request's or the reply's
    ``no-store`` and the reply's ``private`` (src/http.cc reusableReply); a private
    reply stored so is revalidated on every hit (ENTRY_REVALIDATE_ALWAYS).
    """
    req_cc = cache_control(request_headers) if req_cc is None else req_cc
    resp_cc = cache_control(response_headers) if resp_cc is None else resp_cc
    if method != "GET":
        return False, "only GET replies are stored"                        # 3: understood method
    if status < 200 or status == 206 or status == 304:
        return False, "not a final, complete reply"                         # 3: final; 3.3/3.4 partial
    if "must-understand" in resp_cc:
        if status not in UNDERSTOOD_STATUSES:
            return False, "must-understand with a status this cache does not understand"   # 5.2.2.3
    elif "no-store" in resp_cc and not ignore_no_store:
        return False, "the reply says no-store"                            # 5.2.2.5
    if "no-store" in req_cc and not ignore_no_store:
        return False, "the request says no-store"                          # 5.2.1.5
    if "private" in resp_cc and not resp_cc["private"] and not ignore_private:
        return False, "the reply is private"            # 5.2.2.7 (private="f" only keeps f out)
    if field(request_headers, b"authorization") is not None:               # 3.5
        if not ("public" in resp_cc or "s-maxage" in resp_cc or "must-revalidate" in resp_cc):
            return False, "a reply to a request with Authorization, not marked shareable"
    if b"*" in vary_names(response_headers):
        return False, "Vary: * cannot be matched"                          # 4.1
    if ("public" in resp_cc or "max-age" in resp_cc or "s-maxage" in resp_cc
            or field(response_headers, b"expires") is not None or status in HEURISTIC_STATUSES):
        return True, ""
    return False, "no explicit freshness and not heuristically cacheable"


# ---------------------------------------------------------------- freshness (section 4.2)

@dataclass(frozen=True)
class RefreshRule:
    """A refresh_pattern line as the cache needs it (times in seconds).  The
    defaults are Squid's built-in rule for a URL no pattern matches (and for a
    configuration without refresh_pattern): MIN 0, 20%, MAX 3 days, max-stale=0."""

    minimum: float = 0.0
    percent: float = 0.2            # 0.2 for 20%
    maximum: float = 259200.0
    override_expire: bool = False
    override_lastmod: bool = False
    reload_into_ims: bool = False
    ignore_reload: bool = False
    ignore_no_store: bool = False
    ignore_private: bool = False
    refresh_ims: bool = False
    store_stale: bool = False
    max_stale: float = 0.0          # seconds; -1: the global max_stale (a parsed line without max-stale=N)


DEFAULT_RULE = RefreshRule()


def freshness_lifetime(status: int, response_headers: Fields, resp_cc: Directives | None,
                       rule: RefreshRule | None, timestamp: float | None = None) -> tuple[float, bool]:
    """RFC 9111 4.2.1: (lifetime in seconds, whether it is heuristic).

    s-maxage, then max-age, then Expires minus Date (an invalid Expires means
    already stale), then Squid's refresh_pattern heuristic (RFC 9111 4.2.2,
    src/refresh.cc refreshStaleness) for heuristically cacheable statuses or
    public replies: with a Last-Modified earlier than ``timestamp`` (when the
    reply was generated; its Date by default) PERCENT of the time between them,
    never more than MAX and *not* raised to MIN; without one, MIN (at most MAX).
    ``override-expire`` and ``override-lastmod`` do not change the lifetime:
    they let a stale reply count as fresh while younger than MIN
    (:func:`squidpy.cache.refresh.refresh_check`).
    """
    explicit = explicit_lifetime(response_headers, resp_cc)
    if explicit is not None:
        return explicit, False
    resp_cc = cache_control(response_headers) if resp_cc is None else resp_cc
    rule = rule or DEFAULT_RULE
    if not (status in HEURISTIC_STATUSES or "public" in resp_cc):
        return 0.0, True
    lm = lastmod_lifetime(response_headers, rule, timestamp)
    if lm is not None:
        return float(min(rule.maximum, lm)), True
    return float(min(rule.minimum, rule.maximum)), True


def explicit_lifetime(response_headers: Fields, resp_cc: Directives | None) -> float | None:
    """RFC 9111 4.2.1: s-maxage, max-age, or Expires minus Date (an invalid Expires,
    or one without a Date, means already stale); None without any of them."""
    resp_cc = cache_control(response_headers) if resp_cc is None else resp_cc
    s_maxage = delta_seconds(resp_cc.get("s-maxage"))
    if s_maxage is not None:
        return float(s_maxage)
    max_age = delta_seconds(resp_cc.get("max-age"))
    if max_age is not None:
        return float(max_age)
    expires_raw = field(response_headers, b"expires")
    if expires_raw is None:
        return None
    expires = parse_http_date(expires_raw)
    if expires is None:
        return 0.0                                  # 5.3: invalid dates mean "already expired"
    date = parse_http_date(field(response_headers, b"date"))
    if date is None:
        return 0.0
    return max(0.0, expires - date)


def expiration_time(response_headers: Fields, stored_at: float) -> float | None:
    """When a stored reply expires, as Squid records it (HttpReply::hdrExpirationTime, the
    ``EX:`` of mgr:objects): Date plus s-maxage or max-age (the time it was stored without
    a Date), else Expires (that time when invalid); None without any of them."""
    resp_cc = cache_control(response_headers)
    max_age = delta_seconds(resp_cc.get("s-maxage"))
    if max_age is None:
        max_age = delta_seconds(resp_cc.get("max-age"))
    if max_age is not None:
        date = parse_http_date(field(response_headers, b"date"))
        return stored_at if date is None else date + max_age
    expires_raw = field(response_headers, b"expires")
    if expires_raw is None:
        return None
    expires = parse_http_date(expires_raw)
    return stored_at if expires is None else expires


def lastmod_lifetime(response_headers: Fields, rule: RefreshRule, timestamp: float | None = None) -> float | None:
    """Squid's LM-factor: PERCENT of how long before ``timestamp`` (the reply's Date by
    default) it was last modified; None without a Last-Modified strictly before it."""
    last_modified = parse_http_date(field(response_headers, b"last-modified"))
    if last_modified is None:
        return None
    if timestamp is None:
        timestamp = parse_http_date(field(response_headers, b"date"))
        if timestamp is None:
            return None
    delta = timestamp - last_modified
    if delta <= 0:
        return None
    return float(int(delta * rule.percent))


def age_field(response_headers: Fields) -> int | None:
    """RFC 9111 5.1: Age is one delta-seconds; of a list (or several lines) the first
    member counts, parameters aside; anything else is invalid and ignored."""
    values = field_values(response_headers, b"age")
    if not values:
        return None
    first = values[0].split(b",")[0].split(b";")[0].strip().decode("latin-1")
    return delta_seconds(first)


def initial_age(response_headers: Fields, request_time: float, response_time: float) -> float:
    """RFC 9111 4.2.3: ``corrected_initial_age``, the age when the response was received."""
    date = parse_http_date(field(response_headers, b"date"))
    date_value = date if date is not None else response_time
    age_value = age_field(response_headers) or 0
    apparent_age = max(0.0, response_time - date_value)
    response_delay = response_time - request_time
    corrected_age_value = age_value + response_delay
    return max(apparent_age, corrected_age_value)


def current_age(response_headers: Fields, request_time: float, response_time: float, now: float) -> float:
    """RFC 9111 4.2.3: the age of a stored response now (initial age plus resident time)."""
    return initial_age(response_headers, request_time, response_time) + (now - response_time)


# ---------------------------------------------------------------- reuse (section 4)

def request_directives(request_headers: Fields) -> dict[str, str | None]:
    """RFC 9111 5.2.1, with 5.4: ``Pragma: no-cache`` counts only without Cache-Control."""
    cc = cache_control(request_headers)
    if not cc and field(request_headers, b"cache-control") is None:
        pragma = field(request_headers, b"pragma")
        if pragma is not None and b"no-cache" in pragma.lower():
            cc = {"no-cache": None}
    return cc


def must_revalidate(resp_cc: Directives) -> bool:
    """RFC 9111 5.2.2.2, 5.2.2.8, 5.2.2.10: a shared cache may never serve this stale."""
    return "must-revalidate" in resp_cc or "proxy-revalidate" in resp_cc or "s-maxage" in resp_cc


def revalidate_always(response_headers: Fields, resp_cc: Directives) -> bool:
    """Squid's ENTRY_REVALIDATE_ALWAYS (src/http.cc): an unqualified ``no-cache``
    (RFC 9111 5.2.2.4), an unqualified ``private`` reply stored by ignore-private
    (a qualified one is stored without the fields it names, 5.2.2.7), or, without
    Cache-Control, ``Pragma: no-cache``: every hit is revalidated first."""
    for directive in ("no-cache", "private"):
        if directive in resp_cc and not resp_cc[directive]:
            return True
    if not resp_cc and field(response_headers, b"cache-control") is None:
        pragma = field(response_headers, b"pragma")
        return pragma is not None and b"no-cache" in pragma.lower()
    return False


# ---------------------------------------------------------------- validation (section 4.3)

def validation_headers(stored_headers: Fields) -> list[tuple[bytes, bytes]]:
    """RFC 9111 4.3.1: If-None-Match with the entity tag, If-Modified-Since with Last-Modified."""
    out = []
    etag = field(stored_headers, b"etag")
    if etag is not None:
        out.append((b"If-None-Match", etag))
    last_modified = field(stored_headers, b"last-modified")
    if last_modified is not None and parse_http_date(last_modified) is not None:
        out.append((b"If-Modified-Since", last_modified))
    return out


def unstored_fields(headers: Fields) -> frozenset[bytes]:
    """RFC 9111 3.1: the fields a shared cache never stores: hop-by-hop ones, those
    Connection names, and those a qualified ``no-cache`` or ``private`` names
    (5.2.2.4, 5.2.2.7)."""
    resp_cc = cache_control(headers)
    named = {t.strip().lower() for v in field_values(headers, b"connection") for t in v.split(b",")}
    for directive in ("no-cache", "private"):
        listed = resp_cc.get(directive)
        if listed:
            named.update(t.strip().lower().encode("latin-1") for t in listed.split(","))
    return HOP_BY_HOP | named


# Fields meant for the one user whose request reached the origin.  Squid 5.7 never
# serves Set-Cookie from its cache (client_side_reply.cc, buildReplyHeader, on every
# TCP_*HIT and REFRESH_UNMODIFIED); squidpy also drops the obsolete Set-Cookie2, which
# Squid 5.7 still replays (a TODO in that function).  They are neither stored nor served.
PER_USER_FIELDS = frozenset({b"set-cookie", b"set-cookie2"})
_NEVER_ON_HITS = PER_USER_FIELDS | {b"age"}


def fields_for_hit(stored_headers: Fields, also_drop: frozenset[bytes] = frozenset()) -> list[tuple[bytes, bytes]]:
    """The stored fields a reply served from the cache carries: never a per-user field
    (even from an entry stored before they were dropped at store time), never the
    stored Age (each hit gets its own)."""
    drop = _NEVER_ON_HITS | also_drop
    return [(k, v) for k, v in stored_headers if k.lower() not in drop]


def freshen_headers(stored_headers: Fields, not_modified_headers: Fields) -> list[tuple[bytes, bytes]]:
    """RFC 9111 3.2 and 4.3.4: the stored header fields updated by a 304's fields:
    every field it carries replaces the stored one, except those never stored
    (hop-by-hop, per-user) and Content-Length (the 304 has no body; the stored one
    is still the same)."""
    keep = unstored_fields(not_modified_headers) | PER_USER_FIELDS | {b"content-length"}
    replaced = {k.lower() for k, _ in not_modified_headers if k.lower() not in keep}
    gone = replaced | PER_USER_FIELDS
    out = [(k, v) for k, v in stored_headers if k.lower() not in gone]
    out.extend((k, v) for k, v in not_modified_headers if k.lower() in replaced)
    return out


def head_updates_stored(stored_headers: Fields, body_size: int, head_headers: Fields) -> bool:
    """RFC 9111 4.3.5: a 200 to a HEAD updates a stored GET reply like a 304 when the
    validators it carries (ETag, Last-Modified) are the stored ones and its
    Content-Length, if any, is the stored body's; squidpy also wants at least one
    validator, so that a HEAD reply without one never vouches for a stored body."""
    received = 0
    for name in (b"etag", b"last-modified"):
        value = field(head_headers, name)
        if value is not None:
            if value.strip() != (field(stored_headers, name) or b"").strip():
                return False
            received += 1
    length = field(head_headers, b"content-length")
    if length is not None:
        if length.strip() != b"%d" % body_size:
            return False
    return received > 0


def headers_to_store(headers: Fields, body_size: int, date: bytes) -> list[tuple[bytes, bytes]]:
    """RFC 9111 3.1: what is stored of a reply's fields: not the unstored ones nor the
    per-user ones (cookies), the body's length made explicit, and a Date (the time
    it came) when the origin sent none or an invalid one (RFC 9110 6.6.1), so that
    Expires can be used."""
    drop = unstored_fields(headers) | PER_USER_FIELDS | {b"content-length"}
    if parse_http_date(field(headers, b"date")) is None:
        drop |= {b"date"}                       # RFC 9110 6.6.1: an invalid Date may be replaced
    out = [(k, v) for k, v in headers if k.lower() not in drop]
    if field(out, b"date") is None:
        out.append((b"Date", date))
    out.append((b"Content-Length", b"%d" % body_size))
    return out


def strong_etag(tag: bytes) -> bool:
    return not tag.strip().startswith(b"W/")


def etags_match_weak(a: bytes, b: bytes) -> bool:
    """RFC 9110 8.8.3.2: weak comparison ignores the W/ prefix."""
    def opaque(t: bytes) -> bytes:
        t = t.strip()
        return t[2:] if t.startswith(b"W/") else t
    return opaque(a) == opaque(b)


def not_modified_for_client(request_headers: Fields, stored_headers: Fields) -> bool:
    """RFC 9110 13.1.2 and 13.1.3: does the client's conditional GET/HEAD get a 304?"""
    inm = field(request_headers, b"if-none-match")
    etag = field(stored_headers, b"etag")
    if inm is not None:
        if inm.strip() == b"*":
            return True
        if etag is None:
            return False
        return any(etags_match_weak(t, etag) for t in _split_tags(inm))
    ims = parse_http_date(field(request_headers, b"if-modified-since"))
    if ims is None:
        return False
    last_modified = parse_http_date(field(stored_headers, b"last-modified"))
    reference = last_modified if last_modified is not None else parse_http_date(field(stored_headers, b"date"))
    return reference is not None and reference <= ims


def _split_tags(value: bytes) -> list[bytes]:
    return [t for t in re.findall(rb'(?:W/)?"[^"]*"', value)]


# ---------------------------------------------------------------- Vary (section 4.1)

def vary_names(response_headers: Fields) -> tuple[bytes, ...]:
    names = []
    for value in field_values(response_headers, b"vary"):
        for name in value.split(b","):
            name = name.strip().lower()
            if name and name not in names:
                names.append(name)
    return tuple(sorted(names))


_CASELESS_LISTS = frozenset({b"accept-encoding", b"accept-language", b"accept-charset", b"accept"})


def vary_key(names: tuple[bytes, ...], request_headers: Fields) -> tuple[bytes, ...]:
    """RFC 9111 4.1: the request's values of the Vary fields, normalised as the RFC
    allows: lines combined, whitespace collapsed and dropped around commas, empty
    members ignored (RFC 9110 5.6.1); the Accept fields' members also case-folded
    and sorted, their order carrying no meaning."""
    out = []
    for name in names:
        values = field_values(request_headers, name)
        if not values:
            out.append(b"\0absent")
            continue
        members = [b" ".join(m.split()) for v in values for m in v.split(b",")]
        members = [m for m in members if m]
        if name in _CASELESS_LISTS:
            members = sorted(m.lower().replace(b" ", b"") for m in members)
        out.append(b",".join(members))
    return tuple(out)


# ---------------------------------------------------------------- invalidation (section 4.4)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def invalidated_urls(method: str, status: int, url: str, response_headers: Fields,
                     same_origin: Callable[[str], str | None]) -> list[str]:
    """RFC 9111 4.4: a non-error reply to an unsafe method invalidates the target URI, and
    Location and Content-Location when they are on the same origin (``same_origin(u)``
    resolves a possibly relative URI and returns it, or None)."""
    if method in SAFE_METHODS or not (200 <= status < 400):
        return []
    urls = [url]
    for name in (b"location", b"content-location"):
        value = field(response_headers, name)
        if value:
            resolved = same_origin(value.decode("latin-1").strip())
            if resolved and resolved not in urls:
                urls.append(resolved)
    return urls


# ---------------------------------------------------------------- ranges (RFC 9110 14)

def range_specs(value: bytes | None) -> list[tuple[int | None, int | None]] | None:
    """RFC 9110 14.1.1: a ``bytes`` Range's byte-range-specs as (first, last), None for
    a position not given (``bytes=-N`` is (None, N), ``bytes=N-`` is (N, None)); None
    when the field is absent or not a byte range squidpy can use."""
    if value is None:
        return None
    text = value.decode("latin-1").strip()
    unit, _, spec = text.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None
    specs: list[tuple[int | None, int | None]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        first_text, dash, last_text = part.partition("-")
        if not dash:
            return None
        first_text, last_text = first_text.strip(), last_text.strip()
        if first_text == "":
            if not last_text.isdigit():
                return None
            specs.append((None, int(last_text)))
            continue
        if not first_text.isdigit() or (last_text and not last_text.isdigit()):
            return None
        specs.append((int(first_text), int(last_text) if last_text else None))
    return specs


def parse_range(value: bytes | None, length: int) -> list[tuple[int, int]] | None:
    """RFC 9110 14.1.2: byte ranges as (first, last) within ``length``.

    None when there is no usable Range (ignore it and send everything); []
    when none of the ranges can be satisfied (416).
    """
    specs = range_specs(value)
    if specs is None:
        return None
    ranges = []
    for first, last in specs:
        if first is None:
            suffix = last or 0
            if suffix == 0:
                continue
            ranges.append((max(0, length - suffix), length - 1))
            continue
        if first >= length:
            continue
        if last is None:
            last = length - 1
        if last < first:
            return None
        ranges.append((first, min(last, length - 1)))
    if len(ranges) > 64:
        return None                     # 14.2: too many ranges, as a denial of service, is ignored
    return ranges


def range_offset_limit_exceeded(specs: list[tuple[int | None, int | None]], limit: int) -> bool:
    """Squid 5.7's HttpHdrRange::offsetLimitExceeded for range_offset_limit ``limit``
    (bytes; -1: none): True when the Range goes upstream as asked, False when the
    whole object is fetched instead.  0 always forwards the Range, -1 never does;
    otherwise the lowest first byte must be within the limit, and a request whose
    first position Squid finds unknown (a suffix ``bytes=-N``) is forwarded."""
    if limit == 0:
        return True
    if limit == -1:
        return False
    first = _first_offset(specs)
    return first is None or first > limit


def _first_offset(specs: list[tuple[int | None, int | None]]) -> int | None:
    """HttpHdrRange::firstOffset, walked as Squid walks it: a suffix spec makes the
    lowest offset unknown, and a later spec with a known start replaces the unknown."""
    offset: int | None = None
    for first, _last in specs:
        if offset is None or first is None or first < offset:
            offset = first
    return offset


def if_range_allows(request_headers: Fields, stored_headers: Fields) -> bool:
    """RFC 9110 13.1.5: a Range with If-Range applies only if the validator still matches."""
    value = field(request_headers, b"if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith((b'"', b"W/")):
        etag = field(stored_headers, b"etag")
        return etag is not None and strong_etag(value) and strong_etag(etag) and value == etag.strip()
    when = parse_http_date(value)
    last_modified = parse_http_date(field(stored_headers, b"last-modified"))
    return when is not None and last_modified is not None and when == last_modified
