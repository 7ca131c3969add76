"""The cache's part of an exchange (Squid's store client), as a sub-machine.

:class:`CacheRole` holds what the cache knows about one GET or HEAD: what the
store found, whether the exchange revalidates it, leads a collapsed fetch or
keeps a copy of the reply.  Each method takes a fact (the lookup's answer,
the origin's reply head, an upstream failure) and returns a decision; the
exchange turns decisions into commands.  Every rule comes from
:mod:`squidpy.cache.policy` (RFC 9111, RFC 5861); nothing here does I/O or
reads a clock: the time is always passed in.
"""

from __future__ import annotations

import enum
from typing import Any

from squidpy.cache import policy
from squidpy.cache.store import entry_key
from squidpy.http.message import ResponseHead

HIT_RESULTS = frozenset({"TCP_HIT", "TCP_MEM_HIT", "TCP_REFRESH_UNMODIFIED", "TCP_REFRESH_FAIL_OLD",
                         "TCP_INM_HIT", "TCP_IMS_HIT", "TCP_OFFLINE_HIT"})


class Found(enum.Enum):
    """What to do once the store has answered (RFC 9111 4)."""
    MISS = "fetch from the origin"
    WAIT = "wait for the fetch another exchange leads"
    LEAD = "fetch, and let later exchanges for the URL wait for it"
    ONLY_IF_CACHED_MISS = "504: the client asked for a cached reply only"
    SERVE = "answer from the store"
    SERVE_AND_REFRESH = "answer stale, revalidate in the background (stale-while-revalidate)"
    REVALIDATE = "ask the origin with the stored validators"


class OnReply(enum.Enum):
    """What the origin's reply head means for the cache."""
    PASS = "pass the origin's reply on"
    STORE = "pass it on and keep a copy"
    FRESHEN = "the stored entry is still good: update its fields and answer from it"
    SERVE_STALE = "the origin failed: answer with the stale entry"
    FAIL = "the origin cannot be reached and the entry may not be served stale: 504"


class CacheRole:
    __slots__ = ("cache", "url", "method", "request_headers", "req_cc", "key", "names",
                 "stored", "stored_body", "revalidating", "leader", "teeing", "age", "lifetime",
                 "resp_cc", "background")

    def __init__(self, cache: Any, url: str, method: str, request_headers: list, cache_fields: bool,
                 background: bool = False):
        self.cache = cache              # the shared cache settings and collapsed-fetch table
        self.url = url
        self.method = method
        self.request_headers = request_headers
        self.req_cc: dict = policy.request_directives(request_headers) if cache_fields else {}
        self.key: str = url
        self.names: tuple = ()
        self.stored: Any = None         # the CachedReply found, if any
        self.stored_body: bytes | None = None
        self.revalidating = False
        self.leader = False             # this exchange fetches for a collapsed group
        self.teeing = False             # a copy of the reply is being kept
        self.age = 0.0
        self.lifetime = 0.0
        self.resp_cc: dict = {}
        self.background = background    # a stale-while-revalidate refresh

    # ------------------------------------------------------------ the store's answer
    def found(self, reply: Any, body: bytes | None, names: tuple, now: float, may_wait: bool) -> Found:
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
        resp_cc, initial_age, lifetime = reply.facts(cache.refresh_rule, cache.generation)
        self.age = initial_age + (now - reply.response_time)
        self.lifetime, self.resp_cc = lifetime, resp_cc
        if cache.offline:
            return Found.SERVE
        if self.background:
            self.revalidating = True
            return Found.REVALIDATE
        if not self.req_cc and self.age < lifetime and "no-cache" not in resp_cc:
            return Found.SERVE      # fresh, and nothing asks otherwise (the common hit, without can_reuse)
        reuse = policy.can_reuse(self.req_cc, resp_cc, self.age, lifetime)
        if reuse.decision in (policy.FRESH, policy.STALE_OK):
            return Found.SERVE
        if reuse.decision == policy.STALE_REVALIDATE:
            return Found.SERVE_AND_REFRESH
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
        """The client asked for an end-to-end reload (``no-cache``): Squid 5.7 then does
        not look at what it stores, fetches without validators and logs TCP_MISS."""
        return "no-cache" in self.req_cc

    # ------------------------------------------------------------ talking to the origin
    def validators(self) -> list[tuple[bytes, bytes]]:
        """RFC 9111 4.3.1: the fields to add when revalidating."""
        if self.revalidating and self.stored is not None:
            return policy.validation_headers(self.stored.headers)
        return []

    def on_reply(self, resp: ResponseHead, storable_here: bool) -> OnReply:
        """The origin's reply head (``storable_here``: the ``cache`` ACL and the
        refresh_pattern options allow storing this URL)."""
        stored = self.stored
        if self.revalidating and stored is not None:
            if resp.status == 304 or (resp.status == 200 and self.method == "HEAD" and policy.head_updates_stored(
                    stored.headers, stored.body_size, resp.headers)):
                return OnReply.FRESHEN                                         # 4.3.4, 4.3.5
            if resp.status >= 500 and policy.may_serve_stale_on_error(self.req_cc, self.resp_cc, self.age,
                                                                       self.lifetime):
                return OnReply.SERVE_STALE
        if self.method != "GET" or not storable_here:
            return OnReply.PASS
        ok, _why = policy.is_storable("GET", resp.status, self.request_headers, resp.headers,
                                      self.req_cc, policy.cache_control(resp.headers))
        if ok and resp.content_length is not None and not self.cache.size_allowed(resp.content_length):
            ok = False
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
        """The origin could not be reached (RFC 5861 4, RFC 9111 4.2.4, 5.2.2.2)."""
        if self.revalidating and self.stored is not None:
            if (policy.may_serve_stale_on_error(self.req_cc, self.resp_cc, self.age, self.lifetime)
                    or policy.may_serve_stale_disconnected(self.req_cc, self.resp_cc)):
                return OnReply.SERVE_STALE
            if policy.must_revalidate(self.resp_cc):
                return OnReply.FAIL
        return OnReply.PASS

    def stored_under(self, resp_headers: list) -> tuple[str, tuple, tuple]:
        """(key, names, values) for a reply about to be stored: its own Vary decides."""
        names = policy.vary_names(resp_headers)
        values = policy.vary_key(names, self.request_headers) if names else ()
        return entry_key(self.url, values), names, values
