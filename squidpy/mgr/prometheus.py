"""/metrics: the processes' reports in Prometheus' text format (pure).

Nothing is counted here: :mod:`squidpy.mgr.stats` counts in plain integers on the
log path (no locks, no prometheus_client objects per request); at scrape time
the reports of every process (every kid under ``workers N``) are added up and
handed to prometheus_client as metric families, which writes the exposition
format.  Counters therefore restart from zero when squidpy (or one kid) restarts,
which ``rate()`` handles as a counter reset.  docs/monitoring.md lists every
metric; the Grafana dashboard and alert rules there use only these.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from squidpy.mgr.pages import byte_hit_ratio, gauge, summed, summed_since
from squidpy.mgr.stats import BOUNDS, KINDS, Counters, JsonObject, status_class

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def render(reports: list[JsonObject]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(reports))
    return generate_latest(registry)


class _Families:
    def __init__(self, reports: list[JsonObject]):
        self.reports = reports

    def collect(self) -> list[Metric]:
        return list(families(self.reports))


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    seen = 0
    for bound, n in zip(BOUNDS, counts):
        seen += n
        out.append((repr(float(bound)), seen))
    out.append(("+Inf", seen + counts[-1]))
    return out


def families(reports: list[JsonObject]) -> Iterator[Metric]:
    """Every metric family, from the reports (one per process)."""
    total = summed(reports)

    def g(name: str) -> float:
        return gauge(reports, name)

    def once(name: str) -> float:
        return gauge(reports, name, max)        # the shared cache_dir: not per kid
    first = reports[0]

    info = GaugeMetricFamily("squidpy_info", "squidpy's version (always 1)", labels=["version"])
    info.add_metric([first["version"]], 1)
    yield info
    yield GaugeMetricFamily("squidpy_start_time_seconds", "When the oldest process started (Unix time)",
                            value=min(r["started"] for r in reports))
    yield GaugeMetricFamily("squidpy_processes", "Processes whose figures are added up here (the kids under workers)",
                            value=len(reports))

    # ------------------------------------------------------------ requests
    requests = CounterMetricFamily("squidpy_requests", "Finished client requests by result code, status class and method",
                                   labels=["result", "status_class", "method"])
    by_class: dict[tuple[str, str, str], int] = {}
    for (result, status, method), n in total.by.items():
        key = (result, status_class(status), method)
        by_class[key] = by_class.get(key, 0) + n
    for key, n in sorted(by_class.items()):
        requests.add_metric(list(key), n)
    yield requests
    duration = _histogram("squidpy_request_duration_seconds",
                          "Time from the request's first byte to its log line, by kind: hit (TCP_HIT, TCP_MEM_HIT), "
                          "near_hit (TCP_REFRESH_UNMODIFIED), not_modified (TCP_IMS_HIT, TCP_INM_HIT), "
                          "miss (TCP_MISS), tunnel (CONNECT), other", ["kind"])
    for kind, counts, seconds in zip(KINDS, total.svc, total.svc_sum):
        duration.add_metric([kind], _buckets(counts), seconds)
    yield duration
    yield _counter("squidpy_client_http_hits", "Requests answered from the cache (Squid's client_http.hits)", total.hits)
    yield _counter("squidpy_client_http_errors", "Requests answered with an error page", total.errors)
    yield _counter("squidpy_aborted_requests", "Requests whose client went away before the end", total.aborted)
    denied = CounterMetricFamily("squidpy_denied_requests", "Requests denied, by the access line that denied them",
                                 labels=["line", "rule"])
    for (where, text), n in sorted(total.denied.items()):
        denied.add_metric([where, text], n)
    yield denied

    # ------------------------------------------------------------ bytes
    yield _counter("squidpy_client_http_received_bytes", "Bytes received from clients, heads included", total.bytes_in)
    yield _counter("squidpy_client_http_sent_bytes", "Bytes sent to clients, heads included", total.bytes_out)
    yield _counter("squidpy_client_http_hit_sent_bytes", "Bytes sent to clients from the cache", total.hit_bytes_out)
    server = CounterMetricFamily("squidpy_server_requests", "Requests sent to origin servers (other: tunnels)",
                                 labels=["protocol"])
    server.add_metric(["http"], total.server_requests - total.server_other_requests)
    server.add_metric(["other"], total.server_other_requests)
    yield server
    yield _counter("squidpy_server_errors", "Requests to origin servers that failed", total.server_errors)
    yield _counter("squidpy_server_received_bytes", "Bytes received from origin servers", total.server_bytes_in)
    yield _counter("squidpy_server_sent_bytes", "Bytes sent to origin servers", total.server_bytes_out)

    # ------------------------------------------------------------ ratios over Squid's windows
    hit_ratio = GaugeMetricFamily("squidpy_hit_ratio", "Hits per request over the last 5 or 60 minutes (0-1)",
                                  labels=["window"])
    byte_ratio = GaugeMetricFamily("squidpy_byte_hit_ratio",
                                   "Share of bytes sent not fetched from servers over the last 5 or 60 minutes "
                                   "(Squid's 'Hits as % of bytes sent', 0-1, negative when more came in)",
                                   labels=["window"])
    for window, seconds in (("5min", 300), ("60min", 3600)):
        _, _, old, new = summed_since(reports, seconds)
        delta = new.minus(old)
        hit_ratio.add_metric([window], delta.hits / delta.requests if delta.requests else 0.0)
        byte_ratio.add_metric([window], byte_hit_ratio(delta) / 100.0)
    yield hit_ratio
    yield byte_ratio

    # ------------------------------------------------------------ the cache
    objects = GaugeMetricFamily("squidpy_cache_objects", "Objects stored, by tier", labels=["tier"])
    objects.add_metric(["memory"], g("mem_entries"))
    objects.add_metric(["disk"], once("disk_entries"))
    yield objects
    size = GaugeMetricFamily("squidpy_cache_bytes", "Bytes stored, by tier", labels=["tier"])
    size.add_metric(["memory"], g("mem_bytes"))
    size.add_metric(["disk"], once("disk_bytes"))
    yield size
    capacity = GaugeMetricFamily("squidpy_cache_capacity_bytes", "cache_mem and the cache_dir size, by tier",
                                 labels=["tier"])
    capacity.add_metric(["memory"], g("mem_limit"))
    capacity.add_metric(["disk"], once("disk_limit"))
    yield capacity
    yield _counter("squidpy_cache_stored_objects", "Replies stored in the cache (Squid's swap.outs)", total.swap_outs)

    # ------------------------------------------------------------ clients and servers
    yield GaugeMetricFamily("squidpy_client_connections", "Open client connections", value=g("client_connections"))
    yield GaugeMetricFamily("squidpy_clients", "Client addresses in the client database (Number of clients "
                            "accessing cache)", value=g("clients"))
    yield GaugeMetricFamily("squidpy_active_requests", "Requests under way", value=g("active_requests"))
    yield GaugeMetricFamily("squidpy_server_idle_connections", "Idle origin connections kept for reuse",
                            value=g("idle_server_connections"))

    # ------------------------------------------------------------ DNS and helpers
    lookups = CounterMetricFamily("squidpy_dns_lookups", "Name lookups by outcome: hit (cached answer), "
                                  "negative_hit (cached failure), miss (asked the DNS servers)", labels=["outcome"])
    lookups.add_metric(["hit"], total.dns_hits)
    lookups.add_metric(["negative_hit"], total.dns_negative_hits)
    lookups.add_metric(["miss"], total.dns_misses)
    yield lookups
    dns_time = _histogram("squidpy_dns_lookup_duration_seconds", "Time DNS servers took to answer", [])
    dns_time.add_metric([], _buckets(total.dns_svc), total.dns_svc_sum)
    yield dns_time
    yield GaugeMetricFamily("squidpy_dns_pending_lookups", "Names being looked up now (the DNS queue)",
                            value=g("dns_pending"))
    yield GaugeMetricFamily("squidpy_ipcache_entries", "Names in the DNS cache (ipcache_size bounds it)",
                            value=g("ipcache_entries"))
    yield GaugeMetricFamily("squidpy_fqdncache_entries", "Addresses in the reverse DNS cache", value=g("fqdncache_entries"))
    yield from helper_families(reports)

    # ------------------------------------------------------------ delay pools
    yield from delay_families(reports)

    # ------------------------------------------------------------ the processes
    yield _counter("squidpy_process_cpu_seconds", "CPU time used by every process", total.cpu_time)
    yield GaugeMetricFamily("squidpy_process_resident_memory_bytes", "Resident memory of every process",
                            value=g("rss_kb") * 1024)
    yield GaugeMetricFamily("squidpy_process_open_fds", "Open file descriptors of every process", value=g("fds_open"))
    yield GaugeMetricFamily("squidpy_process_max_fds", "The file descriptor limit of every process, added up",
                            value=g("max_fd"))


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def helper_families(reports: list[JsonObject]) -> Iterator[Metric]:
    """The helpers' children and queues (auth_param, external_acl_type, url_rewrite ...)."""
    children = GaugeMetricFamily("squidpy_helper_children", "Helper children by state", labels=["helper", "state"])
    queue = GaugeMetricFamily("squidpy_helper_queue_length", "Requests waiting for a helper child", labels=["helper"])
    requests = CounterMetricFamily("squidpy_helper_requests", "Requests sent to a helper", labels=["helper"])
    timeouts = CounterMetricFamily("squidpy_helper_timeouts", "Helper requests that timed out", labels=["helper"])
    restarts = CounterMetricFamily("squidpy_helper_restarts", "Helper children restarted", labels=["helper"])
    merged: dict[str, dict[str, int]] = {}
    for r in reports:
        for h in r.get("helpers", ()):
            m = merged.setdefault(h["name"], {"running": 0, "busy": 0, "queue": 0, "requests": 0,
                                               "timedout": 0, "restarts": 0})
            for key in m:
                m[key] += h[key]
    for name, m in sorted(merged.items()):
        children.add_metric([name, "running"], m["running"])
        children.add_metric([name, "busy"], m["busy"])
        queue.add_metric([name], m["queue"])
        requests.add_metric([name], m["requests"])
        timeouts.add_metric([name], m["timedout"])
        restarts.add_metric([name], m["restarts"])
    yield from (children, queue, requests, timeouts, restarts)


