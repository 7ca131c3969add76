"""The cache manager's pages, laid out as Squid 5 lays them out (pure).

Each page is a function of the reports the processes sent (one report per
process: the kid's under ``workers N``, else the proxy's own; see
:mod:`squidpy.mgr.report` for what a report holds).  Pages Squid adds up over
its kids (``info``, ``counters``, ``5min``, ``60min``) add the reports up;
pages Squid shows per kid are repeated once per report, each wrapped in
``by kidN { ... } by kidN`` as Squid 5 does, and unwrapped without workers.

Labels, tabs and number formats are Squid's, since monitoring scripts parse
them (``Number of clients accessing cache:``, ``Hits as % of all requests:``,
``client_http.requests = 2`` ...).  Squid features squidpy does not have (ICP,
HTCP, cache digests, unlinkd, FTP) are shown as Squid shows them when unused:
zero.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from email.utils import formatdate

from squidpy.digests import md5
from squidpy.mgr.actions import ACTIONS
from squidpy.mgr.internal import url_contains
from squidpy.mgr.request import CacheMgrPasswd, ManagerRequest, protection
from squidpy.mgr.stats import HIT, MISS, NEAR_HIT, NOT_MODIFIED, Counters, JsonObject, quantile

SMP_OPEN = "by kid{kid} {{\n"
SMP_CLOSE = "}} by kid{kid}\n\n"


def rfc1123(t: float) -> str:
    return formatdate(t, usegmt=True)


def _pct(part: float, whole: float) -> float:
    """Squid's Math::doublePercent: 0 for an empty whole."""
    return 100.0 * part / whole if whole else 0.0


def _int_pct(part: int, whole: int) -> int:
    """Squid's Math::intPercent: rounded to the nearest percent (2 of 16 is 13%), 0 for an empty whole."""
    return int(100.0 * part / whole + 0.5) if whole else 0


def _squid_time(t: float) -> str:
    """``%d.%d``: seconds and microseconds, as Squid prints a timeval (no zero padding)."""
    whole = int(t)
    return f"{whole}.{int(round((t - whole) * 1e6)) % 1000000}"


TEXT = b"text/plain;charset=utf-8"


def render(request: ManagerRequest, reports: list[JsonObject], passwords: list[CacheMgrPasswd]) -> tuple[bytes, bytes]:
    """(body, content type) of ``request.action`` from the processes' reports (non-empty).

    Two squidpy extensions serve ``squidpy cache``: ``info?format=json`` (the figures
    as JSON, added up) and ``objects?format=lines`` (one stored URL a line: URL,
    status, size, tier; each URL once, whichever kids hold it)."""
    action = request.action
    form = request.params.get("format")
    reports = sorted(reports, key=lambda r: r.get("kid") or 0)
    if action == "info" and form == "json":
        return json.dumps(info_json(reports), indent=1).encode(), b"application/json"
    if action == "objects" and form == "lines":
        text = object_lines(reports, request.params.get("pattern", ""))
    elif action == "menu":
        text = menu(passwords)
    elif action == "info":
        text = info(reports)
    elif action == "counters":
        text = counters_page(reports)
    elif action in ("5min", "60min"):
        text = interval_page(reports, 300 if action == "5min" else 3600)
    else:
        one = PER_KID[action]
        if any(r.get("kid") is not None for r in reports):
            text = "".join(SMP_OPEN.format(kid=r["kid"]) + one(r, request) + SMP_CLOSE.format(kid=r["kid"])
                           for r in reports)
        else:
            text = one(reports[0], request)
    return text.encode("utf-8", "replace"), TEXT


# ---------------------------------------------------------------- menu and index
def menu(passwords: list[CacheMgrPasswd]) -> str:
    return "".join(f" {a.name:<22}\t{a.description:<32}\t{protection(a.name, passwords)}\n"
                   for a in ACTIONS.values())


def index(passwords: list[CacheMgrPasswd], base: str) -> str:
    """The HTML page of /squid-internal-mgr/ (Squid's MGR_INDEX template): each action, linked."""
    rows = []
    for a in ACTIONS.values():
        level = protection(a.name, passwords)
        if a.name == "index" or level in ("hidden", "disabled"):
            continue
        name = html.escape(a.name)
        rows.append(f"<tr><td><a href=\"{html.escape(base)}{name}\">{name}</a></td>"
                    f"<td>{html.escape(a.description)}</td><td>{level}</td></tr>\n")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Cache Manager Interface</title>"
            "</head><body>\n<h1>Cache Manager Interface</h1>\n<table>\n" + "".join(rows) + "</table>\n</body></html>\n")


