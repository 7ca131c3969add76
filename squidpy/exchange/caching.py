"""The cache's part of an exchange (Squid's store client), as a sub-machine.

:class:`CacheRole` holds what the cache knows about one GET or HEAD: what the
store found, whether the exchange revalidates it, leads a collapsed fetch or
keeps a copy of the reply.  Each method takes a fact (the lookup's answer,
the origin's reply head, an upstream failure) and returns a decision; the
exchange turns decisions into commands.  Every rule comes from
:mod:`squidpy.cache.policy` (RFC 9111, RFC 5861) and :mod:`squidpy.cache.refresh`
(Squid's refreshCheck, with its reason codes); nothing here does I/O or reads a
clock: the time is always passed in.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from squidpy.cache import policy
from squidpy.cache.refresh import PLAIN_STALE, REFRESH_CHECKED_STATUSES, Reason, entry_facts, is_cachable, \
    refresh_check
from squidpy.cache.store import entry_key
from squidpy.http.message import Fields, ResponseHead, field

if TYPE_CHECKING:
    from squidpy.cache.refresh import EntryFacts
    from squidpy.cache.store import CachedReply
    from squidpy.exchange.shared import CacheSettings

HIT_RESULTS = frozenset({"TCP_HIT", "TCP_MEM_HIT", "TCP_REFRESH_UNMODIFIED", "TCP_REFRESH_FAIL_OLD",
                         "TCP_INM_HIT", "TCP_IMS_HIT", "TCP_OFFLINE_HIT"})


MISS_CONDITIONALS = frozenset({b"if-modified-since", b"if-none-match"})
MISS_CONDITIONALS_IMS = frozenset({b"if-modified-since"})


class Found(enum.Enum):
    """What to do once the store has answered (RFC 9111 4)."""
    MISS = "fetch from the origin"
    WAIT = "wait for the fetch another exchange leads"
    LEAD = "fetch, and let later exchanges for the URL wait for it"
    ONLY_IF_CACHED_MISS = "504: the client asked for a cached reply only"
    SERVE = "answer from the store"
    SERVE_AND_REFRESH = "answer stale, revalidate in the background (stale-while-revalidate)"
    REVALIDATE = "ask the origin with the stored validators"
    RELOAD = "the client reloads: fetch without validators, replace the entry (TCP_CLIENT_REFRESH_MISS)"


class OnReply(enum.Enum):
    """What the origin's reply head means for the cache."""
    PASS = "pass the origin's reply on"
    STORE = "pass it on and keep a copy"
    FRESHEN = "the stored entry is still good: update its fields and answer from it"
    SERVE_STALE = "the origin failed: answer with the stale entry"
    FAIL = "the origin cannot be reached and the entry may not be served stale: 504"


