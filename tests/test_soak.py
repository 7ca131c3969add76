"""Soak: 500 concurrent clients, 5000 requests through one proxy.

Well-behaved clients mix keep-alive GETs of bodies up to 200 KB (uncacheable
misses, and cacheable objects served from the memory and disk cache), POST
uploads, CONNECT tunnels and slow senders; every reply body is checked byte for byte,
none may fail, and the proxy's memory must stay flat.  Loopback only; the
run stops by itself.

Why 5000 requests suffice (ten per client, ~8 s on a quiet 2-core machine, longer when
the rest of the suite shares it: the amount of work is fixed, not the time): every kind of
client several hundred times, each of the 300 cacheable objects stored, then hit from
memory and from disk many times over.  Memory is sampled four times a second and must grow
by less than 20 MB over the second half (thousands of requests): what leaks per request in
a proxy (a connection's buffers, a body, a cache entry) is kilobytes each, so a leak shows.
Exchanges freed without the garbage collector are checked exactly, without load, in
tests/test_exchange.py.  SQUIDPY_SOAK_REQUESTS=100000 runs a long soak by hand.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import random
import threading
import time

import pytest

from tests.proxyproc import ProxyProcess

CLIENTS = 500
PER_CLIENT = int(os.environ.get("SQUIDPY_SOAK_REQUESTS", "5000")) // CLIENTS
DEADLINE = 300.0            # seconds: a bound for a stuck run, not a measure


def blob(n: int) -> bytes:
    return (hashlib.sha256(str(n).encode()).digest() * (n // 32 + 1))[:n]


def cached_size(n: int) -> int:
    """The size of cacheable object N: from empty to 120 KB, memory and disk sized."""
    return (n * 7919) % 120000 if n % 3 else n


class AsyncOrigin:
    """A small asyncio origin: /blob/N (no-store), /c/N (cacheable for a while),
    /hash (POST: SHA-256 of the body)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=2048, limit=1 << 20))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _serve(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode().split(" ", 2)
                length = 0
                while (h := await reader.readline()) not in (b"\r\n", b""):
                    if h.lower().startswith(b"content-length:"):
                        length = int(h.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                cc = b"no-store"
                if path.startswith("/blob/"):
                    out = blob(int(path[6:]))
                elif path.startswith("/c/"):
                    out, cc = blob(cached_size(int(path[3:]))), b"max-age=600"
                else:
                    out = hashlib.sha256(body).hexdigest().encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nCache-Control: %s\r\n\r\n" % (len(out), cc) + out)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


async def read_reply(reader) -> bytes:
    status = await reader.readline()
    assert status.startswith(b"HTTP/1.1 200"), status
    length = None
    while (h := await reader.readline()) not in (b"\r\n", b""):
        if h.lower().startswith(b"content-length:"):
            length = int(h.split(b":")[1])
    return await reader.readexactly(length)


async def client(n: int, proxy_port: int, origin_port: int, deadline: float, stats: dict):
    rng = random.Random(n)
    base = f"http://127.0.0.1:{origin_port}"
    reader = writer = None
    for _ in range(PER_CLIENT):
        if time.monotonic() > deadline:
            stats.setdefault("errors", []).append("the run outlasted its deadline")
            break
        kind = rng.choices(["get", "hit", "post", "tunnel", "slow"], weights=[30, 30, 20, 10, 10])[0]
        try:
            if writer is None or kind in ("tunnel", "slow"):
                if writer is not None:
                    writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port, limit=1 << 20)
            if kind == "get":
                size = rng.choice([0, 1, 100, 1024, 20000, 200000])
                writer.write(f"GET {base}/blob/{size} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert await asyncio.wait_for(read_reply(reader), 30) == blob(size)
            elif kind == "hit":
                n = rng.randrange(300)
                writer.write(f"GET {base}/c/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert await asyncio.wait_for(read_reply(reader), 30) == blob(cached_size(n))
            elif kind == "post":
                body = os.urandom(rng.choice([1, 5000, 100000]))
                writer.write(f"POST {base}/hash HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                assert await asyncio.wait_for(read_reply(reader), 30) == hashlib.sha256(body).hexdigest().encode()
            elif kind == "tunnel":
                writer.write(f"CONNECT 127.0.0.1:{origin_port} HTTP/1.1\r\n\r\n".encode())
                assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"HTTP/1.1 200")
                await reader.readline()
                writer.write(b"GET /blob/30000 HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await asyncio.wait_for(read_reply(reader), 30) == blob(30000)
                writer.close()
                writer = None
            else:
                request = f"GET {base}/blob/500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                for i in range(0, len(request), 8):
                    writer.write(request[i:i + 8])
                    await asyncio.sleep(0.02)
                assert await asyncio.wait_for(read_reply(reader), 30) == blob(500)
                writer.close()
                writer = None
            stats[kind] = stats.get(kind, 0) + 1
        except Exception as e:          # any failure of a well-behaved client counts
            stats.setdefault("errors", []).append(f"{kind}: {e!r}")
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_soak_500_clients(tmp_path):
    origin = AsyncOrigin()
    proxy = ProxyProcess(tmp_path, f"""
acl local src 127.0.0.0/8
acl origin_port port {origin.port}
http_access allow local
http_access deny all
request_timeout 30 seconds
cache_dir diskcache {tmp_path}/cache 200
maximum_object_size_in_memory 32 KB
""", fork=False)            # its memory is measured: the process exactly as it starts in production
    try:
        stats: dict = {}
        samples = []
        deadline = time.monotonic() + DEADLINE

        async def main():
            running = True

            async def sample():
                while running:
                    samples.append(rss_mb(proxy.proc.pid))
                    await asyncio.sleep(0.25)
            sampler = asyncio.ensure_future(sample())
            await asyncio.gather(*[client(n, proxy.port, origin.port, deadline, stats) for n in range(CLIENTS)])
            running = False
            await sampler

        asyncio.run(main())
        errors = stats.pop("errors", [])
        assert not errors, f"{len(errors)} failures, e.g. {errors[:5]}"
        assert sum(stats.values()) == CLIENTS * PER_CLIENT, stats
        assert all(stats.get(k, 0) > 50 for k in ("get", "hit", "post", "tunnel", "slow")), stats
        assert proxy.proc.poll() is None
        results = collections.Counter(line.split()[3].split("/")[0] for line in proxy.log_lines()
                                      if "/c/" in line)
        assert results["TCP_MEM_HIT"] > 50 and results["TCP_HIT"] > 50, results
        # memory: flat once warm (the second half grows by less than 20 MB)
        half = samples[len(samples) // 2:]
        assert max(half) - half[0] < 20, samples
    finally:
        proxy.stop()
        origin.stop()