# ---------------------------------------------------------------- adding reports up
def summed(reports: list[JsonObject], key: str = "counters") -> Counters:
    total = Counters()
    for r in reports:
        total.add(Counters.from_json(r[key]))
    return total


def summed_since(reports: list[JsonObject], seconds: int) -> tuple[float, float, Counters, Counters]:
    """(start, end, counters at start, counters at end), added up over the reports:
    each report's own copy from ``seconds`` ago (or its oldest), and its counters now."""
    start = min(r["since"][str(seconds)][0] for r in reports)
    end = max(r["now"] for r in reports)
    old = Counters()
    for r in reports:
        old.add(Counters.from_json(r["since"][str(seconds)][1]))
    return start, end, old, summed(reports)


def gauge(reports: list[JsonObject], name: str, how: Callable[[Iterable[float]], float] = sum) -> float:
    """A gauge of every report, added up (or the largest, or ...)."""
    figures: Iterable[float] = (r["gauges"][name] for r in reports)
    return how(figures)


# ---------------------------------------------------------------- info
def info(reports: list[JsonObject]) -> str:
    first = reports[0]
    now = max(r["now"] for r in reports)
    started = min(r["started"] for r in reports)
    total = summed(reports)
    _, _, old5, _ = summed_since(reports, 300)
    _, _, old60, _ = summed_since(reports, 3600)
    d5, d60 = total.minus(old5), total.minus(old60)
    runtime = max(now - started, 1.0)

    def g(name: str) -> float:
        return gauge(reports, name)
    cpu5 = _cpu_usage(reports, 300)
    cpu60 = _cpu_usage(reports, 3600)
    loops = total.select_loops

    def shared(name: str) -> float:
        return gauge(reports, name, max)    # the kids share one cache_dir
    swap_size, swap_cap = shared("disk_bytes"), shared("disk_limit")
    mem_size, mem_cap = g("mem_bytes"), g("mem_limit")
    disk_entries = shared("disk_entries")
    lines = [
        f"Squid Object Cache: Version {first['version']}",
        f"Build Info: squidpy {first['version']}",
        f"Service Name: {first['service_name']}",
        f"Start Time:\t{rfc1123(started)}",
        f"Current Time:\t{rfc1123(now)}",
        "Connection information for squid:",
        f"\tNumber of clients accessing cache:\t{g('clients'):.0f}",
        f"\tNumber of HTTP requests received:\t{total.requests:.0f}",
        "\tNumber of ICP messages received:\t0",
        "\tNumber of ICP messages sent:\t0",
        "\tNumber of queued ICP replies:\t0",
        "\tNumber of HTCP messages received:\t0",
        "\tNumber of HTCP messages sent:\t0",
        f"\tRequest failure ratio:\t{(d5.errors / d5.requests if d5.requests else 0.0):5.2f}",
        f"\tAverage HTTP requests per minute since start:\t{total.requests / (runtime / 60.0):.1f}",
        "\tAverage ICP messages per minute since start:\t0.0",
        f"\tSelect loop called: {loops:.0f} times, {(1000.0 * runtime / loops if loops else 0.0):0.3f} ms avg",
        "Cache information for squid:",
        f"\tHits as % of all requests:\t5min: {_pct(d5.hits, d5.requests):3.1f}%, "
        f"60min: {_pct(d60.hits, d60.requests):3.1f}%",
        f"\tHits as % of bytes sent:\t5min: {byte_hit_ratio(d5):3.1f}%, 60min: {byte_hit_ratio(d60):3.1f}%",
        f"\tMemory hits as % of hit requests:\t5min: {_pct(d5.mem_hits, d5.hits):3.1f}%, "
        f"60min: {_pct(d60.mem_hits, d60.hits):3.1f}%",
        f"\tDisk hits as % of hit requests:\t5min: {_pct(d5.disk_hits, d5.hits):3.1f}%, "
        f"60min: {_pct(d60.disk_hits, d60.hits):3.1f}%",
        f"\tStorage Swap size:\t{swap_size / 1024:.0f} KB",
        f"\tStorage Swap capacity:\t{_pct(swap_size, swap_cap):4.1f}% used, "
        f"{_pct(swap_cap - swap_size, swap_cap):4.1f}% free",
        f"\tStorage Mem size:\t{mem_size / 1024:.0f} KB",
        f"\tStorage Mem capacity:\t{_pct(mem_size, mem_cap):4.1f}% used, {_pct(mem_cap - mem_size, mem_cap):4.1f}% free",
        f"\tMean Object Size:\t{(swap_size / disk_entries / 1024 if disk_entries else 0.0):0.2f} KB",
        "\tRequests given to unlinkd:\t0",
        "Median Service Times (seconds)  5 min    60 min:",
        _medians("\tHTTP Requests (All):  ", d5.all_svc(), d60.all_svc()),
        _medians("\tCache Misses:         ", d5.svc[MISS], d60.svc[MISS]),
        _medians("\tCache Hits:           ", d5.svc[HIT], d60.svc[HIT]),
        _medians("\tNear Hits:            ", d5.svc[NEAR_HIT], d60.svc[NEAR_HIT]),
        _medians("\tNot-Modified Replies: ", d5.svc[NOT_MODIFIED], d60.svc[NOT_MODIFIED]),
        _medians("\tDNS Lookups:          ", d5.dns_svc, d60.dns_svc),
        "\tICP Queries:           0.00000  0.00000",
        "Resource usage for squid:",
        f"\tUP Time:\t{now - started:.3f} seconds",
        f"\tCPU Time:\t{total.cpu_time:.3f} seconds",
        f"\tCPU Usage:\t{_pct(total.cpu_time, runtime):.2f}%",
        f"\tCPU Usage, 5 minute avg:\t{cpu5:.2f}%",
        f"\tCPU Usage, 60 minute avg:\t{cpu60:.2f}%",
        f"\tMaximum Resident Size: {g('maxrss_kb'):.0f} KB",
        f"\tPage faults with physical i/o: {total.page_faults:.0f}",
        "Memory accounted for:",
        f"\tTotal accounted:       {g('rss_kb'):6.0f} KB",
        "File descriptor usage for squid:",
        f"\tMaximum number of file descriptors:   {g('max_fd'):4.0f}",
        f"\tLargest file desc currently in use:   {gauge(reports, 'biggest_fd', max):4.0f}",
        f"\tNumber of file desc currently in use: {g('fds_open'):4.0f}",
        "\tFiles queued for open:                   0",
        f"\tAvailable number of file descriptors: {g('max_fd') - g('fds_open'):4.0f}",
        f"\tReserved number of file descriptors:  {g('reserved_fd'):4.0f}",
        "\tStore Disk files open:                   0",
        "Internal Data Structures:",
        f"\t{g('mem_entries') + disk_entries:6.0f} StoreEntries",
        f"\t{g('mem_entries'):6.0f} StoreEntries with MemObjects",
        f"\t{g('mem_entries'):6.0f} Hot Object Cache Items",
        f"\t{disk_entries:6.0f} on-disk objects",
    ]
    return "\n".join(lines) + "\n"


