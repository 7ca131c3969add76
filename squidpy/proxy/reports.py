"""One process's report for the cache manager and /metrics: its live state as plain data.

A report is a JSON-able dict (it travels between kids under ``workers N``): the
basics every report has (which process, since when, the counters), and what the
page asks for (``needs``, see :mod:`squidpy.mgr.actions`).  Reading the disk
(counting the cache_dir's objects, listing them) happens in the cache's reader
threads, so :func:`build` returns a Deferred.  The pages themselves are drawn
by :mod:`squidpy.mgr.pages` and :mod:`squidpy.mgr.prometheus`.
"""

from __future__ import annotations

import os
import resource
import socket
import time

from twisted.internet import defer

from squidpy import __version__
from squidpy.cache.policy import expiration_time, parse_http_date
from squidpy.config.secrets import configuration_text
from squidpy.http.message import field
from squidpy.ip import ip_text

SINCE = (300, 3600)                                  # the info page's and /metrics' windows
RECORDED = (300, 900, 3600, 28800, 86400, 259200)    # the utilization page's spans


def build(service, needs: frozenset, params: dict) -> defer.Deferred:
    """The report of ``service``'s process carrying ``needs``; fires with a dict."""
    now = time.time()
    stats = service.stats
    update_process_counters(service)
    report = {
        "kid": service.kid, "pid": os.getpid(), "version": __version__, "service_name": "squidpy",
        "hostname": service.visible_hostname, "started": stats.started, "now": now,
        "last_tick": stats.minutes[0][0], "counters": stats.snapshot().to_json(),
    }
    waits = []
    if "samples" in needs:
        report["since"] = {str(s): _copy(stats.since(s, now)) for s in SINCE}
        report["recorded"] = {str(s): _copy(stats.recorded(s, now)) for s in RECORDED}
    if "gauges" in needs:
        report["gauges"] = gauges(service)
        waits.append(_disk_count(service, report["gauges"]))
    if "clients" in needs:
        report["clients"] = clients(service)
    if "ipcache" in needs:
        c = stats.direct
        report["ipcache"] = {
            "stats": {"requests": c.dns_requests, "hits": c.dns_hits, "negative_hits": c.dns_negative_hits,
                      "numeric_hits": 0, "misses": c.dns_misses},
            "entries": service.dns.ipcache_contents()}
    if "fqdncache" in needs:
        report["fqdncache"] = {"stats": dict(stats.fqdn), "entries": service.dns.fqdncache_contents()}
    if "active" in needs:
        report["active"] = active_requests(service, now)
    if "fds" in needs:
        report["fds"] = file_descriptors(service)
    if "pconn" in needs:
        pool = service.pool
        report["pconn"] = {"uses": {str(k): v for k, v in pool.uses.items()},
                           "idle": [[conn.peer_ip or key[1], conn.peer_port or key[2], key[1]]
                                    for key, conns in pool.idle.items() for conn in conns]}
    if "config" in needs:
        report["config"] = configuration_text(service.config)
    if "objects" in needs:
        report["objects"] = []
        waits.append(_objects(service, report))
    if "helpers" in needs:
        report["helpers"] = [helper_report(pool) for pool in service.helper_pools()]
    if "delay" in needs:
        report["delay"] = service.throttles.report()
    return defer.gatherResults(waits, consumeErrors=True).addCallback(lambda _: report)


def _copy(found):
    if found is None:
        return None
    at, counters = found
    return [at, counters.to_json()]


