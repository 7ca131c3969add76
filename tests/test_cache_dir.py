"""End to end: the disk cache (cache_dir) — persistence, eviction, sharing, crashes."""

from __future__ import annotations

import pytest

import hashlib
import json
import os
import re
import signal
import socket
import threading
import uuid

from tests.conftest import LOCAL_POLICY, read_response
from tests.proxyproc import ProxyProcess, wait_for


def get(port, target, headers=""):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        return read_response(s.makefile("rb"))


def obj(origin, size: int, name: str | None = None) -> str:
    return origin.url(f"/obj/{name or uuid.uuid4().hex[:10]}?cc=max-age%3D600&size={size}")


def path_of(target: str) -> str:
    return "/" + target.split("/", 3)[3]


def conf(cache_dir, size_mb=50, extra=""):
    return LOCAL_POLICY + f"cache_dir diskcache {cache_dir} {size_mb}\nmaximum_object_size 64 MB\n" + extra


def wait_stored(cache_dir, count: int, timeout: float = 10) -> bool:
    """Wait for the writer thread: entries appear in the diskcache database (looked at five
    times a second: each look opens the database, which writes its settings)."""
    import diskcache

    def enough():
        with diskcache.Cache(str(cache_dir)) as c:
            return sum(1 for k in c.iterkeys() if isinstance(k, str) and k.startswith("e:")) >= count
    return wait_for(enough, timeout, interval=0.2)


def stored(cache_dir, url: str) -> bool:
    """Whether the entry of ``url`` is in the cache_dir."""
    import diskcache

    from squidpy.cache.store import disk_key, entry_key
    with diskcache.Cache(str(cache_dir)) as c:
        return disk_key(entry_key(url)) in c


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def test_objects_survive_a_restart(tmp_path, origin):
    cache_dir = tmp_path / "cache"
    small, large = obj(origin, 2000), obj(origin, 2_000_000)
    p = ProxyProcess(tmp_path / "a", conf(cache_dir))
    try:
        _, _, b_small = get(p.port, small)
        _, _, b_large = get(p.port, large)
        assert wait_stored(cache_dir, 2)
    finally:
        p.stop()
    p = ProxyProcess(tmp_path / "b", conf(cache_dir))
    try:
        assert get(p.port, small)[2] == b_small
        status, headers, body = get(p.port, large)
        assert body == b_large and headers["x-cache"].startswith("HIT")
        assert origin.count(path_of(small)) == 1 and origin.count(path_of(large)) == 1
        lines = p.log_lines(2)
        assert [l.split()[3] for l in lines[-2:]] == ["TCP_HIT/200", "TCP_HIT/200"]
        # the small one is in memory now, as Squid keeps a disk hit; the large one is not
        assert get(p.port, small)[2] == b_small and get(p.port, large)[2] == b_large
        assert [l.split()[3] for l in p.log_lines(4)[-2:]] == ["TCP_MEM_HIT/200", "TCP_HIT/200"]
    finally:
        p.stop()


def test_large_hit_streams_from_disk_with_bounded_memory(tmp_path, origin):
    cache_dir = tmp_path / "cache"
    big = obj(origin, 40_000_000)
    p = ProxyProcess(tmp_path / "p", conf(cache_dir, 200))
    try:
        _, _, first = get(p.port, big)
        assert wait_stored(cache_dir, 1, 30), p.read_cache_log()
        _, headers, second = get(p.port, big)
        assert headers["x-cache"].startswith("HIT") and hashlib.sha256(second).digest() == hashlib.sha256(first).digest()
        assert peak_rss_mb(p.proc.pid) < 100
    finally:
        p.stop()


def test_ranges_of_a_large_disk_object_are_read_from_where_they_start(tmp_path, origin):
    cache_dir = tmp_path / "cache"
    big = obj(origin, 40_000_000)
    p = ProxyProcess(tmp_path / "p", conf(cache_dir, 200))
    try:
        _, _, full = get(p.port, big)
        assert wait_stored(cache_dir, 1, 30), p.read_cache_log()
        for spec, first, last in (("bytes=30000000-30000999", 30_000_000, 30_000_999), ("bytes=-10", 39_999_990, 39_999_999),
                                  ("bytes=39999000-", 39_999_000, 39_999_999)):
            status, headers, body = get(p.port, big, f"Range: {spec}\r\n")
            assert status == 206 and body == full[first:last + 1], spec
            assert headers["content-range"] == f"bytes {first}-{last}/40000000"
        assert get(p.port, big, "Range: bytes=50000000-\r\n")[0] == 416
        status, headers, body = get(p.port, big, "Range: bytes=0-1,-2\r\n")   # several ranges of a large object:
        assert status == 200 and body == full                                   # the whole of it (RFC 9110 14.2)
        assert origin.count(path_of(big)) == 1
        results = [line.split()[3] for line in p.log_lines(6)]
        assert results.count("TCP_HIT/206") == 3 and results[-1] == "TCP_HIT/200", results
        assert peak_rss_mb(p.proc.pid) < 100    # no range read the 40 MB body into memory
    finally:
        p.stop()