def info_json(reports: list[JsonObject]) -> dict[str, object]:
    """The figures ``squidpy cache stats`` shows, added up over the processes."""
    total = summed(reports)

    def g(name: str) -> float:
        return gauge(reports, name)
    first = reports[0]
    out: dict[str, object] = {
        "version": first["version"], "pid": first["pid"],
        "uptime_seconds": int(max(r["now"] for r in reports) - min(r["started"] for r in reports)),
        "client_connections": g("client_connections"),
        "ipcache_entries": g("ipcache_entries"), "fqdncache_entries": g("fqdncache_entries"),
        "idle_server_origins": g("idle_server_origins"),
        "requests": total.requests, "hits": total.hits,
        "hit_ratio": total.hits / total.requests if total.requests else 0.0,
        "bytes": total.bytes_out, "hit_bytes": total.hit_bytes_out,
        "byte_hit_ratio": total.hit_bytes_out / total.bytes_out if total.bytes_out else 0.0,
        "memory_entries": g("mem_entries"), "memory_bytes": g("mem_bytes"), "memory_limit_bytes": g("mem_limit"),
    }
    if len(reports) > 1 or first.get("kid") is not None:
        out["kids"] = len(reports)
    if first["gauges"]["disk_path"] is not None:
        out.update({"cache_dir": first["gauges"]["disk_path"], "disk_entries": first["gauges"]["disk_entries"],
                    "disk_bytes": first["gauges"]["disk_bytes"], "disk_limit_bytes": first["gauges"]["disk_limit"]})
    return out