def update_process_counters(service) -> None:
    """What the process itself did: CPU time, page faults, event loop turns."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    c = service.stats.direct
    c.cpu_time = usage.ru_utime + usage.ru_stime
    c.page_faults = usage.ru_majflt
    c.select_loops = getattr(service.reactor, "loops", 0)


def gauges(service) -> dict:
    fds = _open_fds()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    g = {
        "client_connections": service.client_connections,
        "clients": service.stats.client_count(),
        "max_fd": service.fd_limit,
        "fds_open": len(fds),
        "biggest_fd": max(fds, default=0),
        "reserved_fd": 0,
        "maxrss_kb": usage.ru_maxrss,
        "rss_kb": _rss_kb(),
        "ipcache_entries": service.dns.ipcache_entries,
        "fqdncache_entries": service.dns.fqdncache_entries,
        "dns_pending": service.dns.pending,
        "idle_server_connections": sum(len(conns) for conns in service.pool.idle.values()),
        "idle_server_origins": len(service.pool.idle),
        "active_requests": sum(1 for c in service.clients if c.active is not None),
        "mem_entries": 0, "mem_bytes": 0, "mem_limit": 0,
        "disk_path": None, "disk_entries": 0, "disk_bytes": 0, "disk_limit": 0, "disk_fs": [0, 0, 0, 0],
    }
    cache = service.cache
    if cache is not None:
        memory = cache.store.memory
        g.update(mem_entries=len(memory.items), mem_bytes=memory.size, mem_limit=memory.limit)
        disk = cache.store.disk
        if disk is not None:
            g.update(disk_path=disk.path, disk_bytes=disk.volume(), disk_limit=disk.size_limit,
                     disk_fs=_filesystem(disk.path))
    return g


def _disk_count(service, g: dict) -> defer.Deferred:
    cache = service.cache
    if cache is None or cache.store.disk is None:
        return defer.succeed(None)

    def counted(n):
        g["disk_entries"] = n
    return cache.on_disk(cache.store.disk.count_entries).addCallback(counted)


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return []


def _rss_kb() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


def _filesystem(path: str) -> list[int]:
    """[used KB, total KB, inodes used, inodes] of the filesystem holding ``path``."""
    try:
        st = os.statvfs(path)
    except OSError:
        return [0, 0, 0, 0]
    total = st.f_blocks * st.f_frsize // 1024
    free = st.f_bfree * st.f_frsize // 1024
    return [total - free, total, st.f_files - st.f_ffree, st.f_files]


def clients(service) -> list:
    """[address, name, open connections, requests, {result: count}] per client address."""
    open_now = service._per_ip
    names = service.dns
    return [[ip, names.cached_name(ip) or "", open_now.get(ip, 0), sum(results.values()), results]
            for ip, results in service.stats.clients().items()]


def active_requests(service, now: float) -> list:
    out = []
    for client in service.clients:
        driver = client.active
        if driver is None:
            continue
        e = driver.exchange.entry
        transport = client.transport
        read, wrote = client_bytes(client)
        out.append({
            "connection": f"0x{id(client):x}", "fd": _fileno(transport), "read": read, "wrote": wrote,
            "desc": "Reading next request" if driver.finished else e.url[:200],
            "buffered": 0, "remote": f"{client.client_ip}:{client.client_port}",
            "local": f"{client.local_ip}:{client.local_port}",
            "nrequests": client.nrequests,
            "uri": e.url, "log_type": e.result,
            "out_offset": e.reply_header_size + e.reply_body_size,
            "out_size": e.reply_header_size + e.reply_body_size,
            "req_sz": e.request_header_size + e.request_body_size,
            "entry": "N/A", "start": e.start, "username": e.user,
            "delay_pool": driver.delay_pool,
        })
    return out


def client_bytes(client) -> tuple[int, int]:
    """(read, written) on a client connection: its finished requests', and what the
    request under way has read and been sent so far."""
    read, wrote = client.bytes_read, client.bytes_written
    driver = client.active
    if driver is not None and not driver.finished:
        e = driver.exchange.entry
        read += e.request_header_size + e.request_body_size
        wrote += e.reply_header_size + e.reply_body_size
    return read, wrote


def _peer_of(conn) -> str:
    """ip:port of a connection squidpy holds only as a descriptor (seam.WaitingConnection)."""
    try:
        with socket.fromfd(conn.fd, conn.port.addressFamily, socket.SOCK_STREAM) as s:
            host, port = s.getpeername()[:2]
    except OSError:
        return conn.ip
    return f"{ip_text(host)}:{port}"


def _fileno(transport) -> int:
    try:
        return transport.fileno()
    except (AttributeError, OSError, ValueError):
        return -1


def file_descriptors(service) -> list:
    """[fd, type, timeout, read, written, remote address, description] for every open
    descriptor: the ones squidpy knows by name, the others by what /proc says they are."""
    now = time.monotonic()
    known: dict[int, tuple] = {}

    def tout(obj) -> int:
        deadline = getattr(obj, "deadline", None)
        return max(0, int(deadline - now)) if deadline else 0

    for listen_key, port in service.listeners.items():
        address = port.getHost()
        known[_fileno(port)] = ("Socket", 0, 0, 0, f"{address.host}:{address.port}",
                                "metrics Socket" if listen_key[0] == "metrics" else "HTTP Socket")
    waiting = service.waiting
    for fd, conn in waiting.connections.items():
        known[fd] = ("Socket", max(0, int(conn.accepted + waiting.timeout - now)), 0, 0, _peer_of(conn),
                     "Reading next request")
    for client in service.clients:
        desc = "Reading next request"
        if client.active is not None:
            desc = client.active.exchange.entry.url[:200]
        if client.tunnel is not None:
            desc = f"Tunnel: {client.active.exchange.entry.url[:200]}" if client.active else "Tunnel"
        known[_fileno(client.transport)] = ("Socket", tout(client), *client_bytes(client),
                                            f"{client.client_ip}:{client.client_port}", desc)
        driver = client.active
        server = driver.server if driver is not None else None
        if server is not None and server.transport is not None:
            known[_fileno(server.transport)] = ("Socket", tout(server), server.bytes_in,
                                                driver.exchange.entry.upstream_bytes_out,
                                                f"{server.peer_ip}:{server.peer_port}", driver.exchange.entry.url[:200])
    for key, conns in service.pool.idle.items():
        for server in conns:
            known[_fileno(server.transport)] = ("Socket", tout(server), server.bytes_in, 0,
                                                f"{server.peer_ip}:{server.peer_port}",
                                                f"Idle server: {key[1]}:{key[2]}")
    out = []
    for fd in sorted(_open_fds()):
        if fd in known:
            kind, timeout, nread, nwrite, remote, desc = known[fd]
        else:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue            # the descriptor listing /proc itself, gone already
            kind = "Socket" if target.startswith("socket:") else "Pipe" if target.startswith("pipe:") else "File"
            timeout, nread, nwrite, remote, desc = 0, 0, 0, "", target
        out.append([fd, kind, timeout, nread, nwrite, remote, desc])
    return out


def _objects(service, report: dict) -> defer.Deferred:
    """Every stored object: the memory tier now, the disk in a reader thread."""
    cache = service.cache
    if cache is None:
        return defer.succeed(None)
    now = time.time()
    seen = set()
    rows = report["objects"]
    for key, (reply, _body) in list(cache.store.memory.items.items()):
        seen.add(key)
        rows.append(_object_row(reply.url, reply.status, reply.body_size, "memory", reply.stored_at,
                                reply.headers, len(reply.head), now))
    disk = cache.store.disk
    if disk is None:
        return defer.succeed(None)

    def read():
        out = []
        for key, meta in disk.entries():
            if key not in seen:
                out.append(_object_row(meta["url"], meta["status"], meta["body_size"], "disk",
                                       meta.get("stored_at", 0.0), meta.get("headers", ()), 0, now))
        return out
    return cache.on_disk(read).addCallback(rows.extend)


def _object_row(url, status, size, tier, stored_at, headers, head_size, now) -> list:
    """[url, status, size, tier, stored, last used, expires, last modified, head size];
    -1 for a time the reply does not give."""
    expires = expiration_time(headers, stored_at or now)
    lastmod = parse_http_date(field(headers, b"last-modified"), now)
    return [url, status, size, tier, stored_at or 0.0, stored_at or 0.0,
            -1 if expires is None else expires, -1 if lastmod is None else lastmod, head_size]


def helper_report(pool) -> dict:
    """A helper pool's children and queue (squidpy.helpers.pool.HelperPool)."""
    return {"name": pool.name, "running": pool.running(), "busy": pool.busy(),
            "queue": pool.queued(), "requests": pool.stats["requests"], "timedout": pool.stats["timedout"],
            "restarts": pool.stats["restarts"]}
