"""Bandwidth pools as Squid defines them: delay_pools and client_delay_pools (pure).

**delay_pools** limit how fast replies are read from origin servers (misses and
CONNECT tunnels; hits are not delayed, as in Squid).  A pool of class

1. has one aggregate bucket;
2. an aggregate bucket and one per host (bits 25-32 of the client's IPv4 address);
3. an aggregate bucket, one per network (bits 17-24) and one per host of each network;
4. class 3 and one per user (the authenticated user name);
5. one bucket per tag (an external ACL's ``tag=``).

Each bucket is ``restore/maximum`` (``delay_parameters``; ``none``: no limit at
that level) and starts ``delay_initial_bucket_level`` percent full when first
used.  ``delay_access`` picks a request's pool: pools are tried in order, the
first that allows the request is used (a pool without delay_access is never
used).  A transfer reads at most as much as its emptiest bucket holds
(:meth:`DelayId.wanted`), then takes what it read from every one of its buckets
(:meth:`DelayId.used`).  Squid refills the buckets once a second; squidpy
refills each bucket by the time that has passed whenever it is looked at: the
same bytes per second, in smaller bursts.

**client_delay_pools** limit how fast squidpy writes to a client: one bucket per
client address (``client_delay_parameters POOL RATE MAX``), chosen when the
connection is accepted (``client_delay_access``, which sees only the
connection), shared by that address's connections, starting
``client_delay_initial_bucket_level`` percent full (over 100: the extra
is spent before the bucket refills, as in Squid's BandwidthBucket).

Everything here is arithmetic on an injected clock; squidpy.proxy.throttle
pauses and resumes the connections.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict, TypeVar

from squidpy.acl.checklist import Pending

if TYPE_CHECKING:
    from squidpy.acl.access import AccessList
    from squidpy.acl.checklist import Checklist

_Key = TypeVar("_Key", bound=Hashable)
_Bucket = TypeVar("_Bucket", "Bucket", "ClientBucket")

MAX_KEYED = 65536           # buckets kept per table (users, tags, client addresses); full ones go first

CLASS_MEMBERS = {           # what each class's delay_parameters give, in order (Squid's labels)
    1: ("Aggregate",),
    2: ("Aggregate", "Individual"),
    3: ("Aggregate", "Network", "Individual"),
    4: ("Aggregate", "Network", "Individual", "Per User"),
    5: ("Per Tag",),
}


@dataclass(frozen=True)
class Rate:
    """``restore/maximum``: bytes added per second, and the most a bucket holds."""

    restore: int
    maximum: int


def parse_rate(text: str) -> Rate | None:
    """``restore/max``, or ``none`` (or anything starting with '-'): no limit."""
    if text == "none" or text.startswith("-"):
        return None
    restore, slash, maximum = text.partition("/")
    if not slash or not restore.isdigit() or not maximum.isdigit():
        raise ValueError(f"'{text}' is not a delay rate: write restore/maximum in bytes (8000/8000), or none")
    return Rate(int(restore), int(maximum))


@dataclass
class PoolSpec:
    """One delay pool as configured: its class, its rates, its delay_access."""

    number: int
    klass: int
    rates: tuple[Rate | None, ...] = ()
    access: AccessList | None = None        # None: never used
    where: str = ""


@dataclass
class ClientPoolSpec:
    number: int
    rate: int = 0
    maximum: int = 0
    access: AccessList | None = None
    where: str = ""


class MemberReport(TypedDict):
    """One level of a pool's buckets, for the delay page and /metrics."""

    label: str
    restore: int | None
    max: int | None
    layout: str                 # single, vector (by host or network byte), hosts (by network), keyed
    buckets: list[object]       # levels; [key, level] pairs; [network, [[host, level]...]] for hosts


PoolReport = TypedDict("PoolReport", {
    "number": int, "class": "int | str", "kind": str, "members": "list[MemberReport]", "bytes": int, "pauses": int})


def select(pools: Sequence[PoolSpec | ClientPoolSpec], checklist: Checklist) -> int | None:
    """The index of the first pool whose access list allows the request (Squid's
    DelayId::DelayClient / the client_delay_access loop); an ACL that would need a
    lookup does not match here (these are fast checks)."""
    for i, pool in enumerate(pools):
        if pool.access is None:
            continue
        try:
            if pool.access.check(checklist).allowed:
                return i
        except Pending:
            continue
    return None


class Bucket:
    """A level of bytes, refilled by the time passed since it was last looked at."""

    __slots__ = ("level", "stamp")

    def __init__(self, level: float, now: float):
        self.level = level
        self.stamp = now

    def refill(self, rate: Rate, now: float) -> None:
        gained = (now - self.stamp) * rate.restore
        self.stamp = now
        if gained > 0:
            self.level = min(self.level + gained, rate.maximum)