def object_lines(reports: list[JsonObject], pattern: str) -> str:
    seen: set[str] = set()
    out = []
    for r in reports:
        for url, status, size, tier, *_ in r["objects"]:
            if url_contains(url, pattern) and url not in seen:
                seen.add(url)
                out.append(f"{url} {status} {size} {tier}\n")
    return "".join(out)


def byte_hit_ratio(delta: Counters) -> float:
    """Squid's statByteHitRatio: the share of bytes sent that did not come from servers
    (negative when more came in than went out)."""
    sent, fetched = delta.bytes_out // 1024, delta.server_bytes_in // 1024
    if sent > fetched:
        return _pct(sent - fetched, sent)
    return -1.0 * _pct(fetched - sent, sent)


def _medians(label: str, five: list[int], sixty: list[int]) -> str:
    return f"{label}{quantile(five, 0.5):8.5f} {quantile(sixty, 0.5):8.5f}"


def _cpu_usage(reports: list[JsonObject], seconds: int) -> float:
    """CPU seconds used per wall second over the span, in percent, added up over the kids."""
    total = 0.0
    for r in reports:
        at, old = r["since"][str(seconds)]
        span = r["now"] - at
        now_cpu = r["counters"]["scalars"]["cpu_time"]
        total += _pct(now_cpu - old["scalars"]["cpu_time"], span)
    return total


# ---------------------------------------------------------------- counters, 5min, 60min, utilization
def counters_page(reports: list[JsonObject]) -> str:
    last_tick = max(r["last_tick"] for r in reports)
    return counters_text(summed(reports), last_tick, max(r["now"] for r in reports))


def counters_text(c: Counters, sample_time: float, now: float) -> str:

    def kb(n: int) -> int:
        return n // 1024            # Squid's kbytes counters
    http_requests = c.server_requests - c.server_other_requests
    lines = [
        f"sample_time = {_squid_time(sample_time)} ({rfc1123(sample_time)})",
        f"client_http.requests = {c.requests}",
        f"client_http.hits = {c.hits}",
        f"client_http.errors = {c.errors}",
        f"client_http.kbytes_in = {kb(c.bytes_in)}",
        f"client_http.kbytes_out = {kb(c.bytes_out)}",
        f"client_http.hit_kbytes_out = {kb(c.hit_bytes_out)}",
        f"server.all.requests = {c.server_requests}",
        f"server.all.errors = {c.server_errors}",
        f"server.all.kbytes_in = {kb(c.server_bytes_in)}",
        f"server.all.kbytes_out = {kb(c.server_bytes_out)}",
        f"server.http.requests = {http_requests}",
        f"server.http.errors = {c.server_errors}",
        f"server.http.kbytes_in = {kb(c.server_bytes_in - c.server_other_bytes_in)}",
        f"server.http.kbytes_out = {kb(c.server_bytes_out - c.server_other_bytes_out)}",
        "server.ftp.requests = 0", "server.ftp.errors = 0", "server.ftp.kbytes_in = 0", "server.ftp.kbytes_out = 0",
        f"server.other.requests = {c.server_other_requests}",
        "server.other.errors = 0",
        f"server.other.kbytes_in = {kb(c.server_other_bytes_in)}",
        f"server.other.kbytes_out = {kb(c.server_other_bytes_out)}",
        *(f"icp.{name} = 0" for name in ICP_COUNTERS),
        "icp.times_used = 0",
        *(f"cd.{name} = 0" for name in ("times_used", "msgs_sent", "msgs_recv", "memory", "local_memory",
                                         "kbytes_sent", "kbytes_recv")),
        "unlink.requests = 0",
        f"page_faults = {c.page_faults}",
        f"select_loops = {c.select_loops}",
        f"cpu_time = {c.cpu_time:f}",
        f"wall_time = {max(now - sample_time, 0.0):f}",
        f"swap.outs = {c.swap_outs}",
        f"swap.ins = {c.swap_ins}",
        "swap.files_cleaned = 0",
        f"aborted_requests = {c.aborted}",
    ]
    return "\n".join(lines) + "\n"


ICP_COUNTERS = ("pkts_sent", "pkts_recv", "queries_sent", "replies_sent", "queries_recv", "replies_recv",
                "query_timeouts", "replies_queued", "kbytes_sent", "kbytes_recv", "q_kbytes_sent",
                "r_kbytes_sent", "q_kbytes_recv", "r_kbytes_recv")


