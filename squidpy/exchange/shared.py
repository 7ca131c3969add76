"""What every exchange shares, as the exchange sees it.

The running proxy (:class:`squidpy.proxy.service.ProxyService`) provides these;
transcript tests provide their own with a fixed clock.  Everything here
answers at once from memory: anything that needs the network or the disk is
a command, never a call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from squidpy.acl.checklist import Checklist
    from squidpy.cache.policy import RefreshRule
    from squidpy.cache.refresh import RefreshSettings
    from squidpy.cache.store import CachedReply
    from squidpy.config.loader import Config
    from squidpy.errors import ErrorPages
    from squidpy.helpers.state import HelperState
    from squidpy.http.message import Fields
    from squidpy.pac import PacSettings
    from squidpy.peers.selection import PeerTable

Found = tuple["CachedReply | None", "bytes | None", "tuple[bytes, ...]"]
"""What the memory tier says of a request: (reply, body, Vary names)."""


class CacheSettings(Protocol):
    """The cache's settings and in-memory bookkeeping (no store access)."""

    offline: bool                 # offline_mode: never revalidate
    collapsed: bool               # collapsed_forwarding
    generation: int               # changes on reconfigure: memoised freshness facts are redone
    refresh_settings: RefreshSettings   # refresh_pattern's and the refresh directives' settings
    pending: dict[str, list[object]]  # key -> waiters, for the collapsed fetches under way

    def allows(self, checklist: Checklist) -> bool: ...           # the ``cache`` access list
    def options(self, url: str) -> frozenset[str]: ...            # refresh_pattern options for the URL
    def refresh_rule(self, url: str) -> RefreshRule: ...          # its heuristic rule
    def size_allowed(self, size: int) -> bool: ...                # minimum/maximum_object_size
    def recently_uncacheable(self, key: str, now: float) -> bool: ...
    def find_in_memory(self, url: str, request_headers: Fields) -> Found | None: ...
    # (reply, body, Vary names) from the memory tier; (None, None, names) when nothing is
    # stored anywhere; None when the disk must be asked (LookUpCache)


class Shared(Protocol):
    config: Config
    visible_hostname: str
    hostnames: tuple[str, ...]    # visible_hostname and hostname_aliases, lower case: URLs naming the proxy
    my_port: int                  # the first http_port, which the proxy's own URLs carry
    via_name: str | None          # for forwarding-loop detection (None: via off)
    via_header: bytes | None      # our Via entry
    x_cache_miss: bytes           # "MISS from HOST"
    x_cache_hit: bytes            # "HIT from HOST"
    error_pages: ErrorPages
    pac: PacSettings              # the proxy.pac this proxy serves
    cache: CacheSettings | None
    peers: PeerTable              # empty: every request goes direct
    helpers: HelperState | None   # None when no helper is configured

    def now(self) -> float: ...                                   # the clock (seconds since the epoch)
    def boundary(self) -> bytes: ...                              # a fresh multipart boundary
    def cached_name(self, address: str) -> str | None: ...        # a known reverse DNS answer
    def cached_addresses(self, host: str) -> list[str] | None: ...  # a known forward DNS answer
    def connections_from(self, ip: str) -> int: ...               # for maxconn
