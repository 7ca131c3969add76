"""End to end: the cache_dir misbehaving under a running proxy — a full disk, a damaged
database — must never stop serving or yield a wrong body, and must recover by itself."""

from __future__ import annotations

import resource
import socket
import uuid

from tests.conftest import LOCAL_POLICY, read_response
from tests.proxyproc import ProxyProcess, wait_for


def get(port, target):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_response(s.makefile("rb"))


def obj(origin, size: int) -> str:
    return origin.url(f"/obj/{uuid.uuid4().hex[:10]}?cc=max-age%3D600&size={size}")


def path_of(target: str) -> str:
    return "/" + target.split("/", 3)[3]


def conf(cache_dir):
    return LOCAL_POLICY + f"cache_dir diskcache {cache_dir} 50\nmaximum_object_size_in_memory 1 KB\ncache_mem 1 MB\n"


def test_full_disk_keeps_serving_uncached_then_recovers(tmp_path, origin):
    p = ProxyProcess(tmp_path / "p", conf(tmp_path / "cache"))
    try:
        warm = obj(origin, 5000)
        get(p.port, warm)
        # the disk is "full": no file of this process may grow past 64 KB
        resource.prlimit(p.proc.pid, resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
        big = obj(origin, 300_000)
        for _ in range(2):
            status, _, body = get(p.port, big)
            assert status == 200 and len(body) == 300_000
        assert wait_for(lambda: "failed" in p.read_cache_log(), 10)
        assert origin.count(path_of(big)) == 2          # not stored: both went to the origin
        assert p.proc.poll() is None
        # space comes back
        resource.prlimit(p.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        again = obj(origin, 300_000)
        get(p.port, again)
        assert wait_for(lambda: get(p.port, again)[1]["x-cache"].startswith("HIT"), 10)
        assert "works again" in p.read_cache_log()
        # what was stored before the disk filled up is still there
        assert "damaged" not in p.read_cache_log()
        assert get(p.port, warm)[1]["x-cache"].startswith("HIT")
    finally:
        p.stop()


def test_damaged_database_is_replaced_while_running(tmp_path, origin):
    cache_dir = tmp_path / "cache"
    p = ProxyProcess(tmp_path / "p", conf(cache_dir))
    try:
        first = obj(origin, 50_000)
        get(p.port, first)
        assert wait_for(lambda: get(p.port, first)[1]["x-cache"].startswith("HIT"), 10)
        with open(cache_dir / "cache.db", "r+b") as f:    # garbage over the database
            f.write(b"\x00garbage" * 4096)
        for name in ("cache.db-wal", "cache.db-shm"):
            (cache_dir / name).unlink(missing_ok=True)
        status, _, body = get(p.port, first)
        assert status == 200 and len(body) == 50_000 and body.startswith(first.split("/obj/")[1].split("?")[0].encode())
        assert p.proc.poll() is None
        later = obj(origin, 50_000)
        get(p.port, later)
        assert wait_for(lambda: get(p.port, later)[1]["x-cache"].startswith("HIT"), 10)
    finally:
        p.stop()