def interval_page(reports: list[JsonObject], seconds: int) -> str:
    start, end, old, new = summed_since(reports, seconds)
    return interval_text(start, end, old, new)


def interval_text(start: float, end: float, old: Counters, new: Counters) -> str:
    """Squid's statAvgDump: rates per second between two copies of the counters."""
    d = new.minus(old)
    dt = end - start

    def rate(n: float) -> str:
        return f"{(n / dt if dt else 0.0):f}/sec"

    def krate(n: float) -> str:
        return rate(n / 1024)

    def median(h: list[int]) -> str:
        return f"{quantile(h, 0.5):f} seconds"
    lines = [
        f"sample_start_time = {_squid_time(start)} ({rfc1123(start)})",
        f"sample_end_time = {_squid_time(end)} ({rfc1123(end)})",
        f"client_http.requests = {rate(d.requests)}",
        f"client_http.hits = {rate(d.hits)}",
        f"client_http.errors = {rate(d.errors)}",
        f"client_http.kbytes_in = {krate(d.bytes_in)}",
        f"client_http.kbytes_out = {krate(d.bytes_out)}",
        f"client_http.all_median_svc_time = {median(d.all_svc())}",
        f"client_http.miss_median_svc_time = {median(d.svc[MISS])}",
        f"client_http.nm_median_svc_time = {median(d.svc[NOT_MODIFIED])}",
        f"client_http.nh_median_svc_time = {median(d.svc[NEAR_HIT])}",
        f"client_http.hit_median_svc_time = {median(d.svc[HIT])}",
        f"server.all.requests = {rate(d.server_requests)}",
        f"server.all.errors = {rate(d.server_errors)}",
        f"server.all.kbytes_in = {krate(d.server_bytes_in)}",
        f"server.all.kbytes_out = {krate(d.server_bytes_out)}",
        f"server.http.requests = {rate(d.server_requests - d.server_other_requests)}",
        f"server.http.errors = {rate(d.server_errors)}",
        f"server.http.kbytes_in = {krate(d.server_bytes_in - d.server_other_bytes_in)}",
        f"server.http.kbytes_out = {krate(d.server_bytes_out - d.server_other_bytes_out)}",
        *(f"server.ftp.{name} = {rate(0)}" for name in ("requests", "errors", "kbytes_in", "kbytes_out")),
        f"server.other.requests = {rate(d.server_other_requests)}",
        f"server.other.errors = {rate(0)}",
        f"server.other.kbytes_in = {krate(d.server_other_bytes_in)}",
        f"server.other.kbytes_out = {krate(d.server_other_bytes_out)}",
        *(f"icp.{name} = {rate(0)}" for name in ("pkts_sent", "pkts_recv", "queries_sent", "replies_sent",
                                                  "queries_recv", "replies_recv", "replies_queued",
                                                  "query_timeouts", "kbytes_sent", "kbytes_recv",
                                                  "q_kbytes_sent", "r_kbytes_sent", "q_kbytes_recv",
                                                  "r_kbytes_recv")),
        "icp.query_median_svc_time = 0.000000 seconds",
        "icp.reply_median_svc_time = 0.000000 seconds",
        f"dns.median_svc_time = {median(d.dns_svc)}",
        f"unlink.requests = {rate(0)}",
        f"page_faults = {rate(d.page_faults)}",
        f"select_loops = {rate(d.select_loops)}",
        f"select_fds = {rate(0)}",
        "average_select_fd_period = 0.000000/fd",
        "median_select_fds = 0.000000",
        f"swap.outs = {rate(d.swap_outs)}",
        f"swap.ins = {rate(d.swap_ins)}",
        f"swap.files_cleaned = {rate(0)}",
        f"aborted_requests = {rate(d.aborted)}",
        *(f"syscalls.{name} = {rate(0)}" for name in (
            "disk.opens", "disk.closes", "disk.reads", "disk.writes", "disk.seeks", "disk.unlinks",
            "sock.accepts", "sock.sockets", "sock.connects", "sock.binds", "sock.closes", "sock.reads",
            "sock.writes", "sock.recvfroms", "sock.sendtos")),
        f"cpu_time = {d.cpu_time:f} seconds",
        f"wall_time = {dt:f} seconds",
        f"cpu_usage = {_pct(d.cpu_time, dt):f}%",
    ]
    return "\n".join(lines) + "\n"


UTILIZATION_SPANS = (("Last 5 minutes:", 300), ("Last 15 minutes:", 900), ("Last hour:", 3600),
                     ("Last 8 hours:", 28800), ("Last day:", 86400), ("Last 3 days:", 259200))