def delay_families(reports: list[JsonObject]) -> Iterator[Metric]:
    """Delay pools: each bucket's level, and what each pool let through and held back
    (per process: under workers every kid has its own buckets, as in Squid)."""
    level = GaugeMetricFamily("squidpy_delay_pool_bucket_bytes", "Bytes in a delay pool's bucket, by pool, "
                              "bucket (Aggregate, Individual, Network, Per User, Per Tag, client) and key",
                              labels=["pool", "bucket", "key"])
    delivered = CounterMetricFamily("squidpy_delay_pool_bytes", "Bytes that went through a delay pool",
                                    labels=["pool"])
    waits = CounterMetricFamily("squidpy_delay_pool_pauses", "Times a transfer waited for a delay pool's bucket",
                                labels=["pool"])
    totals: dict[str, list[int]] = {}
    for r in reports:
        delay = r.get("delay", {})
        for pool in [*delay.get("pools", ()), *delay.get("client_pools", ())]:
            name = str(pool["number"]) if pool["kind"] == "server" else f"client{pool['number']}"
            total = totals.setdefault(name, [0, 0])
            total[0] += pool.get("bytes", 0)
            total[1] += pool.get("pauses", 0)
            for member in pool["members"]:
                for key, value in _bucket_levels(member):
                    level.add_metric([name, member["label"], key], value)
    for name in sorted(totals):
        delivered.add_metric([name], totals[name][0])
        waits.add_metric([name], totals[name][1])
    yield from (level, delivered, waits)