class DelayPool:
    """One delay pool's buckets in this process."""

    def __init__(self, spec: PoolSpec, initial_percent: int, now: float):
        self.spec = spec
        self.initial = initial_percent
        members: dict[str, Rate | None] = dict(zip(CLASS_MEMBERS[spec.klass], spec.rates))
        self.rates = members
        aggregate = members.get("Aggregate")
        self.aggregate = Bucket(self._initial(aggregate), now) if aggregate is not None else None
        self.individual: dict[int, Bucket] = {}         # class 2: by host byte
        self.network: dict[int, Bucket] = {}            # class 3, 4: by network byte
        self.hosts: dict[int, dict[int, Bucket]] = {}   # class 3, 4: network byte -> host byte
        self.users: dict[str, Bucket] = {}
        self.tags: dict[str, Bucket] = {}
        self.bytes = 0          # delivered through the pool
        self.pauses = 0         # times a transfer waited for it

    def _initial(self, rate: Rate) -> float:
        """Squid's DelayBucket::init: the maximum times the initial percentage, truncated."""
        return int(rate.maximum * self.initial / 100)

    def _bucket(self, table: dict[_Key, Bucket], key: _Key, rate: Rate, now: float) -> tuple[Bucket, Rate]:
        bucket = table.get(key)
        if bucket is None:
            if len(table) >= MAX_KEYED:
                def full(b: Bucket) -> bool:
                    b.refill(rate, now)
                    return b.level >= rate.maximum
                _forget_full(table, full)
            bucket = table[key] = Bucket(self._initial(rate), now)
        return bucket, rate

    def id_for(self, client_ip: str, user: str | None, tag: str | None, now: float) -> "DelayId | None":
        """The buckets a request from ``client_ip`` (``user``, ``tag``) draws on; None when
        no bucket limits it (Squid's NullDelayId).  Host and network buckets need an
        IPv4 address, as in Squid."""
        rates = self.rates
        buckets: list[tuple[Bucket, Rate]] = []
        if self.aggregate is not None:
            aggregate_rate = rates["Aggregate"]
            assert aggregate_rate is not None, "the aggregate bucket exists only with its rate"
            buckets.append((self.aggregate, aggregate_rate))
        klass = self.spec.klass
        ipv4 = _ipv4_bytes(client_ip) if klass in (2, 3, 4) else None
        if klass == 2 and ipv4 is not None and rates["Individual"] is not None:
            buckets.append(self._bucket(self.individual, ipv4[3], rates["Individual"], now))
        if klass in (3, 4) and ipv4 is not None:
            net, host = ipv4[2], ipv4[3]
            if rates["Network"] is not None:
                buckets.append(self._bucket(self.network, net, rates["Network"], now))
            if rates["Individual"] is not None:
                buckets.append(self._bucket(self.hosts.setdefault(net, {}), host, rates["Individual"], now))
        if klass == 4 and user and rates["Per User"] is not None:
            buckets.append(self._bucket(self.users, user, rates["Per User"], now))
        if klass == 5 and tag and rates["Per Tag"] is not None:
            buckets.append(self._bucket(self.tags, tag, rates["Per Tag"], now))
        return DelayId(self, tuple(buckets)) if buckets else None

    def report(self, now: float) -> PoolReport:
        """The pool as the delay page and /metrics show it (every bucket refilled to now)."""
        members: list[MemberReport] = []
        for label, rate in self.rates.items():
            buckets: list[object]
            if label == "Aggregate":
                layout, buckets = "single", [_level(self.aggregate, rate, now)]
            elif label == "Individual" and self.spec.klass == 2:
                layout, buckets = "vector", _levels(self.individual, rate, now)
            elif label == "Network":
                layout, buckets = "vector", _levels(self.network, rate, now)
            elif label == "Individual":
                layout = "hosts"
                buckets = [[net, _levels(hosts, rate, now)] for net, hosts in self.hosts.items()]
            else:
                layout = "keyed"
                buckets = _levels(self.users if label == "Per User" else self.tags, rate, now)
            members.append({"label": label, "restore": None if rate is None else rate.restore,
                            "max": None if rate is None else rate.maximum, "layout": layout, "buckets": buckets})
        return {"number": self.spec.number, "class": self.spec.klass, "kind": "server", "members": members,
                "bytes": self.bytes, "pauses": self.pauses}


