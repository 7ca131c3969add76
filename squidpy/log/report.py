"""The figures of `squidpy logs report`, gathered one record at a time (pure).

Memory stays bounded whatever the log's length: each table keeps at most
``max_keys`` entries; past that the smallest half is folded into an
"(others)" count and the table says it is approximate.  Below that bound
every figure is exact.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TypedDict

from squidpy.log.parse import Record, domain_of, is_denied, is_hit, is_tunnel

MAX_KEYS = 100_000


class _Section(TypedDict):
    id: str
    title: str
    headers: list[str]
    rows: list[list[str]]


class Section(_Section, total=False):
    """One table of the report, as the terminal and the HTML page show it."""

    note: str | None


class Table:
    """key -> list of counters; ``add`` adds a row of numbers, pruning past ``max_keys``."""

    def __init__(self, width: int, max_keys: int = MAX_KEYS):
        self.width = width
        self.rows: dict[str, list[int]] = {}
        self.max_keys = max_keys
        self.others = [0] * width         # what pruned keys had
        self.pruned = 0                   # how many keys were folded into others

    def row(self, key: str) -> list[int]:
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= self.max_keys:
                self._prune()
            row = self.rows[key] = [0] * self.width
        return row

    def _prune(self) -> None:
        keep = sorted(self.rows.items(), key=lambda kv: kv[1][0], reverse=True)[:self.max_keys // 2]
        kept = dict(keep)
        for key, row in self.rows.items():
            if key not in kept:
                self.pruned += 1
                for i, v in enumerate(row):
                    self.others[i] += v
        self.rows = kept

    @property
    def exact(self) -> bool:
        return self.pruned == 0

    def top(self, n: int, column: int = 0) -> list[tuple[str, list[int]]]:
        return sorted(self.rows.items(), key=lambda kv: (-kv[1][column], kv[0]))[:n]


@dataclass
class Malformed:
    count: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)     # (where, the line)

    def add(self, where: str, line: str) -> None:
        self.count += 1
        if len(self.examples) < 10:
            self.examples.append((where, line[:300]))


class Report:
    """Everything the report shows; feed it with ``add(record)``."""

    def __init__(self, max_keys: int = MAX_KEYS):
        self.requests = 0
        self.bytes = 0
        self.first: float | None = None
        self.last: float | None = None
        self.malformed = Malformed()
        self.clients = Table(3, max_keys)       # requests, bytes, denied
        self.users = Table(3, max_keys)         # requests, bytes, denied
        self.user_sites = Table(2, max_keys)    # "user\0domain" -> requests, bytes (the per-user drill-down)
        # requests, bytes, denied, timed requests, ms total, ms max, served requests, served bytes
        self.domains = Table(8, max_keys)
        self.connect = Table(2, max_keys)       # established tunnels, bytes (CONNECT host:port)
        self.connect_refused = Table(3, max_keys)   # CONNECTs that were no tunnel: all, denied, failed
        self.status: Counter[int] = Counter()
        self.results: Counter[str] = Counter()
        self.hours: dict[float, list[int]] = {}     # local hour start -> [requests, bytes]
        self.denied = 0
        self.cacheable_requests = 0             # neither denied nor CONNECT: what a cache could answer
        self.cacheable_bytes = 0
        self.hit_requests = 0
        self.hit_bytes = 0
        self._hour_start = 0.0
        self._hour_end = -1.0
        self._hour_row: list[int] = []

    def add(self, r: Record) -> None:
        t, size = r.time, r.size
        self.requests += 1
        self.bytes += size
        if self.first is None or t < self.first:
            self.first = t
        if self.last is None or t > self.last:
            self.last = t
        denied = is_denied(r.result)
        row = self.clients.row(r.client)
        row[0] += 1
        row[1] += size
        domain = domain_of(r.url, r.method)
        row_u = None
        if r.user is not None and r.user != "-":
            row_u = self.users.row(r.user)
            row_u[0] += 1
            row_u[1] += size
            row_s = self.user_sites.row(f"{r.user}\0{domain}")
            row_s[0] += 1
            row_s[1] += size
        row_d = self.domains.row(domain)
        row_d[0] += 1
        row_d[1] += size
        if denied:
            self.denied += 1
            row[2] += 1
            row_d[2] += 1
            if row_u is not None:
                row_u[2] += 1
        else:
            row_d[6] += 1
            row_d[7] += size
        self.status[r.status] += 1
        if r.result is not None:
            self.results[r.result] += 1
        if r.method == "CONNECT":
            if is_tunnel(r):
                row_c = self.connect.row(r.url)
                row_c[0] += 1
                row_c[1] += size
            else:
                row_r = self.connect_refused.row(r.url)
                row_r[0] += 1
                row_r[1 if denied else 2] += 1
        elif not denied:
            self.cacheable_requests += 1
            self.cacheable_bytes += size
            if is_hit(r.result):
                self.hit_requests += 1
                self.hit_bytes += size
            if r.elapsed is not None:
                row_d[3] += 1
                row_d[4] += r.elapsed
                if r.elapsed > row_d[5]:
                    row_d[5] = r.elapsed
        if not self._hour_start <= t < self._hour_end:
            start = _hour_of(t)
            self._hour_start, self._hour_end = start, start + 3600
            self._hour_row = self.hours.setdefault(start, [0, 0])
        self._hour_row[0] += 1
        self._hour_row[1] += size

    # ------------------------------------------------------------ figures
    @property
    def hit_ratio_requests(self) -> float | None:
        return self.hit_requests / self.cacheable_requests if self.cacheable_requests else None

    @property
    def hit_ratio_bytes(self) -> float | None:
        return self.hit_bytes / self.cacheable_bytes if self.cacheable_bytes else None

    def slowest_domains(self, n: int, min_requests: int = 5) -> list[tuple[str, int, float, int]]:
        """(domain, timed requests, mean ms, max ms), slowest mean first."""
        rows = [(d, r[3], r[4] / r[3], r[5]) for d, r in self.domains.rows.items() if r[3] >= min_requests]
        rows.sort(key=lambda x: (-x[2], x[0]))
        return rows[:n]

    def served_domains(self, n: int) -> list[tuple[str, list[int]]]:
        """Domains by requests that were not denied (denials have their own table)."""
        return [(k, row) for k, row in self.domains.top(n, 6) if row[6]]

    def sites_of(self, users: list[str], n: int) -> dict[str, list[tuple[str, list[int]]]]:
        """Each user's top ``n`` sites by requests: [(domain, [requests, bytes])]."""
        wanted = set(users)
        found: dict[str, list[tuple[str, list[int]]]] = {user: [] for user in users}
        for key, row in self.user_sites.rows.items():
            user, _, domain = key.partition("\0")
            if user in wanted:
                found[user].append((domain, row))
        return {user: sorted(rows, key=lambda kv: (-kv[1][0], kv[0]))[:n] for user, rows in found.items()}

    def denied_by(self, table: Table, n: int, column: int = 2) -> list[tuple[str, list[int]]]:
        return [(k, row) for k, row in table.top(n, column) if row[column]]

    def traffic(self, max_buckets: int = 400) -> tuple[str, list[tuple[float, int, int]]]:
        """("hour" or "day", [(bucket start, requests, bytes)]) with every empty bucket filled in."""
        if not self.hours:
            return "hour", []
        starts = sorted(self.hours)
        unit = "hour"
        buckets: dict[float, list[int]] = self.hours
        if (starts[-1] - starts[0]) / 3600 + 1 > max_buckets:
            unit = "day"
            buckets = {}
            for start, (req, size) in self.hours.items():
                day = _day_of(start)
                row = buckets.setdefault(day, [0, 0])
                row[0] += req
                row[1] += size
            starts = sorted(buckets)
        out = []
        current = starts[0]
        while current <= starts[-1]:
            req, size = buckets.get(current, (0, 0))
            out.append((current, req, size))
            current = _next(current, unit)
        return unit, out

    @property
    def approximate(self) -> list[str]:
        names = [("clients", self.clients), ("users", self.users), ("sites per user", self.user_sites),
                 ("domains", self.domains),
                 ("CONNECT destinations", self.connect), ("refused CONNECTs", self.connect_refused)]
        return [name for name, table in names if not table.exact]


