"""Asynchronous DNS with Squid's positive and negative caching.

Names are looked up in the hosts file first (``hosts_file``, read as Squid
reads it: :func:`read_hosts`), then with Twisted's DNS client
(``dns_nameservers`` or /etc/resolv.conf), A and AAAA in parallel.  Answers
are kept for the record's TTL capped by ``positive_dns_ttl``; failures for
``negative_dns_ttl``.  Concurrent lookups of one name share one query.
Addresses are kept in the order the answers arrived, as Squid 5 keeps them
(it no longer puts IPv4 first: dns_v4_first is gone), and tried in that order.

Both caches are bounded as Squid bounds its own: names (answers and failures)
by ``ipcache_size``, reverse lookups by ``fqdncache_size``.  When one holds more
than its high-water mark (``ipcache_high`` percent, 95 for names of addresses)
the least recently used entries go until it is below the low-water mark
(``ipcache_low`` percent, 90), so a client asking for endless distinct names
cannot grow the proxy's memory.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections import OrderedDict

from twisted.internet import defer
from twisted.names import client, dns, error, resolve

from squidpy.ip import ip_address


class DnsError(Exception):
    """A name could not be resolved; the message is shown on ERR_DNS_FAIL."""


HOSTS_FILE = "/etc/hosts"


def build_resolver(servers: list[tuple[str, int]] | None):
    """``servers`` (or /etc/resolv.conf when None); the hosts file is the DnsCache's."""
    upstream = client.Resolver(resolv=None if servers else "/etc/resolv.conf", servers=servers)
    return resolve.ResolverChain([upstream])


class Hosts:
    """A hosts file as Squid reads it (tools.cc parseEtcHosts): ``names`` maps a
    name to its addresses in the order written, ``addresses`` an address to the
    first name of its first line."""

    def __init__(self, names: dict[str, list[str]] | None = None, addresses: dict[str, str] | None = None):
        self.names = names or {}
        self.addresses = addresses or {}


_HOSTS_LINE = re.compile(r"(\S+)\s(.*)", re.S)
_HOSTS_NAME = re.compile(r"(\S+)(?=\s)")


def read_hosts(path: str | None = HOSTS_FILE, append_domain: str | None = None) -> Hosts:
    """``ADDRESS NAME ...`` lines, as Squid's parseEtcHosts reads them: ``#`` starts
    a comment; a name counts when whitespace follows it (so does the end of a line);
    a line whose address is not one is skipped whole; a name without a dot gets
    ``append_domain``.  A name on several lines has every line's address, in the
    order written (Squid keeps only the last line's, so that 'localhost' on a
    127.0.0.1 line and a ::1 line would reach only ::1), and an address is named
    by its first line.  Names compare without case.  None or an unreadable file:
    no names."""
    hosts = Hosts()
    if path is None:
        return hosts
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("latin-1").splitlines(keepends=True)
    except OSError:
        return hosts
    for line in lines:
        if line.startswith("#"):
            continue
        found = _HOSTS_LINE.match(line.split("#", 1)[0])
        if found is None:
            continue
        address_text, rest = found.groups()
        try:
            address = str(ip_address(address_text))
        except ValueError:
            continue
        names = []
        for name in _HOSTS_NAME.findall(rest):
            name = name.lower()
            if append_domain and "." not in name and ":" not in name:
                name += append_domain
            addresses = hosts.names.setdefault(name, [])
            if address not in addresses:
                addresses.append(address)
            names.append(name)
        if names:
            hosts.addresses.setdefault(address, names[0])
    return hosts


class LruCache:
    """Entries by key, least recently used first out: over ``high`` entries it is
    trimmed to under ``low`` (Squid's high- and low-water marks)."""

    def __init__(self, size: int, low_percent: int, high_percent: int):
        self.items: OrderedDict = OrderedDict()
        self.high = size * high_percent // 100
        self.low = size * low_percent // 100

    def get(self, key):
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        items = self.items
        items[key] = value
        items.move_to_end(key)
        if len(items) > self.high:
            while items and len(items) >= max(self.low, 1):
                items.popitem(last=False)

    def clear(self) -> None:
        self.items.clear()

    def __len__(self) -> int:
        return len(self.items)