def _disk_meta(cache_dir) -> dict:
    import diskcache
    with diskcache.Cache(str(cache_dir)) as c:
        return next(c.get(k) for k in c.iterkeys() if isinstance(k, str) and k.startswith("e:"))


def test_a_304_refreshes_a_disk_entry_without_rewriting_its_body(tmp_path, origin):
    cache_dir = tmp_path / "cache"
    # stored stale (dated 100 s ago, fresh for 60): the next request revalidates it
    target = origin.url(f"/obj/{uuid.uuid4().hex[:10]}?cc=max-age%3D60&etag=%22v1%22&size=3000000&aged=100")
    p = ProxyProcess(tmp_path / "p", conf(cache_dir))
    try:
        _, _, first = get(p.port, target)
        assert wait_stored(cache_dir, 1, 30)
        before = _disk_meta(cache_dir)
        status, headers, second = get(p.port, target)                     # stale: revalidated, 304
        assert status == 200 and second == first and int(headers["age"]) == 0
        third = get(p.port, target)[2]                                      # fresh again, from disk
        assert third == first and origin.count(path_of(target)) == 2
        results = [line.split()[3] for line in p.log_lines(3)]
        assert results == ["TCP_MISS/200", "TCP_REFRESH_UNMODIFIED/200", "TCP_HIT/200"], results
        after = wait_for(lambda: (m := _disk_meta(cache_dir))["response_time"] > before["response_time"] and m, 10)
        assert after and after["body_key"] == before["body_key"]          # new fields on disk, same body
    finally:
        p.stop()


def test_eviction_keeps_the_cache_dir_within_its_size(tmp_path, origin):
    cache_dir = tmp_path / "cache"
    p = ProxyProcess(tmp_path / "p", conf(cache_dir, 2, "cache_mem 1 MB\nmaximum_object_size_in_memory 1 KB\n"))
    try:
        urls = [obj(origin, 300_000) for _ in range(15)]       # 4.5 MB into a 2 MB cache_dir
        for u in urls:
            get(p.port, u)
        assert wait_for(lambda: stored(cache_dir, urls[-1]), 10, interval=0.2)     # the writer is done
        import diskcache
        with diskcache.Cache(str(cache_dir)) as c:
            assert c.volume() < 3 * 1024 * 1024
        # the newest object is still there, the oldest is gone
        assert get(p.port, urls[-1])[1]["x-cache"].startswith("HIT")
        get(p.port, urls[0])
        assert origin.count(path_of(urls[0])) == 2
    finally:
        p.stop()


def test_two_workers_share_one_cache_dir(tmp_path, origin):
    cache_dir = tmp_path / "cache"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = ProxyProcess(tmp_path / "p", conf(cache_dir, 50, f"workers 2\nhttp_port 127.0.0.1:{port}\n"
                                                          "maximum_object_size_in_memory 1 KB\n"))
    try:
        u = obj(origin, 50_000)
        get(p.port, u)
        assert wait_stored(cache_dir, 1)
        for _ in range(20):               # new connections land on either kid
            assert get(p.port, u)[0] == 200
        assert origin.count(path_of(u)) == 1
    finally:
        p.stop()