def _forget_full(table: dict[_Key, _Bucket], full: Callable[[_Bucket], bool]) -> None:
    """Bound a table of buckets: full buckets hold nothing back, so forgetting them
    changes nothing (a new one starts at the initial level); if none is full, the oldest half."""
    doomed = [key for key, bucket in table.items() if full(bucket)] or list(table)[:len(table) // 2]
    for key in doomed:
        del table[key]


def _level(bucket: Bucket | None, rate: Rate | None, now: float) -> float:
    if bucket is None or rate is None:
        return 0
    bucket.refill(rate, now)
    return bucket.level


def _levels(table: dict[_Key, Bucket], rate: Rate | None, now: float) -> list[object]:
    return [[key, _level(bucket, rate, now)] for key, bucket in table.items()] if rate is not None else []


def _ipv4_bytes(address: str) -> bytes | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return ip.packed if ip.version == 4 else None


class DelayId:
    """What one transfer draws on: some buckets of one pool."""

    __slots__ = ("pool", "buckets")

    def __init__(self, pool: DelayPool, buckets: tuple[tuple[Bucket, Rate], ...]):
        self.pool = pool
        self.buckets = buckets

    def wanted(self, maximum: int, now: float) -> int:
        """How many bytes may be read now: the emptiest bucket's level, at most ``maximum``."""
        allowed: float = maximum
        for bucket, rate in self.buckets:
            bucket.refill(rate, now)
            if bucket.level < allowed:
                allowed = bucket.level
        return max(0, int(allowed))

    def used(self, size: int) -> None:
        """``size`` bytes were read: every bucket gives them up (a read may take a bucket
        below zero; it refills from there)."""
        for bucket, _rate in self.buckets:
            bucket.level -= size
        self.pool.bytes += size

    def seconds_until(self, size: int, now: float) -> float:
        """How long until ``size`` bytes may be read (0 when they may be now)."""
        wait = 0.0
        for bucket, rate in self.buckets:
            bucket.refill(rate, now)
            short = min(size, rate.maximum) - bucket.level
            if short > 0:
                wait = max(wait, short / rate.restore if rate.restore else float("inf"))
        return wait


class ClientBucket:
    """One client address's write allowance (Squid's BandwidthBucket): refilled
    continuously, at most ``maximum``; a bucket that starts above its maximum spends
    the extra first and does not refill meanwhile."""

    __slots__ = ("rate", "maximum", "level", "stamp")

    def __init__(self, rate: int, maximum: int, level: float, now: float):
        self.rate = rate
        self.maximum = maximum
        self.level = level
        self.stamp = now

    def refill(self, now: float) -> None:
        gained = (now - self.stamp) * self.rate
        if gained < 1.0:
            return          # as Squid: micro updates would accumulate rounding errors
        self.stamp = now
        if self.level > self.maximum:
            return          # draining the initial extra
        self.level = min(self.level + gained, self.maximum)

    def take(self, size: int, now: float) -> int:
        """Up to ``size`` bytes may be written now: how many (taken from the bucket)."""
        self.refill(now)
        allowed = min(size, int(self.level))
        if allowed > 0:
            self.level -= allowed
            return allowed
        return 0

    def seconds_until(self, size: int, now: float) -> float:
        self.refill(now)
        short = min(size, self.maximum) - self.level
        if short <= 0:
            return 0.0
        return short / self.rate if self.rate else float("inf")


@dataclass(eq=False)          # one object per pool: the throttle's timers are kept by pool
class ClientPool:
    """One client_delay_pools pool in this process: a bucket per client address."""

    spec: ClientPoolSpec
    initial: int
    buckets: dict[str, ClientBucket] = field(default_factory=dict)
    bytes: int = 0
    pauses: int = 0

    def bucket_for(self, client_ip: str, now: float) -> ClientBucket:
        bucket = self.buckets.get(client_ip)
        if bucket is None:
            if len(self.buckets) >= MAX_KEYED:
                def full(b: ClientBucket) -> bool:
                    b.refill(now)
                    return b.level >= b.maximum
                _forget_full(self.buckets, full)
            # Squid: floor(0.5 + highwatermark * initial / 100)
            level = int(0.5 + self.spec.maximum * self.initial / 100.0)
            bucket = self.buckets[client_ip] = ClientBucket(self.spec.rate, self.spec.maximum, level, now)
        return bucket

    def report(self, now: float) -> PoolReport:
        levels: list[object] = []
        for ip, bucket in self.buckets.items():
            bucket.refill(now)
            levels.append([ip, bucket.level])
        return {"number": self.spec.number, "class": "client", "kind": "client", "bytes": self.bytes,
                "pauses": self.pauses,
                "members": [{"label": "client", "layout": "keyed", "restore": self.spec.rate,
                             "max": self.spec.maximum, "buckets": levels}]}