FQDNCACHE_LOW, FQDNCACHE_HIGH = 90, 95      # fixed in Squid (fqdncache.cc)


class DnsCache:
    def __init__(self, resolver, positive_ttl: float, negative_ttl: float, timeout: float = 10.0,
                 ipcache: tuple[int, int, int] = (1024, 90, 95), fqdncache_size: int = 1024,
                 clock=time.monotonic, hosts: Hosts | None = None, stats=None):
        """``ipcache`` is (ipcache_size, ipcache_low, ipcache_high); ``clock`` gives
        monotonic seconds (tests pass their own); ``hosts``: the hosts file's names,
        which are never asked of DNS (default: none); ``stats`` (a
        squidpy.mgr.stats.Stats) counts lookups for the cache manager."""
        self.resolver = resolver
        self.stats = stats
        self._started: dict[str, float] = {}
        self.positive_ttl = positive_ttl
        self.negative_ttl = negative_ttl
        self.timeout = timeout
        self.clock = clock
        self._cache = LruCache(*ipcache)            # name -> (expires, addresses or DnsError)
        self._waiting: dict[str, list[defer.Deferred[list[str]]]] = {}
        self._names = LruCache(fqdncache_size, FQDNCACHE_LOW, FQDNCACHE_HIGH)   # address -> (expires, name)
        self.hosts = hosts or Hosts()

    @property
    def ipcache_entries(self) -> int:
        return len(self._cache)

    @property
    def fqdncache_entries(self) -> int:
        return len(self._names)

    def cached(self, host: str) -> list[str] | None:
        """Addresses for ``host`` without waiting, if in the hosts file or fresh in the cache."""
        static = self.hosts.names.get(host)
        if static is not None:
            return static
        hit = self._cache.get(host)
        if hit is not None and hit[0] > self.clock() and isinstance(hit[1], list):
            return hit[1]
        return None

    def resolve(self, host: str) -> defer.Deferred[list[str]]:
        """Fires with a non-empty list of addresses or fails with :class:`DnsError`."""
        static = self.hosts.names.get(host)
        if static is not None:
            return defer.succeed(static)
        hit = self._cache.get(host)
        stats = self.stats
        if hit is not None and hit[0] > self.clock():
            if isinstance(hit[1], DnsError):
                if stats is not None:
                    stats.record_dns(0.0, "negative_hit")
                return defer.fail(hit[1])
            if stats is not None:
                stats.record_dns(0.0, "hit")
            return defer.succeed(hit[1])
        d: defer.Deferred[list[str]] = defer.Deferred()
        waiting = self._waiting.get(host)
        if waiting is not None:
            waiting.append(d)
            return d
        self._waiting[host] = [d]
        self._started[host] = self.clock()
        self._query(host)
        return d

    @property
    def pending(self) -> int:
        """Names being looked up now (the DNS queue)."""
        return len(self._waiting)

    def ipcache_contents(self) -> list:
        """(name, from /etc/hosts, negative, seconds since stored, seconds to live, addresses),
        the most recently used first, for the cache manager's ipcache page."""
        now = self.clock()
        out = []
        for name, (expires, result, stored) in reversed(self._cache.items.items()):
            negative = isinstance(result, DnsError)
            out.append((name, False, negative, int(now - stored), int(expires - now), [] if negative else result))
        out += [(name, True, False, 0, -1, addresses) for name, addresses in self.hosts.names.items()]
        return out

    def fqdncache_contents(self) -> list:
        """(address, from /etc/hosts, negative, seconds to live, names) for the fqdncache page."""
        now = self.clock()
        out = [(address, False, not name, int(expires - now), [name] if name else [])
               for address, (expires, name) in reversed(self._names.items.items())]
        out += [(address, True, False, -1, [name]) for address, name in self.hosts.addresses.items()]
        return out

    def _query(self, host: str) -> None:
        name = host.encode("idna") if not host.isascii() else host.encode("ascii")
        timeout = (self.timeout / 2, self.timeout / 2)
        a = self.resolver.lookupAddress(name, timeout=timeout)
        aaaa = self.resolver.lookupIPV6Address(name, timeout=timeout)
        arrived: list[int] = []             # which answer came first: its addresses go first

        def note(result, which: int):
            arrived.append(which)
            return result
        a.addBoth(note, 0)
        aaaa.addBoth(note, 1)
        done = defer.DeferredList([a, aaaa], consumeErrors=True)
        done.addCallback(lambda results: self._answered([results[i] for i in arrived], host))

    def _answered(self, results, host: str) -> None:
        addresses: list[str] = []
        ttl = self.positive_ttl
        failures = []
        for ok, value in results:
            if not ok:
                failures.append(value)
                continue
            for record in value[0]:
                if record.type == dns.A or record.type == dns.AAAA:
                    addresses.append(record.payload.dottedQuad() if record.type == dns.A
                                     else _ipv6_text(record.payload))
                    ttl = min(ttl, max(record.ttl, 0) or ttl)
        now = self.clock()
        if self.stats is not None:
            self.stats.record_dns(now - self._started.pop(host, now), "miss")
        else:
            self._started.pop(host, None)
        if addresses:
            result: list[str] | DnsError = list(dict.fromkeys(addresses))
            self._cache.put(host, (now + ttl, result, now))
        else:
            result = DnsError(_describe(failures, host))
            self._cache.put(host, (now + self.negative_ttl, result, now))
        for d in self._waiting.pop(host, ()):
            if isinstance(result, DnsError):
                d.errback(result)
            else:
                d.callback(result)

    def cached_name(self, address: str) -> str | None:
        """The name of an address if it is already known (``""``: it has none), else None."""
        static = self.hosts.addresses.get(address)
        if static is not None:
            return static
        hit = self._names.get(address)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        return None

    def reverse(self, address: str) -> defer.Deferred:
        """The name of an address (PTR), ``""`` when it has none; never fails.

        Used by the srcdomain ACL and by dstdomain for IP-literal URLs.
        """
        known = self.cached_name(address)
        stats = self.stats
        if known is not None:
            if stats is not None:
                stats.record_fqdn("hit" if known else "negative_hit")
            return defer.succeed(known)
        if stats is not None:
            stats.record_fqdn("miss")
        pointer = ipaddress.ip_address(address).reverse_pointer.encode("ascii")
        upstream = self.resolver.resolvers[-1]
        d = upstream.lookupPointer(pointer, timeout=(self.timeout,))

        def answered(result):
            for record in result[0]:
                if record.type == dns.PTR:
                    return str(record.payload.name).rstrip(".")
            return ""

        def remember(name):
            ttl = self.positive_ttl if name else self.negative_ttl
            self._names.put(address, (self.clock() + ttl, name))
            return name

        d.addCallbacks(answered, lambda f: "")
        d.addCallback(remember)
        return d

    def clear(self) -> None:
        self._cache.clear()
        self._names.clear()


def _ipv6_text(payload) -> str:
    return socket.inet_ntop(socket.AF_INET6, payload.address)


def _describe(failures, host: str) -> str:
    for f in failures:
        if f.check(error.DNSNameError):
            return f"Name Error: the domain name '{host}' does not exist"
    for f in failures:
        if f.check(defer.TimeoutError, error.DNSQueryTimeoutError):
            return f"Timeout: no DNS server answered for '{host}'"
    for f in failures:
        if f.check(error.DNSServerError):
            return f"Server Failure: the DNS server could not answer for '{host}'"
    if failures:
        return f"DNS lookup of '{host}' failed: {failures[0].getErrorMessage()}"
    return f"No address records: '{host}' has no IPv4 or IPv6 address"
