"""What the proxy counts for the cache manager and /metrics, and how it keeps it (pure).

:class:`Stats` is one process's counting: :meth:`Stats.record` takes each
finished transaction's :class:`~squidpy.log.entry.LogEntry` (from the log path,
once per request: a few integer additions and two dictionary updates, no
locks: the reactor is the only thread that counts); :meth:`Stats.snapshot`
works out the rest when a page asks.  :class:`Counters` are cumulative, as
Squid's ``StatCounters``; every minute :meth:`Stats.tick` keeps a copy, so the
5 and 60 minute figures (Squid's ``CountHist``) and the utilization page are
differences between two copies.  Counters are plain data:
they travel between kids as JSON (:meth:`Counters.to_json`), add up over kids
(:meth:`Counters.add`), and subtract (:meth:`Counters.minus`).

Service times are histograms (``BOUNDS``, in seconds) per kind of answer, as
Squid keeps them: ``hit`` (TCP_HIT, TCP_MEM_HIT, TCP_OFFLINE_HIT), ``near_hit``
(TCP_REFRESH_UNMODIFIED), ``not_modified`` (TCP_IMS_HIT, TCP_INM_HIT), ``miss``
(TCP_MISS, TCP_CLIENT_REFRESH_MISS), plus ``tunnel`` (TCP_TUNNEL) and ``other``.
Medians are read from them as Prometheus reads quantiles (:func:`quantile`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from squidpy.log.entry import LogEntry

#: a report, or part of one, as it travels between processes: a JSON object as json.loads
#: gives it (what its values are is the sending process's word, not checked on arrival)
JsonObject = dict[str, Any]

_Key = TypeVar("_Key", bound=Hashable)

#: histogram bucket upper bounds, seconds (Prometheus' defaults, extended for long transfers)
BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
KINDS = ("hit", "near_hit", "not_modified", "miss", "tunnel", "other")
HIT, NEAR_HIT, NOT_MODIFIED, MISS, TUNNEL, OTHER = range(len(KINDS))

# Squid's LogTags::isTcpHit()
TCP_HITS = frozenset({"TCP_HIT", "TCP_IMS_HIT", "TCP_INM_HIT", "TCP_REFRESH_FAIL_OLD", "TCP_REFRESH_UNMODIFIED",
                      "TCP_NEGATIVE_HIT", "TCP_MEM_HIT", "TCP_OFFLINE_HIT"})
_KIND_OF = {"TCP_HIT": HIT, "TCP_MEM_HIT": HIT, "TCP_OFFLINE_HIT": HIT, "TCP_REFRESH_UNMODIFIED": NEAR_HIT,
            "TCP_IMS_HIT": NOT_MODIFIED, "TCP_INM_HIT": NOT_MODIFIED, "TCP_MISS": MISS,
            "TCP_CLIENT_REFRESH_MISS": MISS, "TCP_TUNNEL": TUNNEL}

#: the scalar counters, in Squid's words where Squid has them
SCALARS = (
    "requests", "hits", "mem_hits", "disk_hits", "errors", "aborted",
    "bytes_in", "bytes_out", "hit_bytes_out",
    "server_requests", "server_errors", "server_bytes_in", "server_bytes_out",
    "server_other_requests", "server_other_bytes_in", "server_other_bytes_out",     # tunnels (Squid's "other")
    "swap_outs", "swap_ins",
    "dns_requests", "dns_hits", "dns_negative_hits", "dns_misses",
    "cpu_time", "select_loops", "page_faults",
)
CLIENT_TABLE_MAX = 262144   # (client, result, status, method) rows kept (the oldest half goes past it)


class ResultInfo:
    """What a result code means for the counters, worked out once per code."""

    __slots__ = ("kind", "hit", "mem_hit", "disk_hit", "aborted")

    def __init__(self, result: str):
        base = result[:-len("_ABORTED")] if result.endswith("_ABORTED") else result
        self.kind = _KIND_OF.get(base, OTHER)
        self.hit = base in TCP_HITS
        self.mem_hit = base == "TCP_MEM_HIT"
        self.disk_hit = base == "TCP_HIT"
        self.aborted = base != result


class _Infos(dict[str, ResultInfo]):
    def __missing__(self, result: str) -> ResultInfo:
        info = self[result] = ResultInfo(result)
        return info


_INFO = _Infos()


def new_histogram() -> list[int]:
    return [0] * (len(BOUNDS) + 1)


class Counters:
    """Cumulative counts of one process (or, added up, of several)."""

    __slots__ = SCALARS + ("by", "svc", "svc_sum", "dns_svc", "dns_svc_sum", "denied")

    # SCALARS, set by name in __init__, add and minus (a test checks the two lists agree)
    requests: int
    hits: int
    mem_hits: int
    disk_hits: int
    errors: int
    aborted: int
    bytes_in: int
    bytes_out: int
    hit_bytes_out: int
    server_requests: int
    server_errors: int
    server_bytes_in: int
    server_bytes_out: int
    server_other_requests: int
    server_other_bytes_in: int
    server_other_bytes_out: int
    swap_outs: int
    swap_ins: int
    dns_requests: int
    dns_hits: int
    dns_negative_hits: int
    dns_misses: int
    cpu_time: float
    select_loops: int
    page_faults: int

    def __init__(self) -> None:
        for name in SCALARS:
            setattr(self, name, 0)
        self.cpu_time = 0.0
        self.by: dict[tuple[str, int, str], int] = {}      # (result, status, method) -> requests
        self.svc = [new_histogram() for _ in KINDS]         # service times per kind
        self.svc_sum = [0.0] * len(KINDS)
        self.dns_svc = new_histogram()                      # DNS lookup times
        self.dns_svc_sum = 0.0
        self.denied: dict[tuple[str, str], int] = {}        # (FILE:LINE, the line) -> denials

    def copy(self) -> "Counters":
        c = Counters()
        c.add(self)
        return c

    def add(self, other: "Counters") -> "Counters":
        for name in SCALARS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        _add_counts(self.by, other.by)
        _add_counts(self.denied, other.denied)
        for mine, theirs in zip(self.svc, other.svc):
            for i, n in enumerate(theirs):
                mine[i] += n
        self.svc_sum = [a + b for a, b in zip(self.svc_sum, other.svc_sum)]
        for i, n in enumerate(other.dns_svc):
            self.dns_svc[i] += n
        self.dns_svc_sum += other.dns_svc_sum
        return self

    def minus(self, older: "Counters") -> "Counters":
        """What was counted since ``older`` (a copy of the same counters taken before)."""
        c = Counters()
        for name in SCALARS:
            setattr(c, name, getattr(self, name) - getattr(older, name))
        c.by = {k: n - older.by.get(k, 0) for k, n in self.by.items() if n != older.by.get(k, 0)}
        c.denied = {k: n - older.denied.get(k, 0) for k, n in self.denied.items() if n != older.denied.get(k, 0)}
        c.svc = [[a - b for a, b in zip(mine, theirs)] for mine, theirs in zip(self.svc, older.svc)]
        c.svc_sum = [a - b for a, b in zip(self.svc_sum, older.svc_sum)]
        c.dns_svc = [a - b for a, b in zip(self.dns_svc, older.dns_svc)]
        c.dns_svc_sum = self.dns_svc_sum - older.dns_svc_sum
        return c

    def all_svc(self) -> list[int]:
        """The service times of every request (Squid's ``allSvcTime``)."""
        out = new_histogram()
        for h in self.svc:
            for i, n in enumerate(h):
                out[i] += n
        return out

    # -------------------------------------------------------- as JSON, between kids
    def to_json(self) -> JsonObject:
        return {
            "scalars": {name: getattr(self, name) for name in SCALARS},
            "by": [[r, s, m, n] for (r, s, m), n in self.by.items()],
            "svc": self.svc, "svc_sum": self.svc_sum, "dns_svc": self.dns_svc, "dns_svc_sum": self.dns_svc_sum,
            "denied": [[w, t, n] for (w, t), n in self.denied.items()],
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> "Counters":
        c = cls()
        for name, value in data["scalars"].items():
            if name in SCALARS:
                setattr(c, name, value)
        c.by = {(r, s, m): n for r, s, m, n in data["by"]}
        c.svc = [list(h) for h in data["svc"]]
        c.svc_sum = list(data["svc_sum"])
        c.dns_svc = list(data["dns_svc"])
        c.dns_svc_sum = data["dns_svc_sum"]
        c.denied = {(w, t): n for w, t, n in data["denied"]}
        return c


def _add_counts(mine: dict[_Key, int], theirs: dict[_Key, int]) -> None:
    for key, n in theirs.items():
        mine[key] = mine.get(key, 0) + n


class ResultStats:
    """What is counted per result code: bytes sent, and the service times."""

    __slots__ = ("bytes_out", "svc", "svc_sum", "info")

    def __init__(self, result: str):
        self.bytes_out = 0
        self.svc = new_histogram()
        self.svc_sum = 0.0
        self.info = _INFO[result]


class Stats:
    """One process's counting, and the minute and hour copies of its counters.

    :meth:`record` does as little as it can per request: one table keyed by (client
    address, result, status, method) holds the request counts (the client database
    and the requests by result, status and method are read from it), one record per
    result code its bytes and service times; hits, memory and disk hits, aborts and
    the per-kind histograms are worked out from them when a page or /metrics asks
    (:meth:`snapshot`).  ``direct`` holds what is counted as it happens (bytes from
    clients, errors, origin traffic, DNS, denials)."""

    HOURS = 72                      # hour copies kept: three days, as Squid's N_COUNT_HOUR_HIST

    def __init__(self, now: float):
        self.started = now
        self.direct = Counters()
        self.table: dict[tuple[str, str, int, str], int] = {}
        self.results: dict[str, ResultStats] = {}
        self.fqdn = {"requests": 0, "hits": 0, "negative_hits": 0, "misses": 0}     # reverse lookups
        # (time, copy of the counters): the newest first, one a minute; and one an hour
        self.minutes: deque[tuple[float, Counters]] = deque([(now, Counters())], maxlen=61)
        self.hours: deque[tuple[float, Counters]] = deque([(now, Counters())], maxlen=self.HOURS + 1)
        self._ticks = 0

    def record(self, e: LogEntry) -> None:
        """Count one finished transaction (a LogEntry).  On the hot path: keep it short."""
        result = e.result
        r = self.results.get(result)
        if r is None:
            r = self.results[result] = ResultStats(result)
        r.bytes_out += e.reply_header_size + e.reply_body_size
        elapsed = e.end - e.start
        r.svc[bisect_left(BOUNDS, elapsed)] += 1
        r.svc_sum += elapsed
        c = self.direct
        c.bytes_in += e.request_header_size + e.request_body_size
        if e.error is not None:
            c.errors += 1
        if e.denied_by is not None:
            denied = c.denied
            denied[e.denied_by] = denied.get(e.denied_by, 0) + 1
        if e.server_ip is not None:
            self._server(c, e, r.info.kind)
        table = self.table
        key = (e.client_ip, result, e.status, e.method)
        count = table.get(key)
        if count is None:
            if len(table) >= CLIENT_TABLE_MAX:
                self._forget_oldest_clients()
            table[key] = 1
        else:
            table[key] = count + 1

    def _forget_oldest_clients(self) -> None:
        """Bound the table: the oldest rows' counts move to client '-', so the totals
        by result, status and method never go down."""
        table = self.table
        for key in list(table)[:CLIENT_TABLE_MAX // 2]:
            n = table.pop(key)
            folded = ("-", *key[1:])
            table[folded] = table.get(folded, 0) + n

    @staticmethod
    def _server(c: "Counters", e: LogEntry, kind: int) -> None:
        c.server_requests += 1
        c.server_bytes_in += e.upstream_bytes_in
        c.server_bytes_out += e.upstream_bytes_out
        if e.error is not None:
            c.server_errors += 1
        if kind == TUNNEL:
            c.server_other_requests += 1
            c.server_other_bytes_in += e.upstream_bytes_in
            c.server_other_bytes_out += e.upstream_bytes_out

    def requests(self) -> int:
        """Transactions counted so far (read a few times a minute, not per request)."""
        return sum(self.table.values())

    def snapshot(self) -> "Counters":
        """Every counter, as the pages and /metrics read them."""
        c = self.direct.copy()
        by = c.by
        for (_ip, result, status, method), n in self.table.items():
            key = (result, status, method)
            by[key] = by.get(key, 0) + n
        for result, r in self.results.items():
            info = r.info
            n = sum(r.svc)
            c.requests += n
            c.bytes_out += r.bytes_out
            if info.hit:
                c.hits += n
                c.hit_bytes_out += r.bytes_out
                if info.mem_hit:
                    c.mem_hits += n
                elif info.disk_hit:
                    c.disk_hits += n
                    c.swap_ins += n
            if info.aborted:
                c.aborted += n
            mine = c.svc[info.kind]
            for i, count in enumerate(r.svc):
                mine[i] += count
            c.svc_sum[info.kind] += r.svc_sum
        return c

    def clients(self) -> dict[str, dict[str, int]]:
        """The client database: each address's requests by result code."""
        out: dict[str, dict[str, int]] = {}
        for (ip, result, _status, _method), n in self.table.items():
            results = out.setdefault(ip, {})
            results[result] = results.get(result, 0) + n
        return out

    def client_count(self) -> int:
        """Client addresses in the client database (the folded ``-`` row is none)."""
        return len({key[0] for key in self.table} - {"-"})

    def record_dns(self, seconds: float, outcome: str) -> None:
        """One name lookup: ``hit`` (cached), ``negative_hit`` (a cached failure) or
        ``miss`` (asked the DNS servers, taking ``seconds``)."""
        c = self.direct
        c.dns_requests += 1
        if outcome == "hit":
            c.dns_hits += 1
        elif outcome == "negative_hit":
            c.dns_negative_hits += 1
        else:
            c.dns_misses += 1
            c.dns_svc[bisect_left(BOUNDS, seconds)] += 1
            c.dns_svc_sum += seconds

    def record_fqdn(self, outcome: str) -> None:
        """One reverse lookup: ``hit``, ``negative_hit`` or ``miss``."""
        fqdn = self.fqdn
        fqdn["requests"] += 1
        fqdn[{"hit": "hits", "negative_hit": "negative_hits", "miss": "misses"}[outcome]] += 1

    def tick(self, now: float) -> None:
        """Once a minute: keep a copy of the counters (and every hour one more)."""
        self.minutes.appendleft((now, self.snapshot()))
        self._ticks += 1
        if self._ticks % 60 == 0:
            self.hours.appendleft(self.minutes[0])

    def since(self, seconds: float, now: float) -> tuple[float, Counters]:
        """The newest copy at least ``seconds`` old (the oldest one when none is)."""
        return _at_least(self.minutes if seconds < 3600 * 2 else self.hours, now - seconds)

    def recorded(self, seconds: float, now: float) -> tuple[float, Counters] | None:
        """The copy from ``seconds`` ago if the copies reach back that far (the
        utilization page shows nothing for a span not yet recorded), else None."""
        copies = self.minutes if seconds <= 3600 else self.hours
        needed = round(seconds / (60 if copies is self.minutes else 3600))
        if len(copies) <= needed:
            return None
        return copies[needed]


def _at_least(copies: deque[tuple[float, Counters]], when: float) -> tuple[float, Counters]:
    for at, counters in copies:
        if at <= when:
            return at, counters
    return copies[-1]


def quantile(counts: list[int], q: float) -> float:
    """The ``q`` quantile (0..1) of a histogram over BOUNDS, interpolated within its
    bucket as Prometheus' histogram_quantile does (0.0 when empty)."""
    total = sum(counts)
    if total <= 0:
        return 0.0
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if seen + n >= rank and n > 0:
            if i == len(BOUNDS):            # the +Inf bucket: its lower bound is all we know
                return BOUNDS[-1]
            low = BOUNDS[i - 1] if i else 0.0
            return low + (BOUNDS[i] - low) * (rank - seen) / n
        seen += n
    return BOUNDS[-1]


def status_class(status: int) -> str:
    """``2xx`` ... ``5xx``; ``000`` when nothing was sent (a reset, a client gone first)."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "000"
