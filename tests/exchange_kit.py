"""Helpers for exchange transcripts: a real configuration, a fixed clock, no sockets.

``make(b"GET http://o.test/ HTTP/1.1\\r\\nHost: o.test\\r\\n\\r\\n")`` builds an
:class:`~squidpy.exchange.Exchange` over :class:`FakeShared`; a test feeds it
events and compares the commands with what it expects.
"""

from __future__ import annotations

import httptools

from squidpy.cache.policy import RefreshRule
from squidpy.cache.refresh import DEFAULT_SETTINGS, RefreshSettings
from squidpy.cache.store import CachedReply
from squidpy.config.loader import load
from squidpy.errors import ErrorPages
from squidpy.exchange import ClientInfo, Exchange
from squidpy.exchange import commands as c
from squidpy.helpers.state import HelperState, uses_helpers
from squidpy.http.message import RequestHead, ResponseHead, via_value
from squidpy.http.url import hide_manager_scheme, restore_manager_scheme
from squidpy.pac import PacSettings

NOW = 1_800_000_000.0

OPEN_POLICY = """
acl local src 10.0.0.0/8 127.0.0.0/8
http_access allow local
http_access deny all
"""


class FakeCache:
    """The cache's settings and collapsed-fetch table, as the exchange reads them."""

    def __init__(self, offline: bool = False, collapsed: bool = True, allows: bool = True,
                 max_size: int = 1 << 30, rule: RefreshRule | None = None,
                 settings: RefreshSettings = DEFAULT_SETTINGS):
        self.offline = offline
        self.collapsed = collapsed
        self.generation = 1
        self.pending: dict = {}
        self.uncacheable: set = set()
        self._allows = allows
        self.max_size = max_size
        # a rule that keeps stale replies (max-stale=-1: the global max_stale), as a
        # refresh_pattern line does; Squid's built-in rule has max-stale=0
        self.rule = rule or RefreshRule(max_stale=-1.0)
        self.refresh_settings = settings
        self.memory: dict = {}

    def allows(self, checklist) -> bool:
        return self._allows

    def refresh_rule(self, url: str) -> RefreshRule:
        return self.rule

    def size_allowed(self, size: int) -> bool:
        return size <= self.max_size

    def recently_uncacheable(self, key: str, now: float) -> bool:
        return key in self.uncacheable

    def find_in_memory(self, url: str, request_headers):
        """Nothing in memory: the disk is always asked (LookUpCache), so transcripts
        show the lookup; tests of the memory path set ``memory``."""
        return self.memory.get(url)


class FakeShared:
    def __init__(self, config_text: str = OPEN_POLICY, cache: FakeCache | None = None,
                 names: dict | None = None, addresses: dict | None = None):
        self.config = load(text=config_text + "\nvisible_hostname proxy.test\n")
        self.visible_hostname = "proxy.test"
        self.hostnames = ("proxy.test",)
        self.my_port = 3128
        self.via_name = "proxy.test"
        self.via_header = via_value("1.1", "proxy.test")
        self.x_cache_miss = b"MISS from proxy.test"
        self.x_cache_hit = b"HIT from proxy.test"
        self.error_pages = ErrorPages(None, "proxy.test", "webmaster")
        self.pac = PacSettings.from_config(self.config)
        self.cache = cache
        self.peers = None
        self.clock = NOW
        self.names = names or {}
        self.addresses = addresses or {}
        self.connections: dict[str, int] = {}
        self.overloaded: set[str] = set()       # helpers that say one more request would overload them
        self.helpers = (HelperState(self.config, self.now, self.overloaded.__contains__)
                        if uses_helpers(self.config) else None)

    def now(self) -> float:
        return self.clock

    def boundary(self) -> bytes:
        return b"BOUNDARY"

    def cached_name(self, address: str):
        return self.names.get(address)

    def cached_addresses(self, host: str):
        return self.addresses.get(host)

    def connections_from(self, ip: str) -> int:
        return self.connections.get(ip, 1)


class _Head:
    def __init__(self):
        self.url = b""
        self.headers: list = []
        self.status = b""
        self.done = False

    def on_url(self, url):
        self.url += url

    def on_status(self, status):
        self.status += status

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_headers_complete(self):
        self.done = True


def request_head(raw: bytes) -> RequestHead:
    """A request head from its bytes (as the client side would parse it)."""
    h = _Head()
    parser = httptools.HttpRequestParser(h)
    try:
        parser.feed_data(hide_manager_scheme(raw))
    except httptools.HttpParserUpgrade:
        pass
    return RequestHead(parser.get_method().decode(), restore_manager_scheme(h.url.decode("latin-1")),
                       parser.get_http_version(), h.headers, len(raw))


def response_head(raw: bytes) -> ResponseHead:
    h = _Head()
    parser = httptools.HttpResponseParser(h)
    try:
        parser.feed_data(raw)
    except (httptools.HttpParserUpgrade, httptools.HttpParserError):
        if not h.done:
            raise
    return ResponseHead(parser.get_status_code(), h.status, parser.get_http_version(), h.headers)


def make(raw: bytes, shared: FakeShared | None = None, client_ip: str = "10.0.0.7",
         background: bool = False, client: ClientInfo | None = None) -> Exchange:
    """``client``: the connection's ClientInfo, to send several requests over one connection."""
    shared = shared or FakeShared()
    client = client or ClientInfo(client_ip, 40000, "10.0.0.1", 3128, "")
    return Exchange(shared, client, request_head(raw), NOW, background=background)


def stored(url: str, headers: list, body: bytes = b"", status: int = 200, age: float = 0.0) -> CachedReply:
    """A stored reply, received ``age`` seconds before NOW."""
    reply = CachedReply(url=url, status=status, reason=b"OK", headers=headers, request_time=NOW - age,
                        response_time=NOW - age, body_size=len(body))
    reply.serialise_head()
    return reply


def sent(commands) -> bytes:
    """Everything the commands send to the client, joined."""
    out = []
    for cmd in commands:
        if isinstance(cmd, c.SendToClient):
            out.extend(cmd.data if isinstance(cmd.data, tuple) else (cmd.data,))
    return b"".join(out)


def upstream(commands) -> bytes:
    out = []
    for cmd in commands:
        if isinstance(cmd, c.SendUpstream):
            out.extend(cmd.data if isinstance(cmd.data, tuple) else (cmd.data,))
    return b"".join(out)


def kinds(commands) -> list[str]:
    """The commands' class names, for transcripts that check order, not contents."""
    return [type(cmd).__name__.lstrip("_") for cmd in commands]


def peers_known(shared: FakeShared, up: bool = True) -> None:
    """Give ``shared`` its cache_peer table, each peer's address known (192.0.2.10, .11 ...)
    and, unless ``up`` is False, probed alive."""
    from squidpy.peers.selection import PeerTable
    table = shared.peers = PeerTable(shared.config.cache_peer, NOW)
    for i, peer in enumerate(table.peers):
        table.resolved(peer, [f"192.0.2.{10 + i}"])
    if up:
        for peer in table.probes_due(NOW - 5):
            table.probe_done(peer, True, NOW - 5)