def utilization(report: JsonObject, _request: ManagerRequest) -> str:
    out = ["Cache Utilisation:\n\n"]
    new = Counters.from_json(report["counters"])
    for label, seconds in UTILIZATION_SPANS:
        out.append(label + "\n")
        recorded = report["recorded"].get(str(seconds))
        if recorded is None:
            out.append("(no values recorded yet)\n")
        else:
            at, old = recorded
            out.append(interval_text(at, report["now"], Counters.from_json(old), new))
        out.append("\n")
    out.append("Totals since cache startup:\n")
    out.append(counters_text(new, report["last_tick"], report["now"]))
    return "".join(out)


# ---------------------------------------------------------------- per-kid pages
def client_list(report: JsonObject, _request: ManagerRequest) -> str:
    out = ["Cache Clients:\n"]
    total = hits = 0
    for ip, name, established, requests, results in report["clients"]:
        out.append(f"Address: {ip}\n")
        if name:
            out.append(f"Name:    {name}\n")
        out.append(f"Currently established connections: {established}\n")
        out.append("    ICP  Requests 0\n")
        out.append(f"    HTTP Requests {requests}\n")
        for result, n in sorted(results.items(), key=lambda kv: (-kv[1], kv[0])):
            total += n
            if _is_hit(result):
                hits += n
            out.append(f"        {result[:20]:<20} {n:7d} {_int_pct(n, requests):3d}%\n")
        out.append("\n")
    out.append("TOTALS\n")
    out.append("ICP : 0 Queries, 0 Hits (  0%)\n")
    out.append(f"HTTP: {total} Requests, {hits} Hits ({_int_pct(hits, total):3d}%)\n")
    return "".join(out)


def _is_hit(result: str) -> bool:
    from squidpy.mgr.stats import _INFO
    return _INFO[result].hit


def ipcache(report: JsonObject, _request: ManagerRequest) -> str:
    data = report["ipcache"]
    s = data["stats"]
    out = [
        "IP Cache Statistics:\n",
        f"IPcache Entries Cached:  {len(data['entries'])}\n",
        f"IPcache Requests: {s['requests']}\n",
        f"IPcache Hits:            {s['hits']}\n",
        f"IPcache Negative Hits:       {s['negative_hits']}\n",
        f"IPcache Numeric Hits:        {s['numeric_hits']}\n",
        f"IPcache Misses:          {s['misses']}\n",
        "IPcache Retrieved A:     0\n",
        "IPcache Retrieved AAAA:  0\n",
        "IPcache Retrieved CNAME: 0\n",
        "IPcache CNAME-Only Response: 0\n",
        "IPcache Invalid Request: 0\n",
        "\n\n",
        "IP Cache Contents:\n\n",
        f" {'Hostname':<31.31} {'Flg':>3} {'lstref':>6} {'TTL':>6}  {'N(b)':>4}\n",
    ]
    for name, from_hosts, negative, lastref, ttl, addresses in data["entries"]:
        flags = ("H" if from_hosts else " ") + ("N" if negative else " ")
        out.append(f" {name:<32.32} {flags} {lastref:6d} {ttl:6d} {len(addresses):2d}( 0)")
        if negative or not addresses:
            out.append("\n")
            continue
        for i, address in enumerate(addresses):
            indent = "" if i == 0 else " " * 57
            out.append(f"{indent} {address:>45.45}-OK \n")
    return "".join(out)


def fqdncache(report: JsonObject, _request: ManagerRequest) -> str:
    data = report["fqdncache"]
    s = data["stats"]
    out = [
        "FQDN Cache Statistics:\n",
        f"FQDNcache Entries In Use: {len(data['entries'])}\n",
        f"FQDNcache Entries Cached: {len(data['entries'])}\n",
        f"FQDNcache Requests: {s['requests']}\n",
        f"FQDNcache Hits: {s['hits']}\n",
        f"FQDNcache Negative Hits: {s['negative_hits']}\n",
        f"FQDNcache Misses: {s['misses']}\n",
        "FQDN Cache Contents:\n\n",
        f"{'Address':<45.45} {'Flg':>3} {'TTL':>3} {'Cnt':>3} Hostnames\n",
    ]
    for address, from_hosts, negative, ttl, names in data["entries"]:
        flags = ("N" if negative else " ") + ("H" if from_hosts else " ")
        shown_ttl = f"-{-ttl:03d}" if ttl < 0 else f"{ttl:03d}"     # C's %3.3d
        out.append(f"{address:<45.45}  {flags} {shown_ttl} {len(names):3d}")
        out.append("".join(f" {n}" for n in names) + "\n")
    return "".join(out)