class CacheRole:
    # what is not known at the lookup is a class default: one role is made per cacheable request
    from_disk = False               # the stored entry was read from the cache_dir (a TCP_HIT)
    names: tuple[bytes, ...] = ()
    stored: CachedReply | None = None   # the entry found, if any
    stored_body: bytes | None = None
    revalidating = False
    leader = False                  # this exchange fetches for a collapsed group
    teeing = False                  # a copy of the reply is being kept
    age = 0.0
    facts: EntryFacts | None = None     # the stored reply's
    fail_on_error = False           # a failed revalidation passes the error on (no stale reply)
    reason: Reason | None = None    # Squid's refresh reason code, once checked

    def __init__(self, cache: CacheSettings, url: str, method: str, request_headers: Fields, cache_fields: bool,
                 background: bool = False):
        self.cache = cache              # the shared cache settings and collapsed-fetch table
        self.url = self.key = url
        self.method = method
        self.request_headers = request_headers
        if cache_fields:
            self.req_cc: dict[str, str | None] = policy.request_directives(request_headers)
            # a valid If-Modified-Since (for refresh-ims and refresh_all_ims)
            self.ims = policy.parse_http_date(field(request_headers, b"if-modified-since")) is not None
        else:
            self.req_cc = {}
            self.ims = False
        self.background = background    # a stale-while-revalidate refresh

    # ------------------------------------------------------------ the store's answer
    def found(self, reply: CachedReply | None, body: bytes | None, names: tuple[bytes, ...], now: float,
              may_wait: bool) -> Found:
        self.names = names
        self.key = entry_key(self.url, policy.vary_key(names, self.request_headers) if names else ())
        if reply is not None and reply.vary_names != names and reply.vary_names:
            reply = None            # the Vary index changed under us: treat as absent
        self.stored, self.stored_body = reply, body
        if reply is None:
            if "only-if-cached" in self.req_cc:
                return Found.ONLY_IF_CACHED_MISS
            return self._miss(may_wait, now)
        cache = self.cache
        self.facts = facts = reply.facts(cache)
        self.age = facts.initial_age + (now - reply.response_time)
        if cache.offline:
            return Found.SERVE
        if self.background:
            self.revalidating = True
            return Found.REVALIDATE
        if not self.req_cc and not self.ims and self.age < facts.hit_lifetime:
            return Found.SERVE      # fresh, and nothing asks otherwise (the common hit, without refresh_check)
        check = refresh_check(facts, self.age, cache.refresh_settings, self.req_cc, self.ims)
        self.reason, self.fail_on_error = check.reason, check.fail_on_error
        if check.reason < Reason.STALE_MUST_REVALIDATE:
            return Found.SERVE
        if "only-if-cached" in self.req_cc:
            return Found.ONLY_IF_CACHED_MISS                                   # RFC 9111 5.2.1.7
        if check.reload:
            self.forget_stored()
            return Found.RELOAD
        if check.reason in PLAIN_STALE:
            swr = policy.delta_seconds(facts.cc.get("stale-while-revalidate"))
            if swr is not None and check.staleness <= swr:
                return Found.SERVE_AND_REFRESH                                 # RFC 5861 3
        self.revalidating = True
        return Found.REVALIDATE

    def _miss(self, may_wait: bool, now: float) -> Found:
        """Nothing usable is stored: fetch, unless someone is already fetching it
        (collapsed forwarding) and that URL's replies have been cacheable."""
        cache = self.cache
        if (may_wait and self.method == "GET" and cache.collapsed and "no-cache" not in self.req_cc
                and not cache.recently_uncacheable(self.key, now)):
            if self.key in cache.pending:
                return Found.WAIT
            self.leader = True
            return Found.LEAD
        return Found.MISS

    def forget_stored(self) -> None:
        """The stored body vanished (TCP_SWAPFAIL_MISS): fetch as if nothing was stored."""
        self.stored = self.stored_body = None
        self.revalidating = False

    @property
    def reload(self) -> bool:
        """The client asked for an end-to-end reload (``no-cache``) and no refresh_pattern
        (nor reload_into_ims) may change that: as Squid 5.7, the store is not looked at,
        the reply is fetched without validators and logged TCP_MISS."""
        return "no-cache" in self.req_cc and not self.cache.refresh_settings.nocache_hack

    # ------------------------------------------------------------ talking to the origin
    def validators(self) -> list[tuple[bytes, bytes]]:
        """RFC 9111 4.3.1: the fields to add when revalidating."""
        if self.revalidating and self.stored is not None:
            return policy.validation_headers(self.stored.headers)
        return []

    def miss_conditionals(self) -> frozenset[bytes] | None:
        """cache_miss_revalidate off (src/http.cc): the client's conditions that do not go
        upstream on a miss, so that a whole, storable reply comes back; none when the
        request carries credentials."""
        headers = self.request_headers
        if field(headers, b"authorization") is not None:
            return None
        if_match = field(headers, b"if-match")
        if if_match is not None and b"*" in [t.strip() for t in if_match.split(b",")]:
            return MISS_CONDITIONALS_IMS
        return MISS_CONDITIONALS

    def on_reply(self, resp: ResponseHead, storable_here: bool, now: float) -> OnReply:
        """The origin's reply head (``storable_here``: the ``cache`` ACL allows storing
        this URL; ``now``: when it arrived)."""
        stored = self.stored
        if self.revalidating and stored is not None:
            if resp.status == 304 or (resp.status == 200 and self.method == "HEAD" and policy.head_updates_stored(
                    stored.headers, stored.body_size, resp.headers)):
                return OnReply.FRESHEN                                         # 4.3.4, 4.3.5
            if resp.status >= 500 and not self.fail_on_error:
                return OnReply.SERVE_STALE      # Squid's handleIMSReply: an error keeps the stale reply
        if self.method != "GET" or not storable_here:
            return OnReply.PASS
        cache = self.cache
        rule = cache.refresh_rule(self.url)
        resp_cc = policy.cache_control(resp.headers)
        ok, _why = policy.is_storable("GET", resp.status, self.request_headers, resp.headers, self.req_cc, resp_cc,
                                      rule.ignore_no_store, rule.ignore_private)
        if ok and resp.content_length is not None and not cache.size_allowed(resp.content_length):
            ok = False
        if ok and resp.status in REFRESH_CHECKED_STATUSES and not rule.store_stale:
            facts = entry_facts(resp.status, resp.headers, rule, now, now, cache.refresh_settings)
            ok = is_cachable(facts, cache.refresh_settings, resp.content_length)
        if not ok:
            return OnReply.PASS
        self.teeing = True
        return OnReply.STORE

    def refresh_result(self, resp: ResponseHead) -> str | None:
        """The log's result for a revalidation whose reply is passed on."""
        if self.revalidating and self.stored is not None:
            return "TCP_REFRESH_MODIFIED" if resp.status < 500 else "TCP_REFRESH_FAIL_ERR"
        return None

    def on_failure(self) -> OnReply:
        """The origin could not be reached while revalidating: Squid serves the stale
        reply (TCP_REFRESH_FAIL_OLD; RFC 9111 4.2.4 allows it when disconnected) unless
        the check said the error must pass (must-revalidate and its kin, an expired
        stale-if-error, beyond max_stale); RFC 9111 5.2.2.2 then wants a 504."""
        facts = self.facts          # set with stored, by found()
        if self.revalidating and self.stored is not None and facts is not None:
            if not self.fail_on_error:
                return OnReply.SERVE_STALE
            if policy.must_revalidate(facts.cc):
                return OnReply.FAIL
        return OnReply.PASS

    def stored_under(self, resp_headers: Fields) -> tuple[str, tuple[bytes, ...], tuple[bytes, ...]]:
        """(key, names, values) for a reply about to be stored: its own Vary decides."""
        names = policy.vary_names(resp_headers)
        values = policy.vary_key(names, self.request_headers) if names else ()
        return entry_key(self.url, values), names, values