def _bucket_levels(member: JsonObject) -> Iterator[tuple[str, float]]:
    if member["restore"] is None:
        return
    buckets = member["buckets"]
    if member["layout"] == "single":
        yield "", buckets[0]
    elif member["layout"] == "hosts":
        for net, hosts in buckets:
            for host, value in hosts:
                yield f"{net}.{host}", value
    else:
        for key, value in buckets:
            yield str(key), value


def metric_names() -> set[str]:
    """Every series name /metrics can carry (for the dashboard and alert checks)."""
    from prometheus_client.parser import text_string_to_metric_families
    empty = empty_report()
    names: set[str] = set()
    for family in text_string_to_metric_families(render([empty]).decode()):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def empty_report() -> JsonObject:
    """A report of a process that has counted nothing yet."""
    zero = Counters().to_json()
    return {
        "kid": None, "pid": 0, "version": "0", "service_name": "squidpy", "started": 0.0, "now": 0.0,
        "last_tick": 0.0, "counters": zero, "since": {"300": [0.0, zero], "3600": [0.0, zero]},
        "recorded": {}, "gauges": {name: 0 for name in GAUGES} | {"disk_path": None, "disk_fs": [0, 0, 0, 0]},
        "helpers": [], "delay": {"pools": [], "client_pools": []},
    }


#: the gauges every report carries (squidpy.proxy.service builds them)
GAUGES = ("client_connections", "clients", "max_fd", "fds_open", "biggest_fd", "reserved_fd", "maxrss_kb", "rss_kb",
          "mem_entries", "mem_bytes", "mem_limit", "disk_entries", "disk_bytes", "disk_limit",
          "ipcache_entries", "fqdncache_entries", "dns_pending", "idle_server_connections",
          "idle_server_origins", "active_requests")