def active_requests(report: JsonObject, _request: ManagerRequest) -> str:
    out = []
    for a in report["active"]:
        out.append(f"Connection: {a['connection']}\n")
        out.append(f"\tFD {a['fd']}, read {a['read']}, wrote {a['wrote']}\n")
        out.append(f"\tFD desc: {a['desc']}\n")
        out.append(f"\tin: buf {a['connection']}, used {a['buffered']}, free 0\n")
        out.append(f"\tremote: {a['remote']}\n")
        out.append(f"\tlocal: {a['local']}\n")
        out.append(f"\tnrequests: {a['nrequests']}\n")
        out.append(f"uri {a['uri']}\n")
        out.append(f"logType {a['log_type']}\n")
        out.append(f"out.offset {a['out_offset']}, out.size {a['out_size']}\n")
        out.append(f"req_sz {a['req_sz']}\n")
        out.append(f"entry {a['entry']}\n")
        start = a["start"]
        out.append(f"start {int(start)}.{int((start % 1) * 1e6):06d} ({report['now'] - start:f} seconds ago)\n")
        out.append(f"username {a['username'] or '-'}\n")
        out.append(f"delay_pool {a['delay_pool']}\n")
        out.append("\n")
    return "".join(out)


def pconn(report: JsonObject, _request: ManagerRequest) -> str:
    data = report["pconn"]
    out = ["\n Pool 0 Stats\n",
           "server-peers persistent connection counts:\n\n",
           "\t Requests\t Connection Count\n",
           "\t --------\t ----------------\n"]
    for uses, count in sorted((int(k), v) for k, v in data["uses"].items()):
        if count:
            out.append(f"\t{uses}\t{count}\n")
    out.append("\n Pool 0 Hash Table\n")
    for i, (address, port, host) in enumerate(data["idle"]):
        # Squid's PconnPool::key: the server's address and port as in a URL, then the host asked for
        shown = f"[{address}]" if ":" in address else address
        out.append(f"\t item {i}:\t{shown}:{port}/{host}\n")
    return "".join(out)


def filedescriptors(report: JsonObject, _request: ManagerRequest) -> str:
    out = ["Active file descriptors:\n",
           f"{'File':<4} {'Type':<6} {'Tout':<4} {'Nread':<7}* {'Nwrite':<7}* {'Remote Address':<21} Description\n",
           "---- ------ ---- -------- -------- --------------------- ------------------------------\n"]
    for fd, kind, tout, nread, nwrite, remote, desc in report["fds"]:
        out.append(f"{fd:4d} {kind:<6.6} {tout:4d} {nread:7d}  {nwrite:7d}  {remote:<21} {desc}\n")
    return "".join(out)


def storedir(report: JsonObject, _request: ManagerRequest) -> str:
    g = report["gauges"]
    disk_size, disk_limit = g["disk_bytes"], g["disk_limit"]
    out = [
        "Store Directory Statistics:\n",
        f"Store Entries          : {g['mem_entries'] + g['disk_entries']}\n",
        f"Maximum Swap Size      : {disk_limit >> 10} KB\n",
        f"Current Store Swap Size: {disk_size / 1024:.2f} KB\n",
        f"Current Capacity       : {_pct(disk_size, disk_limit):.2f}% used, "
        f"{_pct(disk_limit - disk_size, disk_limit):.2f}% free\n",
        "\n",
        "Memory Cache\n",
        f"Maximum Size: {g['mem_limit'] >> 10} KB\n",
        f"Current Size: {g['mem_bytes'] / 1024:.2f} KB {_pct(g['mem_bytes'], g['mem_limit']):.2f}%\n",
        f"Current entries: {g['mem_entries']}\n",
    ]
    if g["disk_path"] is not None:
        used, total, inodes_used, inodes = g["disk_fs"]
        out += [
            "\n",
            f"Store Directory #0 (diskcache): {g['disk_path']}\n",
            f"Maximum Size: {disk_limit >> 10} KB\n",
            f"Current Size: {disk_size / 1024:.2f} KB\n",
            f"Percent Used: {_pct(disk_size, disk_limit):.2f}%\n",
            f"Current entries: {g['disk_entries']}\n",
            f"Filesystem Space in use: {used}/{total} KB ({_int_pct(used, total)}%)\n",
            f"Filesystem Inodes in use: {inodes_used}/{inodes} ({_int_pct(inodes_used, inodes)}%)\n",
            "Removal policy: least-recently-stored\n",
        ]
    return "".join(out)