def _hour_of(t: float) -> float:
    lt = time.localtime(t)
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, lt.tm_hour, 0, 0, 0, 0, -1))


def _day_of(t: float) -> float:
    lt = time.localtime(t)
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


def _next(start: float, unit: str) -> float:
    """The next bucket: an hour later, or the next local midnight (days of 23 or 25 hours)."""
    if unit == "hour":
        return start + 3600
    return _day_of(start + 28 * 3600)


# ------------------------------------------------------------ the terminal table

def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def percent(part: float | None) -> str:
    return "-" if part is None else f"{part * 100:.1f}%"


def local_time(t: float | None, seconds: bool = True) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.localtime(t))


def table_text(title: str, headers: list[str], rows: list[list[str]], note: str | None = None) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    if not rows:
        return f"{title}\n  (none)\n"
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title]
    for k, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  " + "  ".join(parts).rstrip())
        if k == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    if note:
        lines.append(f"  {note}")
    return "\n".join(lines) + "\n"


def sections(report: Report, top: int = 10, min_requests: int = 5) -> list[Section]:
    """The report as data (title, headers, rows) shared by the terminal and the HTML page."""
    total = report.requests or 1
    out: list[Section] = []
    out.append({"id": "totals", "title": "Totals", "headers": ["", "value"], "rows": [
        ["requests", f"{report.requests:,}"],
        ["bytes sent to clients", human_bytes(report.bytes)],
        ["first request", local_time(report.first)],
        ["last request", local_time(report.last)],
        ["clients", f"{len(report.clients.rows) + report.clients.pruned:,}"],
        ["users", f"{len(report.users.rows) + report.users.pruned:,}"],
        ["domains", f"{len(report.domains.rows) + report.domains.pruned:,}"],
        ["denied requests", f"{report.denied:,} ({percent(report.denied / total)})"],
        ["cache hit ratio, requests", percent(report.hit_ratio_requests)],
        ["cache hit ratio, bytes", percent(report.hit_ratio_bytes)],
        ["malformed lines", f"{report.malformed.count:,}"],
    ]})

    def by(table: Table, title: str, ident: str, what: str) -> Section:
        rows = [[k, f"{r[0]:,}", percent(r[0] / total), human_bytes(r[1])] for k, r in table.top(top)]
        note = None if table.exact else f"approximate: {table.pruned:,} rarer {what} were folded together"
        return {"id": ident, "title": title, "headers": [what[:-1] if what.endswith("s") else what,
                                                         "requests", "share", "bytes"],
                "rows": rows, "note": note}

    out.append(by(report.clients, f"Top {top} clients", "clients", "clients"))
    out.append(by(report.users, f"Top {top} users", "users", "users"))
    domains = by(report.domains, f"Top {top} domains", "domains", "domains")
    domains["rows"] = [[k, f"{r[6]:,}", percent(r[6] / total), human_bytes(r[7])]
                       for k, r in report.served_domains(top)]
    domains["note"] = "; ".join(filter(None, ["requests that were not denied (denials: see below)", domains["note"]]))
    out.append(domains)
    out.append({"id": "denied-clients", "title": f"Denied requests by client (top {top})",
                "headers": ["client", "denied", "of its requests"],
                "rows": [[k, f"{r[2]:,}", percent(r[2] / r[0])] for k, r in report.denied_by(report.clients, top)]})
    out.append({"id": "denied-users", "title": f"Denied requests by user (top {top})",
                "headers": ["user", "denied", "of its requests"],
                "rows": [[k, f"{r[2]:,}", percent(r[2] / r[0])] for k, r in report.denied_by(report.users, top)]})
    out.append(user_sites_section(report, top))
    out.append({"id": "denied-domains", "title": f"Denied requests by domain (top {top})",
                "headers": ["domain", "denied", "of its requests"],
                "rows": [[k, f"{r[2]:,}", percent(r[2] / r[0])] for k, r in report.denied_by(report.domains, top)]})
    out.append({"id": "cache", "title": "Cache", "headers": ["", "hits", "of", "ratio"], "rows": [
        ["requests", f"{report.hit_requests:,}", f"{report.cacheable_requests:,}", percent(report.hit_ratio_requests)],
        ["bytes", human_bytes(report.hit_bytes), human_bytes(report.cacheable_bytes), percent(report.hit_ratio_bytes)],
    ], "note": "over requests that were neither denied nor CONNECT tunnels"})
    out.append({"id": "status", "title": "HTTP status codes", "headers": ["status", "requests", "share"],
                "rows": [[str(s), f"{c:,}", percent(c / total)] for s, c in sorted(report.status.items())]})
    out.append({"id": "results", "title": "Result codes", "headers": ["result", "requests", "share"],
                "rows": [[k, f"{c:,}", percent(c / total)]
                         for k, c in sorted(report.results.items(), key=lambda kv: (-kv[1], kv[0]))]})
    unit, buckets = report.traffic()
    out.append({"id": "traffic", "title": f"Traffic per {unit}", "headers": [unit, "requests", "bytes"],
                "rows": [[local_time(s, seconds=False) if unit == "hour" else local_time(s)[:10],
                          f"{req:,}", human_bytes(size)] for s, req, size in buckets]})
    out.append({"id": "connect", "title": f"Top {top} CONNECT destinations (tunnels established)",
                "headers": ["destination", "tunnels", "bytes"],
                "rows": [[k, f"{r[0]:,}", human_bytes(r[1])] for k, r in report.connect.top(top)]})
    out.append({"id": "connect-refused", "title": f"CONNECTs without a tunnel (top {top})",
                "headers": ["destination", "denied", "failed"],
                "rows": [[k, f"{r[1]:,}", f"{r[2]:,}"] for k, r in report.connect_refused.top(top)]})
    out.append({"id": "slowest", "title": f"Slowest domains (mean response time, at least {min_requests} requests)",
                "headers": ["domain", "requests", "mean ms", "max ms"],
                "rows": [[d, f"{n:,}", f"{mean:,.0f}", f"{worst:,}"]
                         for d, n, mean, worst in report.slowest_domains(top, min_requests)]})
    if report.malformed.count:
        out.append({"id": "malformed", "title": "Malformed lines (first ones)", "headers": ["where", "line"],
                    "rows": [[w, line] for w, line in report.malformed.examples]})
    return out


SITES_PER_USER = 5


def user_sites_section(report: Report, top: int) -> Section:
    """Who went where: each of the top users' busiest sites and the bytes they brought."""
    users = [user for user, _ in report.users.top(top)]
    rows = []
    for user, sites in report.sites_of(users, SITES_PER_USER).items():
        for i, (domain, row) in enumerate(sites):
            rows.append([user if i == 0 else "", domain, f"{row[0]:,}", human_bytes(row[1])])
    note = None if report.user_sites.exact else "approximate: too many user and site pairs to keep them all"
    return {"id": "user-sites", "title": f"Sites per user (top {SITES_PER_USER} sites of the top {top} users)",
            "headers": ["user", "site", "requests", "bytes"], "rows": rows, "note": note}


def render_text(report: Report, top: int = 10, min_requests: int = 5) -> str:
    return "\n".join(table_text(s["title"], s["headers"], s["rows"], s.get("note"))
                     for s in sections(report, top, min_requests))
