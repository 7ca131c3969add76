"""What every exchange shares, as the exchange sees it.

The running proxy (:class:`squidpy.proxy.service.ProxyService`) provides these;
transcript tests provide their own with a fixed clock.  Everything here
answers at once from memory: anything that needs the network or the disk is
a command, never a call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from squidpy.config.loader import Config


class CacheSettings(Protocol):
    """The cache's settings and in-memory bookkeeping (no store access)."""

    offline: bool                 # offline_mode: never revalidate
    collapsed: bool               # collapsed_forwarding
    generation: int               # changes on reconfigure: memoised freshness facts are redone
    pending: dict                 # key -> waiters, for the collapsed fetches under way

    def allows(self, checklist: Any) -> bool: ...                 # the ``cache`` access list
    def options(self, url: str) -> frozenset: ...                 # refresh_pattern options for the URL
    def refresh_rule(self, url: str) -> Any: ...                  # its heuristic rule
    def size_allowed(self, size: int) -> bool: ...                # minimum/maximum_object_size
    def recently_uncacheable(self, key: str, now: float) -> bool: ...
    def find_in_memory(self, url: str, request_headers: list) -> tuple | None: ...
    # (reply, body, Vary names) from the memory tier; (None, None, names) when nothing is
    # stored anywhere; None when the disk must be asked (LookUpCache)


class Shared(Protocol):
    config: Config
    visible_hostname: str
    hostnames: tuple              # visible_hostname and hostname_aliases, lower case: URLs naming the proxy
    my_port: int                  # the first http_port, which the proxy's own URLs carry
    via_name: str | None          # for forwarding-loop detection (None: via off)
    via_header: bytes | None      # our Via entry
    x_cache_miss: bytes           # "MISS from HOST"
    x_cache_hit: bytes            # "HIT from HOST"
    error_pages: Any              # squidpy.errors.ErrorPages
    pac: Any                      # squidpy.pac.PacSettings: the proxy.pac this proxy serves
    cache: CacheSettings | None
    peers: Any                    # squidpy.peers.selection.PeerTable (empty: every request goes direct)
    helpers: Any                  # squidpy.helpers.state.HelperState; None when no helper is configured

    def now(self) -> float: ...                                   # the clock (seconds since the epoch)
    def boundary(self) -> bytes: ...                              # a fresh multipart boundary
    def cached_name(self, address: str) -> str | None: ...        # a known reverse DNS answer
    def cached_addresses(self, host: str) -> list[str] | None: ...  # a known forward DNS answer
    def connections_from(self, ip: str) -> int: ...               # for maxconn