def objects(report: JsonObject, request: ManagerRequest) -> str:
    """Squid's store entry dump, one block per stored object; ``?pattern=TEXT`` keeps
    the objects whose URL contains TEXT (plain text, never a regular expression)."""
    pattern = request.params.get("pattern", "")
    out = []
    for url, status, size, tier, stored_at, lastref, expires, lastmod, head_size in report["objects"]:
        if not url_contains(url, pattern):
            continue
        key = md5(url.encode("utf-8", "surrogateescape")).hexdigest().upper()
        in_memory = tier == "memory"
        out.append(f"KEY {key}\n")
        out.append(f"\t{'STORE_OK':<13} {'IN_MEMORY' if in_memory else 'NOT_IN_MEMORY':<13} "
                   f"{'SWAPOUT_NONE' if in_memory else 'SWAPOUT_DONE':<12} {'PING_NONE':<12}\n")
        out.append("\tCACHABLE,VALIDATED\n")
        out.append(f"\tLV:{int(stored_at):<9d} LU:{int(lastref):<9d} LM:{int(lastmod):<9d} EX:{int(expires):<9d}\n")
        out.append("\t0 locks, 0 clients, 0 refs\n")
        out.append("\tSwap Dir -1, File 0XFFFFFFFF\n" if in_memory else "\tSwap Dir 0, File 0X000000\n")
        out.append(f"\tGET {url}\n")
        out.append("\tinmem_lo: 0\n")
        out.append(f"\tinmem_hi: {head_size + size if in_memory else 0}\n")
        out.append("\tswapout: 0 bytes queued\n")
        out.append(f"\tobject_sz: {head_size + size}\n")
        out.append(f"\tstatus: {status}\n")
        out.append("\n")
    return "".join(out)


def config_page(report: JsonObject, _request: ManagerRequest) -> str:
    text: str = report["config"]
    return text


def delay(report: JsonObject, _request: ManagerRequest) -> str:
    """Squid's DelayPools::Stats: each pool's class, and each bucket's spec and level."""
    pools = report["delay"]["pools"]
    out = [f"Delay pools configured: {len(pools)}\n\n"]
    for pool in pools:
        out.append(f"Pool: {pool['number']}\n\tClass: {pool['class']}\n\n")
        for member in pool["members"]:
            out.append(_delay_member(member))
    return "".join(out)


def _delay_member(m: JsonObject) -> str:
    label, layout = m["label"], m["layout"]
    if m["restore"] is None:
        text = f"\t{label}:\n\t\tDisabled.\n\n"
        return text + ("\n\n" if layout in ("vector", "hosts") else "")
    text = f"\t{label}:\n\t\tMax: {m['max']}\n\t\tRestore: {m['restore']}\n"
    buckets = m["buckets"]
    if layout == "single":
        return text + f"\t\tCurrent: {int(buckets[0])}\n\n"
    if layout == "vector":
        shown = "".join(f" {key}:{int(level)}" for key, level in buckets) or " Not used yet."
        return text + f"\t\tCurrent:{shown}\n\n"
    if layout == "hosts":
        for net, hosts in buckets:
            text += f"\t\tCurrent [Network {net}]:" + "".join(f" {h}:{int(level)}" for h, level in hosts) + "\n"
        if not buckets:
            text += "\t\tCurrent [All networks]: Not used yet.\n"
        return text + "\n\n"
    if not buckets:             # keyed: per user, per tag
        return text + "\t\tCurrent: Not used yet.\n\n"
    return text + "\t\tCurrent: " + "".join(f" {key}:{int(level)}" for key, level in buckets) + "\n\n"


PER_KID = {
    "utilization": utilization, "client_list": client_list, "ipcache": ipcache, "fqdncache": fqdncache,
    "active_requests": active_requests, "pconn": pconn, "filedescriptors": filedescriptors,
    "storedir": storedir, "objects": objects, "config": config_page, "delay": delay,
}

assert set(PER_KID) | {"index", "menu", "info", "counters", "5min", "60min"} == set(ACTIONS)
assert all(ACTIONS[name].per_kid for name in PER_KID)
