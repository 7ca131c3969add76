"""What the proxy counts for the cache manager and /metrics, and how it keeps it (pure).

:class:`Stats` is one process's counting: :meth:`Stats.record` takes each
finished transaction's :class:`~squidpy.log.entry.LogEntry` (from the log path,
once per request: a few integer additions and two dictionary updates, no
locks: the reactor is the only thread that counts).  :class:`Counters` are
cumulative, as Squid's ``StatCounters``; every minute :meth:`Stats.tick` keeps a
copy, so the 5 and 60 minute figures (Squid's ``CountHist``) and the
utilization page are differences between two copies.  Counters are plain data:
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
CLIENT_DB_MAX = 65536       # distinct client addresses remembered (the oldest half goes past it)


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


class _Infos(dict):
    def __missing__(self, result: str) -> ResultInfo:
        info = self[result] = ResultInfo(result)
        return info


_INFO = _Infos()


def new_histogram() -> list[int]:
    return [0] * (len(BOUNDS) + 1)


class Counters:
    """Cumulative counts of one process (or, added up, of several)."""

    __slots__ = SCALARS + ("by", "svc", "svc_sum", "dns_svc", "dns_svc_sum", "denied")

    def __init__(self):
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
    def to_json(self) -> dict:
        return {
            "scalars": {name: getattr(self, name) for name in SCALARS},
            "by": [[r, s, m, n] for (r, s, m), n in self.by.items()],
            "svc": self.svc, "svc_sum": self.svc_sum, "dns_svc": self.dns_svc, "dns_svc_sum": self.dns_svc_sum,
            "denied": [[w, t, n] for (w, t), n in self.denied.items()],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Counters":
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


def _add_counts(mine: dict, theirs: dict) -> None:
    for key, n in theirs.items():
        mine[key] = mine.get(key, 0) + n


class ClientRecord:
    """One client address in the client database (Squid's ``ClientInfo``)."""

    __slots__ = ("results", "requests")

    def __init__(self):
        self.results: dict[str, int] = {}
        self.requests = 0


class Stats:
    """One process's counting: the counters, the client database, the minute and hour copies."""

    HOURS = 72                      # hour copies kept: three days, as Squid's N_COUNT_HOUR_HIST

    def __init__(self, now: float):
        self.started = now
        self.counters = Counters()
        self.clients: dict[str, ClientRecord] = {}
        self.fqdn = {"requests": 0, "hits": 0, "negative_hits": 0, "misses": 0}     # reverse lookups
        # (time, copy of the counters): the newest first, one a minute; and one an hour
        self.minutes: deque[tuple[float, Counters]] = deque([(now, Counters())], maxlen=61)
        self.hours: deque[tuple[float, Counters]] = deque([(now, Counters())], maxlen=self.HOURS + 1)
        self._ticks = 0

    def record(self, e) -> None:
        """Count one finished transaction (a LogEntry).  On the hot path: keep it short."""
        c = self.counters
        result = e.result
        info = _INFO[result]
        sent = e.reply_header_size + e.reply_body_size
        c.requests += 1
        c.bytes_in += e.request_header_size + e.request_body_size
        c.bytes_out += sent
        if info.hit:
            c.hits += 1
            c.hit_bytes_out += sent
            if info.mem_hit:
                c.mem_hits += 1
            elif info.disk_hit:
                c.disk_hits += 1
                c.swap_ins += 1
        if e.error is not None:
            c.errors += 1
        if e.denied_by is not None:
            denied = c.denied
            denied[e.denied_by] = denied.get(e.denied_by, 0) + 1
        if info.aborted:
            c.aborted += 1
        kind = info.kind
        if e.server_ip is not None:
            c.server_requests += 1
            c.server_bytes_in += e.upstream_bytes_in
            c.server_bytes_out += e.upstream_bytes_out
            if e.error is not None:
                c.server_errors += 1
            if kind == TUNNEL:
                c.server_other_requests += 1
                c.server_other_bytes_in += e.upstream_bytes_in
                c.server_other_bytes_out += e.upstream_bytes_out
        by = c.by
        key = (result, e.status, e.method)
        by[key] = by.get(key, 0) + 1
        elapsed = e.end - e.start
        c.svc[kind][bisect_left(BOUNDS, elapsed)] += 1
        c.svc_sum[kind] += elapsed
        client = self.clients.get(e.client_ip)
        if client is None:
            client = self._new_client(e.client_ip)
        client.requests += 1
        results = client.results
        results[result] = results.get(result, 0) + 1

    def _new_client(self, ip: str) -> ClientRecord:
        clients = self.clients
        if len(clients) >= CLIENT_DB_MAX:
            for old in list(clients)[:CLIENT_DB_MAX // 2]:
                del clients[old]
        record = clients[ip] = ClientRecord()
        return record

    def record_dns(self, seconds: float, outcome: str) -> None:
        """One name lookup: ``hit`` (cached), ``negative_hit`` (a cached failure) or
        ``miss`` (asked the DNS servers, taking ``seconds``)."""
        c = self.counters
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
        self.minutes.appendleft((now, self.counters.copy()))
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


def _at_least(copies, when: float) -> tuple[float, Counters]:
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