def test_kill_9_while_storing_never_yields_a_corrupt_hit(tmp_path, origin):
    """Crash the proxy in the middle of storing many large objects; after a restart every
    hit must be byte for byte what the origin sent."""
    cache_dir = tmp_path / "cache"
    urls = [obj(origin, 1_500_000 + i * 1000) for i in range(12)]
    p = ProxyProcess(tmp_path / "a", conf(cache_dir, 100))
    digests = {}

    def fetch(u):
        try:
            _, _, body = get(p.port, u)
            digests[u] = hashlib.sha256(body).hexdigest()
        except (OSError, EOFError, ValueError):
            pass
    threads = [threading.Thread(target=fetch, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    incoming = cache_dir / "incoming" / str(p.proc.pid)
    # bodies are being written (the kid's folder appears with its first body)
    assert wait_for(lambda: incoming.is_dir() and any(incoming.iterdir()), 10, interval=0.01)
    p.proc.send_signal(signal.SIGKILL)
    p.proc.wait(10)
    for t in threads:
        t.join(10)
    p2 = ProxyProcess(tmp_path / "b", conf(cache_dir, 100))
    try:
        for u in urls:
            status, headers, body = get(p2.port, u)
            assert status == 200
            # whatever was served (hit or miss), it is the origin's bytes for that URL
            size = int(u.rsplit("size=", 1)[1])
            assert len(body) == size
            name = u.split("/obj/")[1].split("?")[0]
            assert body.startswith(f"{name} served ".encode())
            if headers["x-cache"].startswith("HIT") and u in digests:
                assert hashlib.sha256(body).hexdigest() == digests[u]
    finally:
        p2.stop()
    # the crashed process's half-written temp files were cleaned up at the restart
    assert os.listdir(cache_dir / "incoming") == [str(p2.proc.pid)] or os.listdir(cache_dir / "incoming") == []


def test_damaged_entry_is_a_swapfail_miss(tmp_path, origin):
    import diskcache
    cache_dir = tmp_path / "cache"
    u = obj(origin, 100_000)
    p = ProxyProcess(tmp_path / "a", conf(cache_dir, 50, "maximum_object_size_in_memory 1 KB\n"))
    try:
        get(p.port, u)
        assert wait_stored(cache_dir, 1)
    finally:
        p.stop()
    with diskcache.Cache(str(cache_dir)) as c:
        for key in list(c.iterkeys()):
            if isinstance(key, str) and key.startswith("b:"):
                del c[key]                 # the body vanishes under the metadata
    p = ProxyProcess(tmp_path / "b", conf(cache_dir, 50, "maximum_object_size_in_memory 1 KB\n"))
    try:
        status, _, body = get(p.port, u)
        assert status == 200 and len(body) == 100_000
        assert p.log_line(u).split()[3] == "TCP_SWAPFAIL_MISS/200"
        assert origin.count(path_of(u)) == 2
    finally:
        p.stop()


@pytest.mark.slow
def test_cache_commands_against_a_running_proxy_and_offline(tmp_path, origin):
    import subprocess
    import sys
    cache_dir = tmp_path / "cache"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = (f"http_port 127.0.0.1:{port}\n"
            "acl PURGE method PURGE\nacl local src 127.0.0.0/8\nhttp_access allow localhost manager\n"
            "http_access deny manager\nhttp_access allow localhost PURGE\nhttp_access deny PURGE\n"
            "http_access allow local\n" + f"cache_dir diskcache {cache_dir} 50\n")
    p = ProxyProcess(tmp_path / "p", text)

    def squidpy(*args):
        return subprocess.run([sys.executable, "-m", "squidpy", "cache", "-f", str(p.config_path), *args],
                              capture_output=True, text=True, timeout=30)

    try:
        a, b = obj(origin, 3000, "cmd-a"), obj(origin, 3000, "cmd-b")
        for u in (a, b, a):
            get(p.port, u)
        p.log_lines(3)
        out = squidpy("stats", "--json")
        assert out.returncode == 0
        info = json.loads(out.stdout)
        assert info["requests"] >= 3 and info["hits"] >= 1 and info["hit_ratio"] > 0
        out = squidpy("stats")
        assert out.returncode == 0
        assert re.search(r"^hits: +\d+ \(\d+\.\d% of requests\)$", out.stdout, re.M), out.stdout
        assert re.search(r"^cache_dir: +\S+: \d+ objects, [\d.]+ KiB \([\d,]+ bytes\) of 50\.0 MiB", out.stdout, re.M)
        assert not re.search(r"\d\.\d{3,}", out.stdout)          # no raw floats
        out = squidpy("ls", "cmd-a")
        assert out.returncode == 0 and a in out.stdout and b not in out.stdout
        out = squidpy("purge", a)
        assert out.returncode == 0 and "purged" in out.stdout
        out = squidpy("purge", a)
        assert out.returncode == 1 and "not cached" in out.stdout
        assert wait_stored(cache_dir, 1)
    finally:
        p.stop()
    out = squidpy("ls")                     # not running: read the cache_dir directly
    assert out.returncode == 0 and b in out.stdout and a not in out.stdout
    out = squidpy("stats")
    assert "not running" in out.stdout and re.search(r"^cache_dir: +\S+: 1 objects", out.stdout, re.M)


def test_a_short_temp_file_is_never_stored(tmp_path):
    """A temp write that failed (disk full) leaves a short body file: it is refused."""
    from squidpy.cache.store import CachedReply, DiskTier
    disk = DiskTier(str(tmp_path / "c"), 10)
    body = tmp_path / "body"
    body.write_bytes(b"x" * 10)
    reply = CachedReply(url="http://a.example/", status=200, reason=b"OK", headers=[],
                        request_time=0.0, response_time=0.0, body_size=20)
    assert disk.store("http://a.example/", reply, str(body), None)
    disk.writer.stop()
    try:
        assert disk.lookup("http://a.example/") is None and disk.failing
        assert not body.exists()
    finally:
        disk.close()
